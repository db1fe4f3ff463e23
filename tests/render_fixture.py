"""A fixed, fully deterministic ``Analysis`` for the report tests (golden files, browser, plots).

Built in code rather than read from a run so the report tests do not depend on ingest, metrics,
detectors or drift: they test rendering only. Some completions carry XSS / Markdown-breaking
payloads on purpose.
"""

from __future__ import annotations

import csv
import difflib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from analyzer.model import (
    Alert,
    Analysis,
    DetectorStatus,
    DriftResult,
    IngestIssue,
    IngestReport,
    RunData,
    SampleDiff,
    Severity,
)

PAYLOADS = (
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=1">',
    "[click me](javascript:window.__pwned=1) and [x](javascript:alert(1))",
    "</script><script>window.__pwned=1</script>",
    "line one\u2028line two\u2029para | pipe | cell",
    "```\nfenced\n```\n````\n# not a heading\n| a | b |\n|---|---|",
    "@octocat *bold* _it_ ~~strike~~ <b>bold</b> &amp; &lt;",
    '"><svg onload=window.__pwned=1>',
)

STEPS = 60
PROMPTS = 3
PER_PROMPT = 4
REWARDS = ("correctness", "format")


SEED_CSV_COLUMNS = (
    "timestamp",
    "global_step",
    "question_id",
    "question",
    "ground_truth_answer",
    "model_output",
    "reasoning",
    "model_answer",
    "total_reward",
    "correctness_reward",
)


