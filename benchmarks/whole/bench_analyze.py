"""The whole `logscan analyze` command, as a user runs it (issue "incremental analysis", item 4).

Two targets, each against a baseline measured in the same run, every case in a fresh subprocess:

* **big**: `logscan analyze --no-embeddings -q` on the 1,000,000-completion seed-schema CSV
  (`benchmarks/data/big_run_csv`, made by `benchmarks/ingest/gen_big_run.py`) against Polars
  reading every column of the same file (`pl.read_csv`). Target: ≤ 5×, peak RSS ≤ 2 GB.
* **sample**: the first `logscan analyze` of the README's sample run (`examples/runs/sample-grpo`,
  default embeddings) — a fresh output folder (no embedding cache) — against `analyze
  --no-embeddings` of the same run. Target: under 15 s, a line on stderr before any slow step, a
  progress bar that moves at least every second. Timed with logscan's user cache holding the
  model's ONNX graph already (a second run on the machine) and, once each, with an empty one (the
  very first run on a machine: includes making the graph once), the graph built from the weights
  without torch as `analyze` does, and for comparison made by the PyTorch export that `analyze`
  used before (`build_bert_onnx` switched off in that process only). stderr is read as it arrives, so the table
  gives the time of the first line, of the loading line, of the bar's first and last update and
  the longest stretch without any output once the bar is drawn.

    python benchmarks/whole/bench_analyze.py                 # both, best of 3
    python benchmarks/whole/bench_analyze.py --only sample --repeat 1
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIG = REPO / "benchmarks" / "data" / "big_run_csv"
SAMPLE = REPO / "examples" / "runs" / "sample-grpo"
# An informational row: what a smaller embedding sample would cost (and which alerts it keeps).
SMALL_SAMPLE = 300


def _peak_rss_mb_of_children() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def run_timed(cmd: list[str], *, env: dict[str, str] | None = None) -> dict[str, object]:
    """Run ``cmd``; wall time, the child's peak RSS and every stderr write with its time."""
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: measure each case in its own
    # grandchild so the figure is this command's
    wrapper = [sys.executable, "-c", _WRAPPER, *cmd]
    t0 = time.perf_counter()
    proc = subprocess.Popen(wrapper, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    events: list[tuple[float, str]] = []
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    buf = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        now = time.perf_counter() - t0
        buf += chunk
        events.append((now, chunk.decode("utf-8", "replace")))
    out = proc.stdout.read().decode() if proc.stdout else ""
    proc.wait()
    wall = time.perf_counter() - t0
    rss = re.search(r"PEAK_RSS_MB=([0-9.]+)", buf.decode("utf-8", "replace"))
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{cmd} failed ({proc.returncode}): {buf.decode()[-2000:]}")
    return {"wall": wall, "rss": float(rss.group(1)) if rss else float("nan"), "events": events, "stdout": out}


# Runs the command as a child and reports that child's peak RSS on stderr.
_WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[1:])\n"
    "print(f'PEAK_RSS_MB={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f}', file=sys.stderr)\n"
    "sys.exit(rc)\n"
)


def logscan(*args: str) -> list[str]:
    return [sys.executable, "-m", "analyzer.cli", *args]


# `logscan` as it ran before the ONNX graph was built from the weights: the graph comes from the
# PyTorch export (torch + transformers imported, the model traced)
_TORCH_EXPORT = (
    "import sys, analyzer.embeddings as E; E.build_bert_onnx = lambda *a, **k: None; "
    "from analyzer.cli import main; sys.argv[0] = 'logscan'; main()"
)


def logscan_torch_export(*args: str) -> list[str]:
    return [sys.executable, "-c", _TORCH_EXPORT, *args]


def progress_facts(events: list[tuple[float, str]]) -> dict[str, float]:
    """When the first line, the loading line and the bar's updates came, and the longest silence
    while the bar was on screen."""
    facts: dict[str, float] = {}
    seen = ""
    bar_times: list[float] = []
    for t, text in events:
        seen += text
        if "first" not in facts and text.strip():
            facts["first"] = t
        if "loading" not in facts and "loading the embedding model" in seen:
            facts["loading"] = t
        if "embedding:" in text or "text/s" in text:
            bar_times.append(t)
    if bar_times:
        facts["bar_first"], facts["bar_last"] = bar_times[0], bar_times[-1]
        facts["max_gap"] = max((b - a for a, b in itertools.pairwise(bar_times)), default=0.0)
        facts["updates"] = float(len(bar_times))
    return facts


