"""Drift benchmarks: embedding throughput, the cache, and default-sampled drift on 1M completions.

    python benchmarks/drift/bench_embed.py                 # all three, ~3-4 min on 2 CPU cores
    python benchmarks/drift/bench_embed.py --only throughput --texts 2000
    python benchmarks/drift/bench_embed.py --only million --run benchmarks/data/big_run_jsonl

1. throughput: completions/s of ``analyzer.embeddings.Encoder`` (cold cache) vs a plain
   ``SentenceTransformer.encode`` of the same texts with the same loaded model, in the same
   process; once on distinct texts, once with the duplicates GRPO groups produce.
2. cache: ``score_drift`` twice on the same run with the same cache folder (the first run loads
   the model and embeds; the second finds everything cached and never loads the model).
3. million: ``score_drift`` with default options (stratified sample) on a 1,000,000-completion
   run built in memory (or ingested from ``--run``), fresh cache, model load included.

Synthetic text (no model was trained): GSM8K-like completions of 40-110 words in
``<reasoning>``/``<answer>`` tags, like benchmarks/ingest/gen_big_run.py writes.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ingest"))
from gen_big_run import _text  # the ingest benchmark's vocabulary


def completion(rng: random.Random) -> str:
    return f"<reasoning>{_text(rng, rng.randint(40, 110))}</reasoning>\n<answer>{rng.randint(1, 999)}</answer>"


def texts_with_duplicates(n: int, dup_share: float, seed: int = 1) -> list[str]:
    """``n`` completions of which ``dup_share`` repeat an earlier one (identical answers in a group)."""
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(n):
        if out and rng.random() < dup_share:
            out.append(rng.choice(out[-8:]))
        else:
            out.append(completion(rng))
    return out


def bench_throughput(n: int, backend: str, rounds: int) -> None:
    from sentence_transformers import SentenceTransformer

    from analyzer.embeddings import EmbeddingCache, Encoder

    with tempfile.TemporaryDirectory() as tmp:
        enc = Encoder(cache_dir=Path(tmp) / "warm", progress=False, backend=backend)
        enc._load()  # model load (and the one-time ONNX export) are not part of the throughput
        model = SentenceTransformer(str(enc.resolved.path), device="cpu")
        warm = texts_with_duplicates(64, 0.0, seed=99)
        model.encode(warm)
        enc.encode(warm)
        for label, share in (("distinct texts", 0.0), ("30% duplicates", 0.3)):
            texts = texts_with_duplicates(n, share)
            plain_t, plain_c, ours_t, ours_c = [], [], [], []
            # alternate the two sides and keep the best of each: other jobs share these cores
            for r in range(rounds):
                t0, c0 = time.perf_counter(), time.process_time()
                model.encode(texts, normalize_embeddings=True)
                plain_t.append(time.perf_counter() - t0)
                plain_c.append(time.process_time() - c0)
                enc.cache = EmbeddingCache(
                    Path(tmp) / f"{label.replace(' ', '_')}{r}" / "embeddings.sqlite3"
                )
                t0, c0 = time.perf_counter(), time.process_time()
                enc.encode(texts)
                ours_t.append(time.perf_counter() - t0)
                ours_c.append(time.process_time() - c0)
            print(
                f"throughput, {label}: {n} texts ({len(set(texts))} distinct), best of {rounds} | plain "
                f"SentenceTransformer.encode {n / min(plain_t):.1f}/s ({min(plain_c):.1f} s CPU) | logscan Encoder "
                f"({enc.backend}, cold cache, incl. hashing and cache writes) {n / min(ours_t):.1f}/s "
                f"({min(ours_c):.1f} s CPU) | ratio {min(plain_t) / min(ours_t):.2f}x wall, "
                f"{min(plain_c) / min(ours_c):.2f}x CPU"
            )


def synthetic_run(
    completions: int, steps: int, *, group: int = 8, eval_prompts: int = 0, seed: int = 0
):
    """A GRPO run frame in memory: ``completions // steps`` per step in groups of ``group``."""
    import polars as pl

    from analyzer import columns as C
    from analyzer.model import IngestReport, RunData

    rng = random.Random(seed)
    per_step = completions // steps
    pool = [completion(rng) for _ in range(20_000)]
    n = per_step * steps
    idx = list(range(n))
    step = [1 + i // per_step for i in idx]
    prompt = [
        (s * per_step + (i % per_step)) // group % 2000 for i, s in zip(idx, step, strict=True)
    ]
    frame = pl.DataFrame(
        {
            C.STEP: step,
            C.SPLIT: ["train"] * n,
            C.SAMPLE_ID: idx,
            C.QUESTION_ID: [f"q{p}" for p in prompt],
            C.GROUP_ID: [f"{s}:q{p}" for s, p in zip(step, prompt, strict=True)],
            C.QUESTION: [f"Question {p}?" for p in prompt],
            # distinct texts (a suffix per completion): the sample cannot lean on de-duplication
            C.OUTPUT: [f"{pool[(i * 7919) % len(pool)]} [{i}]" for i in idx],
            C.TOTAL_REWARD: [rng.random() for _ in idx],
        }
    )
    if eval_prompts:
        ev_steps = [
            s for s in range(1, steps + 1, max(1, steps // 10)) for _ in range(eval_prompts)
        ]
        ev = pl.DataFrame(
            {
                C.STEP: ev_steps,
                C.SPLIT: ["eval"] * len(ev_steps),
                C.SAMPLE_ID: list(range(n, n + len(ev_steps))),
                C.QUESTION_ID: [f"e{i % eval_prompts}" for i in range(len(ev_steps))],
                C.GROUP_ID: pl.Series([None] * len(ev_steps), dtype=pl.String),
                C.QUESTION: [f"Eval {i % eval_prompts}?" for i in range(len(ev_steps))],
                C.OUTPUT: [pool[(i * 31) % len(pool)] for i in range(len(ev_steps))],
                C.TOTAL_REWARD: [1.0] * len(ev_steps),
            }
        )
        frame = pl.concat([frame, ev])
    return RunData(
        path="synthetic",
        steps=pl.DataFrame({C.STEP: list(range(1, steps + 1))}),
        generations=frame,
        report=IngestReport("synthetic"),
    )


def bench_cache(completions: int) -> None:
    from analyzer.drift import DriftOptions, score_drift

    run = synthetic_run(completions, 200, eval_prompts=20)
    with tempfile.TemporaryDirectory() as tmp:
        opts = DriftOptions(cache_dir=Path(tmp))
        t0, c0 = time.perf_counter(), time.process_time()
        first = score_drift(run, options=opts)
        t1, c1 = time.perf_counter() - t0, time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        second = score_drift(run, options=opts)
        t2, c2 = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"cache: score_drift on {completions} completions (default sample) | first {t1:.2f} s wall, {c1:.2f} s CPU "
        f"(embedded {first.embedded}, model load included) | second {t2:.2f} s wall, {c2:.2f} s CPU (embedded "
        f"{second.embedded}, cached {second.cached}) | speed-up {t1 / t2:.1f}x wall, {c1 / c2:.1f}x CPU"
    )


def bench_million(run_path: str | None) -> None:
    from analyzer.drift import DriftOptions, score_drift

    t0 = time.perf_counter()
    if run_path:
        from analyzer.ingest import load_run

        run = load_run(run_path)
        what = f"ingested {run_path}"
    else:
        run = synthetic_run(1_000_000, 1_000, eval_prompts=50)
        what = "built in memory"
    prep = time.perf_counter() - t0
    assert run.generations is not None
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        result = score_drift(run, options=DriftOptions(cache_dir=Path(tmp)))
        took, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"million: {run.generations.height} completions ({what} in {prep:.1f} s) | default-sampled score_drift "
        f"{took:.1f} s wall, {cpu:.1f} s CPU (embedded {result.embedded}, {result.per_step.height if result.per_step is not None else 0} steps, "
        f"model load included, fresh cache)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=["throughput", "cache", "million"])
    ap.add_argument("--texts", type=int, default=400, help="texts for the throughput comparison")
    ap.add_argument("--cache-completions", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per side (best kept)")
    ap.add_argument(
        "--backend", default="auto", choices=["auto", "onnx", "torch"], help="Encoder backend"
    )
    ap.add_argument(
        "--run", help="ingest this run for the million benchmark instead of building one in memory"
    )
    args = ap.parse_args()
    import torch

    print(
        f"# {platform.platform()} | Python {platform.python_version()} | {os.cpu_count()} CPUs | "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads) | {' '.join(sys.argv)}"
    )
    if args.only in (None, "throughput"):
        bench_throughput(args.texts, args.backend, args.rounds)
    if args.only in (None, "cache"):
        bench_cache(args.cache_completions)
    if args.only in (None, "million"):
        bench_million(args.run)


if __name__ == "__main__":
    main()
