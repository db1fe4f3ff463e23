"""How `logscan analyze` scales with the number of metric columns.

A seed-schema CSV with N reward columns (``r0_reward`` … ) and 120 rows (30 steps × 4 prompts) is
analysed by the CLI (``analyze --no-embeddings -q``) in a fresh subprocess, for a narrow baseline
(10 columns) and for each N asked; a bare Polars read of the same wide file is the floor. Each
case is timed best of ``--repeat``, the rounds interleaved, so the ratios (all measured in this one
run on a shared machine) are what compare.

    python benchmarks/wide/bench_wide.py                      # N = 10, 1,000 and 10,000
    python benchmarks/wide/bench_wide.py --columns 2000 --repeat 1
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROWS_STEPS, ROWS_PER_STEP = 30, 4
BASELINE_COLUMNS = 10


def make_run(folder: Path, n_columns: int, seed: int = 0) -> Path:
    """``folder/generations.csv`` with ``n_columns`` reward columns and 120 rows."""
    folder.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(seed)
    path = folder / "generations.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["global_step", "question", "model_output", "total_reward", *(f"r{i}_reward" for i in range(n_columns))])
        for step in range(1, ROWS_STEPS + 1):
            for k in range(ROWS_PER_STEP):
                w.writerow([step, f"q{k}", "<answer>1</answer>", 1.0, *(rnd.random() for _ in range(n_columns))])
    return folder


def time_cli(run: Path, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "analyzer.cli", "analyze", str(run), "--no-embeddings", "-q", "-o", str(out)],
        capture_output=True, text=True,
    )
    took = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"analyze failed ({proc.returncode}): {proc.stderr.strip()}")
    return took


def time_polars_read(run: Path) -> float:
    code = "import polars as pl, sys; pl.read_csv(sys.argv[1]).height"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(run / "generations.csv")], check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--columns", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="logscan-wide-") as tmp:
        base = Path(tmp)
        runs = {n: make_run(base / f"w{n}", n) for n in [BASELINE_COLUMNS, *args.columns]}
        best: dict[str, float] = {}
        for _ in range(args.repeat):
            for n, run in runs.items():
                key = f"analyze {n}"
                best[key] = min(best.get(key, float("inf")), time_cli(run, base / f"out{n}"))
            for n in args.columns:
                key = f"polars read {n}"
                best[key] = min(best.get(key, float("inf")), time_polars_read(runs[n]))
    narrow = best[f"analyze {BASELINE_COLUMNS}"]
    print(f"| case | wall s | vs analyze {BASELINE_COLUMNS} columns |")
    print("|---|---:|---:|")
    print(f"| baseline: `analyze --no-embeddings`, {BASELINE_COLUMNS} reward columns | {narrow:.2f} | 1.00× |")
    for n in args.columns:
        wide = best[f"analyze {n}"]
        print(f"| `analyze --no-embeddings`, {n:,} reward columns | {wide:.2f} | {wide / narrow:.2f}× |")
        polars = best[f"polars read {n}"]
        print(f"| bare `pl.read_csv` of the {n:,}-column file (a fresh interpreter) | {polars:.2f} | {polars / narrow:.2f}× |")


if __name__ == "__main__":
    main()
