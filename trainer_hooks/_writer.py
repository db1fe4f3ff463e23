"""The writer thread's half of RunLogger, and the sinks its bytes go to.

One daemon thread per logger takes batches from the queue, encodes them (:mod:`._encode`) and
appends each batch to its file with a single ``write`` (the ``logging.handlers.QueueListener``
pattern); it answers ``flush()`` markers after an fsync and counts every record that does not
reach the disk (written, failed, write errors). :class:`WriterThread` is a mixin of
:class:`~trainer_hooks.logger.RunLogger`: the queue, the counters and the manifest are the
logger's, shared with the training thread; this module holds what only the writer thread does
with them. Also here: the lock that keeps a second live writer off a folder and rank.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from . import schema
from ._encode import GenerationEncoder, csv_payload, event_line, jsonl_payload
from ._manifest import add_reward_names
from ._records import GEN_RECORD_LEN, EventRecord, FlushMarker, GenFields, GenRecord

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the in-process check only
    fcntl = None  # type: ignore[assignment]


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


def next_csv_part(run_dir: Path, rank: int) -> int:
    """The first CSV part number of this rank with no file yet (a resumed run starts a new one)."""
    part = 1
    while (run_dir / schema.generations_part_file(rank, part, "csv")).exists():
        part += 1
    return part


class CsvStream:
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


# --- one live writer per folder and rank -----------------------------------------------------------
# (real path of the run folder, rank) of every live logger of this process
_writers: set[tuple[str, int]] = set()
_writers_lock = threading.Lock()


def acquire_folder(
    run_dir: Path, rank: int, events_path: Path, busy: Callable[[], Exception]
) -> tuple[tuple[str, int], int | None]:
    """Hold an exclusive ``flock`` on this rank's events file (and a per-process registry, for
    file systems without flock) for as long as a logger may write. A second live writer would
    interleave its session with the first one's in the same files and overwrite run.json.
    Returns what :func:`release_folder` takes; raises ``busy()`` when the folder is taken."""
    key = (os.path.realpath(run_dir), rank)
    with _writers_lock:
        if key in _writers:
            raise busy()
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
                raise busy() from None
            except OSError:  # no locks on this file system: the registry check only
                pass
        _writers.add(key)
        return key, fd


def release_folder(key: tuple[str, int], fd: int | None) -> None:
    with _writers_lock:
        _writers.discard(key)
        if fd is not None:
            if fcntl is not None:  # explicitly: a forked child may still hold a copy of fd
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_UN)
            with contextlib.suppress(OSError):
                os.close(fd)


# --- the writer thread ---------------------------------------------------------------------------
class WriterThread:
    """What RunLogger's daemon writer thread runs (``_run``), and the accounting it shares with the
    training thread (``_fail``). The attributes below are set by ``RunLogger.__init__``."""

    run_dir: Path
    rank: int
    _q: collections.deque[Any]
    _wake: threading.Event
    _space: threading.Condition
    _flush_interval: float
    _stopping: bool
    _inflight: int
    _counter_lock: threading.Lock
    records_written: int
    records_failed: int
    write_errors: int
    _lost_since_marker: int
    _sync_ok: bool
    _unsynced: dict[int, int]  # id(sink) → records written since its last fsync
    _sink_factory: SinkFactory
    _events_sink: Sink | None
    _gens_sink: Sink | None
    _csv: CsvStream | None
    _gen_encoder: GenerationEncoder
    _reward_names: list[str]
    _names_in_manifest: int  # how many of _reward_names run.json lists
    _manifest: dict[str, Any]
    _lock_guard: threading.Lock
    _writer_done: bool
    _abandoned: bool

    if TYPE_CHECKING:  # RunLogger's

        def _warn_once(self, key: str, message: str) -> None: ...

        def _write_manifest(self) -> bool: ...

        def _write_manifest_if_dirty(self) -> None: ...

        def _release_writer_lock(self) -> None: ...

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

    def _open_sinks(self) -> list[Sink]:
        sinks = (self._events_sink, self._gens_sink, self._csv.sink if self._csv else None)
        return [s for s in sinks if s is not None]

    def _drain(self) -> None:
        q = self._q
        popleft = q.popleft
        as_gen, as_event = GenRecord._make, EventRecord._make  # queued as plain tuples
        while q:
            batch: list[Any] = []
            try:
                for _ in range(4096):
                    batch.append(popleft())
            except IndexError:
                pass
            self._inflight = sum(1 for x in batch if not isinstance(x, FlushMarker))
            events: list[EventRecord] = []
            gens: list[GenRecord] = []
            i = 0
            try:
                for i, item in enumerate(batch):  # noqa: B007 - i is read by the except clause
                    if isinstance(item, FlushMarker):
                        self._write_lines(events, gens)
                        events, gens = [], []
                        self._write_manifest_if_dirty()
                        synced = self._sync_all()
                        with self._counter_lock:
                            item.ok = synced and self._lost_since_marker == 0
                            self._lost_since_marker = 0
                        item.done.set()
                    elif len(item) == GEN_RECORD_LEN:
                        gens.append(as_gen(item))
                    else:
                        events.append(as_event(item))
                self._write_lines(events, gens)
            except Exception as exc:
                # a bug (in a sink, or here) must not leave a flush() waiting forever: what this
                # batch had not written yet is counted as failed and its markers are answered
                self._warn_once("writer", f"logscan: writer thread error: {exc!r}")
                rest = batch[i:]
                pending = len(events) + len(gens)
                pending += sum(1 for x in rest[1:] if not isinstance(x, FlushMarker))
                self._fail(pending, count_error=False)
                for x in rest:
                    if isinstance(x, FlushMarker) and not x.done.is_set():
                        x.ok = False
                        x.done.set()
            self._inflight = 0
            with self._space:
                self._space.notify_all()

    def _write_lines(self, events: list[EventRecord], gens: list[GenRecord]) -> None:
        if events:
            rank = self.rank
            self._encode_and_write("events", events, lambda rec: event_line(rec, rank))
        if gens:
            if self._csv is not None:
                self._write_csv(gens)
            else:
                rank, encoder = self.rank, self._gen_encoder
                self._encode_and_write("gens", gens, lambda rec: encoder.jsonl_line(rec, rank))

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
        add_reward_names(self._manifest, names)
        self._write_manifest()
        self._names_in_manifest = len(names)

    def _write_csv(self, gens: list[GenRecord]) -> None:
        st = self._csv
        assert st is not None
        rows: list[GenFields] = []
        fields = self._gen_encoder.fields
        for item in gens:
            try:
                rows.append(fields(item))
            except Exception as exc:
                self._fail(1, count_error=False)
                self._warn_once("encode", f"logscan: cannot encode a record: {exc!r}")
        if len(self._reward_names) != self._names_in_manifest:
            self._publish_reward_names()
        start = 0
        while start < len(rows):
            # rows up to the first one carrying a reward the current header lacks go to this part
            if st.reward_names is None:
                st.reward_names = list(dict.fromkeys(n for r in rows for n in r.rewards))
            known = set(st.reward_names)
            end = start
            while end < len(rows) and all(n in known for n in rows[end].rewards):
                end += 1
            if end > start:
                self._write_csv_rows(st, rows[start:end])
            if end < len(rows):
                # a reward function appeared mid-run: a new part with the widened header
                new = [n for r in rows[end:] for n in r.rewards if n not in known]
                st.reward_names = [*st.reward_names, *dict.fromkeys(new)]
                self._end_csv_part(st)
            start = end

    def _end_csv_part(self, st: CsvStream) -> None:
        """Close the current CSV part (its rows fsynced): the next rows start a new part file with
        its own header."""
        if st.sink is not None:
            self._sync_one(st.sink)
            with contextlib.suppress(OSError):
                st.sink.close()
            st.sink = None
        if st.header_written or st.path.exists():
            st.part += 1
        st.header_written = False

    def _write_csv_rows(self, st: CsvStream, rows: list[GenFields]) -> None:
        names, in_extra = st.columns()
        header = None if st.header_written else st.header()
        payload, whole_rows = csv_payload(rows, header, names, in_extra)
        n = len(rows)
        if self._write_bytes("csv", payload, n, whole_rows):
            st.header_written = True
        elif st.sink is not None:
            # Part of the batch may be on disk, cut anywhere — inside a quoted field, or inside the
            # header. A newline cannot repair CSV the way it repairs JSONL (the cut can leave a
            # quote open), so this part ends here with its torn last row, and the next batch
            # starts a new part with its own header (the rows before the cut fsynced).
            self._end_csv_part(st)

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
        self._write_bytes(stream, jsonl_payload(lines), len(lines))

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
