"""`logscan compare --embeddings` with and without the runs' own embedding caches.

Copies the two shipped sample runs to a temporary folder, then times, each as a fresh `logscan`
process: `compare --embeddings` on runs that were never analysed (every completion is embedded:
the baseline), `analyze` of each run (which writes its RUN/logscan/cache/), `compare --embeddings`
again (it reads those caches and embeds nothing), and a lexical `compare` for reference. Prints a
Markdown table for benchmarks/RESULTS.md. Needs the embeddings extra (the packaged model); works
offline.

    python benchmarks/compare/bench_compare_cache.py
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "examples" / "runs"
LOGSCAN = [sys.executable, "-m", "analyzer.cli"]


def timed(args: list[str], cwd: Path) -> tuple[float, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.run([*LOGSCAN, *args], cwd=cwd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"logscan {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for name in ("sample-grpo", "healthy-grpo"):
            shutil.copytree(SAMPLES / name, base / name, ignore=shutil.ignore_patterns("logscan"))
        runs = ["sample-grpo", "healthy-grpo"]
        cold, _ = timed(["compare", *runs, "--embeddings", "-o", "cold"], base)
        analyze = [timed(["analyze", r, "-q", "--no-plots", "--no-html", "--fail-on", "never"], base)[0] for r in runs]
        warm, out = timed(["compare", *runs, "--embeddings", "-o", "warm"], base)
        lexical, _ = timed(["compare", *runs, "-o", "lexical"], base)
        reused = re.search(r"embeddings: ([\d,]+) read from the runs' own caches", out)
        answers = re.search(r"(\d[\d,]*) text\(s\) embedded, ([\d,]+) from cache", (base / "warm" / "compare.md").read_text())
    print("| measured | seconds | vs cold compare --embeddings |")
    print("|---|---:|---:|")
    print(f"| baseline: `compare --embeddings`, runs never analysed (every completion embedded) | {cold:.1f} | 1 |")
    for name, seconds in zip(runs, analyze, strict=True):
        print(f"| `analyze {name}` (embeds, writes its cache) | {seconds:.1f} | {seconds / cold:.2f} |")
    print(f"| `compare --embeddings` after both analyses (the runs' caches) | {warm:.1f} | {warm / cold:.3f} |")
    print(f"| `compare` (lexical drift, no model) | {lexical:.1f} | {lexical / cold:.3f} |")
    print()
    print(f"warm compare: {reused.group(1) if reused else '?'} embeddings read from the runs' caches; "
          f"answers compared: {answers.group(1) if answers else '?'} embedded, {answers.group(2) if answers else '?'} from cache")


if __name__ == "__main__":
    main()
