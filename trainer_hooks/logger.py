"""RunLogger: crash-safe, append-only run logs written from inside the training process.

The training thread only builds a small tuple and appends it to a bounded in-memory queue; one
daemon writer thread turns batches of them into lines and appends each batch to its file with a
single ``write`` (the ``logging.handlers.QueueListener`` pattern). Nothing here ever raises into the
training loop after construction: an I/O failure becomes one warning and a counter in ``run.json``.

Files (format ``logscan-run/1``, names from :mod:`trainer_hooks.schema`)::

    run.json / run.rank{N}.json     manifest, rewritten atomically (temp file + os.replace)
    events.jsonl                    lifecycle events and logged metrics, one JSON object per line
    generations.jsonl               one completion per line (or generations*.csv, see below)
    STOP                            a stop request left by another process (see request_stop)

Non-finite floats (NaN, ±inf) have no JSON literal; they are written as the strings
``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (``schema.NONFINITE_STRINGS``) everywhere, in CSV
cells too. ``schema.decode_float`` maps them back.

Standard library only: this module is imported by training scripts on GPU machines.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import csv
import dataclasses
import datetime as _dt
import enum
import errno
import hashlib
import io
import json
import logging
import math
import os
import socket
import stat as _stat
import sys
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

from . import schema

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the in-process check only
    fcntl = None  # type: ignore[assignment]
from .schema import TrainingPhase

__all__ = [
    "FileSink",
    "RunFolderBusyError",
    "RunLogger",
    "Sink",
    "TrainingEvent",
    "question_id_for",
    "request_stop",
]

_log = logging.getLogger("trainer_hooks")

QUESTION_ID_HEX_CHARS = 16


def question_id_for(question: str, answer: str | None = None) -> str:
    """A stable id for a prompt: the first 16 hex digits of sha256(question + "\\x1f" + answer).

    Same input, same id, in any process and any Python version (no ``hash()`` randomisation).
    ``answer=None`` hashes as the empty string.
    """
    data = f"{question}\x1f{'' if answer is None else answer}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:QUESTION_ID_HEX_CHARS]


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
        return _event_dict(
            self.time, self.step, self.phase, self.split, self.metrics, self.meta, self.rank
        )


def _event_dict(
    ts: float,
    step: int | None,
    phase: TrainingPhase | str,
    split: str,
    metrics: Mapping[str, Any] | None,
    meta: Mapping[str, Any] | None,
    rank: int,
) -> dict[str, Any]:
    """The ``events.jsonl`` record (``TrainingEvent.to_dict`` and the writer thread both use it)."""
    return {
        schema.E_TIME: ts,
        schema.E_STEP: step,
        schema.E_PHASE: phase.value if isinstance(phase, enum.Enum) else str(phase),
        schema.E_SPLIT: split,
        schema.E_METRICS: dict(metrics) if metrics else {},
        schema.E_META: dict(meta) if meta else {},
        schema.E_RANK: rank,
    }


# --- sinks: where the writer thread's bytes go (the seam tests use to inject a slow disk) -------
class Sink(Protocol):
    """An append-only byte stream. ``write`` writes everything or raises ``OSError``; when part of
    ``data`` did reach the file first, it raises :class:`PartialWrite` saying how much, so the
    whole records before the cut are counted as written."""

    def write(self, data: bytes) -> None: ...

    def sync(self) -> None: ...

    def close(self) -> None: ...


class PartialWrite(OSError):
    """A write that failed after ``written`` bytes of its data had reached the file."""

    def __init__(self, errno: int | None, strerror: str | None, written: int) -> None:
        super().__init__(errno, strerror)
        self.written = written


class FileSink:
    """Appends to a file with ``O_APPEND`` and unbuffered ``os.write`` calls.

    If the file already ends in a torn line (a killed process, or a failed partial write), the next
    write starts with a newline so the torn fragment cannot swallow the next record. A file deleted
    while open (``rm -rf`` of the run folder) still accepts writes that reach no folder: after each
    write its link count is checked, and from then on every write fails.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._needs_newline = False
        self._deleted = False
        size = os.fstat(self._fd).st_size
        if size:
            with open(self.path, "rb") as f:
                f.seek(size - 1)
                self._needs_newline = f.read(1) != b"\n"

    def write(self, data: bytes) -> None:
        if self._deleted:
            raise OSError(errno.ENOENT, f"{self.path} was deleted while logscan was writing it")
        prefix = 0
        if self._needs_newline:
            data = b"\n" + data
            prefix = 1
        view = memoryview(data)
        done = 0
        try:
            while done < len(data):
                done += os.write(self._fd, view[done:])
        except OSError as exc:
            if done:  # a fragment without its newline is on disk now
                self._needs_newline = True
                if done > prefix:
                    raise PartialWrite(exc.errno, exc.strerror, done - prefix) from exc
            raise
        self._needs_newline = False
        try:
            deleted = os.fstat(self._fd).st_nlink == 0
        except OSError:  # the write went through; the check is best effort
            deleted = False
        if deleted:
            self._deleted = True
            raise OSError(errno.ENOENT, f"{self.path} was deleted while logscan was writing it")

    def sync(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


SinkFactory = Callable[[Path], Sink]


# --- JSON encoding -------------------------------------------------------------------------------
def _json_default(obj: Any) -> Any:
    """Turn what training code typically logs (tensors, numpy scalars, enums, paths) into JSON."""
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        try:
            return to_dict()
        except Exception:  # fall through to the generic forms
            pass
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    tolist = getattr(obj, "tolist", None)  # numpy arrays/scalars, torch tensors
    if callable(tolist):
        try:
            return tolist()
        except Exception:
            pass
    if hasattr(obj, "__float__"):
        try:
            return float(obj)
        except Exception:
            pass
    return str(obj)


def _nonfinite(f: float) -> str:
    """The NONFINITE string of a NaN/±inf float."""
    return schema.NAN if math.isnan(f) else (schema.POS_INF if f > 0 else schema.NEG_INF)


_MAX_DEPTH = 100
TOO_DEEP = "<nested too deep>"


def _only_str_keys(d: dict[Any, Any]) -> bool:
    """Whether every key of ``d`` is a str (else JSON would turn 1 and "1" into one key twice)."""
    try:
        "".join(d)  # C speed: a TypeError at the first key that is not a str
    except TypeError:
        return False
    return True


def _only_str_keys_deep(obj: Any, depth: int = 0) -> bool:
    """``_only_str_keys`` for every dict inside ``obj``; False (take the slow path) when too deep."""
    if depth > _MAX_DEPTH:
        return False
    if isinstance(obj, dict):
        if not _only_str_keys(obj):
            return False
        values: Iterable[Any] = obj.values()
    elif isinstance(obj, list | tuple):
        values = obj
    else:
        return True
    return all(
        _only_str_keys_deep(v, depth + 1) for v in values if isinstance(v, dict | list | tuple)
    )


def _str_keyed(d: dict[Any, Any]) -> dict[Any, Any]:
    """``d`` with every key a str, in order. A key that is not a str takes its text, and when that
    text is already a key, its type too (``{1: a, "1": b}`` → ``{"1 (int)": a, "1": b}``): a JSON
    object must not repeat a key, and neither value may be lost."""
    if _only_str_keys(d):
        return d
    taken = {k for k in d if isinstance(k, str)}
    out: dict[Any, Any] = {}
    for k, v in d.items():
        if not isinstance(k, str):
            try:
                base = str(k.value if isinstance(k, enum.Enum) else k)
            except Exception:
                base = f"<{type(k).__name__} key>"
            name, n = base, 1
            while name in taken:
                name = f"{base} ({type(k).__name__}{'' if n == 1 else f' {n}'})"
                n += 1
            taken.add(name)
            k = name
        out[k] = v
    return out


def _sanitize(obj: Any, depth: int = 0) -> Any:
    """The slow path: non-finite floats → NONFINITE strings, odd keys → str, unknown objects → JSON.

    Nesting deeper than ``_MAX_DEPTH`` is cut: a container there becomes ``TOO_DEEP`` (JSON encoders
    and readers have recursion limits, and ``str()`` of a 5,000-deep list raises).
    """
    if depth > _MAX_DEPTH:
        if isinstance(obj, str | int | float) or obj is None:
            return _sanitize(obj, 0)
        return TOO_DEEP
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else _nonfinite(obj)
    if obj is None or isinstance(obj, str | int):
        return obj.value if isinstance(obj, enum.Enum) else obj
    if isinstance(obj, dict):
        return {k: _sanitize(v, depth + 1) for k, v in _str_keyed(obj).items()}
    if isinstance(obj, list | tuple):
        return [_sanitize(v, depth + 1) for v in obj]
    return _sanitize(_json_default(obj), depth + 1)


_dumps = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_json_default
).encode
try:  # the C encoder built once: JSONEncoder.encode rebuilds it on every call
    from json.encoder import c_encode_basestring, c_make_encoder  # type: ignore[attr-defined]

    if c_make_encoder is None or c_encode_basestring is None:
        raise ImportError
    _c_iterencode = c_make_encoder(
        None, _json_default, c_encode_basestring, None, ":", ",", False, False, False
    )

    def _fast_dumps(obj: Any) -> str:
        return "".join(_c_iterencode(obj, 0))

