"""Benchmark: trainer_hooks.RunLogger vs the seed's CSV approach vs a bare json.dumps loop.

    python benchmarks/hooks/bench_logger.py [--records 50000] [--batch 16]

Measures, in one run and on the same records (1 KB completions):

1. the training thread's cost per ``log_generation`` call (median, p99, µs) — RunLogger only
   enqueues; the seed plan opens the CSV file and runs ``csv.DictWriter`` for each batch on the
   caller's thread (its per-record cost is the batch's cost divided by the batch size);
2. sustained records/s to disk: from the first call until everything is written and fsynced;
3. the limit: a bare loop of ``json.dumps`` + buffered ``write`` of the same records, fsynced.

Standard library + trainer_hooks only; writes into a temporary folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import statistics
import string
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from trainer_hooks import (  # noqa: E402
    RunLogger,
    extract_tag,
    question_id_for,
    schema,
)


def make_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + " ,.\n\"'"
    pool = ["".join(rng.choice(alphabet) for _ in range(1024)) for _ in range(64)]
    out = []
    for i in range(n):
        body = pool[i % len(pool)]
        out.append(
            {
                "step": i // 64,
                "question": f"Question {i % 500}: what is {i % 97} + {i % 89}?",
                "model_output": f"<reasoning>{body[:900]}</reasoning><answer>{i % 186}</answer>"[
                    :1024
                ],
                "rewards": {"correctness": float(i % 2), "format": 0.5},
                "ground_truth_answer": str(i % 186),
                "group_id": f"s{i // 64}-b1-g{(i % 64) // 8}",
            }
        )
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def bench_runlogger(records: list[dict[str, Any]], folder: Path) -> dict[str, float]:
    lg = RunLogger(folder, max_queue_size=len(records) + 10, flush_interval_s=0.05)
    lat: list[int] = []
    clock = time.perf_counter_ns
    log = lg.log_generation
    t0 = time.perf_counter()
    for r in records:
        a = clock()
        log(**r)
        lat.append(clock() - a)
    t_enqueued = time.perf_counter()
    lg.close(timeout=600)
    t1 = time.perf_counter()
    with open(folder / "generations.jsonl", "rb") as f:
        lines = sum(1 for _ in f)
    assert lines == len(records), (lines, len(records))
    us = [x / 1000 for x in lat]
    return {
        "median_us": statistics.median(us),
        "p99_us": pct(us, 0.99),
        "caller_total_s": t_enqueued - t0,
        "records_per_s": len(records) / (t1 - t0),
    }


def bench_seed_csv(records: list[dict[str, Any]], folder: Path, batch: int) -> dict[str, float]:
    """The seed plan: per batch, open the CSV, DictWriter (header from the first batch), append."""
    path = folder / "generations.csv"
    per_record: list[float] = []
    fieldnames: list[str] | None = None
    t0 = time.perf_counter()
    for start in range(0, len(records), batch):
        chunk = records[start : start + batch]
        a = time.perf_counter_ns()
        rows = []
        for r in chunk:
            out = r["model_output"]
            row = {
                "timestamp": time.time(),
                "global_step": r["step"],
                "question_id": question_id_for(r["question"], r["ground_truth_answer"]),
                "question": r["question"],
                "ground_truth_answer": r["ground_truth_answer"],
                "model_output": out,
                "reasoning": out.split("<reasoning>")[-1].split("</reasoning>")[0],
                "model_answer": out.split("<answer>")[-1].split("</answer>")[0],
                "total_reward": sum(r["rewards"].values()),
                **{f"{k}_reward": v for k, v in r["rewards"].items()},
            }
            rows.append(row)
        new = not path.exists()
        with open(path, "a", newline="", encoding="utf-8") as f:
            if fieldnames is None:
                fieldnames = list(rows[0])
            w = csv.DictWriter(f, fieldnames=fieldnames)
            if new:
                w.writeheader()
            w.writerows(rows)
        cost = (time.perf_counter_ns() - a) / 1000 / len(chunk)
        per_record.extend([cost] * len(chunk))
    with open(path, "ab") as f:
        os.fsync(f.fileno())
    t1 = time.perf_counter()
    return {
        "median_us": statistics.median(per_record),
        "p99_us": pct(per_record, 0.99),
        "caller_total_s": t1 - t0,
        "records_per_s": len(records) / (t1 - t0),
    }


def same_lines_as_runlogger(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The exact records RunLogger writes (tags extracted, id hashed, total summed), prebuilt."""
    out = []
    for r in records:
        text = r["model_output"]
        out.append(
            {
                schema.G_TIMESTAMP: time.time(),
                schema.G_STEP: r["step"],
                schema.G_QUESTION_ID: question_id_for(r["question"], r["ground_truth_answer"]),
                schema.G_QUESTION: r["question"],
                schema.G_GROUND_TRUTH: r["ground_truth_answer"],
                schema.G_OUTPUT: text,
                schema.G_REASONING: extract_tag(text, "reasoning"),
                schema.G_ANSWER: extract_tag(text, "answer"),
                schema.G_TOTAL_REWARD: sum(r["rewards"].values()),
                schema.G_REWARDS: r["rewards"],
                schema.G_SPLIT: "train",
                schema.G_GROUP_ID: r["group_id"],
                schema.G_RANK: 0,
                schema.G_EXTRA: {},
            }
        )
    return out


