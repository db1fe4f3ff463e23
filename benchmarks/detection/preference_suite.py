"""Detection benchmark for preference optimisation (DPO, ORPO, KTO): every preference scenario on
labelled runs written as TRL writes them, plus healthy controls.

Each run is a ``trainer_state.json`` (tests/preference_scenarios.py) written to a temporary folder
and read back with ``analyzer.ingest.load_run`` — the path a real file takes. Prints, per scenario
and trainer: how many runs raised the expected alert at or above its severity, the delay from the
labelled onset (scenarios whose problem spans the whole run have none), the other warnings that
fired with it, and the warning/critical alerts on the healthy controls (the target is 0).

    python benchmarks/detection/preference_suite.py [--seeds 5] [--steps 200] [--quick]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from preference_scenarios import KINDS, WHOLE_RUN, make_preference_run  # noqa: E402
from tally import Tally, print_header, suite_parser, sweep, timed  # noqa: E402

from analyzer.detectors import run_detectors  # noqa: E402
from analyzer.ingest import load_run  # noqa: E402
from analyzer.metrics import compute_metrics  # noqa: E402
from analyzer.model import Severity  # noqa: E402

# healthy controls: (trainer, options) — TRL ≥ 0.29 keys, TRL 0.12–0.28 keys, an eval set, small batches
CONTROLS = (
    ("dpo", {}),
    ("dpo", {"trl_version": "0.12"}),
    ("dpo", {"eval_every": 10}),
    ("dpo", {"batch": 4}),
    ("orpo", {}),
    ("kto", {}),
)
TIMES = {"ingest": 0.0, "metrics": 0.0, "detectors": 0.0}


def evaluate(sc, folder: Path) -> list:
    with timed(TIMES, "ingest"):
        run = load_run(sc.write(folder))
    with timed(TIMES, "metrics"):
        metrics = compute_metrics(run)
    with timed(TIMES, "detectors"):
        alerts, _ = run_detectors(run, metrics, None, None)
    return alerts


def main() -> int:
    ap = suite_parser(__doc__)
    ap.add_argument("--batch", type=int, default=8, help="pairs per logged step")
    args = ap.parse_args()
    seeds, noises = sweep(args)
    n = args.steps
    print_header(
        f"# preference suite: {n} steps per run (TRL trainer_state.json, logging every step), {args.batch} pairs "
        f"per step, onset at {args.onset:.0%}, seeds {list(seeds)}, noise {list(noises)}"
    )
    print(f"{'scenario':18s} {'trainer':7s} {'expected':28s} {'detected':>9s} {'median delay':>13s} "
          f"{'max |delay|':>12s}  other warnings")
    failures = 0
    delays_pct: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        k = 0
        for kind, (expected, min_sev, trainers) in KINDS.items():
            for trainer in trainers:
                row = Tally()
                for seed in seeds:
                    for noise in noises:
                        sc = make_preference_run(kind, trainer, seed=seed, noise=noise, n_steps=n,
                                                 onset_fraction=args.onset, batch=args.batch)
                        k += 1
                        row.add(evaluate(sc, root / f"r{k}"), expected, Severity(min_sev).rank, sc.onset)
                failures += row.missed
                hits, runs, delays, others = row.hits, row.runs, row.delays, row.others
                if delays:
                    med = statistics.median(delays)
                    delays_pct.append(100 * statistics.median(abs(d) for d in delays) / n)
                    d, m = f"{med:+.1f}", f"{max(abs(x) for x in delays)}"
                else:
                    d, m = ("n/a (whole run)" if kind in WHOLE_RUN else "n/a"), ""
                print(f"{kind:18s} {trainer:7s} {expected:28s} {hits:>4d}/{runs:<4d} {d:>13s} {m:>12s}  "
                      f"{', '.join(sorted(others)) or '-'}")
        print()
        healthy = 0
        false_alarms: list[str] = []
        infos = 0
        for trainer, opts in CONTROLS:
            for seed in seeds:
                for noise in noises:
                    sc = make_preference_run(None, trainer, seed=seed, noise=noise, n_steps=n,
                                             **{"batch": args.batch, **opts})
                    k += 1
                    alerts = evaluate(sc, root / f"r{k}")
                    healthy += 1
                    infos += sum(a.severity.rank == 0 for a in alerts)
                    false_alarms += [f"{sc.name} {opts}: {a.severity.value} {a.kind} @ {a.step}: {a.message}"
                                     for a in alerts if a.severity.rank >= 1]
    kinds = ", ".join(f"{t} {o}" if o else t for t, o in CONTROLS)
    print(f"healthy controls: {healthy} runs ({kinds}), "
          f"false warnings/criticals: {len(false_alarms)}, info alerts: {infos}")
    for f in false_alarms:
        print("  ", f)
    print()
    overall = statistics.median(delays_pct) if delays_pct else float("nan")
    total = TIMES["ingest"] + TIMES["metrics"] + TIMES["detectors"]
    print(f"missed detections: {failures}; median |delay| over onset scenarios: {overall:.1f} % of the run")
    print(f"time: ingest {TIMES['ingest']:.1f} s, compute_metrics {TIMES['metrics']:.1f} s, detectors "
          f"{TIMES['detectors']:.1f} s (total {total:.1f} s); detectors vs ingest (load_run, the baseline) "
          f"on the same runs = {TIMES['detectors'] / max(TIMES['ingest'], 1e-9):.2f}x")
    ok = failures == 0 and not false_alarms and overall <= 5.0
    print("TARGET MET" if ok else "TARGET NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
