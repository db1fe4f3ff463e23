"""RunLogger: crash-safe, append-only run logs written from inside the training process.

The training thread only builds a small named tuple (:mod:`._records`) and appends it to a bounded
in-memory queue; one daemon writer thread (:mod:`._writer`) turns batches of them into lines
(:mod:`._encode`) and appends each batch to its file with a single ``write`` (the
``logging.handlers.QueueListener`` pattern). Nothing here ever raises into the training loop after
construction: an I/O failure becomes one warning and a counter in ``run.json`` (:mod:`._manifest`).

This module is the producer side: the public API, the argument checks, the queue and its
counters, closing, and the STOP file.

Files (format ``logscan-run/1``, names from :mod:`trainer_hooks.schema`)::

    run.json / run.rank{N}.json     manifest, rewritten atomically (temp file + os.replace)
    events.jsonl                    lifecycle events and logged metrics, one JSON object per line
    generations.jsonl               one completion per line (or generations*.csv, see below)
    STOP                            a stop request left by another process (see request_stop)

Non-finite floats (NaN, ±inf) are written as the strings ``"NaN"``, ``"Infinity"`` and
``"-Infinity"`` (``schema.NONFINITE_STRINGS``) everywhere, in CSV cells too.

Standard library only: this module is imported by training scripts on GPU machines.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import dataclasses
import logging
import os
import stat as _stat
import sys
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from . import schema
from ._encode import (
    TOO_DEEP,
    GenerationEncoder,
    TagExtractor,
    encode_json,
    event_dict,
    extract_tag,
    nan_sum,
    question_id_for,
    sanitize,
)
from ._manifest import (
    add_reward_names,
    new_manifest,
    previous_counters,
    read_manifest,
    temp_path,
    utc_now_iso,
)
from ._manifest import manifest_bytes as _manifest_bytes
from ._manifest import write_atomic as _write_atomic  # looked up here: tests replace it
from ._records import EventRecord, FlushMarker
from ._writer import (
    CsvStream,
    FileSink,
    PartialWrite,
    Sink,
    SinkFactory,
    WriterThread,
    acquire_folder,
    next_csv_part,
    release_folder,
)
from .schema import TrainingPhase

__all__ = [
    "TOO_DEEP",
    "FileSink",
    "PartialWrite",
    "RunFolderBusyError",
    "RunLogger",
    "Sink",
    "SinkFactory",
    "TagExtractor",
    "TrainingEvent",
    "encode_json",
    "extract_tag",
    "nan_sum",
    "question_id_for",
    "read_stop_request",
    "request_stop",
]

_log = logging.getLogger("trainer_hooks")

_FlushMarker = FlushMarker  # the name it had when it lived here


@dataclasses.dataclass(frozen=True, slots=True)
class TrainingEvent:
    """One line of ``events.jsonl``: a lifecycle event or a metrics record."""

    time: float
    step: int | None
    phase: TrainingPhase
    split: str = "train"
    metrics: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    rank: int = 0

    def to_dict(self) -> dict[str, Any]:
        fields = EventRecord(self.time, self.step, self.phase, self.split, self.metrics, self.meta)
        return event_dict(fields, self.rank)


_live_loggers: weakref.WeakSet[RunLogger] = weakref.WeakSet()


class RunFolderBusyError(RuntimeError):
    """Raised by ``RunLogger(...)`` when a live logger (in this or another process) is already
    writing the same folder and rank."""


def _after_fork_in_child() -> None:
    # A forked child (e.g. a DataLoader worker) inherits the queue but not the writer thread, and
    # two processes must never append to one file: the child's copy goes quiet.
    for lg in list(_live_loggers):
        lg._forked = True
        lg._closed = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class RunLogger(WriterThread):
    """Write one training run's logs into ``run_dir`` without slowing or crashing the training.

    Two lines in a training script::

        logger = RunLogger("runs/001", algorithm="grpo", model="Qwen/Qwen2.5-0.5B")
        logger.log_metrics(step, {"loss": loss, "kl": kl})

    ``log_*`` calls only enqueue (a few microseconds); a daemon thread appends batches to the
    files at least every ``flush_interval_s`` seconds. ``flush()`` waits until everything logged
    before it is on disk (fsync). ``close()`` (or leaving the ``with`` block, or interpreter exit)
    drains the queue, fsyncs and rewrites ``run.json`` with the status and the counters.

    When more than ``max_queue_size`` records wait, ``on_full="block"`` makes ``log_*`` wait for
    the writer (counted in ``blocked_waits``) and ``on_full="drop"`` drops the record (counted in
    ``records_dropped``). A second RunLogger on the same folder and rank resumes: it appends, logs
    a ``run_resume`` event and adds an entry to the manifest's ``resumes``.

    ``sink_factory`` (keyword, optional) opens the append-only byte streams; the default opens
    files. Tests use it to inject a stalled disk.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        run_id: str | None = None,
        algorithm: str | None = None,
        model: str | None = None,
        config: Mapping[str, Any] | Any | None = None,
        reward_names: Iterable[str] | None = None,
        rank: int = 0,
        world_size: int = 1,
        generations_format: Literal["jsonl", "csv"] = "jsonl",
        max_queue_size: int = 20_000,
        flush_interval_s: float = 1.0,
        on_full: Literal["block", "drop"] = "block",
        tags: tuple[str, str] = ("reasoning", "answer"),
        sink_factory: SinkFactory | None = None,
    ) -> None:
        if generations_format not in ("jsonl", "csv"):
            raise ValueError(
                f"generations_format must be 'jsonl' or 'csv', not {generations_format!r}"
            )
        if on_full not in ("block", "drop"):
            raise ValueError(f"on_full must be 'block' or 'drop', not {on_full!r}")
        if max_queue_size < 1:
            raise ValueError("max_queue_size must be at least 1")
        if flush_interval_s <= 0:
            raise ValueError("flush_interval_s must be positive")
        self.run_dir = Path(run_dir)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.generations_format = generations_format
        self._max = int(max_queue_size)
        self._wake_at = max(1, min(1024, self._max // 2))
        self._flush_interval = float(flush_interval_s)
        self._drop_when_full = on_full == "drop"
        self._sink_factory: SinkFactory = sink_factory or FileSink
        self._tags = (str(tags[0]), str(tags[1]))

        self._q: collections.deque[Any] = collections.deque()
        self._wake = threading.Event()
        self._space = threading.Condition(threading.Lock())
        self._counter_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._manifest_lock = threading.Lock()
        self._names_in_manifest = 0  # how many of _reward_names run.json lists
        self._closed = False
        self._closing = False  # close() started: log_* calls no longer wait for queue space
        self._forked = False
        self._stopping = False
        self._marker_lock = threading.Lock()
        self._final: bool | None = None  # close()'s result, once it has finished
        self._close_deadline: float | None = None
        self._closed_event = threading.Event()  # set when the first close() has finished
        self._sync_ok = True  # no fsync has failed
        self._unsynced: dict[int, int] = {}  # id(sink) → records written since its last fsync
        self._manifest_dirty = False  # update_manifest() changed it: the writer rewrites run.json
        self._warned: set[str] = set()
        self._close_hooks: list[Callable[[], None]] = []
        self._inflight = 0
        self._lost_since_marker = 0
        # counters of this session; run.json holds these plus the previous sessions'
        self.records_written = 0
        self.records_dropped = 0
        self.records_failed = 0
        self.blocked_waits = 0
        self.write_errors = 0
        self._reward_names: list[str] = list(dict.fromkeys(reward_names or ()))
        self._reward_name_set = set(self._reward_names)

        self._events_sink: Sink | None = None
        self._gens_sink: Sink | None = None

        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._warn_once("mkdir", f"logscan: cannot create run folder {self.run_dir}: {exc}")

        self._manifest_path = self.run_dir / schema.manifest_file(self.rank)
        events_path = self.run_dir / schema.events_file(self.rank)
        events_existed = events_path.exists()
        self._lock_key: tuple[str, int] | None = None
        self._lock_fd: int | None = None
        self._lock_guard = threading.Lock()
        self._writer_done = False
        self._abandoned = False
        self._acquire_writer_lock(events_path)  # raises RunFolderBusyError: nothing written yet
        previous = read_manifest(self._manifest_path)
        self.resumed = previous is not None or events_existed
        self._csv: CsvStream | None = None
        if generations_format == "csv":
            self._csv = CsvStream(
                self.run_dir, self.rank, next_csv_part(self.run_dir, self.rank), self._reward_names
            )

        now = utc_now_iso()
        prev = previous or {}
        self._base_counters = previous_counters(prev.get(schema.M_COUNTERS))
        self.run_id = str(prev.get(schema.M_RUN_ID) or run_id or uuid.uuid4().hex[:12])
        previous_names = [str(n) for n in prev.get(schema.M_REWARD_NAMES) or []]
        if self._csv is None:  # a CSV part's header starts from this session's names only
            for n in previous_names:
                if n not in self._reward_name_set:
                    self._reward_names.append(n)
                    self._reward_name_set.add(n)
        resumes = list(prev.get(schema.M_RESUMES) or [])
        resume_meta: dict[str, Any] | None = None
        if self.resumed:
            resume_meta = {
                "time": now,
                "previous_status": prev.get(schema.M_STATUS, "unknown"),
                "pid": os.getpid(),
            }
            resumes.append(resume_meta)
        self._manifest: dict[str, Any] = new_manifest(
            prev,
            run_id=self.run_id,
            now=now,
            algorithm=algorithm,
            model=model,
            config=config,
            reward_names=list(dict.fromkeys([*previous_names, *self._reward_names])),
            world_size=self.world_size,
            rank=self.rank,
            generations_format=generations_format,
            counters=self._base_counters,
            resumes=resumes,
        )
        # the writer thread's encoder adds the reward names it meets to this logger's list
        self._gen_encoder = GenerationEncoder(
            self._tags, self._reward_names, self._reward_name_set
        )
        self._write_manifest()
        self._names_in_manifest = len(self._reward_names)

        self._thread = threading.Thread(target=self._run, name="logscan-writer", daemon=True)
        self._thread.start()
        _live_loggers.add(self)
        atexit.register(self._atexit_close)
        if resume_meta is not None:
            self.log_event(TrainingPhase.RUN_RESUME, None, meta=resume_meta)
        else:
            self.log_event(
                TrainingPhase.RUN_START,
                None,
                meta={"run_id": self.run_id, "algorithm": algorithm, "model": model},
            )

    # --- the training thread's side ---------------------------------------------------------
    def log_metrics(
        self,
        step: int | None,
        metrics: Mapping[str, Any],
        *,
        phase: TrainingPhase | str = TrainingPhase.METRICS,
        split: str = "train",
    ) -> None:
        """Log scalars for ``step`` (keys kept as given: the analyzer maps TRL/verl names)."""
        self._put_event(time.time(), step, phase, split, metrics, None, "log_metrics")

    def log_event(
        self,
        phase: TrainingPhase | str,
        step: int | None,
        *,
        metrics: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
        split: str = "train",
    ) -> None:
        """Log a lifecycle event (``TrainingPhase``) with optional metrics and free-form meta."""
        self._put_event(time.time(), step, phase, split, metrics, meta, "log_event")

    def emit(self, event: TrainingEvent) -> None:
        """Log a prepared :class:`TrainingEvent` (its ``rank`` is replaced by this logger's)."""
        try:
            fields = (event.time, event.step, event.phase, event.split, event.metrics, event.meta)
        except Exception as exc:
            self._reject("emit", exc)
            return
        self._put_event(*fields, "emit")

    def _put_event(
        self,
        ts: float,
        step: int | None,
        phase: TrainingPhase | str,
        split: str,
        metrics: Mapping[str, Any] | None,
        meta: Mapping[str, Any] | None,
        method: str,
    ) -> None:
        # copied now: the caller may mutate its dicts before the writer thread encodes them.
        # A plain tuple in EventRecord's field order (see _records: the writer names it).
        try:
            item = (
                ts,
                step,
                phase,
                split,
                dict(metrics) if metrics else None,
                dict(meta) if meta else None,
            )
        except Exception as exc:  # not a mapping: count it, never raise into training
            self._reject(method, exc)
            return
        self._put(item)

    def log_generation(
        self,
        *,
        step: int,
        question: Any,
        model_output: Any,
        rewards: Mapping[str, Any],
        ground_truth_answer: str | None = None,
        question_id: str | None = None,
        split: str = "train",
        group_id: str | None = None,
        **extra: Any,
    ) -> None:
        """Log one completion with each reward function's value.

        ``reasoning``, ``model_answer`` and ``total_reward`` may be passed in ``extra`` (``None``
        included: it is kept); when they are not, the writer extracts the tags from
        ``model_output`` and sums the rewards (NaN ignored, as TRL's ``nansum``). Anything else in
        ``extra`` is kept under ``extra``.
        """
        try:
            rewards = dict(rewards) if rewards else {}
        except Exception as exc:  # not a mapping: count it, never raise into training
            self._reject("log_generation", exc)
            return
        self._put(  # a plain tuple in GenRecord's field order (see _records: the writer names it)
            (
                time.time(),
                step,
                question,
                model_output,
                rewards,
                ground_truth_answer,
                question_id,
                split,
                group_id,
                extra,
            )
        )

    def log_generations(self, records: Iterable[Mapping[str, Any]]) -> None:
        """``log_generation(**r)`` for each record ``r`` (one that is not a valid set of
        ``log_generation`` keywords is counted in ``records_failed``, not raised)."""
        try:
            for r in records:
                try:
                    self.log_generation(**r)
                except Exception as exc:
                    self._reject("log_generations", exc)
        except Exception as exc:  # not iterable, or the caller's iterator failed
            self._reject("log_generations", exc)

    def _reject(self, method: str, exc: BaseException) -> None:
        """A call whose arguments cannot be logged: one lost record, one warning per method."""
        self._fail(1, count_error=False)
        self._warn_once(
            f"args:{method}",
            f"logscan: {method}() cannot log these arguments ({exc!r}); the record is counted "
            "in records_failed",
        )

    def _put(self, item: tuple[Any, ...]) -> None:
        if self._closed:
            self._count_dropped(1)
            if not self._forked:
                self._warn_once(
                    "closed",
                    "logscan: RunLogger is closed; records logged after close() are dropped",
                )
            return
        q = self._q
        if len(q) >= self._max:
            if self._drop_when_full:
                self._count_dropped(1)
                return
            if not self._closing:  # close() (its hooks) must not wait for space behind a hung disk
                self._wait_for_space()
            if self._closed:
                self._count_dropped(1)
                return
        q.append(item)
        if self._final is not None:  # close() finished between the check above and the append
            self._reclaim(item)
        elif len(q) >= self._wake_at and not self._wake.is_set():
            self._wake.set()

    def _reclaim(self, item: Any) -> None:
        """Count a record that entered the queue after close()'s last sweep (or leave it to the
        sweep that got it): whoever removes it from the queue counts it, exactly once."""
        try:
            self._q.remove(item)
        except ValueError:
            return
        self._count_dropped(1)

    def _wait_for_space(self) -> None:
        with self._counter_lock:
            self.blocked_waits += 1
        self._wake.set()
        with self._space:
            while len(self._q) >= self._max and not self._closing:
                # the writer notifies after every batch; the timeout only guards a dead writer
                self._space.wait(self._flush_interval)

    def _count_dropped(self, n: int) -> None:
        with self._counter_lock:
            self.records_dropped += n

    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything logged before this call is written and fsynced.

        Returns False when ``timeout`` seconds pass first, or when some of those records could not
        be written (see the counters); True otherwise. After ``close()``: close's result.
        """
        if self._forked:
            return False  # this process has no writer thread
        timeout = _as_timeout(timeout, None)
        marker = FlushMarker()
        # under the lock close() takes for its last sweep: a marker is either answered by the writer
        # or by that sweep, never left in a queue nobody reads
        with self._marker_lock:
            if self._final is not None:
                return self._final
            self._q.append(marker)
        self._wake.set()
        if not marker.done.wait(timeout):
            return False
        return marker.ok

    def stop_requested(self) -> str | None:
        """The reason in ``run_dir/STOP`` when another process asked this run to stop, else None.

        Only a regular file is read (without blocking, at most ``schema.STOP_MAX_BYTES``); anything
        else named STOP is reported once and ignored.
        """
        reason, problem = _read_stop_file(self.run_dir / schema.STOP_FILE)
        if problem is not None:
            self._warn_once("stop", problem)
        return reason

    @property
    def counters(self) -> dict[str, int]:
        """This session's counters plus the previous sessions' (as run.json will hold them)."""
        mine = {
            schema.C_RECORDS_WRITTEN: self.records_written,
            schema.C_RECORDS_DROPPED: self.records_dropped,
            schema.C_RECORDS_FAILED: self.records_failed,
            schema.C_BLOCKED_WAITS: self.blocked_waits,
            schema.C_WRITE_ERRORS: self.write_errors,
        }
        return {k: self._base_counters.get(k, 0) + v for k, v in mine.items()}

    @property
    def reward_names(self) -> list[str]:
        return list(self._reward_names)

    @property
    def closed(self) -> bool:
        return self._closed

    def update_manifest(
        self,
        *,
        algorithm: str | None = None,
        model: str | None = None,
        config: Any | None = None,
        only_missing: bool = False,
    ) -> None:
        """Set manifest fields learnt after construction (the TRL callback fills them in)."""
        try:
            self._update_manifest(algorithm, model, config, only_missing)
        except Exception as exc:  # never raise into training
            self._warn_once("update_manifest", f"logscan: update_manifest() failed: {exc!r}")

    def _update_manifest(
        self, algorithm: str | None, model: str | None, config: Any, only_missing: bool
    ) -> None:
        changed = False
        for key, value in (
            (schema.M_ALGORITHM, algorithm),
            (schema.M_MODEL, model),
            (schema.M_CONFIG, config),
        ):
            if value is None or (only_missing and self._manifest.get(key) is not None):
                continue
            self._manifest[key] = sanitize(value)
            changed = True
        if changed:  # the writer thread rewrites run.json: the training thread never waits for it
            self._manifest_dirty = True
            self._wake.set()

    def _write_manifest_if_dirty(self) -> None:
        if self._manifest_dirty:
            self._manifest_dirty = False
            self._write_manifest()

    def add_close_hook(self, hook: Callable[[], None]) -> None:
        """Call ``hook()`` at the start of ``close()`` (the reward wrapper emits pending batches).

        A hook should finish within ``_close_time_left()`` seconds; what it logs then never waits
        for queue space."""
        self._close_hooks.append(hook)

    def _close_time_left(self) -> float:
        """Seconds left of the running close()'s timeout (-1: no limit), for close hooks."""
        return float(_time_left(self._close_deadline, forever=-1.0))

    # --- closing --------------------------------------------------------------------------------
    def close(self, timeout: float | None = 10.0, *, status: str | None = None) -> bool:
        """Drain the queue, fsync, and rewrite the manifest with ``status`` and the counters.

        Returns within about ``timeout`` seconds even if the disk hangs (plus at most one second
        for the final ``run.json``); records still unwritten then are counted as dropped. Returns
        True only when every record of this session reached the disk, every fsync succeeded and
        the final ``run.json`` was written; False on any loss. Idempotent: a second call returns
        the first one's result (waiting for it at most ``timeout``).
        """
        timeout = _as_timeout(timeout, 10.0)
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._close_lock.acquire(timeout=_time_left(deadline, forever=-1)):
            return False  # another close() is still running its hooks
        try:
            first = not self._closed
            if first:
                self._begin_close(deadline, status)
        finally:
            self._close_lock.release()
        if not first:
            if self._forked:
                return True
            if not self._closed_event.wait(_time_left(deadline, forever=None)):
                return False
            return bool(self._final)
        try:
            return self._finish_close(deadline, timeout, status)
        except Exception as exc:  # a bug here must not reach training, nor leave flush() waiting
            self._warn_once("close", f"logscan: close() failed: {exc!r}")
            with self._marker_lock:
                self._final = False
                _, markers = self._sweep_queue()
            for marker in markers:
                marker.done.set()
            self._closed_event.set()
            with contextlib.suppress(Exception):
                self._release_after_close()
            return False

    def _begin_close(self, deadline: float | None, status: str | None) -> None:
        self._close_deadline = deadline
        self._closing = True
        with self._space:  # producers waiting for space stop waiting
            self._space.notify_all()
        for hook in self._close_hooks:
            try:
                hook()
            except Exception as exc:  # never raise into training
                self._warn_once("hook", f"logscan: a close hook failed: {exc!r}")
        final = status or schema.RunStatus.FINISHED.value
        # appended directly: close() must not wait for queue space behind a stalled disk
        self._q.append(
            (time.time(), None, TrainingPhase.RUN_END, "train", None, {"status": final})
        )
        self._closed = True

    def _finish_close(self, deadline: float | None, timeout: float | None, status: str | None) -> bool:
        final = status or schema.RunStatus.FINISHED.value
        self._stopping = True
        self._wake.set()
        with self._space:
            self._space.notify_all()
        self._thread.join(_time_left(deadline, forever=None))
        done = not self._thread.is_alive()
        # left in the queue: when the writer finished, a log_* call that raced close() appended
        # after its last drain; when it timed out, everything it did not get to (+ its batch).
        # Taken out of the queue, so a writer that wakes up later cannot write them too.
        lost, markers = self._sweep_queue()
        if not done:
            lost += self._inflight
        if lost:
            self._count_dropped(lost)
        if not done:
            self._warn_once(
                "timeout",
                f"logscan: close() timed out after {timeout}s; {lost} records not written to {self.run_dir}",
            )
        self._manifest[schema.M_STATUS] = final
        self._manifest[schema.M_ENDED] = utc_now_iso()
        self._manifest[schema.M_COUNTERS] = self.counters
        add_reward_names(self._manifest, self._reward_names)
        manifest_ok = self._write_final_manifest(deadline)
        self._release_after_close()
        with contextlib.suppress(Exception):
            atexit.unregister(self._atexit_close)
        ok = (
            done
            and manifest_ok
            and self._sync_ok
            and self.records_failed == 0
            and self.records_dropped == 0
        )
        with self._marker_lock:
            self._final = ok  # first: a log_* call appending after this reclaims its own record
            lost, more = self._sweep_queue()
            for marker in (*markers, *more):  # appended after the writer's last drain: close answers
                marker.ok = ok
                marker.done.set()
        if lost:
            self._count_dropped(lost)
        self._closed_event.set()
        return ok

    def _sweep_queue(self) -> tuple[int, list[FlushMarker]]:
        """Empty the queue: (the number of records taken, the flush markers taken)."""
        lost = 0
        markers: list[FlushMarker] = []
        q = self._q
        while True:
            try:
                item = q.popleft()
            except IndexError:
                return lost, markers
            if isinstance(item, FlushMarker):
                markers.append(item)
            else:
                lost += 1

    def _write_final_manifest(self, deadline: float | None) -> bool:
        """The last run.json, on a helper thread: a hung disk must not hold close() past its
        bound (one extra second at most)."""
        result: list[bool] = []
        writer = threading.Thread(
            target=lambda: result.append(self._write_manifest()),
            name="logscan-manifest",
            daemon=True,
        )
        writer.start()
        left = _time_left(deadline, forever=None)
        writer.join(None if left is None else max(left, 1.0))
        if not result:
            self._warn_once("manifest-timeout", f"logscan: writing {self._manifest_path} timed out")
        return bool(result and result[0])

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        crashed = exc_type is not None and not issubclass(exc_type, GeneratorExit)
        self.close(status=schema.RunStatus.CRASHED.value if crashed else None)

    def _atexit_close(self) -> None:
        if self._forked:
            return
        # An uncaught exception has been printed (and stored in sys.last_value) before atexit runs.
        crashed = getattr(sys, "last_value", None) is not None
        self.close(status=schema.RunStatus.CRASHED.value if crashed else None)

    # --- one live writer per folder and rank ------------------------------------------------------
    def _acquire_writer_lock(self, events_path: Path) -> None:
        """Hold the folder and rank for as long as this logger may write (``_writer.acquire_folder``)."""
        self._lock_key, self._lock_fd = acquire_folder(
            self.run_dir, self.rank, events_path, self._busy
        )

    def _busy(self) -> RunFolderBusyError:
        # who: as its run.json says (it may not have written one yet)
        writer = (read_manifest(self._manifest_path) or {}).get(schema.M_WRITER)
        who = "another live RunLogger"
        if isinstance(writer, dict):
            who = f"pid {writer.get('pid')} on {writer.get('host')} (since {writer.get('since')})"
        return RunFolderBusyError(
            f"logscan: {self.run_dir} rank {self.rank} is being written by {who}; two writers "
            "on one folder and rank would mix their records in the same files. Close that "
            "logger (or end that process) first, or use another run_dir or rank="
        )

    def _release_writer_lock(self) -> None:
        # callers hold _lock_guard: the writer's end and close() release at most once between them
        key, self._lock_key = self._lock_key, None
        if key is not None:
            fd, self._lock_fd = self._lock_fd, None
            release_folder(key, fd)

    def _release_after_close(self) -> None:
        with self._lock_guard:
            if self._writer_done:
                self._release_writer_lock()
            else:  # the writer is stuck in the disk: it may still write, so it releases at its end
                self._abandoned = True

    # --- run.json and warnings -----------------------------------------------------------------
    def _write_manifest(self) -> bool:
        path = self._manifest_path
        tmp = temp_path(path)
        with self._manifest_lock:
            try:
                _write_atomic(path, tmp, _manifest_bytes(self._manifest))
            except Exception as exc:
                with self._counter_lock:
                    self.write_errors += 1
                self._warn_once("manifest", f"logscan: cannot write {path}: {exc}")
                with contextlib.suppress(OSError):
                    tmp.unlink()
                return False
        return True

    def _warn_once(self, key: str, message: str) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        _log.warning(message)
        # warnings configured as errors (-W error) must not reach training
        with contextlib.suppress(Exception):
            warnings.warn(message, RuntimeWarning, stacklevel=2)


def _as_timeout(value: Any, default: float | None) -> float | None:
    """A timeout argument as seconds ≥ 0 (None: no limit); a value of the wrong type is the default."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return default


def _time_left(deadline: float | None, *, forever: Any) -> Any:
    """Seconds until ``deadline`` (≥ 0), or ``forever`` when there is none."""
    return forever if deadline is None else max(0.0, deadline - time.monotonic())


# --- stop requests ---------------------------------------------------------------------------------
def read_stop_request(run_dir: str | os.PathLike[str]) -> str | None:
    """The reason held by ``run_dir/STOP`` ("stop requested" if empty), or None if there is none.

    Only a regular file counts, read without blocking and up to ``schema.STOP_MAX_BYTES``: a FIFO,
    a device or a folder named STOP is reported once (a warning) and ignored. Never raises.
    """
    reason, problem = _read_stop_file(Path(run_dir) / schema.STOP_FILE)
    if problem is not None:
        _warn_stop_once(problem)
    return reason


_stop_warned: set[str] = set()


def _warn_stop_once(problem: str) -> None:
    if problem in _stop_warned:
        return
    _stop_warned.add(problem)
    _log.warning(problem)
    with contextlib.suppress(Exception):
        warnings.warn(problem, RuntimeWarning, stacklevel=3)


def _read_stop_file(path: Path) -> tuple[str | None, str | None]:
    """(the stop reason or None, a problem to report or None). The training loop calls this after
    every step, so it must neither block nor read without limit nor raise."""
    try:
        try:
            st = os.stat(path)
        except OSError:  # no STOP file: the common case
            return None, None
        if not _stat.S_ISREG(st.st_mode):
            return None, f"logscan: {path} is not a regular file; it is ignored as a stop request"
        # O_NONBLOCK: the file may have been swapped for a FIFO since the stat
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            return None, f"logscan: cannot read the stop request {path}: {exc}"
        try:
            if not _stat.S_ISREG(os.fstat(fd).st_mode):
                return None, f"logscan: {path} is not a regular file; it is ignored as a stop request"
            data = os.read(fd, schema.STOP_MAX_BYTES)
        finally:
            os.close(fd)
        return data.decode("utf-8", "replace").strip() or "stop requested", None
    except Exception as exc:  # never into the training loop
        return None, f"logscan: cannot read the stop request {path}: {exc!r}"


def request_stop(run_dir: str | os.PathLike[str], reason: str = "stop requested") -> Path:
    """Ask the run logging into ``run_dir`` to stop early: writes ``run_dir/STOP`` atomically.

    The training process sees it through ``RunLogger.stop_requested()`` (the TRL callback checks it
    after every step). Returns the path written.
    """
    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / schema.STOP_FILE
    tmp = folder / f".{schema.STOP_FILE}.{os.getpid()}.tmp"
    # a lone surrogate (undecodable bytes in the reason's source) is kept as its escape text
    _write_atomic(path, tmp, (str(reason).strip() + "\n").encode("utf-8", "backslashreplace"))
    return path
