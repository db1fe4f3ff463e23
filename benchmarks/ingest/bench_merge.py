"""What reading a whole run folder costs over reading its completions alone.

    python benchmarks/ingest/gen_big_run.py          # once: benchmarks/data/big_run_csv/
    python benchmarks/ingest/bench_merge.py --repeat 3

Builds ``benchmarks/data/big_run_merge/``: the big run's ``generations.csv`` (a hard link, in the
seed's schema, no ``run.json``) beside a TRL ``trainer_state.json`` of its 1,000 steps (made from the
run's ``events.jsonl``: loss, kl, entropy, grad_norm, reward…). Then times, each in a fresh
subprocess, rounds interleaved, best of ``--repeat``:

- ``single``: ``load_run(big_run_merge/generations.csv)`` — the CSV alone, one source;
- ``merged``: ``load_run(big_run_merge)`` — the folder: discovery, both sources, the step
  alignment (checked against the logged reward), the scalar merge.

Prints a Markdown table for benchmarks/RESULTS.md; the figure that matters is the ratio, measured
in one run on one machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"
SOURCE = DATA / "big_run_csv"
FOLDER = DATA / "big_run_merge"
# logscan event metric → the key TRL's GRPOTrainer logs
TRL_KEYS = {"clipped_ratio": "completions/clipped_ratio", "completion_length": "completions/mean_length"}


def build() -> Path:
    FOLDER.mkdir(parents=True, exist_ok=True)
    csv_path = FOLDER / "generations.csv"
    if not csv_path.exists():
        os.link(SOURCE / "generations.csv", csv_path)
    state = FOLDER / "trainer_state.json"
    if not state.exists():
        log = []
        for line in (SOURCE / "events.jsonl").read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            metrics = rec.get("metrics")
            if not isinstance(metrics, dict) or rec.get("step") is None:
                continue
            entry = {TRL_KEYS.get(k, k): v for k, v in metrics.items()}
            entry["step"] = rec["step"]
            log.append(entry)
        state.write_text(json.dumps({"global_step": log[-1]["step"], "max_steps": log[-1]["step"], "log_history": log}))
    return FOLDER


def _case(name: str) -> dict[str, object]:
    from analyzer.ingest import load_run
    from analyzer.ingest._common import return_freed_memory_promptly

    return_freed_memory_promptly()  # as the logscan command does
    t0 = time.perf_counter()
    run = load_run(FOLDER / "generations.csv" if name == "single" else FOLDER)
    wall = time.perf_counter() - t0
    assert run.generations is not None
    return {
        "case": name,
        "wall_s": round(wall, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rows": run.generations.height,
        "steps": run.steps.height,
        "sources": [s.kind for s in run.sources],
        "shift": [s.step_shift for s in run.sources],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ns = ap.parse_args(argv)
    if ns.case:
        print(json.dumps(_case(ns.case)))
        return 0
    build()
    best: dict[str, dict[str, object]] = {}
    for _ in range(ns.repeat):
        for name in ("single", "merged"):
            out = subprocess.run([sys.executable, __file__, "--case", name], capture_output=True, text=True, check=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            if name not in best or float(res["wall_s"]) < float(best[name]["wall_s"]):  # type: ignore[arg-type]
                best[name] = res
    single, merged = best["single"], best["merged"]
    ratio = float(merged["wall_s"]) / float(single["wall_s"])  # type: ignore[arg-type]
    print(f"rows {single['rows']:,}; merged steps {merged['steps']}; sources {merged['sources']} (shift {merged['shift']})\n")
    print(f"| case | wall s (best of {ns.repeat}) | peak RSS MB | vs single |")
    print("|---|---:|---:|---:|")
    print(f"| completions CSV alone (`load_run(folder/generations.csv)`) | {single['wall_s']} | {single['peak_rss_mb']} | 1.00× |")
    print(f"| the folder: CSV + trainer_state.json, merged (`load_run(folder)`) | {merged['wall_s']} | {merged['peak_rss_mb']} | {ratio:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
