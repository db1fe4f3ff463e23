"""Canonical column names of the two frames every input becomes, and of the metrics frame.

Ingest maps each library's keys onto these; metrics, detectors, drift and reports read only these.
See docs/metrics.md for the full table.
"""

from __future__ import annotations

from typing import Final

# --- the `generations` frame: one row per completion ------------------------------------------
STEP: Final = "step"  # Int64, the optimizer step (TRL global_step)
SPLIT: Final = "split"  # Utf8: train | eval | probe
SAMPLE_ID: Final = "sample_id"  # Int64, row number in canonical order (step, rank, file order)
QUESTION_ID: Final = "question_id"  # Utf8
GROUP_ID: Final = "group_id"  # Utf8 | null: the GRPO group (one prompt's completions of a step)
QUESTION: Final = "question"  # Utf8 (the prompt, flattened to text for chat prompts)
GROUND_TRUTH: Final = "ground_truth_answer"  # Utf8 | null
OUTPUT: Final = "model_output"  # Utf8 (the completion)
REASONING: Final = "reasoning"  # Utf8 | null
ANSWER: Final = "model_answer"  # Utf8 | null
# Utf8 | null, in generations.parquet only: the answer the accuracy judged, read the run's way
# (analyzer.features.learn_conventions); model_answer keeps what was logged or ingest's fill
JUDGED_ANSWER: Final = "judged_answer"
TOTAL_REWARD: Final = "total_reward"  # Float64
REWARD_PREFIX: Final = "reward/"  # Float64 per reward function: "reward/<name>"
TIMESTAMP: Final = "timestamp"  # Float64 unix seconds | null
RANK: Final = "rank"  # Int64
ADVANTAGE: Final = "advantage"  # Float64 | null (TRL completion parquet)

# --- the `steps` frame (logged scalars): one row per step --------------------------------------
# Logged train scalars use the canonical names below; eval entries are prefixed "eval/" (and
# probe "probe/"); keys nobody recognised keep their original name.
REWARD: Final = "reward"
REWARD_STD: Final = "reward_std"
KL: Final = "kl"
ENTROPY: Final = "entropy"
LOSS: Final = "loss"
POLICY_LOSS: Final = "policy_loss"
VALUE_LOSS: Final = "value_loss"
CLIP_FRACTION: Final = "clip_fraction"
GRAD_NORM: Final = "grad_norm"
LEARNING_RATE: Final = "learning_rate"
COMPLETION_LENGTH: Final = "completion_length"  # tokens, as the trainer logged it
CLIPPED_RATIO: Final = "clipped_ratio"  # share of completions cut at max length (truncation)
FRAC_REWARD_ZERO_STD: Final = "frac_reward_zero_std"
ADVANTAGE_MEAN: Final = "advantage_mean"
VALUE_EXPLAINED_VARIANCE: Final = "explained_variance"
EPOCH: Final = "epoch"
SPLIT_PREFIXES: Final = ("eval/", "probe/")

# --- rebuilt from completions (metrics frame), prefix "gen_"; eval/probe: "eval/gen_…" ---------
GEN_COUNT: Final = "gen_count"
GEN_REWARD_MEAN: Final = "gen_reward_mean"
GEN_REWARD_STD: Final = "gen_reward_std"
GEN_REWARD_MIN: Final = "gen_reward_min"
GEN_REWARD_MAX: Final = "gen_reward_max"
GEN_REWARD_P10: Final = "gen_reward_p10"
GEN_REWARD_P50: Final = "gen_reward_p50"
GEN_REWARD_P90: Final = "gen_reward_p90"
# per reward function: f"gen_reward/{name}_mean", "_std", "_min", "_max", "_p50"
GEN_ACCURACY: Final = "gen_accuracy"  # exact match model_answer vs ground_truth (null if no truth)
GEN_FORMAT_OK: Final = "gen_format_ok"  # share in the run's format (its tags, learned or configured)
# share of the completions with a ground truth from which an answer could be read: the coverage of
# gen_accuracy (a missing answer counts as wrong; a low coverage says the accuracy is not the run's)
GEN_ANSWER_COVERAGE: Final = "gen_answer_coverage"
GEN_LEN_CHARS: Final = "gen_length_chars_mean"
GEN_LEN_TOKENS: Final = "gen_length_tokens_mean"  # whitespace tokens
GEN_ZERO_SPREAD_GROUPS: Final = "gen_frac_zero_spread_groups"
GEN_ZERO_SPREAD_ALL_CORRECT: Final = "gen_frac_zero_spread_all_correct"
GEN_ZERO_SPREAD_ALL_WRONG: Final = "gen_frac_zero_spread_all_wrong"
GEN_REPEAT_NGRAM: Final = "gen_repeated_ngram_rate"
GEN_REWARD_LENGTH_CORR: Final = "gen_reward_length_corr"
GEN_REWARD_NONFINITE: Final = "gen_reward_nonfinite"  # share of completions with NaN/inf total_reward

# --- scored by analyzer.drift, joined into the metrics frame, prefix "drift_" (docs/drift.md) ---
DRIFT_N: Final = "drift_n"  # completions embedded at the step
DRIFT_TRAIN_MEAN: Final = "drift_train_mean"  # train answers' distance from their prompt's baseline
DRIFT_TRAIN_P90: Final = "drift_train_p90"
DRIFT_TRAIN_N: Final = "drift_train_n"
DRIFT_EVAL_MEAN: Final = "drift_eval_mean"  # eval and probe answers' distance from their baseline
DRIFT_EVAL_MAX: Final = "drift_eval_max"
DRIFT_EVAL_N: Final = "drift_eval_n"
DRIFT_DIVERSITY_GROUP: Final = "drift_diversity_group"  # within-prompt similarity (↑ = less diverse)
DRIFT_DIVERSITY_STEP: Final = "drift_diversity_step"  # within-step similarity
DRIFT_STEP_SHIFT: Final = "drift_step_shift"  # the step's mean completion away from the early ones
DRIFT_OUTLIER_FRAC: Final = "drift_outlier_frac"  # share of completions far from every early one
DRIFT_COLUMNS: Final = (
    DRIFT_N,
    DRIFT_TRAIN_MEAN,
    DRIFT_TRAIN_P90,
    DRIFT_TRAIN_N,
    DRIFT_EVAL_MEAN,
    DRIFT_EVAL_MAX,
    DRIFT_EVAL_N,
    DRIFT_DIVERSITY_GROUP,
    DRIFT_DIVERSITY_STEP,
    DRIFT_STEP_SHIFT,
    DRIFT_OUTLIER_FRAC,
)


def split_prefix(split: str) -> str:
    """``""`` for the train split, ``"eval/"``, ``"probe/"`` (or ``"<name>/"``) for the others: the
    prefix of a split's columns in the steps and metrics frames."""
    return "" if split == "train" else f"{split}/"