except ImportError:  # pragma: no cover - CPython always has the C accelerator
    _fast_dumps = _dumps  # type: ignore[assignment]
_dumps_ascii = json.JSONEncoder(
    ensure_ascii=True, allow_nan=False, separators=(",", ":"), default=_json_default
).encode


def encode_json(obj: Any) -> str:
    """One record as compact JSON, with logscan's NaN encoding. Never contains a raw newline."""
    try:
        return _fast_dumps(obj)
    except (ValueError, TypeError, RecursionError):
        # NaN/inf, odd keys, cycles: rare, so pay for a full walk only then
        return _dumps(_sanitize(obj))


def _num_cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else _nonfinite(v)
    if isinstance(v, int):
        return str(v)
    try:
        return _num_cell(float(v))
    except (TypeError, ValueError):
        return str(v)


def _text(v: Any) -> str:
    if v is None:
        return ""
    return v if isinstance(v, str) else encode_json(v)


def _utc_now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat()


def _nan_sum(values: Iterable[Any]) -> float | None:
    """Sum like TRL's ``nansum``: NaN/None ignored; all of them missing → NaN; no rewards → None."""
    total = 0.0
    counted = False
    missing = False
    for v in values:
        if v is None:
            missing = True
            continue
        f = float(v)
        if math.isnan(f):
            missing = True
            continue
        total += f
        counted = True
    if counted:
        return total
    return math.nan if missing else None


