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
# A stop reason is read up to this many bytes, and only from a regular file (a FIFO would block the
# training loop, /dev/zero would fill its memory).
STOP_MAX_BYTES: Final = 64 * 1024
EVENTS_STEM: Final = "events"
GENERATIONS_STEM: Final = "generations"


def events_file(rank: int = 0) -> str:
    """``events.jsonl`` for rank 0, ``events.rank{N}.jsonl`` for the others (one writer per file)."""
    return f"{EVENTS_STEM}.jsonl" if rank == 0 else f"{EVENTS_STEM}.rank{rank}.jsonl"


def generations_file(rank: int = 0, fmt: str = "jsonl") -> str:
    """``generations.jsonl`` / ``generations.csv``, with ``.rank{N}`` before the suffix for rank > 0."""
    return f"{GENERATIONS_STEM}.{fmt}" if rank == 0 else f"{GENERATIONS_STEM}.rank{rank}.{fmt}"


def generations_part_file(rank: int = 0, part: int = 1, fmt: str = "csv") -> str:
    """The CSV *part* files: part 1 is ``generations_file(rank, fmt)``; part N > 1 inserts ``.partN``.

    A CSV header is fixed once written, so when a reward function first appears mid-run (or a run
    resumes) the writer starts a new part with the widened header instead of rewriting the file:
    ``generations.csv``, ``generations.part2.csv``, … and ``generations.rank1.part2.csv`` for rank 1.
    Readers take every ``generations*.csv`` in the folder, each with its own header.
    """
    if part <= 1:
        return generations_file(rank, fmt)
    rank_part = "" if rank == 0 else f".rank{rank}"
    return f"{GENERATIONS_STEM}{rank_part}.part{part}.{fmt}"


def manifest_file(rank: int = 0) -> str:
    """``run.json`` for rank 0, ``run.rank{N}.json`` for the others (each rank owns its manifest)."""
    return MANIFEST_FILE if rank == 0 else f"run.rank{rank}.json"


# --- run.json ----------------------------------------------------------------------------------
class RunStatus(enum.StrEnum):
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
M_RESUMES: Final = "resumes"  # [{"time": float, "previous_status": str, "pid": int}, …]
M_WRITER: Final = "writer"  # the session writing now: {"pid": int, "host": str, "since": iso time}

# run.json["counters"] keys (cumulative over resumes)
C_RECORDS_WRITTEN: Final = "records_written"  # whole lines/rows that reached their file
C_RECORDS_DROPPED: Final = (
    "records_dropped"  # queue full with on_full="drop", or unwritten at close timeout
)
# did not reach the disk: a write error (disk full, read-only, a file deleted while open, …) or
# arguments that cannot be logged
C_RECORDS_FAILED: Final = "records_failed"
C_BLOCKED_WAITS: Final = (
    "blocked_waits"  # times a log_* call waited for queue space (on_full="block")
)
C_WRITE_ERRORS: Final = "write_errors"  # failed write/fsync/run.json calls
COUNTER_KEYS: Final = (
    C_RECORDS_WRITTEN,
    C_RECORDS_DROPPED,
    C_RECORDS_FAILED,
    C_BLOCKED_WAITS,
    C_WRITE_ERRORS,
)

# --- events.jsonl: one lifecycle event or metrics record per line ------------------------------
E_TIME: Final = "time"  # unix seconds, float
E_STEP: Final = "step"
E_PHASE: Final = "phase"  # a TrainingPhase value
E_SPLIT: Final = "split"
E_METRICS: Final = "metrics"  # {name: number}
E_META: Final = "meta"  # free-form JSON
E_RANK: Final = "rank"


class TrainingPhase(enum.StrEnum):
    """The lifecycle of an RL fine-tuning run, as logged in ``events.jsonl``'s ``phase``."""

    RUN_START = (
        "run_start"  # written by RunLogger when it opens a fresh run folder (meta: manifest)
    )
    RUN_END = "run_end"  # written by RunLogger.close() (meta: status, counters)
    RUN_RESUME = "run_resume"  # a second RunLogger opened the same folder + rank (a resumed run)
    TRAIN_START = "train_start"  # the trainer's on_train_begin (meta: max_steps, epochs, …)
    TRAIN_END = "train_end"  # the trainer's on_train_end (metrics: train_runtime, train_loss, …)
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
G_EXTRA: Final = "extra"  # JSONL: anything else the caller passed (**extra); CSV: a JSON cell

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
# After the tail, logscan's CSV adds one JSON-encoded column for **extra (empty cell when none).
CSV_EXTRA_COLUMN: Final = G_EXTRA
# A reward function whose column would repeat a fixed column (a reward named "total" would be
# "total_reward") goes into the row's extra cell under this prefix instead: {"reward/total": 0.5}.
CSV_EXTRA_REWARD_PREFIX: Final = "reward/"


def csv_reward_column(name: str) -> str | None:
    """The CSV column of reward function ``name``, or None when that name would repeat a fixed
    column (then the value goes into the extra cell as ``CSV_EXTRA_REWARD_PREFIX + name``)."""
    column = f"{name}{CSV_REWARD_SUFFIX}"
    return None if column in (*CSV_BASE_COLUMNS, *CSV_TAIL_COLUMNS, CSV_EXTRA_COLUMN) else column

SPLITS: Final = ("train", "eval", "probe")

# --- non-finite floats --------------------------------------------------------------------------
# JSON has no NaN/Infinity. logscan writes them as these strings wherever a number is expected
# (metrics values, rewards, total_reward); readers map them back. Python's json.dumps would write
# the bare tokens NaN / Infinity, which are not JSON and which Polars' NDJSON reader rejects.
NAN: Final = "NaN"
POS_INF: Final = "Infinity"
NEG_INF: Final = "-Infinity"
NONFINITE_STRINGS: Final = {NAN: float("nan"), POS_INF: float("inf"), NEG_INF: float("-inf")}


def decode_float(value: object) -> float | None:
    """Read back a number written by logscan: the NONFINITE strings become NaN/±inf; None stays None.

    Used for metrics values, rewards and total_reward (JSONL) and for numeric CSV cells, where an
    empty cell means "missing" (None).
    """
    if value is None or value == "":
        return None
    if isinstance(value, str):
        if value in NONFINITE_STRINGS:
            return NONFINITE_STRINGS[value]
        return float(value)
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    raise TypeError(f"not a number: {value!r}")
