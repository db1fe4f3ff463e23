"""Reading a run's completion files from where the last read stopped.

A :class:`TailCache` remembers, per completion file (``generations*.jsonl`` / ``*.csv`` of a
logscan run, a seed-schema CSV), what an earlier read of it gave: the file's identity (device,
inode, size, a hash of its first bytes and of the bytes before the point read to), the byte offset
and line number read to (the end of its last complete line or CSV record), and the rows and the
located issues of everything before that point. While a cache is active (``active(cache)``), the
generations readers (``logscan_run.read_generation_files``) ask it for each file: a file that only
grew since is read from that offset only, and the rows before come from the cache. Everything after
the per-file read (ranks, resumes, finalising, merging with other sources) runs on the whole frame
as before, so an incremental read gives what a from-scratch read gives.

A file is read in full — and the reason is recorded in ``TailCache.events`` — when it is new to the
cache, shrank, was replaced (another inode: rotated, or rewritten by a rename), changed in the
bytes read before (rewritten in place), when the appended bytes add or retype a column, when the
JSONL reader would now read other top-level keys, or when the appended CSV rows are not clean (a
malformed row's effect on the rows around it is decided by the whole file). The bytes after the last
complete line (a torn record of a live run) are never cached: they are read again every time.

``TailCache.save(folder)`` / ``TailCache.load(folder)`` keep the cache on disk (the analysis state,
``OUTPUT/state/``: ``state.json`` plus one Parquet file of rows per completion file); a state that
is missing, unreadable or of another format or logscan version is ignored (a full read).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from analyzer.ingest._common import (
    LINE_COL,
    MAX_ISSUES_PER_FILE,
    ORDER_COL,
    RECORD_LINE_COL,
    SKIPPING_KINDS,
    TAIL_READER,
    Collector,
    Dirty,
)
from analyzer.model import IngestReport

if TYPE_CHECKING:
    import polars as pl

STATE_FORMAT: Final = "logscan-state/1"
STATE_FILE: Final = "state.json"
# The identity hashes cover this many bytes at the start of a file and before the offset read to.
HASH_BYTES: Final = 4096
# The appended bytes are parsed in pieces of about this size (cut at line ends), as a full read is.
PIECE: Final = 64 << 20
# A file's rows are saved as one Parquet part per analysis that added rows; from this many parts
# on, they are merged into one at the next save.
MAX_PARTS: Final = 16
MAX_CHUNKS: Final = 64


@dataclass(slots=True)
class _Issue:
    line: int | None
    reason: str
    kind: str
    skipped: bool


@dataclass(slots=True)
class _Entry:
    """What the cache knows of one file."""

    kind: str  # "jsonl" | "csv"
    dev: int
    ino: int
    offset: int  # bytes read and cached: the end of the last complete line / record
    lines: int  # physical lines in those bytes
    head: str  # hash of the first bytes (a CSV's whole header at least)
    tail: str  # hash of the HASH_BYTES before ``offset``
    head_len: int
    frame: pl.DataFrame | None  # the rows of those bytes (without ORDER_COL for JSONL)
    issues: list[_Issue] = field(default_factory=list)
    records: int = 0
    unknown: list[str] = field(default_factory=list)
    keys: list[str] | None = None  # JSONL: the top-level keys the reader read the rows with
    header_end: int = 0  # CSV: where the first record starts
    parts: list[str] = field(default_factory=list)  # the state's Parquet files of ``frame``, in order
    saved_rows: int = 0  # how many of ``frame``'s rows those files hold


def _hash(fh: Any, start: int, end: int) -> str:
    fh.seek(start)
    return hashlib.sha256(fh.read(max(0, end - start))).hexdigest()


class _Recorder(Collector):
    """A collector that records what one file's read reported (to cache and replay it), optionally
    naming a temporary copy ``alias`` as the real file ``real`` with its lines shifted."""

    def __init__(self, root: Path, *, alias: Path | None = None, real: Path | None = None, shift: int = 0) -> None:
        super().__init__(IngestReport(source_kind=""), root)
        self.alias, self.real, self.shift = alias, real, shift
        self.calls: list[_Issue] = []
        self.notes: list[str] = []
        self.unknown_seen: list[str] = []

    def rel(self, path: Path) -> str:
        return super().rel(self.real if self.alias is not None and path == self.alias and self.real else path)

    def issue(self, path: Path, line: int | None, reason: str, kind: str, *, skipped: bool | None = None) -> None:
        s = skipped if skipped is not None else kind in SKIPPING_KINDS
        if line is not None and self.alias is not None and path == self.alias:
            line += self.shift
        self.calls.append(_Issue(line, reason, kind, s))
        super().issue(path, line, reason, kind, skipped=s)

    def read(self, path: Path) -> None:
        if self.alias is None:  # a temporary copy is not a file read: the caller names the real one
            super().read(path)

    def note(self, text: str) -> None:
        self.notes.append(text)
        super().note(text)

    def unknown(self, keys: list[str] | set[str]) -> None:
        self.unknown_seen += [k for k in keys if k not in self.unknown_seen]
        super().unknown(keys)


def _replay(col: Collector, path: Path, issues: list[_Issue], records: int, notes: list[str], unknown: list[str]) -> None:
    for i in issues:
        col.issue(path, i.line, i.reason, i.kind, skipped=i.skipped)
    col.report.records_read += records
    for n in notes:
        col.note(n)
    if unknown:
        col.unknown(unknown)


class TailCache:
    """Per completion file, what was read of it (see the module docstring). ``events``: one line
    per file read this time, saying what was read and, for a full read of a known file, why."""

    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}
        self.events: list[str] = []
        self.new_bytes = 0
        self.full_files = 0
        self.tail_files = 0

    # --- the hook the readers call ------------------------------------------------------------
    def read(self, path: Path, col: Collector, kind: str, full_reader: Callable[[Path, Collector], pl.DataFrame | None]) -> pl.DataFrame | None:
        name = col.rel(path)
        entry = self.entries.get(name)
        why = self._changed(path, entry) if entry is not None else None
        if entry is not None and why is None:
            try:
                return self._read_appended(path, col, name, entry)
            except _Fallback as exc:
                why = str(exc)
        if entry is not None:
            self.events.append(f"{name}: read in full ({why})")
            # the rows cached of the file as it was are of no use now: freed before the full read,
            # not after it (+370 MB peak on a 0.9 GB CSV that shrank)
            del self.entries[name]
            entry = None
        return self._read_full(path, col, name, kind, full_reader)

    def _changed(self, path: Path, entry: _Entry) -> str | None:
        """Why ``path`` is not ``entry``'s file grown by appends, or None when it only grew."""
        try:
            st = path.stat()
        except OSError as exc:
            return f"cannot stat it ({exc.strerror})"
        if (st.st_dev, st.st_ino) != (entry.dev, entry.ino):
            return "replaced: another file under the same name (rotated or rewritten)"
        if st.st_size < entry.offset:
            return f"it shrank from at least {entry.offset:,} to {st.st_size:,} bytes"
        with path.open("rb") as fh:
            if _hash(fh, 0, entry.head_len) != entry.head or _hash(fh, max(0, entry.offset - HASH_BYTES), entry.offset) != entry.tail:
                return "rewritten: bytes read before have changed"
        return None

    # --- a full read --------------------------------------------------------------------------
    def _read_full(self, path: Path, col: Collector, name: str, kind: str, reader: Callable[[Path, Collector], pl.DataFrame | None]) -> pl.DataFrame | None:
        self.full_files += 1
        rec = _Recorder(col.root)
        rec._rel = col._rel  # the same names
        try:  # before the read: a live run's file may grow while it is read
            seen = path.stat()
        except OSError:
            seen = None
        # its line ends, counted before the frame exists: the count maps the file, and those
        # pages would add to the frame's peak memory (+190 MB on a 0.9 GB CSV)
        newlines = None if seen is None else _newlines(path, seen)
        df = reader(path, rec)
        _replay(col, path, rec.calls, rec.report.records_read, rec.notes, rec.unknown_seen)
        for f in rec.report.files_read:
            if f not in col.report.files_read:
                col.report.files_read.append(f)
        self.entries.pop(name, None)
        with contextlib.suppress(_Fallback, Dirty, OSError, ValueError):
            entry = None if seen is None else self._entry_after_full(path, col, kind, df, rec, seen, newlines)
            if entry is not None:
                self.entries[name] = entry
        return df

    def _entry_after_full(
        self, path: Path, col: Collector, kind: str, df: pl.DataFrame | None, rec: _Recorder, seen: os.stat_result,
        newlines: int | None,
    ) -> _Entry | None:
        """What to cache of a full read of ``path``, whose size was ``seen`` just before the read
        (and which had ``newlines`` line ends then, when counted): everything up to the last
        complete record within those bytes (the reader may have seen more of a growing file; a
        JSONL line after that point is read again next time, and a CSV that grew meanwhile is not
        cached: where its records end is not known without a scan)."""
        import polars as pl

        st = path.stat()
        if (st.st_dev, st.st_ino) != (seen.st_dev, seen.st_ino):
            return None  # replaced while it was read
        grew = st.st_size != seen.st_size
        size = seen.st_size
        if size == 0 or len(rec.calls) > MAX_ISSUES_PER_FILE:
            return None
        if kind == "csv" and (grew or any(i.line is None for i in rec.calls)):
            return None  # row-numbered cell issues ("row 12: …") are numbered within one read
        clean_csv = kind == "csv" and df is not None and RECORD_LINE_COL in df.columns and bool(df[RECORD_LINE_COL].all())
        with path.open("rb") as fh:
            if kind == "jsonl":
                end = _last_line_end(fh, size)
                header_end = 0
                # every line end of the file as it was seen is before ``end``
                lines = _count_lines(fh, end) if newlines is None else newlines
            else:
                header_end = _csv_header_end(fh)
                if clean_csv and newlines is not None and _ends_with_newline(fh, size):
                    # the reader parsed every record of the file: it ends at the end of the file
                    end, lines = size, newlines
                else:
                    end, body_lines = _csv_scan(path, header_end, size)
                    lines = _count_lines(fh, header_end) + body_lines
            head_len = min(end, max(HASH_BYTES, header_end))
            head = _hash(fh, 0, head_len)
            tail = _hash(fh, max(0, end - HASH_BYTES), end)
        if end <= header_end:
            return None
        if kind == "csv" and df is not None and (RECORD_LINE_COL not in df.columns or not bool(df[RECORD_LINE_COL].head(df.height - 1).all())):
            # read row by row (a bad row somewhere): how the rows after it are read is decided by
            # the whole file, and their lines are physical, not record numbers
            return None
        # what the bytes after ``end`` (a torn record) gave is not cached
        issues = [i for i in rec.calls if i.line is None or i.line <= lines]
        unc_records = 0
        frame = df
        if frame is not None and kind == "jsonl":
            frame = frame.filter(pl.col(LINE_COL) <= lines).drop(ORDER_COL)
            unc_records = df.height - frame.height if df is not None else 0
        elif end < size:
            return None  # a CSV's torn last record: see _csv_appended
        records = rec.report.records_read - unc_records
        if frame is not None and frame.height == 0:
            frame = None
        keys = None
        if kind == "jsonl":
            from analyzer.ingest.logscan_run import _discover

            keys = _discover(path)
        return _Entry(kind, seen.st_dev, seen.st_ino, end, lines, head, tail, head_len, frame, issues, records, list(rec.unknown_seen), keys, header_end)

    # --- reading what was appended --------------------------------------------------------------
    def _read_appended(self, path: Path, col: Collector, name: str, entry: _Entry) -> pl.DataFrame | None:
        size = path.stat().st_size
        if entry.kind == "jsonl":
            return self._jsonl_appended(path, col, name, entry, size)
        return self._csv_appended(path, col, name, entry, size)

    def _jsonl_appended(self, path: Path, col: Collector, name: str, entry: _Entry, size: int) -> pl.DataFrame | None:

        from analyzer.ingest.logscan_run import _discover, _read_chunk, _scan_schema

        keys = _discover(path)
        if keys != entry.keys:
            raise _Fallback("the reader would now read other top-level keys")
        schema = _scan_schema(keys)
        with path.open("rb") as fh:
            fh.seek(entry.offset)
            data = fh.read(size - entry.offset)
        cut = data.rfind(b"\n") + 1
        rec = _Recorder(col.root)
        rec._rel = col._rel
        new: list[pl.DataFrame] = []
        line = entry.lines + 1
        for piece in _line_pieces(data[:cut]):
            n = piece.count(b"\n")
            df = _read_chunk(path, rec, schema, line, n, piece)
            if df is not None and df.height:
                new.append(df)
            line += n
        committed_calls, committed_records, committed_unknown = list(rec.calls), rec.report.records_read, list(rec.unknown_seen)
        torn: pl.DataFrame | None = None
        if cut < len(data):
            piece = data[cut:]
            torn = _read_chunk(path, rec, schema, line, 1, piece)
        if any(i.line is None for i in rec.calls):
            raise _Fallback("an appended record's issue has no line")
        added = _concat(new)
        frame = _append(entry.frame, added)
        whole = _append(frame, torn, relaxed=True)
        col.read(path)
        _replay(col, path, entry.issues + rec.calls, entry.records + rec.report.records_read, [], entry.unknown + rec.unknown_seen)
        # the cache grows by the complete lines; the torn line is read again next time
        self._commit(name, entry, path, entry.offset + cut, entry.lines + data[:cut].count(b"\n"), frame,
                     committed_calls, committed_records, committed_unknown)
        self._appended(name, len(data), 0 if added is None else added.height)
        if whole is None or whole.height == 0:
            return None
        return whole.with_row_index(ORDER_COL)

    def _csv_appended(self, path: Path, col: Collector, name: str, entry: _Entry, size: int) -> pl.DataFrame | None:
        end, added_lines = _csv_scan(path, entry.offset, size)
        if end < size:
            # How the CSV reader reads a torn last record depends on the records before it (it
            # looks back for the record boundary; a field with a line break can send the whole
            # file down the row-by-row path): only a read of the whole file gives its result.
            raise _Fallback("its last CSV record is incomplete (being written), and a torn record is read with the whole file")
        first_order = 0 if entry.frame is None else entry.frame.height
        added, rec = (None, None)
        new_lines = entry.lines + added_lines
        if end > entry.offset:
            added, rec = self._csv_part(path, col, entry.header_end, entry.offset, end, entry.lines, first_order=first_order)
            if rec.calls:
                raise _Fallback("the appended rows have issues: " + rec.calls[0].reason)
        frame = _append(entry.frame, added)
        records = 0 if rec is None else rec.report.records_read
        unknown = [] if rec is None else rec.unknown_seen
        col.read(path)
        _replay(col, path, entry.issues, entry.records + records, [], entry.unknown + unknown)
        self._appended(name, size - entry.offset, 0 if added is None else added.height)
        self._commit(name, entry, path, end, new_lines, frame, [], records, unknown)
        return frame

    def _csv_part(self, path: Path, col: Collector, header_end: int, start: int, end: int, lines_before: int, *, first_order: int) -> tuple[pl.DataFrame | None, _Recorder]:
        """The CSV bytes ``[start, end)`` read with the file's header, as the reader reads a file:
        a temporary copy named as ``path`` in the issues, lines and row order continuing the file's."""
        import polars as pl

        from analyzer.ingest.seed_csv import read_generations_csv

        with path.open("rb") as fh:
            header = fh.read(header_end)
            fh.seek(start)
            body = fh.read(end - start)
        fd, tmp_name = tempfile.mkstemp(prefix="logscan-tail-", suffix=".csv")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(header)
                out.write(body)
            rec = _Recorder(col.root, alias=tmp, real=path, shift=lines_before - 1)
            rec._rel = dict(col._rel)
            try:
                df = read_generations_csv(tmp, rec)
            except Dirty as exc:
                raise _Fallback("its appended bytes cannot be read alone") from exc
        finally:
            tmp.unlink(missing_ok=True)
        if df is None:
            return None, rec
        order = pl.col(ORDER_COL).cast(pl.Int64) + first_order
        exprs = [order.cast(df.schema[ORDER_COL]).alias(ORDER_COL)]
        if LINE_COL in df.columns:
            by_record = pl.col(RECORD_LINE_COL).fill_null(False) if RECORD_LINE_COL in df.columns else pl.lit(False)
            exprs.append(pl.when(by_record).then(order + 2).otherwise(pl.col(LINE_COL) + (lines_before - 1)).cast(df.schema[LINE_COL]).alias(LINE_COL))
        return df.with_columns(exprs), rec

    def _commit(self, name: str, entry: _Entry, path: Path, end: int, lines: int, frame: pl.DataFrame | None,
                calls: list[_Issue], records: int, unknown: list[str]) -> None:
        if len(entry.issues) + len(calls) > MAX_ISSUES_PER_FILE:
            self.entries.pop(name, None)
            return
        with path.open("rb") as fh:
            tail = _hash(fh, max(0, end - HASH_BYTES), end)
        if frame is not None and frame.n_chunks() > MAX_CHUNKS:  # one chunk per append adds up in a long watch
            frame = frame.rechunk()
        entry.offset, entry.lines, entry.tail, entry.frame = end, lines, tail, frame
        entry.issues = entry.issues + calls
        entry.records += records
        entry.unknown = entry.unknown + [k for k in unknown if k not in entry.unknown]

    def _appended(self, name: str, n_bytes: int, rows: int) -> None:
        self.tail_files += 1
        self.new_bytes += n_bytes
        self.events.append(f"{name}: {n_bytes:,} new bytes read, {rows:,} new rows")

    # --- on disk ----------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write the cache into ``folder`` (created; files of an older state replaced)."""
        from analyzer import __version__

        folder.mkdir(parents=True, exist_ok=True)
        files: dict[str, Any] = {}
        keep: set[str] = {STATE_FILE}
        for name, e in sorted(self.entries.items()):
            # Only the rows added since the state was last saved are written, as one more part: a
            # re-run's state costs what was appended, not the run. Many parts are merged into one.
            height = 0 if e.frame is None else e.frame.height
            if e.frame is None or height < e.saved_rows or len(e.parts) >= MAX_PARTS:
                e.parts, e.saved_rows = [], 0
            if e.frame is not None and height > e.saved_rows:
                part = f"rows-{hashlib.sha256(name.encode()).hexdigest()[:12]}-{os.getpid()}-{time.time_ns()}.parquet"
                tmp = folder / (part + ".tmp")
                e.frame.slice(e.saved_rows).write_parquet(tmp, compression="lz4", statistics=False)
                tmp.replace(folder / part)
                e.parts, e.saved_rows = [*e.parts, part], height
            keep.update(e.parts)
            rows = list(e.parts)
            files[name] = {
                "kind": e.kind, "dev": e.dev, "ino": e.ino, "offset": e.offset, "lines": e.lines, "head": e.head,
                "head_len": e.head_len, "tail": e.tail, "rows": rows, "records": e.records, "unknown": e.unknown,
                "keys": e.keys, "header_end": e.header_end,
                "issues": [[x.line, x.reason, x.kind, x.skipped] for x in e.issues],
            }
        data = {"format": STATE_FORMAT, "logscan_version": __version__, "files": files}
        tmp = folder / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        tmp.replace(folder / STATE_FILE)
        for p in folder.iterdir():  # rows of files no longer cached
            if p.name not in keep and (p.name.startswith("rows-") or p.name.endswith(".tmp")):
                p.unlink(missing_ok=True)

    @classmethod
    def load(cls, folder: Path) -> tuple[TailCache, str | None]:
        """The cache saved in ``folder`` and None; or an empty cache and why the state was not used
        (None too when there is no state: a first analysis)."""
        import polars as pl

        from analyzer import __version__

        cache = cls()
        path = folder / STATE_FILE
        if not path.is_file():
            return cache, None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return cache, f"the analysis state is unreadable ({type(exc).__name__})"
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            return cache, f"the analysis state is not {STATE_FORMAT}"
        if data.get("logscan_version") != __version__:
            return cache, f"the analysis state was written by logscan {data.get('logscan_version')}, this is {__version__}"
        try:
            for name, f in data["files"].items():
                parts = [str(x) for x in f["rows"]]
                frames = [pl.read_parquet(folder / x) for x in parts]
                frame = (pl.concat(frames, how="vertical", rechunk=False) if len(frames) > 1 else frames[0]) if frames else None
                cache.entries[name] = _Entry(
                    f["kind"], f["dev"], f["ino"], f["offset"], f["lines"], f["head"], f["tail"], f["head_len"], frame,
                    [_Issue(*x) for x in f["issues"]], f["records"], list(f["unknown"]), f["keys"], f["header_end"],
                    parts, 0 if frame is None else frame.height,
                )
        except Exception as exc:  # any damage to the state: it is only a cache
            return cls(), f"the analysis state is damaged ({type(exc).__name__}: {exc})"
        return cache, None