def bench_big(repeat: int) -> None:
    csv = BIG / "generations.csv"
    if not csv.is_file():
        raise SystemExit(f"{csv} is missing: run python benchmarks/ingest/gen_big_run.py first")
    polars = [sys.executable, "-c", f"import polars as pl; pl.read_csv({str(csv)!r}).height"]
    best: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="logscan-whole-") as tmp:
        for _ in range(repeat):
            for name, cmd in (
                ("polars", polars),
                ("analyze", logscan("analyze", str(BIG), "--no-embeddings", "-q", "-o", str(Path(tmp) / "out"))),
            ):
                shutil.rmtree(Path(tmp) / "out", ignore_errors=True)
                r = run_timed(cmd)
                cur = best.setdefault(name, {"wall": float("inf"), "rss": 0.0})
                cur["wall"] = min(cur["wall"], float(r["wall"]))  # type: ignore[arg-type]
                cur["rss"] = max(cur["rss"], float(r["rss"]))  # type: ignore[arg-type]
    base = best["polars"]["wall"]
    print(f"\n{csv.stat().st_size / 1e9:.2f} GB seed-schema CSV, best of {repeat}\n")
    print("| case | wall s | peak RSS MB | vs Polars reading every column |")
    print("|---|---:|---:|---:|")
    print(f"| baseline: `pl.read_csv` (every column) | {base:.2f} | {best['polars']['rss']:.0f} | 1.00× |")
    a = best["analyze"]
    print(f"| `logscan analyze --no-embeddings -q` | {a['wall']:.2f} | {a['rss']:.0f} | {a['wall'] / base:.2f}× |")


def bench_sample(repeat: int) -> None:
    rows: list[tuple[str, dict[str, object]]] = []
    with tempfile.TemporaryDirectory(prefix="logscan-sample-") as tmp:
        tmpd = Path(tmp)
        run = shutil.copytree(SAMPLE, tmpd / "sample-grpo", ignore=shutil.ignore_patterns("logscan"))
        env_warm = {**os.environ, "LOGSCAN_CACHE_DIR": str(tmpd / "usercache")}
        # the very first run on a machine: empty user cache, so the ONNX graph is made in it;
        # first as before (the PyTorch export, in a user cache of its own), then as now
        env_old = {**os.environ, "LOGSCAN_CACHE_DIR": str(tmpd / "usercache-torch-export")}
        old = run_timed(logscan_torch_export("analyze", str(run), "-o", str(tmpd / "first-old")), env=env_old)
        first = run_timed(logscan("analyze", str(run), "-o", str(tmpd / "first")), env=env_warm)
        rows.append(("first `analyze` on a fresh machine (the ONNX graph built from the weights, included)", first))
        rows.append(("*before:* the same, the graph made by the PyTorch export", old))
        best: dict[str, dict[str, object]] = {}
        for _ in range(repeat):
            for name, args in (
                ("base", ["--no-embeddings"]),
                ("embed", []),
                ("small", ["--max-embed", str(SMALL_SAMPLE)]),
            ):
                out = tmpd / f"out-{name}"
                shutil.rmtree(out, ignore_errors=True)  # no embedding cache: a first analyze
                r = run_timed(logscan("analyze", str(run), *args, "-o", str(out)), env=env_warm)
                if name not in best or float(r["wall"]) < float(best[name]["wall"]):  # type: ignore[arg-type]
                    best[name] = r
        rows.insert(0, ("baseline: `analyze --no-embeddings` of the same run", best["base"]))
        rows.insert(1, ("first `analyze` (default embeddings; the ONNX graph already made)", best["embed"]))
        rows.insert(2, (f"*info:* the same with `--max-embed {SMALL_SAMPLE}`", best["small"]))
        alerts = {name: _alert_kinds(tmpd / f"out-{name}") for name in ("base", "embed", "small")}
    base = float(best["base"]["wall"])  # type: ignore[arg-type]
    print(f"\nexamples/runs/sample-grpo, best of {repeat} (the fresh-machine rows: once)\n")
    print("| case | wall s | vs baseline | first stderr line s | loading line s | bar drawn → done s | longest silence with the bar on screen s | bar updates |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, r in rows:
        f = progress_facts(r["events"])  # type: ignore[arg-type]

        def fmt(key: str, facts: dict[str, float] = f) -> str:
            return f"{facts[key]:.2f}" if key in facts else "–"

        span = f"{f['bar_first']:.1f} → {f['bar_last']:.1f}" if "bar_first" in f else "–"
        wall = float(r["wall"])  # type: ignore[arg-type]
        updates = f"{f['updates']:.0f}" if "updates" in f else "–"
        print(f"| {label} | {wall:.2f} | {wall / base:.2f}× | {fmt('first')} | {fmt('loading')} | {span} | {fmt('max_gap')} | {updates} |")
    print()
    for name, kinds in alerts.items():
        print(f"alerts ({name}): {', '.join(kinds)}")


def _alert_kinds(out: Path) -> list[str]:
    import json

    data = json.loads((out / "analysis.json").read_text())
    return sorted(f"{a['kind']}:{a['severity']}@{a.get('step')}" for a in data["alerts"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["big", "sample"])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    os.chdir(REPO)
    if args.only in (None, "sample"):
        bench_sample(args.repeat)
    if args.only in (None, "big"):
        bench_big(args.repeat)


if __name__ == "__main__":
    main()