def bench_bare_limit(records: list[dict[str, Any]], folder: Path) -> dict[str, float]:
    """The limit: the same JSON lines, prebuilt, then only dumped and written in a tight loop."""
    path = folder / "bare.jsonl"
    prebuilt = same_lines_as_runlogger(records)
    dumps = json.dumps
    t0 = time.perf_counter()
    with open(path, "w", encoding="utf-8") as f:
        write = f.write
        for rec in prebuilt:
            write(dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
        f.flush()
        os.fsync(f.fileno())
    t1 = time.perf_counter()
    return {"records_per_s": len(records) / (t1 - t0), "caller_total_s": t1 - t0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=16, help="seed plan: completions per CSV write")
    p.add_argument("--repeat", type=int, default=3, help="best of N runs per contender")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    ns = p.parse_args(argv)
    records = make_records(ns.records)
    results: dict[str, list[dict[str, float]]] = {"runlogger": [], "seed_csv": [], "bare_limit": []}
    for _ in range(ns.repeat):
        with tempfile.TemporaryDirectory() as d:
            results["bare_limit"].append(bench_bare_limit(records, Path(d)))
        with tempfile.TemporaryDirectory() as d:
            results["seed_csv"].append(bench_seed_csv(records, Path(d), ns.batch))
        with tempfile.TemporaryDirectory() as d:
            results["runlogger"].append(bench_runlogger(records, Path(d) / "run"))
    best = {k: max(v, key=lambda r: r["records_per_s"]) for k, v in results.items()}
    # the training-thread latency: the best median over the repeats (least disturbed by other load)
    for k in ("runlogger", "seed_csv"):
        best[k]["median_us"] = min(r["median_us"] for r in results[k])
        best[k]["p99_us"] = min(r["p99_us"] for r in results[k])
    rl, seed, bare = best["runlogger"], best["seed_csv"], best["bare_limit"]
    summary = {
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "records": ns.records,
        "completion_bytes": 1024,
        "seed_batch": ns.batch,
        "runlogger": rl,
        "seed_csv": seed,
        "bare_limit": bare,
        "ratios": {
            "runlogger_vs_bare_throughput": rl["records_per_s"] / bare["records_per_s"],
            "runlogger_vs_seed_throughput": rl["records_per_s"] / seed["records_per_s"],
            "seed_vs_runlogger_caller_median": seed["median_us"] / rl["median_us"],
        },
    }
    if ns.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"machine: {summary['machine']}; {ns.records} records of 1 KB; best of {ns.repeat}")
    print("| contender | caller median µs | caller p99 µs | records/s to disk |")
    print("|---|---:|---:|---:|")
    print(
        f"| RunLogger (enqueue; writer thread) | {rl['median_us']:.2f} | {rl['p99_us']:.2f} | {rl['records_per_s']:,.0f} |"
    )
    print(
        f"| seed: csv.DictWriter per batch of {ns.batch} | {seed['median_us']:.2f} | {seed['p99_us']:.2f} | {seed['records_per_s']:,.0f} |"
    )
    print(f"| limit: bare json.dumps + buffered write | – | – | {bare['records_per_s']:,.0f} |")
    r = summary["ratios"]
    print(
        f"RunLogger throughput = {r['runlogger_vs_bare_throughput']:.2f}x the bare limit, "
        f"{r['runlogger_vs_seed_throughput']:.2f}x the seed; seed caller cost = "
        f"{r['seed_vs_runlogger_caller_median']:.1f}x RunLogger's"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