class _Fallback(Exception):
    """The appended bytes cannot be read alone with certainty: read the whole file."""


# --- helpers ------------------------------------------------------------------------------------------
def _concat(frames: list[pl.DataFrame]) -> pl.DataFrame | None:
    import polars as pl

    if not frames:
        return None
    return pl.concat(frames, how="diagonal_relaxed", rechunk=False) if len(frames) > 1 else frames[0]


def _append(old: pl.DataFrame | None, new: pl.DataFrame | None, *, relaxed: bool = False) -> pl.DataFrame | None:
    """``old`` then ``new``. Unless ``relaxed``, ``new`` must have ``old``'s columns and types —
    a column that appears or changes type is decided by the whole file (``_Fallback``)."""
    import polars as pl

    if new is None or new.height == 0:
        return old
    if old is None:
        return new
    if relaxed:
        return pl.concat([old, new], how="diagonal_relaxed", rechunk=False)
    if dict(old.schema) != dict(new.schema):
        raise _Fallback("the appended rows add or retype a column")
    return pl.concat([old, new.select(old.columns)], how="vertical", rechunk=False)


def _line_pieces(data: bytes) -> Iterator[bytes]:
    start = 0
    while start < len(data):
        nl = data.find(b"\n", min(start + PIECE, len(data)) - 1)
        end = len(data) if nl < 0 else nl + 1
        yield data[start:end]
        start = end


