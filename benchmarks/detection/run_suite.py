"""Detection benchmark: every kind on labelled synthetic runs, plus healthy controls.

Prints, per kind: how many runs detected it (an alert of that kind at or above the expected
severity), the detection delay (alert step − labelled onset, in steps and in % of the run), and the
false alarms (warning/critical alerts) on healthy runs. Scenarios: tests/detector_scenarios.py.

    python benchmarks/detection/run_suite.py [--seeds 5] [--steps 200] [--quick]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from detector_scenarios import KINDS, Scenario, alert_kind, make_scenario, severity_rank  # noqa: E402
from tally import Tally, print_header, suite_parser, sweep, timed  # noqa: E402

from analyzer.detectors import run_detectors  # noqa: E402
from analyzer.features import build_features  # noqa: E402
from analyzer.metrics import compute_metrics  # noqa: E402

TIMES = {"metrics": 0.0, "detectors": 0.0}


def evaluate(sc: Scenario) -> list:
    with timed(TIMES, "metrics"):
        features = build_features(sc.run)  # built once, as the pipeline does
        metrics = compute_metrics(sc.run, features=features)
    with timed(TIMES, "detectors"):
        alerts, _ = run_detectors(sc.run, metrics, sc.drift, None, features=features)
    return alerts


def main() -> int:
    ap = suite_parser(__doc__)
    ap.add_argument("--prompts", type=int, default=4, help="prompts (GRPO groups) per step")
    ap.add_argument("--group-size", type=int, default=4, help="completions per prompt")
    ap.add_argument("--kind", choices=sorted(KINDS), help="only this kind (and the healthy controls)")
    args = ap.parse_args()
    seeds, noises = sweep(args)
    n = args.steps
    print_header(
        f"# detection suite: {n} steps per run, onset at {args.onset:.0%}, {args.prompts} groups x "
        f"{args.group_size} completions per step, seeds {list(seeds)}, noise {list(noises)}"
    )
    print(
        f"{'kind':26s} {'detected':>9s} {'median delay':>13s} {'max |delay|':>12s} {'median % run':>13s}  other warnings"
    )
    all_delays_pct = []
    failures = 0
    for kind, (_gens, min_sev) in KINDS.items():
        if args.kind and kind != args.kind:
            continue
        row = Tally()
        for seed in seeds:
            for noise in noises:
                sc = make_scenario(
                    kind,
                    seed=seed,
                    noise=noise,
                    n_steps=n,
                    onset_fraction=args.onset,
                    prompts_per_step=args.prompts,
                    group_size=args.group_size,
                )
                row.add(evaluate(sc), alert_kind(kind), severity_rank(min_sev), sc.onset)
        failures += row.missed
        hits, runs, delays, others = row.hits, row.runs, row.delays, row.others
        if delays:
            med = statistics.median(delays)
            mx = max(abs(d) for d in delays)
            pct = 100 * statistics.median(abs(d) for d in delays) / n
            all_delays_pct.append(pct)
            d = f"{med:+.1f}"
            m = f"{mx}"
            p = f"{pct:.1f} %"
        else:
            d = m = p = "n/a"
        print(
            f"{kind:26s} {hits:>4d}/{runs:<4d} {d:>13s} {m:>12s} {p:>13s}  {', '.join(sorted(others)) or '-'}"
        )
    print()
    healthy_runs = 0
    false_alarms: list[str] = []
    infos = 0
    for seed in seeds:
        for noise in noises:
            for gens in (True, False):
                sc = make_scenario(
                    None,
                    seed=seed,
                    noise=noise,
                    n_steps=n,
                    with_generations=gens,
                    ppo=(not gens and seed % 2 == 1),
                    prompts_per_step=args.prompts,
                    group_size=args.group_size,
                )
                alerts = evaluate(sc)
                healthy_runs += 1
                infos += sum(a.severity.rank == 0 for a in alerts)
                for a in alerts:
                    if a.severity.rank >= 1:
                        false_alarms.append(
                            f"{sc.name}: {a.severity.value} {a.kind} @ {a.step}: {a.message}"
                        )
    print(
        f"healthy controls: {healthy_runs} runs, false warnings/criticals: {len(false_alarms)}, info alerts: {infos}"
    )
    for f in false_alarms:
        print("  ", f)
    print()
    overall = statistics.median(all_delays_pct) if all_delays_pct else float("nan")
    print(
        f"missed detections: {failures}; median |delay| over kinds: {overall:.1f} % of the run; "
        f"analysis time (metrics + detectors): {TIMES['metrics'] + TIMES['detectors']:.1f} s"
    )
    print(
        f"time: detectors {TIMES['detectors']:.1f} s vs compute_metrics (baseline, same runs) "
        f"{TIMES['metrics']:.1f} s = {TIMES['detectors'] / max(TIMES['metrics'], 1e-9):.2f}x"
    )
    ok = failures == 0 and not false_alarms and overall <= 5.0
    print("TARGET MET" if ok else "TARGET NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
