"""How fast could a streaming design get? One fused Polars scan of the big JSONL run computing the
per-completion features and the per-step aggregates of logscan's metrics — without zero-spread
groups and n-grams (they need a second grouping of the same rows), without validation and without
building the generations frame — against the 3-number bare query, in one process, best of N.

    python benchmarks/ingest/fused_prototype.py [--repeat 3]

Both of Polars' engines are tried. A design probe for benchmarks/RESULTS.md ("ingest"), not a
baseline: it computes less than logscan.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import polars as pl

from analyzer.metrics import format_ok, whitespace_token_counts, with_exact_match

FILE = Path(__file__).resolve().parent.parent / "data" / "big_run_jsonl" / "generations.jsonl"
TEXT = pl.String()
SCHEMA = {
    "global_step": TEXT, "split": TEXT, "total_reward": TEXT, "model_output": TEXT, "model_answer": TEXT,
    "ground_truth_answer": TEXT, "rewards": pl.Struct({"correct": TEXT, "format": TEXT}),
}  # fmt: skip


def bare() -> pl.DataFrame:
    return (
        pl.scan_ndjson(FILE)
        .group_by("global_step")
        .agg(pl.len(), pl.col("total_reward").mean(), pl.col("model_output").str.len_chars().mean())
        .collect()
    )


def fused(engine: str = "auto") -> pl.DataFrame:
    def number(e: pl.Expr) -> pl.Expr:
        value = e.str.strip_chars().cast(pl.Float64, strict=False)
        return pl.when(value.is_finite()).then(value)

    out = pl.col("model_output")
    rows = pl.scan_ndjson(FILE, schema=SCHEMA).select(
        pl.col("global_step").cast(pl.Int64).alias("step"),
        "split",
        number(pl.col("total_reward")).alias("r"),
        *[number(pl.col("rewards").struct.field(f)).alias(f) for f in ("correct", "format")],
        out.str.len_chars().alias("chars"),
        out.map_batches(whitespace_token_counts, return_dtype=pl.UInt32, is_elementwise=True).alias("words"),
        format_ok(out).alias("format_ok"),
        (out.str.contains("<reasoning>", literal=True) | out.str.contains("<answer>", literal=True)).alias("tagged"),
        "model_answer",
        "ground_truth_answer",
    )
    rows = with_exact_match(rows, pl.col("model_answer"), pl.col("ground_truth_answer"), "correct_answer")
    r = pl.col("r")
    aggs = [
        pl.len(), r.mean().alias("mean"), r.std().alias("std"), r.min().alias("min"), r.max().alias("max"),
        *[r.quantile(q, "linear").alias(f"p{q}") for q in (0.1, 0.5, 0.9)],
        pl.corr("r", "chars").alias("corr"), pl.col("chars").mean(), pl.col("words").mean(),
        pl.col("format_ok").mean(), pl.col("tagged").any(), pl.col("correct_answer").mean(),
        *[e for f in ("correct", "format") for e in (
            pl.col(f).mean().alias(f"{f}_mean"), pl.col(f).std().alias(f"{f}_std"), pl.col(f).min().alias(f"{f}_min"),
            pl.col(f).max().alias(f"{f}_max"), pl.col(f).quantile(0.5, "linear").alias(f"{f}_p50"))],
    ]  # fmt: skip
    return rows.group_by("step", "split").agg(aggs).collect(engine=engine)  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not FILE.is_file():
        raise SystemExit("no benchmark data: run benchmarks/ingest/gen_big_run.py first")
    cases = {"bare": bare, "fused (in-memory engine)": fused, "fused (streaming engine)": lambda: fused("streaming")}
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(args.repeat):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    for name, seconds in best.items():
        print(f"{name}: {seconds:.2f} s ({seconds / best['bare']:.2f}x bare)")


if __name__ == "__main__":
    main()