# --- queue items -----------------------------------------------------------------------------------
_GEN = 0
_EVENT = 1


_UNSET: Any = object()  # "not passed" (None passed means "none")


class _FlushMarker:
    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False


_live_loggers: weakref.WeakSet[RunLogger] = weakref.WeakSet()
# (real path of the run folder, rank) of every live logger of this process
_writers: set[tuple[str, int]] = set()
_writers_lock = threading.Lock()


class RunFolderBusyError(RuntimeError):
    """Raised by ``RunLogger(...)`` when a live logger (in this or another process) is already
    writing the same folder and rank."""


def _hostname() -> str:
    try:
        return socket.gethostname()
    except OSError:
        return "unknown host"


def _after_fork_in_child() -> None:
    # A forked child (e.g. a DataLoader worker) inherits the queue but not the writer thread, and
    # two processes must never append to one file: the child's copy goes quiet.
    for lg in list(_live_loggers):
        lg._forked = True
        lg._closed = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _CsvStream:
    """The writer thread's state for CSV generations: the current part file and its header."""

    def __init__(self, run_dir: Path, rank: int, first_part: int, reward_names: list[str]) -> None:
        self.run_dir = run_dir
        self.rank = rank
        self.part = first_part
        self.reward_names: list[str] | None = list(reward_names) if reward_names else None
        self.header_written = False
        self.sink: Sink | None = None

    @property
    def path(self) -> Path:
        return self.run_dir / schema.generations_part_file(self.rank, self.part, "csv")

    def columns(self) -> tuple[list[str], list[str]]:
        """(reward names with a column of their own, names that go into the extra cell)."""
        names = self.reward_names or []
        return (
            [n for n in names if schema.csv_reward_column(n)],
            [n for n in names if not schema.csv_reward_column(n)],
        )

    def header(self) -> list[str]:
        return [
            *schema.CSV_BASE_COLUMNS,
            *(f"{n}{schema.CSV_REWARD_SUFFIX}" for n in self.columns()[0]),
            *schema.CSV_TAIL_COLUMNS,
            schema.CSV_EXTRA_COLUMN,
        ]


