"""Detector time on a big run, against compute_metrics on the same run (the baseline).

    python benchmarks/detection/bench_big_run.py [RUN]   (default: benchmarks/data/big_run_jsonl,
                                                         made by benchmarks/ingest/gen_big_run.py)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from analyzer.detectors import run_detectors
from analyzer.features import build_features
from analyzer.ingest import load_run
from analyzer.metrics import compute_metrics

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "benchmarks" / "data" / "big_run_jsonl"
    if not path.exists():
        print(f"{path} does not exist: run benchmarks/ingest/gen_big_run.py first")
        return 2
    t = time.perf_counter()
    run = load_run(path)
    t_ingest = time.perf_counter() - t
    t = time.perf_counter()
    features = build_features(run)  # built once, as the pipeline does: part of the baseline
    metrics = compute_metrics(run, features=features)
    t_metrics = time.perf_counter() - t
    t = time.perf_counter()
    alerts, statuses = run_detectors(run, metrics, None, None, features=features)
    t_detect = time.perf_counter() - t
    n = 0 if run.generations is None else run.generations.height
    print(
        f"{n:,} completions, {metrics.height} steps: ingest {t_ingest:.1f} s, compute_metrics "
        f"{t_metrics:.1f} s (baseline), run_detectors {t_detect:.1f} s = {t_detect / t_metrics:.2f}x"
    )
    print(f"detectors run: {sum(s.ran for s in statuses)}/{len(statuses)}; alerts:")
    for a in alerts:
        print(f"  {a.severity.value:8s} {a.kind} @ {a.step}: {a.message}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
