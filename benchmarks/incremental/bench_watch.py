"""``logscan watch`` on the 1,000,000-completion run while it grows by 1,000 completions a second.

    python benchmarks/ingest/gen_big_run.py                  # once: benchmarks/data/big_run_jsonl/
    python benchmarks/incremental/bench_watch.py [--seconds 60] [--rate 1000] [--format jsonl|csv]

Copies the big run's first 1,000,000 − rate × (seconds + 10) completions (930,000 by default) to
``benchmarks/data/watch_run/`` (run.json says ``running``); after the first refresh, a writer
process appends the next completions at ``--rate`` per second
(a batch every 0.1 s, whole lines, as trainer_hooks' writer thread does), and runs
``analyzer.watch.watch_run`` on it at the default interval (0.5 s) with a ``display`` that records
each refresh instead of drawing it. Reports the first refresh (a full read), then the median and
95th percentile of the following refreshes, the rows each saw, the refreshes that fell back to a
full computation (with why), and the process's resident memory over time.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"
RUN = DATA / "watch_run"


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 1e6


def _split(src: Path, rows: int, csv: bool) -> int:
    """Byte offset after record ``rows`` (a CSV: after its header too)."""
    with src.open("rb") as fh:
        pos, n, quotes = 0, 0, 0
        if csv:
            pos = len(fh.readline())
        for raw in fh:
            quotes += raw.count(b'"') if csv else 0
            pos += len(raw)
            if quotes % 2 == 0:
                n += 1
                if n == rows:
                    return pos
    raise SystemExit("the source run is too short")


WRITER = r'''
import sys, time
src, dst, start, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
csv = dst.endswith(".csv")
with open(src, "rb") as fh:
    fh.seek(start)
    data = fh.read()
lines, buf, quotes = [], b"", 0
for raw in data.splitlines(keepends=True):  # whole records (a CSV field may hold a line break)
    buf += raw
    quotes += raw.count(b'"') if csv else 0
    if quotes % 2 == 0:
        lines.append(buf)
        buf = b""
per = max(1, rate // 10)
i = 0
t0 = time.perf_counter()
with open(dst, "ab", buffering=0) as out:
    while i < len(lines):
        out.write(b"".join(lines[i : i + per]))
        i += per
        wait = t0 + i / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
'''


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    args = ap.parse_args()
    from analyzer.ingest._common import return_freed_memory_promptly

    return_freed_memory_promptly()  # as the logscan command does first
    csv = args.format == "csv"
    src_dir = DATA / ("big_run_csv" if csv else "big_run_jsonl")
    src = src_dir / f"generations.{args.format}"
    if not src.is_file():
        raise SystemExit("run benchmarks/ingest/gen_big_run.py first")
    shutil.rmtree(RUN, ignore_errors=True)
    RUN.mkdir(parents=True)
    manifest = (src_dir / "run.json").read_text().replace('"finished"', '"running"')
    (RUN / "run.json").write_text(manifest)
    shutil.copy(src_dir / "events.jsonl", RUN / "events.jsonl")
    base = 1_000_000 - int(args.rate * (args.seconds + 10))  # grows to about 1,000,000 while watched
    cut = _split(src, base, csv)
    dst = RUN / src.name
    with src.open("rb") as fh, dst.open("wb") as out:
        out.write(fh.read(cut))

    from analyzer.watch import watch_run

    refreshes: list[tuple[float, float, int, str | None, float]] = []  # (at, took, rows, full why, rss)
    stop = threading.Event()
    started = time.perf_counter()
    writer: subprocess.Popen[bytes] | None = None
    live_ref: list[object] = []

    def display(analysis: object, took: float) -> None:
        nonlocal writer
        gens = analysis.run.generations  # type: ignore[attr-defined]
        import analyzer.watch as w

        live = live_ref[0] if live_ref else None
        why = getattr(live, "last_full", None)
        refreshes.append((time.perf_counter() - started, took, 0 if gens is None else gens.height, why, _rss_mb()))
        if writer is None:  # the first refresh (a full read) is done: the run starts growing
            writer = subprocess.Popen([sys.executable, "-c", WRITER, str(src), str(dst), str(cut), str(args.rate)])
            threading.Timer(args.seconds, stop.set).start()
        del w

    import analyzer.live as live_mod

    real_init = live_mod.LiveRun.__init__

    def init(self: object, *a: object, **k: object) -> None:
        real_init(self, *a, **k)  # type: ignore[arg-type]
        live_ref.append(self)

    live_mod.LiveRun.__init__ = init  # type: ignore[method-assign]
    try:
        watch_run(RUN, echo=lambda s: None, display=display, stop_event=stop)
    finally:
        if writer is not None:
            writer.kill()
    first = refreshes[0]
    rest = refreshes[1:]
    took = [r[1] for r in rest]
    took_sorted = sorted(took)
    p95 = took_sorted[min(len(took_sorted) - 1, int(0.95 * len(took_sorted)))] if took_sorted else float("nan")
    full = [r for r in rest if r[3]]
    print(f"format {args.format}, rate {args.rate}/s, {len(rest)} refreshes after the first over {args.seconds:.0f} s")
    print(f"first refresh (full read of {first[2]:,} completions): {first[1]:.2f} s, RSS {first[4]:.0f} MB")
    print(f"following refreshes: median {statistics.median(took):.3f} s, p95 {p95:.3f} s, max {max(took):.3f} s")
    print(f"completions seen: {rest[0][2]:,} -> {rest[-1][2]:,}")
    print(f"refreshes computed in full: {len(full)}" + (f" (first why: {full[0][3]})" if full else ""))
    rss = [r[4] for r in rest]
    q = max(1, len(rss) // 4)
    print(f"RSS MB: after the first {rest[0][4]:.0f}, quartiles of the run {rss[q - 1]:.0f} / {rss[2 * q - 1]:.0f} / {rss[3 * q - 1]:.0f}, end {rss[-1]:.0f}, max {max(rss):.0f}")


if __name__ == "__main__":
    main()