def _last_line_end(fh: Any, size: int) -> int:
    """The offset after the last line end (0 when there is none)."""
    pos = size
    while pos > 0:
        start = max(0, pos - (1 << 20))
        fh.seek(start)
        buf = fh.read(pos - start)
        i = buf.rfind(b"\n")
        if i >= 0:
            return start + i + 1
        pos = start
    return 0


def _count_lines(fh: Any, end: int) -> int:
    fh.seek(0)
    n, left = 0, end
    while left > 0:
        buf = fh.read(min(left, 64 << 20))
        if not buf:
            break
        n += buf.count(b"\n")
        left -= len(buf)
    return n


def _ends_with_newline(fh: Any, size: int) -> bool:
    fh.seek(size - 1)
    return bool(fh.read(1) == b"\n")


def _newlines(path: Path, seen: os.stat_result) -> int | None:
    """The number of line ends in the file, as it is ``seen``: Polars counts its lines on every
    core (any bytes: no quoting, no field splitting, invalid UTF-8 replaced), about 10× faster
    than counting them here. None when that fails or the file changed meanwhile (a live run)."""
    import polars as pl

    if seen.st_size == 0:
        return 0
    try:
        rows = (
            pl.scan_csv(path, has_header=False, quote_char=None, separator="\x1f", infer_schema=False,
                        truncate_ragged_lines=True, encoding="utf8-lossy")
            .select(pl.len()).collect().item()
        )
        with path.open("rb") as fh:
            if os.fstat(fh.fileno()).st_size != seen.st_size:
                return None
            return int(rows) - (not _ends_with_newline(fh, seen.st_size))  # a torn last line is a row too
    except Exception:  # whatever Polars makes of the bytes, the caller counts them itself
        return None


