"""Detection benchmark for short runs: fewer logged steps than general.min_steps.

A run of a few logged steps (a TRL console log, a trainer_state.json of 1-9 entries) is too short
for a trend, but a level needs none. Each labelled short run is the first steps of a healthy run
with one extreme level from its onset to the end (tests/detector_scenarios.py, make_short_run:
clipped share ≥ 0.93, entropy ≤ 0.012, a zero gradient, every group without reward spread, a
format reward of 0). Prints, per level: how many runs got an extreme_values alert of that check at
warning or above, the delay (alert step − labelled onset, in logged steps), and the false alarms
(warning/critical alerts of any detector) on healthy short controls of the same lengths, plain and
borderline (every level low or high but short of its threshold).

    python benchmarks/detection/run_short.py [--seeds 5] [--quick]
"""

from __future__ import annotations

import dataclasses
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from detector_scenarios import SHORT_CHECKS, make_short_run  # noqa: E402
from tally import suite_parser, sweep  # noqa: E402

from analyzer.detectors import run_detectors  # noqa: E402

LENGTHS = (2, 3, 5, 9)  # logged steps, all < general.min_steps = 10


def main() -> int:
    args = suite_parser(__doc__, labelled_onset=False).parse_args()
    seeds, noises = sweep(args)
    print(
        f"# short runs: {list(LENGTHS)} logged steps, seeds {list(seeds)}, noise {list(noises)}; "
        f"machine: {platform.machine()}, Python {platform.python_version()}"
    )
    print()
    print(
        f"{'level':20s} {'detected':>9s} {'median delay':>13s} {'max |delay|':>12s}  other warnings"
    )
    failures = 0
    t0 = time.perf_counter()
    for check in SHORT_CHECKS:
        hits = runs = 0
        delays: list[int] = []
        others: set[str] = set()
        for seed in seeds:
            for noise in noises:
                for n in LENGTHS:
                    sc = make_short_run(check, seed=seed, noise=noise, n_steps=n)
                    alerts, _ = run_detectors(sc.run, sc.run.steps, None, None)
                    runs += 1
                    mine = [
                        a
                        for a in alerts
                        if a.kind == "extreme_values"
                        and a.evidence.get("check") == check
                        and a.severity.rank >= 1
                    ]
                    others |= {
                        f"{a.kind}:{a.evidence.get('check', '')}".rstrip(":")
                        for a in alerts
                        if a not in mine and a.severity.rank >= 1
                    }
                    if mine:
                        hits += 1
                        assert sc.onset is not None
                        delays.append((mine[0].step or 0) - sc.onset)
        failures += runs - hits
        d = f"{statistics.median(delays):+.1f}" if delays else "n/a"
        m = f"{max(abs(x) for x in delays)}" if delays else "n/a"
        print(
            f"{check:20s} {hits:>4d}/{runs:<4d} {d:>13s} {m:>12s}  {', '.join(sorted(others)) or '-'}"
        )
    print()
    healthy = 0
    false_alarms: list[str] = []
    for seed in seeds:
        for noise in noises:
            for n in (1, *LENGTHS):
                sc = make_short_run(None, seed=seed, noise=noise, n_steps=n)
                alerts, _ = run_detectors(sc.run, sc.run.steps, None, None)
                healthy += 1
                false_alarms += [
                    f"{sc.name}: {a.severity.value} {a.kind}: {a.message}"
                    for a in alerts
                    if a.severity.rank >= 1
                ]
    # borderline controls: every level low or high but short of its threshold — a GRPO loss of
    # exactly 0 (normal with beta = 0), a tiny non-zero gradient, entropy 0.03-0.1, 30-45 %
    # clipped, 70-95 % of the groups without spread, a format reward of 1-10 %
    for seed in seeds:
        for noise in noises:
            for n in (1, *LENGTHS):
                sc = make_short_run(None, seed=seed, noise=noise, n_steps=n)
                rng = np.random.default_rng(seed * 31 + n)
                steps = sc.run.steps.with_columns(
                    pl.Series("loss", np.zeros(n)),
                    pl.Series("grad_norm", rng.uniform(1e-4, 1e-3, n)),
                    pl.Series("entropy", rng.uniform(0.03, 0.1, n)),
                    pl.Series("clipped_ratio", rng.uniform(0.3, 0.45, n)),
                    pl.Series("frac_reward_zero_std", rng.uniform(0.7, 0.95, n)),
                    pl.Series("reward/format", rng.uniform(0.01, 0.1, n)),
                )
                run = dataclasses.replace(sc.run, steps=steps)
                alerts, _ = run_detectors(run, steps, None, None)
                healthy += 1
                false_alarms += [
                    f"borderline {sc.name}: {a.severity.value} {a.kind}: {a.message}"
                    for a in alerts
                    if a.severity.rank >= 1
                ]
    print(
        f"healthy short controls (plain and borderline): {healthy} runs, false warnings/criticals: "
        f"{len(false_alarms)}"
    )
    for f in false_alarms:
        print("  ", f)
    print(f"missed detections: {failures}; time {time.perf_counter() - t0:.1f} s")
    ok = failures == 0 and not false_alarms
    print("TARGET MET" if ok else "TARGET NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