def write_seed_csv(path: Path, *, steps: int, per_prompt: int, reasoning: Callable[[int], str]) -> None:
    """A small seed-schema ``generations.csv`` (two prompts, ``per_prompt`` completions each per
    step) for the tests that go through ingest; ``reasoning(step)`` is the reasoning text, so a test
    can plant a payload. Completion ``k`` answers ``prompt + k % 2`` and is rewarded ``k % 2``."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(SEED_CSV_COLUMNS)
        for step in range(steps):
            for p in range(2):
                for k in range(per_prompt):
                    answer = str(p + k % 2)
                    out = f"<reasoning>{reasoning(step)}</reasoning><answer>{answer}</answer>"
                    w.writerow([1.7e9 + step, step, f"q{p}", f"{p}+1?", str(p + 1), out, "", answer, k % 2, k % 2])


def _output(step: int, prompt: int, k: int) -> str:
    if step % 7 == 0 and k == 0:
        payload = PAYLOADS[(step // 7 + prompt) % len(PAYLOADS)]
        return f"<reasoning>{payload}</reasoning>\n<answer>{prompt + 1}</answer>"
    words = " ".join(["think"] * (2 + step // 6))
    answer = prompt + 1 if (step < 35 or k % 2 == 0) else prompt + 2
    return f"<reasoning>step {step}: {words} about prompt {prompt}</reasoning>\n<answer>{answer}</answer>"


def generations() -> pl.DataFrame:
    rows: list[dict[str, Any]] = []
    sid = 0
    for step in range(STEPS):
        for p in range(PROMPTS):
            for k in range(PER_PROMPT):
                out = _output(step, p, k)
                correct = 1.0 if f"<answer>{p + 1}</answer>" in out else 0.0
                fmt_ok = 0.5
                rows.append(
                    {
                        "step": step,
                        "split": "eval" if p == 2 else "train",
                        "sample_id": sid,
                        "question_id": f"q{p}",
                        "group_id": f"{step}-q{p}",
                        "question": f"What is {p} + 1? Answer in <answer> tags | prompt #{p}",
                        "ground_truth_answer": str(p + 1),
                        "model_output": out,
                        "reasoning": None,
                        "model_answer": str(p + 1) if correct else str(p + 2),
                        "total_reward": correct + fmt_ok + step * 0.01,
                        "reward/correctness": correct,
                        "reward/format": fmt_ok + step * 0.01,
                        "timestamp": 1_700_000_000.0 + step,
                        "rank": 0,
                    }
                )
                sid += 1
    return pl.DataFrame(rows)


def metrics() -> pl.DataFrame:
    steps = list(range(STEPS))
    acc = [min(0.9, 0.3 + s * 0.02) if s < 35 else max(0.2, 0.9 - (s - 35) * 0.03) for s in steps]
    return pl.DataFrame(
        {
            "step": pl.Series(steps, dtype=pl.Int64),
            "reward": [0.5 + 0.02 * s + 0.05 * math.sin(s) for s in steps],
            "reward_std": [0.4 - 0.004 * s for s in steps],
            "kl": [0.001 * s * s / 10 for s in steps],
            "entropy": [1.2 * math.exp(-s / 30) for s in steps],
            "loss": [0.1 * math.cos(s / 5) + (2.5 if s == 44 else 0.0) for s in steps],
            "grad_norm": [1.0 + 0.1 * math.sin(s / 3) for s in steps],
            "learning_rate": [1e-6 * (1 - s / STEPS) for s in steps],
            "completion_length": [40.0 + 3.0 * s for s in steps],
            "clip_fraction": [0.02 + 0.001 * s for s in steps],
            "gen_reward_mean": [0.55 + 0.018 * s for s in steps],
            "gen_reward_p10": [0.3 + 0.018 * s for s in steps],
            "gen_reward_p90": [0.8 + 0.018 * s for s in steps],
            "gen_reward/correctness_mean": acc,
            "gen_reward/format_mean": [0.5 + 0.01 * s for s in steps],
            "gen_accuracy": acc,
            "eval/gen_accuracy": [0.6 - 0.004 * s for s in steps],
            "gen_format_ok": [min(1.0, 0.5 + 0.02 * s) for s in steps],
            "gen_length_tokens_mean": [30.0 + 2.5 * s for s in steps],
            "gen_frac_zero_spread_groups": [0.1 + 0.01 * s for s in steps],
            "gen_repeated_ngram_rate": [0.01 + 0.002 * s for s in steps],
            "drift_train_mean": [0.005 * s for s in steps],
            "drift_diversity_step": [0.5 - 0.005 * s for s in steps],
            "mystery_metric": [float(s % 5) for s in steps],
        }
    )


def sample_diffs(gens: pl.DataFrame) -> list[SampleDiff]:
    diffs = []
    for p in range(PROMPTS):
        early = gens.filter((pl.col("question_id") == f"q{p}") & (pl.col("step") == 0)).row(
            0, named=True
        )
        late = gens.filter((pl.col("question_id") == f"q{p}") & (pl.col("step") == 55)).row(
            0, named=True
        )
        a, b = early["model_output"], late["model_output"]
        diff = "\n".join(
            difflib.unified_diff(a.splitlines(), b.splitlines(), "step 0", "step 55", lineterm="")
        )
        ratio = difflib.SequenceMatcher(None, a, b).ratio()
        diffs.append(
            SampleDiff(
                question_id=f"q{p}",
                question=early["question"],
                split=early["split"],
                early_step=0,
                late_step=55,
                early_sample_id=early["sample_id"],
                late_sample_id=late["sample_id"],
                early_text=a,
                late_text=b,
                early_reward=early["total_reward"],
                late_reward=late["total_reward"],
                similarity=round(ratio, 4),
                chars_changed=abs(len(b) - len(a)),
                lines_changed=sum(
                    1 for ln in diff.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")
                ),
                unified_diff=diff,
                semantic_distance=0.1 * (p + 1),
            )
        )
    return diffs


def analysis(*, with_generations: bool = True, with_drift: bool = True) -> Analysis:
    gens = generations()
    report = IngestReport(
        source_kind="logscan",
        files_read=["run.json", "events.jsonl", "generations.jsonl"],
        issues=[
            IngestIssue(
                "events.jsonl", 61, "torn last line (the process was killed mid-write)", "torn_line"
            ),
            IngestIssue(
                "generations.jsonl",
                12,
                "model_output is not a string: <script>x</script> | cell",
                "wrong_type",
            ),
        ],
        records_read=780,
        records_skipped=2,
        resumes=[{"file": "events.jsonl", "line": 40, "from_step": 39, "to_step": 30}],
        unknown_keys=["mystery_metric"],
        notes=["resumed once; the later records win"],
    )
    run = RunData(
        path="runs/fixture",
        steps=metrics().select("step", "reward", "kl"),
        generations=gens if with_generations else None,
        report=report,
        info={
            "run_id": "fixture-001",
            "algorithm": "grpo",
            "model": "Qwen/Qwen2.5-0.5B-Instruct",
            "status": "finished",
            "reward_names": list(REWARDS),
            "world_size": 1,
            "config": {"learning_rate": 1e-6, "beta": 0.04, "num_generations": PER_PROMPT},
        },
    )
    alerts = [
        Alert(
            "kl_explosion",
            Severity.CRITICAL,
            41,
            "KL 0.168 left its budget 0.1 per token at step 41 and grows super-linearly",
            {
                "unit": "token",
                "budget": 0.1,
                "critical_level": 0.4,
                "peak_rolling_median": 0.348,
                "sample_ids": [492, 496, 500, 504, 508],
            },
        ),
        Alert(
            "reward_hacking",
            Severity.WARNING,
            35,
            "reward rises (+0.45) while exact-match accuracy falls (0.90 → 0.20)",
            {"reward_slope": 0.018, "accuracy_slope": -0.03, "sample_ids": [0, 420, 588]},
        ),
        Alert(
            "length_hacking",
            Severity.WARNING,
            30,
            "reward gains track completion length (r = 0.97) | length 40 → 217 tokens",
            {"correlation": 0.97, "length_first": 40.0, "length_last": 217.0, "sample_ids": [84]},
        ),
        Alert(
            "semantic_drift",
            Severity.INFO,
            50,
            "answers drifted 0.25 from their step-0 baseline",
            {"distance": 0.25},
        ),
    ]
    detectors = [
        # every core check of a GRPO run with completions ran (analyzer.coverage): the golden
        # report shows a complete run, not a limited one
        DetectorStatus("nan_values", True, None, 0),
        DetectorStatus("loss_spike", True, None, 0),
        DetectorStatus("log_integrity", True, None, 0),
        DetectorStatus("kl_explosion", True, None, 1),
        DetectorStatus("reward_hacking", True, None, 1),
        DetectorStatus("length_hacking", True, None, 1),
        DetectorStatus("entropy_collapse", True, None, 0),
        DetectorStatus("semantic_drift", True, None, 1),
        DetectorStatus("reward_std_collapse", True, None, 0),
        DetectorStatus("mode_collapse", True, None, 0),
        DetectorStatus("repetition", True, None, 0),
        DetectorStatus("truncation", True, None, 0),
        DetectorStatus(
            "value_reward_mismatch", False, "no value_loss / explained_variance: not a PPO run"
        ),
        DetectorStatus("catastrophic_forgetting", False, "no probe split in the completions"),
    ]
    drift = None
    if with_drift and with_generations:
        drift = DriftResult(
            method="embeddings",
            model="all-MiniLM-L6-v2",
            per_step=None,
            top_drifting=[
                {
                    "question_id": "q1",
                    "question": "What is 1 + 1? <b>bold</b>",
                    "split": "train",
                    "distance": 0.31,
                    "early_step": 0,
                    "late_step": 56,
                }
            ],
            outliers=[{"sample_id": 84, "step": 7, "distance": 0.9}],
            sample_diffs=sample_diffs(gens),
            embedded=720,
            cached=0,
            sampled_from=720,
            notes=["embedded all 720 completions"],
        )
    result = Analysis(
        run=run,
        metrics=metrics(),
        alerts=alerts,
        detectors=detectors,
        drift=drift,
        config={
            "fail_on": "critical",
            "kl_explosion": {
                "unit": "auto",
                "budget_per_token": 0.1,
                "critical_factor": 4.0,
                "window": 20,
            },
        },
        verdict="critical",
        timings={"ingest": 0.12, "metrics": 0.05, "detectors": 0.01, "drift": 1.5},
    )
    result.notes.append("config: defaults only")
    return result
