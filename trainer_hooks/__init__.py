"""trainer_hooks: what a training process imports to write logscan run logs. Standard library only.

    from trainer_hooks import RunLogger
    logger = RunLogger("runs/001", algorithm="grpo")

``LogscanCallback`` (the transformers/TRL callback) is loaded on first access, so importing this
package never imports transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .logger import (
    FileSink,
    RunLogger,
    Sink,
    TrainingEvent,
    extract_tag,
    question_id_for,
    read_stop_request,
    request_stop,
)
from .rewards import wrap_reward_functions
from .schema import FORMAT, RunStatus, TrainingPhase

if TYPE_CHECKING:
    from .trl import LogscanCallback

__all__ = [
    "FORMAT",
    "FileSink",
    "LogscanCallback",
    "RunLogger",
    "RunStatus",
    "Sink",
    "TrainingEvent",
    "TrainingPhase",
    "extract_tag",
    "question_id_for",
    "read_stop_request",
    "request_stop",
    "wrap_reward_functions",
]


def __getattr__(name: str) -> Any:
    # transformers is heavy and optional: import it only when the callback is actually used
    if name == "LogscanCallback":
        from .trl import LogscanCallback

        return LogscanCallback
    raise AttributeError(f"module 'trainer_hooks' has no attribute {name!r}")