class RunLogger:
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
        self._reasoning_tag, self._answer_tag = (TagExtractor(t) for t in self._tags)

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
        self._qid_cache: dict[tuple[Any, Any], str] = {}
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
        previous = self._read_previous_manifest()
        self.resumed = previous is not None or events_existed
        self._csv: _CsvStream | None = None
        if generations_format == "csv":
            self._csv = _CsvStream(
                self.run_dir, self.rank, self._next_csv_part(), self._reward_names
            )

        now = _utc_now_iso()
        prev = previous or {}
        self._base_counters = _previous_counters(prev.get(schema.M_COUNTERS))
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
        self._manifest: dict[str, Any] = {
            schema.M_FORMAT: schema.FORMAT,
            schema.M_RUN_ID: self.run_id,
            schema.M_CREATED: prev.get(schema.M_CREATED, now),
            schema.M_ENDED: None,
            schema.M_STATUS: schema.RunStatus.RUNNING.value,
            schema.M_ALGORITHM: algorithm
            if algorithm is not None
            else prev.get(schema.M_ALGORITHM),
            schema.M_MODEL: model if model is not None else prev.get(schema.M_MODEL),
            schema.M_CONFIG: _sanitize(config) if config is not None else prev.get(schema.M_CONFIG),
            schema.M_REWARD_NAMES: list(dict.fromkeys([*previous_names, *self._reward_names])),
            schema.M_WORLD_SIZE: self.world_size,
            schema.M_RANK: self.rank,
            schema.M_GENERATIONS_FORMAT: generations_format,
            schema.M_COUNTERS: dict(self._base_counters),
            schema.M_RESUMES: resumes,
            schema.M_WRITER: {"pid": os.getpid(), "host": _hostname(), "since": now},
        }
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
        # copied now: the caller may mutate its dicts before the writer thread encodes them
        try:
            item = (
                _EVENT,
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
        self._put(
            (
                _GEN,
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
        marker = _FlushMarker()
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
            self._manifest[key] = _sanitize(value)
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
            (_EVENT, time.time(), None, TrainingPhase.RUN_END, "train", None, {"status": final})
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
        self._manifest[schema.M_ENDED] = _utc_now_iso()
        self._manifest[schema.M_COUNTERS] = self.counters
        self._manifest[schema.M_REWARD_NAMES] = list(
            dict.fromkeys([*self._manifest[schema.M_REWARD_NAMES], *self._reward_names])
        )
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

    def _sweep_queue(self) -> tuple[int, list[_FlushMarker]]:
        """Empty the queue: (the number of records taken, the flush markers taken)."""
        lost = 0
        markers: list[_FlushMarker] = []
        q = self._q
        while True:
            try:
                item = q.popleft()
            except IndexError:
                return lost, markers
            if isinstance(item, _FlushMarker):
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

    # --- the writer thread --------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            stopping = self._stopping
            try:
                self._drain()
                self._write_manifest_if_dirty()
            except Exception as exc:  # the writer must outlive any bug
                self._warn_once("writer", f"logscan: writer thread error: {exc!r}")
            if stopping and not self._q:
                break
        self._sync_all()
        for sink in self._open_sinks():
            with contextlib.suppress(OSError):
                sink.close()
        with self._lock_guard:
            self._writer_done = True
            if self._abandoned:  # close() gave up on this thread: the folder is free only now
                self._release_writer_lock()

    # --- one live writer per folder and rank ------------------------------------------------------
    def _acquire_writer_lock(self, events_path: Path) -> None:
        """Hold an exclusive ``flock`` on this rank's events file (and a per-process registry, for
        file systems without flock) for as long as this logger may write. A second live writer
        would interleave its session with this one's in the same files and overwrite run.json."""
        key = (os.path.realpath(self.run_dir), self.rank)
        with _writers_lock:
            if key in _writers:
                raise self._busy()
            fd: int | None
            try:
                fd = os.open(events_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError:  # an unwritable folder: every write will fail and be counted
                fd = None
            if fd is not None and fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    raise self._busy() from None
                except OSError:  # no locks on this file system: the registry check only
                    pass
            _writers.add(key)
            self._lock_key, self._lock_fd = key, fd

    def _busy(self) -> RunFolderBusyError:
        # who: as its run.json says (it may not have written one yet)
        writer = (self._read_previous_manifest() or {}).get(schema.M_WRITER)
        who = "another live RunLogger"
        if isinstance(writer, dict):
            who = f"pid {writer.get('pid')} on {writer.get('host')} (since {writer.get('since')})"
        return RunFolderBusyError(
            f"logscan: {self.run_dir} rank {self.rank} is being written by {who}; two writers "
            "on one folder and rank would mix their records in the same files. Close that "
            "logger (or end that process) first, or use another run_dir or rank="
        )

    def _release_writer_lock(self) -> None:
        with _writers_lock:
            if self._lock_key is None:
                return
            _writers.discard(self._lock_key)
            self._lock_key = None
            fd, self._lock_fd = self._lock_fd, None
            if fd is not None:
                if fcntl is not None:  # explicitly: a forked child may still hold a copy of fd
                    with contextlib.suppress(OSError):
                        fcntl.flock(fd, fcntl.LOCK_UN)
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _release_after_close(self) -> None:
        with self._lock_guard:
            if self._writer_done:
                self._release_writer_lock()
            else:  # the writer is stuck in the disk: it may still write, so it releases at its end
                self._abandoned = True

    def _open_sinks(self) -> list[Sink]:
        sinks = (self._events_sink, self._gens_sink, self._csv.sink if self._csv else None)
        return [s for s in sinks if s is not None]

    def _drain(self) -> None:
        q = self._q
        popleft = q.popleft
        while q:
            batch: list[Any] = []
            try:
                for _ in range(4096):
                    batch.append(popleft())
            except IndexError:
                pass
            self._inflight = sum(1 for x in batch if not isinstance(x, _FlushMarker))
            events: list[str] = []
            gens: list[Any] = []
            i = 0
            try:
                for i, item in enumerate(batch):  # noqa: B007 - i is read by the except clause
                    if isinstance(item, _FlushMarker):
                        self._write_lines(events, gens)
                        events, gens = [], []
                        self._write_manifest_if_dirty()
                        synced = self._sync_all()
                        with self._counter_lock:
                            item.ok = synced and self._lost_since_marker == 0
                            self._lost_since_marker = 0
                        item.done.set()
                    elif item[0] == _GEN:
                        gens.append(item)
                    else:
                        events.append(item)
                self._write_lines(events, gens)
            except Exception as exc:
                # a bug (in a sink, or here) must not leave a flush() waiting forever: what this
                # batch had not written yet is counted as failed and its markers are answered
                self._warn_once("writer", f"logscan: writer thread error: {exc!r}")
                rest = batch[i:]
                pending = len(events) + len(gens)
                pending += sum(1 for x in rest[1:] if not isinstance(x, _FlushMarker))
                self._fail(pending, count_error=False)
                for x in rest:
                    if isinstance(x, _FlushMarker) and not x.done.is_set():
                        x.ok = False
                        x.done.set()
            self._inflight = 0
            with self._space:
                self._space.notify_all()

    def _write_lines(self, events: list[Any], gens: list[Any]) -> None:
        if events:
            self._encode_and_write("events", events, self._event_line)
        if gens:
            if self._csv is not None:
                self._write_csv(gens)
            else:
                self._encode_and_write(
                    "gens", gens, lambda item: encode_json(self._gen_record(item)) + "\n"
                )

    def _encode_and_write(
        self, stream: str, items: list[Any], encode: Callable[[Any], str]
    ) -> None:
        """Append the encoded ``items`` to ``stream``; a record that cannot be encoded is counted
        as lost (and warned about once), never raised into the training loop."""
        lines = []
        bad = 0
        for item in items:
            try:
                lines.append(encode(item))
            except Exception as exc:
                bad += 1
                self._warn_once("encode", f"logscan: cannot encode a record: {exc!r}")
        if bad:
            self._fail(bad, count_error=False)
        if stream == "gens" and len(self._reward_names) != self._names_in_manifest:
            self._publish_reward_names()
        if lines:
            self._write_stream(stream, lines)

    def _publish_reward_names(self) -> None:
        """A reward function first met in this batch goes into run.json *before* the batch reaches
        the file: a reader learns every reward name from the manifest, even after a crash, instead
        of scanning a gigabyte of records for them. Once per new name, on the writer thread."""
        names = list(self._reward_names)
        self._manifest[schema.M_REWARD_NAMES] = list(
            dict.fromkeys([*self._manifest[schema.M_REWARD_NAMES], *names])
        )
        self._write_manifest()
        self._names_in_manifest = len(names)

    def _event_line(self, item: tuple[Any, ...]) -> str:
        _, ts, step, phase, split, metrics, meta = item
        record = _event_dict(ts, step, phase, split, metrics, meta, self.rank)
        if (metrics and not _only_str_keys(metrics)) or (meta and not _only_str_keys_deep(meta)):
            return _dumps(_sanitize(record)) + "\n"  # keys JSON would repeat: renamed
        return encode_json(record) + "\n"

    def _gen_fields(self, item: tuple[Any, ...]) -> tuple[Any, ...]:
        # The writer's hot loop (one call per completion): str.find instead of regexes, a cached
        # question id per prompt (a GRPO group repeats it), a C-level sum in the common case.
        _, ts, step, question, output, rewards, truth, qid, split, group_id, extra = item
        # passed explicitly (None included: "there is none") wins over deriving
        if extra:
            reasoning = extra.pop(schema.G_REASONING, _UNSET)
            answer = extra.pop(schema.G_ANSWER, _UNSET)
            total = extra.pop(schema.G_TOTAL_REWARD, _UNSET)
            if not _only_str_keys_deep(extra):
                extra = _sanitize(extra)
        else:
            reasoning = answer = total = _UNSET
        if rewards and not _only_str_keys(rewards):
            rewards = _str_keyed(rewards)
        text = _text(output)
        if reasoning is _UNSET:
            reasoning = self._reasoning_tag(text)
        if answer is _UNSET:
            answer = self._answer_tag(text)
        if total is _UNSET:
            total = None
            if rewards:
                try:
                    total = sum(rewards.values())
                    if total != total:  # NaN somewhere: skip NaNs as TRL's nansum does
                        total = _nan_sum(rewards.values())
                except TypeError:  # None values
                    total = _nan_sum(rewards.values())
        if qid is None:
            key = (question, truth)
            cacheable = True
            try:
                qid = self._qid_cache.get(key)
            except TypeError:  # an unhashable (chat) question
                cacheable = False
            if qid is None:
                qid = question_id_for(_text(question), None if truth is None else _text(truth))
                if cacheable:
                    if len(self._qid_cache) > 4096:
                        self._qid_cache.clear()
                    self._qid_cache[key] = qid
        if not self._reward_name_set.issuperset(rewards):
            for name in rewards:
                if name not in self._reward_name_set:
                    self._reward_name_set.add(name)
                    self._reward_names.append(name)
        return (
            ts,
            step,
            qid,
            question,
            truth,
            output,
            reasoning,
            answer,
            total,
            rewards,
            split,
            group_id,
            extra,
        )

    def _gen_record(self, item: tuple[Any, ...]) -> dict[str, Any]:
        ts, step, qid, q, truth, out, reasoning, answer, total, rewards, split, gid, extra = (
            self._gen_fields(item)
        )
        return {
            schema.G_TIMESTAMP: ts,
            schema.G_STEP: step,
            schema.G_QUESTION_ID: qid,
            schema.G_QUESTION: q,
            schema.G_GROUND_TRUTH: truth,
            schema.G_OUTPUT: out,
            schema.G_REASONING: reasoning,
            schema.G_ANSWER: answer,
            schema.G_TOTAL_REWARD: total,
            schema.G_REWARDS: rewards,
            schema.G_SPLIT: split,
            schema.G_GROUP_ID: gid,
            schema.G_RANK: self.rank,
            schema.G_EXTRA: extra or {},
        }

    def _write_csv(self, gens: list[Any]) -> None:
        st = self._csv
        assert st is not None
        rows: list[tuple[Any, ...]] = []
        for item in gens:
            try:
                rows.append(self._gen_fields(item))
            except Exception as exc:
                self._fail(1, count_error=False)
                self._warn_once("encode", f"logscan: cannot encode a record: {exc!r}")
        if len(self._reward_names) != self._names_in_manifest:
            self._publish_reward_names()
        start = 0
        while start < len(rows):
            # rows up to the first one carrying a reward the current header lacks go to this part
            if st.reward_names is None:
                st.reward_names = list(dict.fromkeys(n for r in rows for n in r[9]))
            known = set(st.reward_names)
            end = start
            while end < len(rows) and all(n in known for n in rows[end][9]):
                end += 1
            if end > start:
                self._write_csv_rows(st, rows[start:end])
            if end < len(rows):
                # a reward function appeared mid-run: a new part with the widened header
                new = [n for r in rows[end:] for n in r[9] if n not in known]
                st.reward_names = [*st.reward_names, *dict.fromkeys(new)]
                if st.sink is not None:
                    self._sync_one(st.sink)
                    with contextlib.suppress(OSError):
                        st.sink.close()
                    st.sink = None
                if st.header_written or st.path.exists():
                    st.part += 1
                st.header_written = False
            start = end

    def _write_csv_rows(self, st: _CsvStream, rows: list[tuple[Any, ...]]) -> None:
        buf = io.StringIO()
        w = csv.writer(buf)
        if not st.header_written:
            w.writerow(st.header())
        ends: list[int] = []  # where each row ends in the text, to count a cut batch's whole rows
        names, in_extra = st.columns()
        for (
            ts,
            step,
            qid,
            q,
            truth,
            out,
            reasoning,
            answer,
            total,
            rewards,
            split,
            gid,
            extra,
        ) in rows:
            if in_extra and any(n in rewards for n in in_extra):
                extra = {
                    **(extra or {}),
                    **{schema.CSV_EXTRA_REWARD_PREFIX + n: rewards[n] for n in in_extra if n in rewards},
                }
            w.writerow(
                (
                    _num_cell(ts),
                    "" if step is None else str(step),
                    _text(qid),
                    _text(q),
                    _text(truth),
                    _text(out),
                    _text(reasoning),
                    _text(answer),
                    _num_cell(total),
                    *(_num_cell(rewards.get(n)) for n in names),
                    _text(split),
                    _text(gid),
                    encode_json(extra) if extra else "",
                )
            )
            ends.append(buf.tell())
        data = buf.getvalue()
        errors = "strict"
        try:
            payload = data.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates cannot be UTF-8: keep them visible, escaped
            errors = "backslashreplace"
            payload = data.encode("utf-8", errors)

        def whole_rows(written: int) -> int:
            size, start, whole = 0, 0, 0
            for end in ends:
                size += len(data[start:end].encode("utf-8", errors))
                start = end
                if size > written:
                    break
                whole += 1
            return whole

        n = len(rows)
        if self._write_bytes("csv", payload, n, whole_rows):
            st.header_written = True
        elif st.sink is not None:
            # Part of the batch may be on disk, cut anywhere — inside a quoted field, or inside the
            # header. A newline cannot repair CSV the way it repairs JSONL (the cut can leave a
            # quote open), so this part ends here with its torn last row, and the next batch
            # starts a new part with its own header.
            self._sync_one(st.sink)  # the rows before the cut
            with contextlib.suppress(OSError):
                st.sink.close()
            st.sink = None
            if st.header_written or st.path.exists():
                st.part += 1
            st.header_written = False

    def _sink_for(self, stream: str) -> Sink | None:
        if stream == "events":
            if self._events_sink is None:
                self._events_sink = self._open(self.run_dir / schema.events_file(self.rank))
            return self._events_sink
        if stream == "gens":
            if self._gens_sink is None:
                self._gens_sink = self._open(
                    self.run_dir / schema.generations_file(self.rank, "jsonl")
                )
            return self._gens_sink
        st = self._csv
        assert st is not None
        if st.sink is None:
            st.sink = self._open(st.path)
        return st.sink

    def _open(self, path: Path) -> Sink | None:
        try:
            return self._sink_factory(path)
        except OSError as exc:
            self._warn_once(
                f"open:{path}",
                f"logscan: cannot open {path}: {exc}; its records are lost (see run.json counters)",
            )
            with self._counter_lock:
                self.write_errors += 1
            return None

    def _write_stream(self, stream: str, lines: list[str]) -> None:
        data = "".join(lines)
        try:
            payload = _escape_breaks(data).encode("utf-8")
        except UnicodeEncodeError:
            # lone surrogates: re-encode just those lines with \u escapes (still exact JSON)
            data = "".join(ln if _is_utf8_safe(ln) else _reencode_ascii(ln) for ln in lines)
            payload = _escape_breaks(data).encode("utf-8")
        self._write_bytes(stream, payload, len(lines))

    def _write_bytes(
        self,
        stream: str,
        payload: bytes,
        n: int,
        whole_records: Callable[[int], int] | None = None,
    ) -> bool:
        """Append ``payload`` (``n`` records) to ``stream``. When the sink takes only part of it,
        ``whole_records(bytes_written)`` says how many records are complete on disk (by default
        the lines: a JSONL record never holds a raw newline)."""
        sink = self._sink_for(stream)
        if sink is None:
            self._fail(n, count_error=False)
            return False
        try:
            sink.write(payload)
        except OSError as exc:
            self._warn_once(
                f"write:{stream}",
                f"logscan: cannot write to {self.run_dir} ({exc}); records are being lost, see run.json counters",
            )
            kept = 0
            written = getattr(exc, "written", 0)
            if isinstance(written, int) and written > 0:
                count = whole_records or (lambda w: payload.count(b"\n", 0, w))
                kept = min(n, max(0, count(written)))
            with self._counter_lock:
                self.records_written += kept
            self._unsynced[id(sink)] = self._unsynced.get(id(sink), 0) + kept
            self._fail(n - kept, count_error=True)
            return False
        with self._counter_lock:
            self.records_written += n
        self._unsynced[id(sink)] = self._unsynced.get(id(sink), 0) + n
        return True

    def _fail(self, n: int, *, count_error: bool) -> None:
        # also called on the training thread (_reject), hence the lock around every counter
        with self._counter_lock:
            self.records_failed += n
            if count_error:
                self.write_errors += 1
            self._lost_since_marker += n

    def _sync_all(self) -> bool:
        ok = True
        for sink in self._open_sinks():
            ok = self._sync_one(sink) and ok
        return ok

    def _sync_one(self, sink: Sink) -> bool:
        """fsync ``sink``. When that fails, the records written to it since its last good fsync are
        not known to be on disk (Linux drops the pages it could not write back): they move from
        records_written to records_failed."""
        try:
            sink.sync()
        except OSError as exc:
            self._sync_ok = False
            n = self._unsynced.pop(id(sink), 0)
            with self._counter_lock:
                self.write_errors += 1
                self.records_written -= n
            self._fail(n, count_error=False)
            self._warn_once(
                "sync",
                f"logscan: fsync failed in {self.run_dir} ({exc}); {n} records written since the "
                "last good fsync are counted as failed",
            )
            return False
        self._unsynced.pop(id(sink), None)
        return True

    # --- manifest and helpers -----------------------------------------------------------------
    def _read_previous_manifest(self) -> dict[str, Any] | None:
        try:
            text = self._manifest_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError:
            return {}
        try:
            data = json.loads(text)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def _next_csv_part(self) -> int:
        part = 1
        while (self.run_dir / schema.generations_part_file(self.rank, part, "csv")).exists():
            part += 1
        return part

    def _write_manifest(self) -> bool:
        path = self._manifest_path
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with self._manifest_lock:
            try:
                data = json.dumps(_sanitize(self._manifest), ensure_ascii=False, indent=2) + "\n"
                _write_atomic(path, tmp, data.encode("utf-8", "backslashreplace"))
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


def _write_atomic(path: Path, tmp: Path, data: bytes) -> None:
    """Write ``data`` to ``tmp``, fsync, and rename it over ``path`` (readers never see half)."""
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _escape_breaks(data: str) -> str:
    """Escape U+2028/U+2029/U+0085 (JSON text, so only inside strings: the value is unchanged).

    ``str.splitlines()`` and some JSON-lines readers treat them as line ends; escaped, each record
    is one physical line for every reader.
    """
    # three substring tests are much faster than one regex character-class scan of a large batch
    if "\u2028" not in data and "\u2029" not in data and "\x85" not in data:
        return data
    return data.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").replace("\x85", "\\u0085")


def _previous_counters(value: Any) -> dict[str, int]:
    """The counters of earlier sessions from a manifest (tolerating a damaged one)."""
    out = dict.fromkeys(schema.COUNTER_KEYS, 0)
    if isinstance(value, dict):
        for k in schema.COUNTER_KEYS:
            with contextlib.suppress(TypeError, ValueError):
                out[k] = int(value.get(k) or 0)
    return out


def _is_utf8_safe(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _reencode_ascii(line: str) -> str:
    return _dumps_ascii(json.loads(line)) + "\n"


class TagExtractor:
    """Finds the content of the first ``<tag>…</tag>``, stripped, with ``str.find``.

    Same result as the regex ``<tag>(.*?)</tag>`` (DOTALL) but several times faster on long
    completions, which matters on the writer thread.
    """

    __slots__ = ("close", "open")

    def __init__(self, tag: str) -> None:
        self.open = f"<{tag}>"
        self.close = f"</{tag}>"

    def __call__(self, text: str) -> str | None:
        i = text.find(self.open)
        if i < 0:
            return None
        i += len(self.open)
        j = text.find(self.close, i)
        return None if j < 0 else text[i:j].strip()


def extract_tag(text: str, tag: str) -> str | None:
    """The stripped content of the first ``<tag>…</tag>`` in ``text``, or None."""
    return TagExtractor(tag)(text)


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