def _csv_header_end(fh: Any) -> int:
    """Where the first record starts: after the first line end outside quotes."""
    fh.seek(0)
    quotes, pos = 0, 0
    for raw in iter(lambda: fh.readline(), b""):
        quotes += raw.count(b'"')
        pos += len(raw)
        if raw.endswith(b"\n") and quotes % 2 == 0:
            return pos
    raise _Fallback("no complete header")


def _csv_scan(path: Path, start: int, size: int) -> tuple[int, int]:
    """``(end, lines)``: the end of the last complete CSV record in ``[start, size)`` (``start``
    is a record start) — the last line end with an even number of quotes since ``start`` — and
    the number of line ends before it. One pass, a block at a time."""
    end, lines, quotes, nls = start, 0, 0, 0
    with path.open("rb") as fh:
        fh.seek(start)
        pos = start
        while pos < size:
            block = fh.read(min(64 << 20, size - pos))
            if not block:
                break
            q_end = quotes + block.count(b'"')
            cut, q = len(block), q_end
            while cut > 0:  # the last line end of the block outside quotes (usually the last one)
                nl = block.rfind(b"\n", 0, cut)
                if nl < 0:
                    break
                q -= block.count(b'"', nl + 1, cut)
                if q % 2 == 0:
                    end = pos + nl + 1
                    lines = nls + block.count(b"\n", 0, nl + 1)
                    break
                cut = nl
            nls += block.count(b"\n")
            quotes = q_end
            pos += len(block)
    return end, lines


