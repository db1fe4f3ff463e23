"""Incremental analysis on the 1,000,000-completion run (docs/cli.md "The analysis state").

    python benchmarks/ingest/gen_big_run.py               # once: benchmarks/data/big_run_csv/
    python benchmarks/incremental/bench_incremental.py [--embeddings] [--repeat 2]

Builds ``benchmarks/data/inc_run/`` from ``big_run_csv`` holding its first 990,000 completions
(steps 1-990), analyses it (priming the embedding cache and the analysis state), then per round:

- ``full``: ``logscan analyze --full`` of the 990,000 (what a first analysis costs, cache warm);
- the next 10,000 completions (1 %, steps 991-1000) are appended to ``generations.csv``;
- ``incremental``: ``logscan analyze`` of the grown run, through the state;
- ``full grown``: ``logscan analyze --full`` of the grown run into another folder, its embedding
  cache a copy of the incremental run's (warm in both): the reference; metrics.parquet, the alerts
  and the verdict of the two must be identical;
- the file is cut back to 990,000 completions and the state re-primed for the next round.

Each analysis runs in a fresh ``logscan`` process (wall time, and peak RSS from the kernel).
Without ``--reports`` the analyses skip the plots and report.html (``--no-plots --no-html``).

Then the floor of any re-run that writes the same outputs, in fresh processes: starting Python and
importing the libraries the outputs need (Polars, numpy, matplotlib, Jinja2; none of logscan's own
code), and matplotlib drawing as many PNGs as the report has, each one line of 1,000 points (the
least a plot of the grown run can cost). Best of five and of three.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"
SRC = DATA / "big_run_csv"
RUN = DATA / "inc_run"
BASE_ROWS = 990_000


def _logscan(*args: str) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one ``logscan`` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "analyzer.cli", *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"logscan {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(rss, before) / 1024


def _cut_points() -> tuple[int, int]:
    """Byte offsets in the source CSV where record BASE_ROWS and the end of record BASE_ROWS + 1 %."""
    import csv

    csv.field_size_limit(sys.maxsize)
    with (SRC / "generations.csv").open("rb") as fh:
        header = fh.readline()
        pos, rows, base = len(header), 0, None
        quotes = 0
        for raw in fh:  # a record ends at a line end outside quotes
            quotes += raw.count(b'"')
            pos += len(raw)
            if quotes % 2 == 0:
                rows += 1
                if rows == BASE_ROWS:
                    base = pos
                if rows == BASE_ROWS + BASE_ROWS // 99:
                    return base or 0, pos
    raise SystemExit("the source run is shorter than expected")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--embeddings", action="store_true", help="default drift (embeddings) instead of --no-embeddings")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--reports", action="store_true", help="the plots and report.html too (the default command)")
    args = ap.parse_args()
    if not (SRC / "generations.csv").is_file():
        raise SystemExit("run benchmarks/ingest/gen_big_run.py first")
    base_end, grown_end = _cut_points()
    shutil.rmtree(RUN, ignore_errors=True)
    RUN.mkdir(parents=True)
    for name in ("run.json", "events.jsonl"):
        shutil.copy(SRC / name, RUN / name)
    gen = RUN / "generations.csv"
    with (SRC / "generations.csv").open("rb") as src, gen.open("wb") as out:
        out.write(src.read(base_end))
        appended = src.read(grown_end - base_end)
    drift = [] if args.embeddings else ["--no-embeddings"]
    out_inc, out_ref = RUN / "out", RUN / "out-ref"
    common = [*drift, "-q"] if args.reports else [*drift, "--no-plots", "--no-html", "-q"]
    _logscan("analyze", str(RUN), "-o", str(out_inc), *common)  # primes the embedding cache and the state
    if (out_inc / "cache").is_dir():  # the embedding cache, warm for the reference too
        shutil.copytree(out_inc / "cache", out_ref / "cache", dirs_exist_ok=True)
    rows = []
    for _ in range(args.repeat):  # --repeat 0: the floor only
        full = _logscan("analyze", str(RUN), "-o", str(out_inc), "--full", *common)
        with gen.open("ab") as fh:
            fh.write(appended)
        inc = _logscan("analyze", str(RUN), "-o", str(out_inc), *common)
        inc_json = json.loads((out_inc / "analysis.json").read_text())
        if (out_inc / "cache").is_dir():  # the new completions' embeddings: warm for the reference too
            shutil.copytree(out_inc / "cache", out_ref / "cache", dirs_exist_ok=True)
        ref = _logscan("analyze", str(RUN), "-o", str(out_ref), "--full", *common)
        ref_json = json.loads((out_ref / "analysis.json").read_text())
        import polars as pl

        same = (
            pl.read_parquet(out_inc / "metrics.parquet").equals(pl.read_parquet(out_ref / "metrics.parquet"))
            and inc_json["alerts"] == ref_json["alerts"] and inc_json["verdict"] == ref_json["verdict"]
        )
        rows.append((full, inc, ref, same, inc_json["timings"], ref_json["timings"], inc_json["notes"][:1]))
        with gen.open("r+b") as fh:  # back to 990,000 completions, the state re-primed
            fh.truncate(base_end)
        _logscan("analyze", str(RUN), "-o", str(out_inc), *common)
    for full, inc, ref, same, ti, tr, note in rows:
        print(f"full 990k {full[0]:.2f} s ({full[1]:.0f} MB) | incremental +1% {inc[0]:.2f} s ({inc[1]:.0f} MB) | "
              f"full grown {ref[0]:.2f} s | incremental / full grown = {inc[0] / ref[0]:.3f} | identical: {same}")
        print("   stages incremental:", ti)
        print("   stages full grown: ", tr)
        print("   ", note)
    n_png = len(list((out_inc / "plots").glob("*.png"))) if args.reports else 6
    imports, figures = _floor(n_png)
    floor = imports + figures
    if rows:
        first = min(full[0] for full, *_ in rows)
        print(f"floor: start + imports {imports:.2f} s, {n_png} minimal PNGs {figures:.2f} s = "
              f"{floor:.2f} s = {floor / first:.3f} of the first analysis ({first:.2f} s); 10 % of it: {first / 10:.2f} s")
    # the other target: the first analysis ≤ 5x Polars reading every column of the 1M run's CSV
    read = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import polars as pl; pl.read_csv({str(SRC / 'generations.csv')!r})"], check=True)
        read.append(time.perf_counter() - t0)
    print(f"Polars reading every column of the 1M CSV: {min(read):.2f} s; a first analysis at 5x that is "
          f"{5 * min(read):.2f} s, and 10 % of it {min(read) / 2:.2f} s = {min(read) / 2 / floor:.2f}x the floor ({floor:.2f} s)")


_IMPORTS = "import matplotlib; matplotlib.use('Agg'); import polars, numpy, matplotlib.pyplot, jinja2"
_FIGURES = """
import io, sys, time
import matplotlib; matplotlib.use('Agg')
import matplotlib.pyplot as plt, numpy as np
x, y = np.arange(1000), np.random.default_rng(0).random(1000)
t = time.perf_counter()
for _ in range(int(sys.argv[1])):
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(x, y)
    fig.savefig(io.BytesIO(), format="png")
    plt.close(fig)
print(time.perf_counter() - t)
"""


def _floor(n_png: int) -> tuple[float, float]:
    """(best wall seconds of starting Python and importing the outputs' libraries, best seconds of
    drawing ``n_png`` one-line PNGs once they are imported)."""
    imports = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", _IMPORTS], check=True)
        imports.append(time.perf_counter() - t0)
    figures = [
        float(subprocess.run([sys.executable, "-c", _FIGURES, str(n_png)], check=True, capture_output=True,
                             text=True).stdout)
        for _ in range(3)
    ]
    return min(imports), min(figures)


if __name__ == "__main__":
    main()
