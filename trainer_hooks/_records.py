"""What RunLogger's queue holds: the records the training thread hands to the writer thread.

The training thread queues each record as a plain tuple in the field order of
:class:`EventRecord` or :class:`GenRecord`, and the writer thread makes it that named tuple as it
takes it from the queue (``_make``), so every reader after that uses names. Built as the named
tuple on the training thread, a record costs a third more there (a NamedTuple's ``__new__`` is a
Python function; a slotted dataclass's ``__init__`` costs about as much): measured in
benchmarks/RESULTS.md. The two layouts differ in length, which is how the writer tells them apart.
The values are as the caller passed them (mappings already copied); the writer derives and
encodes everything else.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, NamedTuple

from .schema import TrainingPhase


class EventRecord(NamedTuple):
    """A queued ``events.jsonl`` line (``log_metrics``, ``log_event``, ``emit``, close's run_end)."""

    time: float
    step: int | None
    phase: TrainingPhase | str
    split: str
    metrics: Mapping[str, Any] | None
    meta: Mapping[str, Any] | None


class GenRecord(NamedTuple):
    """A queued completion (``log_generation``): the caller's values, nothing derived yet."""

    time: float
    step: int
    question: Any
    model_output: Any
    rewards: dict[str, Any]
    ground_truth: Any
    question_id: Any
    split: Any
    group_id: Any
    extra: dict[str, Any]


GEN_RECORD_LEN = len(GenRecord._fields)  # an EventRecord has fewer
assert len(EventRecord._fields) != GEN_RECORD_LEN


class GenFields(NamedTuple):
    """A completion as written (the writer thread's view of a :class:`GenRecord`): question id,
    reasoning, answer and total reward derived where the caller did not pass them."""

    time: float
    step: int
    question_id: Any
    question: Any
    ground_truth: Any
    model_output: Any
    reasoning: Any
    answer: Any
    total_reward: Any
    rewards: Mapping[str, Any]
    split: Any
    group_id: Any
    extra: Any


class FlushMarker:
    """A ``flush()`` waiting in the queue: answered (``ok``, then ``done``) by the writer once
    everything queued before it is written and fsynced, or by ``close()``'s last sweep."""

    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
