"""Write a big synthetic logscan run for the ingest benchmark (fixed seed, reproducible).

    python benchmarks/ingest/gen_big_run.py            # 1,000,000 completions, 1,000 steps
    python benchmarks/ingest/gen_big_run.py --completions 20000 --steps 100

Writes ``benchmarks/data/big_run_jsonl/`` (``generations.jsonl`` ≈ 1 GB) and
``benchmarks/data/big_run_csv/`` (the same completions as ``generations.csv``; ``big_run_csv_torn/``
is that run with its last row cut short, as a kill leaves it), each with a
``run.json`` and an ``events.jsonl`` of per-step metrics, in the format trainer_hooks writes
(format ``logscan-run/1``; non-finite values as the strings ``"NaN"``/``"Infinity"``).
``benchmarks/data/`` is gitignored. Simulated data: no model was trained.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import time
from pathlib import Path

from trainer_hooks import question_id_for
from trainer_hooks import schema as S

DATA = Path(__file__).resolve().parent.parent / "data"
WORDS = ["the", "apples", "cost", "each", "so", "total", "number", "many", "how", "if", "then", "we", "add", "subtract", "multiply", "divide", "answer", "because", "first", "second", "third", "therefore", "result", "step", "check", "value", "equals", "twice", "half", "more", "less"]


def _text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def generate(completions: int, steps: int, out: Path = DATA, *, seed: int = 0) -> tuple[Path, Path]:
    rng = random.Random(seed)
    per_step = completions // steps
    group = 8
    prompts = [(f"Question {i}: " + _text(rng, 30) + "?", str(rng.randint(1, 999))) for i in range(2000)]
    jdir, cdir = out / "big_run_jsonl", out / "big_run_csv"
    for d in (jdir, cdir):
        d.mkdir(parents=True, exist_ok=True)
        manifest = {
            S.M_FORMAT: S.FORMAT, S.M_RUN_ID: d.name, S.M_CREATED: "2026-01-01T00:00:00+00:00",
            S.M_ENDED: "2026-01-01T10:00:00+00:00", S.M_STATUS: "finished", S.M_ALGORITHM: "grpo",
            S.M_MODEL: "simulated", S.M_CONFIG: {"simulated": True}, S.M_REWARD_NAMES: ["correct", "format"],
            S.M_WORLD_SIZE: 1, S.M_RANK: 0, S.M_GENERATIONS_FORMAT: "jsonl" if d == jdir else "csv",
        }
        (d / S.MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
        with (d / S.events_file()).open("w") as fh:
            for step in range(1, steps + 1):
                rec = {S.E_TIME: 1.7e9 + step, S.E_STEP: step, S.E_PHASE: "metrics", S.E_SPLIT: "train",
                       S.E_METRICS: {"loss": 0.01 * rng.random(), "kl": 0.001 * step, "reward": step / steps,
                                     "grad_norm": "NaN" if step == 500 else rng.random()},
                       S.E_META: {}, S.E_RANK: 0}
                fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
    t0 = time.time()
    header = [*S.CSV_BASE_COLUMNS, "correct_reward", "format_reward", S.G_SPLIT, S.G_GROUP_ID]
    with (jdir / S.generations_file()).open("w") as jf, (cdir / S.generations_file(fmt="csv")).open("w", newline="") as cf:
        writer = csv.writer(cf)
        writer.writerow(header)
        for step in range(1, steps + 1):
            for k in range(per_step):
                q, truth = prompts[(step * per_step + k) // group % len(prompts)]
                reasoning = _text(rng, rng.randint(25, 75))
                answer = truth if rng.random() < step / steps else str(rng.randint(1, 999))
                output = f"<reasoning>{reasoning}</reasoning>\n<answer>{answer}</answer>"
                correct = 1.0 if answer == truth else 0.0
                fmt = "NaN" if k == 0 and step % 100 == 0 else 0.5
                total = correct + (0.5 if fmt != "NaN" else 0.0)
                qid = question_id_for(q, truth)
                gid = f"{step}:{qid}"
                rec = {
                    S.G_TIMESTAMP: 1.7e9 + step + k / 1e4, S.G_STEP: step, S.G_QUESTION_ID: qid,
                    S.G_QUESTION: q, S.G_GROUND_TRUTH: truth, S.G_OUTPUT: output, S.G_REASONING: reasoning,
                    S.G_ANSWER: answer, S.G_TOTAL_REWARD: total, S.G_REWARDS: {"correct": correct, "format": fmt},
                    S.G_SPLIT: "train", S.G_GROUP_ID: gid, S.G_RANK: 0, S.G_EXTRA: {},
                }
                jf.write(json.dumps(rec, separators=(",", ":")) + "\n")
                writer.writerow([rec[S.G_TIMESTAMP], step, qid, q, truth, output, reasoning, answer, total,
                                 correct, fmt, "train", gid])
    print(f"wrote {per_step * steps} completions in {time.time() - t0:.0f} s to {jdir} and {cdir}")
    make_dirty(jdir, out / "big_run_jsonl_dirty")
    make_torn_csv(cdir, out / "big_run_csv_torn")
    return jdir, cdir


def make_dirty(clean: Path, dirty: Path) -> None:
    """The same run with a malformed line in the middle and a torn last line: the benchmark shows
    that only the chunk holding the bad line takes the careful (line-by-line) path."""
    dirty.mkdir(parents=True, exist_ok=True)
    for name in (S.MANIFEST_FILE, S.events_file()):
        (dirty / name).write_bytes((clean / name).read_bytes())
    with (clean / S.generations_file()).open("rb") as src, (dirty / S.generations_file()).open("wb") as dst:
        for i, line in enumerate(src):
            dst.write(b"{this line is not JSON\n" if i == 500_000 else line)
        dst.write(b'{"global_step": 1001, "question": "cut sh')


def make_torn_csv(clean: Path, torn: Path) -> None:
    """The CSV run as a kill leaves it: the last row cut inside its quoted model output, after
    the output's line break (where most of a row's bytes are). The benchmark shows that only
    the torn row costs extra."""
    torn.mkdir(parents=True, exist_ok=True)
    for name in (S.MANIFEST_FILE, S.events_file()):
        (torn / name).write_bytes((clean / name).read_bytes())
    src, dst = clean / S.generations_file(fmt="csv"), torn / S.generations_file(fmt="csv")
    size = src.stat().st_size
    with src.open("rb") as fh:
        fh.seek(max(0, size - 4096))
        tail = fh.read()
    last = tail.rindex(b"\r\n", 0, len(tail) - 2) + 2  # the last row's start
    cut = size - len(tail) + tail.index(b"</reasoning>\n", last) + len(b"</reasoning>\n<ans")
    with src.open("rb") as fin, dst.open("wb") as fout:
        left = cut
        while left:
            block = fin.read(min(left, 64 << 20))
            fout.write(block)
            left -= len(block)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--completions", type=int, default=1_000_000)
    ap.add_argument("--steps", type=int, default=1_000)
    ap.add_argument("--out", type=Path, default=DATA)
    ap.add_argument("--torn-csv-only", action="store_true", help="only (re)make big_run_csv_torn from big_run_csv")
    args = ap.parse_args()
    if args.torn_csv_only:
        make_torn_csv(args.out / "big_run_csv", args.out / "big_run_csv_torn")
        return
    generate(args.completions, args.steps, args.out)


if __name__ == "__main__":
    main()