# --- the hook ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def active(cache: TailCache | None) -> Iterator[TailCache | None]:
    """While in this block, the generations readers read through ``cache`` (None: as usual)."""
    if cache is None:
        yield None
        return
    token = TAIL_READER.set(cache.read)
    try:
        yield cache
    finally:
        TAIL_READER.reset(token)


__all__ = ["STATE_FORMAT", "TailCache", "active"]


# --- an analysis's state ------------------------------------------------------------------------------
STATE_DIR: Final = "state"


def load_with_state(path: str | Path, state_dir: Path, *, full: bool = False) -> tuple[Any, TailCache, list[str]]:
    """``load_run(path)`` through the analysis state kept in ``state_dir``: ``(RunData, the cache
    to save once the analysis is written, notes saying what was read and why)``. ``full``: ignore
    the state (``--full``); the state is rewritten afterwards either way."""
    from analyzer.ingest import load_run

    notes: list[str] = []
    if full:
        cache, why = TailCache(), None
        known = False
        notes.append("full read (--full): the analysis state was not used")
    else:
        cache, why = TailCache.load(state_dir)
        known = bool(cache.entries)
        if why is not None:
            notes.append(f"full read: {why}")
    with active(cache):
        run = load_run(path)
    if known:
        appended = [e for e in cache.events if "read in full" not in e]
        for e in cache.events:
            if "read in full" in e:
                notes.append(f"full read of {e}")
        if appended:
            notes.append(f"incremental read ({cache.new_bytes:,} new bytes): " + "; ".join(appended))
    return run, cache, notes


def save_state(cache: TailCache, state_dir: Path) -> str | None:
    """Save ``cache`` as the analysis state (the state file last, after removing the old one, so a
    state half written is never read); None, or why it could not be saved."""
    import polars as pl

    try:
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        cache.save(state_dir)
    except (OSError, pl.exceptions.PolarsError) as exc:  # Polars has its own error for a failed write
        return f"analysis state not saved ({write_failure(exc)}); the next analysis reads everything"
    return None


def write_failure(exc: BaseException) -> str:
    """Why a write failed, in a few words: an OSError's reason (``No space left on device``), else
    the first line of the error (Polars reports a failed Parquet write with its own type)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
