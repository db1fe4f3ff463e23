"""The file contract between the training process and the analyzer (format ``logscan-run/1``).

Both halves import these names: ``trainer_hooks`` writes with them and ``analyzer.ingest`` reads
with them, so a field is renamed in one place only. Standard library only.
"""

from __future__ import annotations

import enum
from typing import Final

FORMAT: Final = "logscan-run/1"

# --- files in a run folder -------------------------------------------------------------------
MANIFEST_FILE: Final = "run.json"
STOP_FILE: Final = "STOP"
EVENTS_STEM: Final = "events"
GENERATIONS_STEM: Final = "generations"


def events_file(rank: int = 0) -> str:
    """``events.jsonl`` for rank 0, ``events.rank{N}.jsonl`` for the others (one writer per file)."""
    return f"{EVENTS_STEM}.jsonl" if rank == 0 else f"{EVENTS_STEM}.rank{rank}.jsonl"


def generations_file(rank: int = 0, fmt: str = "jsonl") -> str:
    """``generations.jsonl`` / ``generations.csv``, with ``.rank{N}`` before the suffix for rank > 0."""
    return f"{GENERATIONS_STEM}.{fmt}" if rank == 0 else f"{GENERATIONS_STEM}.rank{rank}.{fmt}"


# --- run.json ----------------------------------------------------------------------------------
class RunStatus(str, enum.Enum):
    RUNNING = "running"
    FINISHED = "finished"
    CRASHED = "crashed"


# keys of run.json (a rank > 0 writes run.rank{N}.json with the same keys)
M_FORMAT: Final = "format"
M_RUN_ID: Final = "run_id"
M_CREATED: Final = "created_at"
M_ENDED: Final = "ended_at"
M_STATUS: Final = "status"
M_ALGORITHM: Final = "algorithm"
M_MODEL: Final = "model"
M_CONFIG: Final = "config"
M_REWARD_NAMES: Final = "reward_names"
M_WORLD_SIZE: Final = "world_size"
M_RANK: Final = "rank"
M_GENERATIONS_FORMAT: Final = "generations_format"
M_COUNTERS: Final = "counters"
M_RESUMES: Final = "resumes"

# --- events.jsonl: one lifecycle event or metrics record per line ------------------------------
E_TIME: Final = "time"  # unix seconds, float
E_STEP: Final = "step"
E_PHASE: Final = "phase"  # a TrainingPhase value
E_SPLIT: Final = "split"
E_METRICS: Final = "metrics"  # {name: number}
E_META: Final = "meta"  # free-form JSON
E_RANK: Final = "rank"


class TrainingPhase(str, enum.Enum):
    """The lifecycle of an RL fine-tuning run, as logged in ``events.jsonl``'s ``phase``."""

    RUN_START = "run_start"
    RUN_END = "run_end"
    RUN_RESUME = "run_resume"
    EPOCH_START = "epoch_start"
    EPOCH_END = "epoch_end"
    ITERATION_START = "iteration_start"
    ITERATION_END = "iteration_end"
    RESPONSE_GENERATED = "response_generated"
    REWARD_COMPUTED = "reward_computed"
    POLICY_UPDATE = "policy_update"
    VALUE_UPDATE = "value_update"
    EVALUATION = "evaluation"
    CHECKPOINT = "checkpoint"
    EARLY_STOP = "early_stop"
    METRICS = "metrics"  # a plain log_metrics() record


# --- generations: one completion per line / row -------------------------------------------------
G_TIMESTAMP: Final = "timestamp"
G_STEP: Final = "global_step"
G_QUESTION_ID: Final = "question_id"
G_QUESTION: Final = "question"
G_GROUND_TRUTH: Final = "ground_truth_answer"
G_OUTPUT: Final = "model_output"
G_REASONING: Final = "reasoning"
G_ANSWER: Final = "model_answer"
G_TOTAL_REWARD: Final = "total_reward"
G_REWARDS: Final = "rewards"  # JSONL: {name: value}; CSV: flattened to <name>_reward columns
G_SPLIT: Final = "split"
G_GROUP_ID: Final = "group_id"
G_RANK: Final = "rank"
G_EXTRA: Final = "extra"  # JSONL: anything else the caller passed (**extra)

CSV_REWARD_SUFFIX: Final = "_reward"
# The seed's CSV columns, in order; reward columns follow, then split and group_id.
CSV_BASE_COLUMNS: Final = (
    G_TIMESTAMP,
    G_STEP,
    G_QUESTION_ID,
    G_QUESTION,
    G_GROUND_TRUTH,
    G_OUTPUT,
    G_REASONING,
    G_ANSWER,
    G_TOTAL_REWARD,
)
CSV_TAIL_COLUMNS: Final = (G_SPLIT, G_GROUP_ID)

SPLITS: Final = ("train", "eval", "probe")

# --- non-finite floats --------------------------------------------------------------------------
# JSON has no NaN/Infinity. logscan writes them as these strings wherever a number is expected
# (metrics values, rewards, total_reward); readers map them back. Python's json.dumps would write
# the bare tokens NaN / Infinity, which are not JSON and which Polars' NDJSON reader rejects.
NAN: Final = "NaN"
POS_INF: Final = "Infinity"
NEG_INF: Final = "-Infinity"
NONFINITE_STRINGS: Final = {NAN: float("nan"), POS_INF: float("inf"), NEG_INF: float("-inf")}
