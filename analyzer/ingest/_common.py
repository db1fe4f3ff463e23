"""Helpers shared by the ingest readers: the issue collector, value coercion, line reading, and
the last normalisation step every generations frame goes through (canonical columns, ids, order).
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from analyzer import columns as C
from analyzer.ingest.keymap import map_record
from analyzer.model import IngestIssue, IngestReport
from trainer_hooks import schema as S

if TYPE_CHECKING:
    import polars as pl

_TextT = TypeVar("_TextT", "pl.Expr", "pl.Series")

# Per file, at most this many issues are listed one by one; the rest are counted in one summary
# line, so a 10-million-line file of garbage does not produce a 10-million-entry report.
MAX_ISSUES_PER_FILE: Final = 100

SKIPPING_KINDS: Final = frozenset({"torn_line", "malformed", "not_utf8", "no_step", "not_object"})


# Polars allocates with jemalloc and configures it to keep freed pages for 0.5 s, then to hold them
# as "muzzy" (still counted in RSS) for 1 s more. Ingest frees a parse buffer per chunk, so on a
# gigabyte run ~0.25 GB of freed pages counted in the peak RSS (benchmarks/RESULTS.md). Polars
# appends this variable to its own settings when it is first imported. 100 ms costs no measurable
# time; 0 ms would save ~0.2 GB more but re-faults every buffer (~12 % slower).
POLARS_ALLOCATOR_ENV: Final = ("_RJEM_MALLOC_CONF", "dirty_decay_ms:100,muzzy_decay_ms:0")


def return_freed_memory_promptly() -> bool:
    """For a process about to load a big run (the ``logscan`` command calls this first): make
    Polars' allocator give freed memory back within 100 ms. Returns False when Polars is already imported
    (too late) or the user set the variable; the process is otherwise unchanged."""
    name, value = POLARS_ALLOCATOR_ENV
    if "polars" in sys.modules or name in os.environ:
        return False
    os.environ[name] = value
    return True


class Dirty(Exception):
    """A fast path met something it cannot locate: the caller re-reads the file carefully."""


# While an incremental read is active (``analyzer.ingest.tail.active``), the generations readers
# read each completion file through this ``(path, collector, kind, full_reader) -> frame`` instead
# of reading it whole; None otherwise.
TAIL_READER: ContextVar[Callable[..., Any] | None] = ContextVar("logscan_tail_reader", default=None)


# Internal columns of a generations frame before finalize_generations: the input order, the
# source line (for located issues) and the index of the source file.
ORDER_COL: Final = "__order"
LINE_COL: Final = "__line"
FILE_COL: Final = "__file"
# Set (true) on the rows of a CSV read whole by Polars: their LINE_COL is "header + record number",
# which is the physical line only when no field spans lines; seed_csv.record_start_line() finds the
# real one for the few rows a report names (counting every row's line breaks up front costs ~5 % of a
# read, and the parsed cells no longer show which breaks were in the file: JSON cells hold "\n").
RECORD_LINE_COL: Final = "__line_is_record"

# Canonical names an extra key must not overwrite (it becomes ``extra/<key>`` instead).
RESERVED: Final = frozenset({
    C.STEP, C.SPLIT, C.SAMPLE_ID, C.QUESTION_ID, C.GROUP_ID, C.QUESTION, C.GROUND_TRUTH, C.OUTPUT,
    C.REASONING, C.ANSWER, C.TOTAL_REWARD, C.TIMESTAMP, C.RANK, ORDER_COL, LINE_COL, FILE_COL,
    RECORD_LINE_COL,
})



def extra_column(key: str) -> str:
    """The column an extra (or unknown top-level) key becomes: its own name, unless that is a
    canonical column (then ``extra/<key>``) or looks like a reward (``reward/<name>``) without being
    the CSV writer's escape for a reward named like a fixed column (``S.csv_reward_column``): a
    user's ``{"reward/model": "gpt-4"}`` is not a reward function."""
    if key in RESERVED:
        return f"extra/{key}"
    if key.startswith(C.REWARD_PREFIX) and S.csv_reward_column(key[len(C.REWARD_PREFIX) :]) is not None:
        return f"extra/{key}"
    return key


class Collector:
    """Wraps an :class:`IngestReport`: located issues (capped per file) and counters."""

    def __init__(self, report: IngestReport, root: Path) -> None:
        self.report = report
        self.root = root
        self._per_file: dict[str, int] = {}
        self._unknown: dict[str, None] = dict.fromkeys(report.unknown_keys)
        self._rel: dict[Path, str] = {}  # issues of a garbage file: one resolve() per file, not per line

    def rel(self, path: Path) -> str:
        """``path`` as the report names it: relative to the run's root, else its file name."""
        name = self._rel.get(path)
        if name is None:
            try:
                # the folder resolved, not the file: a symlink is named as itself (not its target,
                # and a symlink loop cannot be resolved at all)
                rel = str((path.parent.resolve() / path.name).relative_to(self.root.resolve()))
                name = rel if rel != "." else path.name
            except (ValueError, OSError, RuntimeError):
                name = path.name
            self._rel[path] = name
        return name

    def issue(self, path: Path, line: int | None, reason: str, kind: str, *, skipped: bool | None = None) -> None:
        name = self.rel(path)
        if skipped if skipped is not None else kind in SKIPPING_KINDS:
            self.report.records_skipped += 1
        n = self._per_file.get(name, 0) + 1
        self._per_file[name] = n
        if n <= MAX_ISSUES_PER_FILE:
            self.report.issues.append(IngestIssue(name, line, reason, kind))

    def read(self, path: Path) -> None:
        name = self.rel(path)
        if name not in self.report.files_read:
            self.report.files_read.append(name)

    def unknown(self, keys: list[str] | set[str]) -> None:
        new = [k for k in keys if k not in self._unknown]
        if new:
            self._unknown.update(dict.fromkeys(new))
            self.report.unknown_keys = list(self._unknown)

    def resume(self, path: Path, line: int | None, from_step: int | None, to_step: int) -> None:
        """The step went back (``from_step`` → ``to_step``) at ``path``:``line``."""
        self.report.resumes.append({"file": self.rel(path), "line": line, "from_step": from_step, "to_step": to_step})

    def note(self, text: str) -> None:
        if text not in self.report.notes:
            self.report.notes.append(text)

    def finish(self) -> None:
        for name, n in self._per_file.items():
            if n > MAX_ISSUES_PER_FILE:
                self.report.issues.append(
                    IngestIssue(name, None, f"{n - MAX_ISSUES_PER_FILE} more issues not listed", "truncated_report")
                )


_NUMERIC_STR: Final = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")
# A boolean is the number 1 or 0 (a pass/fail reward: ``rewards={"correct": True}``), as JSON
# ``true``/``false`` and as the text a CSV writer (Python's str, pandas) makes of it. The fast
# paths see JSON's ``true`` as this text too, so one table serves every reader.
BOOL_TEXT: Final = {"true": "1", "false": "0", "True": "1", "False": "0", "TRUE": "1", "FALSE": "0"}


def to_float(value: Any) -> tuple[float | None, bool]:
    """Coerce a logged value to float: ``(value, ok)``; ``None`` stays ``None`` (ok).

    Accepts numbers, booleans (1.0 / 0.0, also as the text ``true``/``True``/``TRUE`` and
    ``false``…), numeric strings (console logs print ``'0.25'``), and logscan's non-finite strings
    ``"NaN"``/``"Infinity"``/``"-Infinity"``. Lists, dicts and other text are wrong types.
    """
    if value is None:
        return None, True
    if isinstance(value, int | float):  # bool included: True is 1.0
        return float(value), True
    if isinstance(value, str):
        if value in S.NONFINITE_STRINGS:
            return S.NONFINITE_STRINGS[value], True
        if value.strip() in BOOL_TEXT:
            return float(BOOL_TEXT[value.strip()]), True
        low = value.strip().lower()
        if low in ("nan", "inf", "+inf", "-inf", "infinity", "-infinity"):
            return float(low.replace("infinity", "inf")), True
        if _NUMERIC_STR.fullmatch(value):
            return float(value), True
    return None, False


_INT64 = (-(2**63), 2**63 - 1)


def to_int(value: Any) -> int | None:
    """A step: ints, integral floats and integer strings within Int64; anything else is None."""
    if isinstance(value, bool):
        return None
    integral = (
        isinstance(value, int)
        or (isinstance(value, float) and math.isfinite(value) and value.is_integer())
        or (isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d{1,30}\s*", value) is not None)
    )
    out = int(value) if integral else None
    return out if out is not None and _INT64[0] <= out <= _INT64[1] else None


def metric_values(
    pairs: dict[Any, Any], path: Path, line: int | None, col: Collector, *, label: str = "{}", prefix: str = ""
) -> dict[str, float | None]:
    """One logged record's ``{key: value}`` → ``{canonical name: float}`` (``keymap.map_record``).

    A value that is not a number is a located ``wrong_type`` issue (``label`` formats the key in
    it) and is left out; keys no rule knows are added to the report's unknown keys.
    """
    values: dict[str, float | None] = {}
    for key, value in pairs.items():
        f, ok = to_float(value)
        if not ok:
            col.issue(path, line, f"{label.format(key)} is {short(value)}, not a number; ignored", "wrong_type", skipped=False)
            continue
        values[str(key)] = f
    mapped, unknown = map_record(values, prefix=prefix)
    col.unknown(unknown)
    return mapped


def not_a_regular_file(path: Path) -> str | None:
    """Why ``path`` must not be opened as a log (a symlink loop, a dangling symlink, a folder, a
    FIFO, a device, a socket), or None for a regular file."""
    import errno
    import stat

    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symlink loop"
        if path.is_symlink():
            return f"a dangling symlink (to {os.readlink(path)})"
        return f"unreadable ({exc.strerror})"
    if stat.S_ISREG(mode):
        return None
    what = (
        "a folder" if stat.S_ISDIR(mode)
        else "a FIFO" if stat.S_ISFIFO(mode)
        else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a socket"
    )
    target = f" (a symlink to {os.readlink(path)})" if path.is_symlink() else ""
    return f"{what}{target}, not a regular file"


def run_files(paths: Iterable[Path], col: Collector) -> list[Path]:
    """The files of a run folder worth opening among ``paths`` (a glob's matches), each once.

    A symlink loop, a dangling symlink, or something that is not a regular file (a FIFO, or a
    device: reading ``/dev/zero`` never ends) is a located ``unreadable_file`` issue and left out.
    A second name of one file (``events.rank1.jsonl`` linked to ``events.jsonl``) is read once,
    with a note: read twice it would look like another rank, or a resume, re-logging every step.
    """
    out: list[Path] = []
    seen: dict[tuple[int, int], Path] = {}
    for path in sorted(paths, key=lambda p: (p.is_symlink(), p.name)):  # a real file before its links
        why = not_a_regular_file(path)
        if why is not None:
            col.issue(path, None, f"{why}; not read", "unreadable_file", skipped=False)
            continue
        st = path.stat()
        key = (st.st_dev, st.st_ino)
        if key in seen:
            col.note(f"{col.rel(path)} is another name (a link) of {col.rel(seen[key])}; read once")
            continue
        seen[key] = path
        out.append(path)
    return out


def why_empty(report: IngestReport, none: str) -> str:
    """For an "is there nothing usable?" error: the first issue (and how many more), else ``none``."""
    if not report.issues:
        return none
    more = f" and {len(report.issues) - 1} more issues" if len(report.issues) > 1 else ""
    return f"{report.issues[0]}{more}"


class Columns:
    """Rows with varying keys → one list per key (first-seen order), padded with None."""

    def __init__(self) -> None:
        self.data: dict[str, list[Any]] = {}
        self.n = 0

    def append(self, row: dict[str, Any]) -> None:
        n = self.n = self.n + 1
        data = self.data
        for k, v in row.items():
            lst = data.get(k)
            if lst is None:
                lst = data[k] = [None] * (n - 1)
            lst.append(v)
        for lst in data.values():
            if len(lst) < n:
                lst.append(None)


def utf8_safe(obj: Any) -> Any:
    """``obj`` with every lone surrogate (a ``"\ud800"`` escape in the JSON, which Python decodes
    but UTF-8 — and so Polars — cannot hold) written as its escape text, in keys and values, at
    any depth. trainer_hooks writes such characters the same way."""
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError:
            return obj.encode("utf-8", "backslashreplace").decode("utf-8")
        return obj
    if isinstance(obj, dict):
        return {utf8_safe(k): utf8_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(utf8_safe(v) for v in obj)
    return obj


# Deeper than this a JSON value is not a training log: every reader reports it as malformed (the
# interpreter's own limit, ~1,000 levels, is a RecursionError in the decoder or, for a document
# just under it, in whatever walks the value later: the reports, analysis.json).
MAX_JSON_DEPTH: Final = 100
# An integer literal longer than this is refused by int() since Python 3.11 (CVE-2020-10735).
MAX_INT_DIGITS: Final = sys.get_int_max_str_digits() or 4300


class JSONLimitError(json.JSONDecodeError):
    """A JSON document beyond what logscan reads: nested deeper than ``MAX_JSON_DEPTH`` or holding
    an integer literal longer than ``MAX_INT_DIGITS``. A ``JSONDecodeError``, so every reader
    reports it like any malformed JSON: located, skipped, never a traceback."""


def loads(text: str | bytes) -> Any:
    """``json.loads`` for untrusted text: ``utf8_safe`` when the text escapes a surrogate, and
    ``JSONLimitError`` (located at the offending character) for a document nested deeper than
    ``MAX_JSON_DEPTH`` or with an integer too long to convert. Every reader decodes JSON here."""
    doc = text if isinstance(text, str) else text.decode("utf-8", "replace")
    try:
        obj = json.loads(text)
    except RecursionError:
        raise _too_deep(doc) from None
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # int(): "Exceeds the limit (4300 digits) for integer string conversion"
        m = re.search(rf"\d{{{MAX_INT_DIGITS + 1},}}", doc)
        if m is None:
            raise
        msg = f"an integer of {len(m.group())} digits, more than {MAX_INT_DIGITS}"
        raise JSONLimitError(msg, doc, m.start()) from exc
    # Only a text with more brackets than the limit can be nested that deep: one C-speed count
    # spares the walk for every ordinary record.
    if doc.count("[") + doc.count("{") > MAX_JSON_DEPTH and _deeper_than(obj, MAX_JSON_DEPTH):
        raise _too_deep(doc)
    return utf8_safe(obj) if "\\ud" in doc.lower() else obj


def _deeper_than(obj: Any, limit: int) -> bool:
    """Whether ``obj`` nests more than ``limit`` lists/objects (a loop: no recursion to exhaust)."""
    if not isinstance(obj, dict | list):
        return False
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _too_deep(doc: str) -> JSONLimitError:
    """The error for ``doc`` nested deeper than ``MAX_JSON_DEPTH``, at the bracket that goes too deep."""
    depth, in_string, pos = 0, False, 0
    for m in re.finditer(r'[\[\]{}"\\]', doc):
        ch = m.group()
        if in_string:
            if ch == '"' and not _escaped(doc, m.start()):
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                pos = m.start()
                break
        elif ch in "]}":
            depth -= 1
    return JSONLimitError(f"nested deeper than {MAX_JSON_DEPTH} levels", doc, pos)


def _escaped(doc: str, i: int) -> bool:
    n = 0
    while i - n - 1 >= 0 and doc[i - n - 1] == "\\":
        n += 1
    return n % 2 == 1


def json_text(value: Any) -> str | None:
    """Text as it is; a number, list or object (a JSON value where text belongs) as its JSON."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def short(value: Any, n: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def _file_raw_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as fh:
        yield from enumerate(fh, start=1)


def buffer_raw_lines(buf: bytes, first_line: int) -> Iterator[tuple[int, bytes]]:
    """The lines of an in-memory chunk of a file, numbered from ``first_line``."""
    start = 0
    lineno = first_line
    n = len(buf)
    while start < n:
        end = buf.find(b"\n", start)
        end = n if end < 0 else end + 1
        yield lineno, buf[start:end]
        lineno += 1
        start = end


def iter_lines(
    path: Path, col: Collector, raw_lines: Iterable[tuple[int, bytes]] | None = None
) -> Iterator[tuple[int, str, bool]]:
    """``(line number, text, is_unterminated)`` of a text file, line by line, bytes-safe.

    Lines that are not UTF-8 are reported (``not_utf8``) and skipped; blank lines are skipped.
    """
    for lineno, raw in raw_lines if raw_lines is not None else _file_raw_lines(path):
        if not raw.strip():
            continue
        unterminated = not raw.endswith(b"\n")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            col.issue(path, lineno, f"not valid UTF-8 (byte {exc.start + 1} of the line); line skipped", "not_utf8")
            continue
        yield lineno, text, unterminated


def iter_json_objects(
    path: Path, col: Collector, raw_lines: Iterable[tuple[int, bytes]] | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """JSON Lines, tolerant: torn lines, malformed lines and non-objects are reported and skipped."""
    for lineno, text, unterminated in iter_lines(path, col, raw_lines):
        try:
            obj = loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            # A record cut short (the writer was killed mid-line) fails at its very end; the hooks
            # start the next record on a fresh line, so such a fragment can sit mid-file too.
            cut = isinstance(exc, json.JSONDecodeError) and exc.pos >= len(text.rstrip())
            if unterminated or cut:
                where = "last line" if unterminated else "line"
                col.issue(path, lineno, f"torn {where}: the record is cut short (the writer was interrupted); skipped", "torn_line")
            else:
                msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                col.issue(path, lineno, f"malformed JSON ({msg}); line skipped", "malformed")
            continue
        if not isinstance(obj, dict):
            col.issue(path, lineno, f"expected a JSON object, got {type(obj).__name__}; line skipped", "not_object")
            continue
        col.report.records_read += 1
        yield lineno, obj


def steps_frame(rows: dict[int, dict[str, float | None]]) -> pl.DataFrame:
    """``{step: {name: value}}`` → the ``steps`` frame (``step`` Int64 sorted, Float64 scalars)."""
    import polars as pl

    names: dict[str, None] = {}
    for rec in rows.values():
        names.update(dict.fromkeys(rec))
    names.pop(C.STEP, None)
    ordered = sorted(rows)
    data: dict[str, Any] = {C.STEP: pl.Series(C.STEP, ordered, dtype=pl.Int64)}
    for name in names:
        data[name] = pl.Series(name, [rows[s].get(name) for s in ordered], dtype=pl.Float64)
    return pl.DataFrame(data)


def empty_steps() -> pl.DataFrame:
    import polars as pl

    return pl.DataFrame({C.STEP: pl.Series(C.STEP, [], dtype=pl.Int64)})


def merge_steps(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """Outer-join steps frames on ``step``; the first frame's value wins a clash."""

    frames = [f for f in frames if f is not None and f.height]
    if not frames:
        return empty_steps()
    out = frames[0]
    for f in frames[1:]:
        new = [c for c in f.columns if c not in out.columns or c == C.STEP]
        out = out.join(f.select(new), on=C.STEP, how="full", coalesce=True)
    return out.sort(C.STEP)


# --- the generations frame ------------------------------------------------------------------------
STRING_COLS: Final = (C.SPLIT, C.QUESTION_ID, C.GROUP_ID, C.QUESTION, C.GROUND_TRUTH, C.OUTPUT, C.REASONING, C.ANSWER)
BASE_ORDER: Final = (
    C.STEP, C.SPLIT, C.SAMPLE_ID, C.QUESTION_ID, C.GROUP_ID, C.QUESTION, C.GROUND_TRUTH, C.OUTPUT,
    C.REASONING, C.ANSWER, C.TOTAL_REWARD,
)
_REASONING_RE: Final = r"(?s)<reasoning>(.*?)</reasoning>"
_ANSWER_RE: Final = r"(?s)<answer>(.*?)</answer>"


def text_to_float(text: _TextT) -> _TextT:
    """A String expression → Float64 as ``to_float`` reads a value: numbers, ``"NaN"``/
    ``"Infinity"``, booleans' text (``BOOL_TEXT``); anything else null."""
    import polars as pl

    return text.str.strip_chars().replace(BOOL_TEXT).cast(pl.Float64, strict=False)


def float_expr(name: str) -> pl.Expr:
    """A String/number/Boolean column → Float64 (``"NaN"``/``"Infinity"``, ``"true"`` included)."""
    import polars as pl

    return text_to_float(pl.col(name).cast(pl.String))


def to_unix_seconds(s: pl.Series) -> pl.Series:
    """Unix seconds from numbers, numeric strings or ISO-8601 strings (naive ones taken as UTC)."""
    import polars as pl

    if s.dtype.is_numeric():
        return s.cast(pl.Float64)
    if isinstance(s.dtype, pl.Datetime):
        return s.dt.epoch("us").cast(pl.Float64) / 1e6
    text = s.cast(pl.String)
    num = text.str.strip_chars().cast(pl.Float64, strict=False)
    if num.null_count() == text.null_count():
        return num  # all numeric: the common case, no date parsing at all
    parsed = text.str.to_datetime(strict=False, time_zone="UTC").dt.epoch("us").cast(pl.Float64) / 1e6
    return num.fill_null(parsed)


def sorted_order(df: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """``df`` sorted by ``keys`` (stable); skips the full copy when it is already in that order."""
    import polars as pl

    if df.height < 2:
        return df
    # Already in order (the common case)? Each row against the next, in sort's order (nulls
    # first) — no sort, no copy.
    in_order: pl.Expr = pl.lit(True)
    for k in reversed(keys):
        a, b = pl.col(k), pl.col(k).shift(-1)
        before = (a.is_null() & b.is_not_null()) | (a < b).fill_null(False)
        same = (a.is_null() & b.is_null()) | (a == b).fill_null(False)
        in_order = before | (same & in_order)
    if bool(df.select(in_order.head(df.height - 1).all()).item()):
        return df
    return df[df.select(keys).with_row_index("__i").sort(keys, maintain_order=True)["__i"].cast(pl.Int64)]


def finalize_generations(df: pl.DataFrame, col: Collector) -> pl.DataFrame:
    """Canonical columns, types and order; fill ``question_id``/tags; ``sample_id`` (``group_id``:
    ``analyzer.model.completion_keys``, when the ``RunData`` is built)."""
    import polars as pl

    if ORDER_COL not in df.columns:
        df = df.with_row_index(ORDER_COL)
    exprs: list[pl.Expr] = []
    for name in STRING_COLS:
        if name not in df.columns:
            exprs.append(pl.lit(None, dtype=pl.String).alias(name))
        elif df.schema[name] != pl.String:
            exprs.append(pl.col(name).cast(pl.String))
    if C.TOTAL_REWARD not in df.columns:
        rewards = [c for c in df.columns if c.startswith(C.REWARD_PREFIX)]
        if rewards:
            exprs.append(pl.sum_horizontal(*[pl.col(c) for c in rewards]).alias(C.TOTAL_REWARD))
            col.note("total_reward is the unweighted sum of the reward columns (the input has no total)")
        else:
            exprs.append(pl.lit(None, dtype=pl.Float64).alias(C.TOTAL_REWARD))
    elif df.schema[C.TOTAL_REWARD] != pl.Float64:
        exprs.append(float_expr(C.TOTAL_REWARD).alias(C.TOTAL_REWARD))
    if C.TIMESTAMP not in df.columns:
        exprs.append(pl.lit(None, dtype=pl.Float64).alias(C.TIMESTAMP))
    elif df.schema[C.TIMESTAMP] != pl.Float64:
        exprs.append(pl.lit(to_unix_seconds(df[C.TIMESTAMP])).alias(C.TIMESTAMP))
    if C.RANK not in df.columns:
        exprs.append(pl.lit(0, dtype=pl.Int64).alias(C.RANK))
    elif df.schema[C.RANK] != pl.Int64:
        exprs.append(pl.col(C.RANK).cast(pl.Int64, strict=False).fill_null(0))
    if df.schema.get(C.STEP) != pl.Int64:
        exprs.append(pl.col(C.STEP).cast(pl.Int64))
    exprs += [
        float_expr(name).alias(name)
        for name, dtype in df.schema.items()
        if (name.startswith(C.REWARD_PREFIX) or name == C.ADVANTAGE) and dtype != pl.Float64
    ]
    if exprs:
        df = df.with_columns(exprs)

    fill: list[pl.Expr] = []
    if df[C.SPLIT].null_count():
        fill.append(pl.col(C.SPLIT).fill_null("train"))
    if df[C.REASONING].null_count():
        fill.append(pl.coalesce(C.REASONING, pl.col(C.OUTPUT).str.extract(_REASONING_RE, 1).str.strip_chars()).alias(C.REASONING))
    if df[C.ANSWER].null_count():
        fill.append(pl.coalesce(C.ANSWER, pl.col(C.OUTPUT).str.extract(_ANSWER_RE, 1).str.strip_chars()).alias(C.ANSWER))
    if fill:
        df = df.with_columns(fill)
    if df[C.QUESTION_ID].null_count():
        df = _fill_question_ids(df)
    # group_id left null is filled when the RunData is built: one definition of the GRPO group
    # (analyzer.model.completion_keys: "{step}:{question_id}")
    df = sorted_order(df, [C.STEP, C.RANK, ORDER_COL]).drop(ORDER_COL)
    if C.SAMPLE_ID in df.columns:
        df = df.drop(C.SAMPLE_ID)
    df = df.with_row_index(C.SAMPLE_ID).with_columns(pl.col(C.SAMPLE_ID).cast(pl.Int64))
    rewards = sorted(c for c in df.columns if c.startswith(C.REWARD_PREFIX))
    tail = [C.TIMESTAMP, C.RANK] + ([C.ADVANTAGE] if C.ADVANTAGE in df.columns else [])
    fixed = [*BASE_ORDER, *rewards, *tail]
    known = set(fixed)  # not the list: a membership test per column of it is quadratic
    rest = [c for c in df.columns if c not in known]
    return df.select([*fixed, *rest])


def _fill_question_ids(df: pl.DataFrame) -> pl.DataFrame:
    import polars as pl

    from trainer_hooks import question_id_for  # the hooks' own ids, so they match

    missing = df.filter(pl.col(C.QUESTION_ID).is_null()).select(C.QUESTION, C.GROUND_TRUTH).unique()
    ids = [
        question_id_for(q or "", a or "")
        for q, a in zip(missing[C.QUESTION].to_list(), missing[C.GROUND_TRUTH].to_list(), strict=True)
    ]
    lookup = missing.with_columns(pl.Series("__qid", ids, dtype=pl.String))
    df = df.join(lookup, on=[C.QUESTION, C.GROUND_TRUTH], how="left", nulls_equal=True, maintain_order="left")
    return df.with_columns(pl.coalesce(C.QUESTION_ID, "__qid").alias(C.QUESTION_ID)).drop("__qid")


_KEY_RE: Final = r'"((?:[^"\\]|\\.)*)"\s*:'


def expand_object(
    df: pl.DataFrame, name: str, prefix: str, *, numeric: bool, unescaped_backslashes: bool = False
) -> pl.DataFrame:
    """A column of JSON objects (as text) → one column per key; rewards cast to Float64.

    ``unescaped_backslashes``: the texts are Polars' NDJSON reader writing a nested object back
    as text, from input that holds a literal backslash somewhere. That writer escapes neither the
    backslashes of values nor anything in keys (``{"C:\\new": 1}`` comes back as ``{"C:\new": 1}``,
    which a JSON decoder reads as a newline), so a text with a backslash in it cannot be read back
    exactly: ``Dirty``, and the careful path reads those lines with Python's json.
    """
    import polars as pl

    series = df[name]
    if series.null_count() == df.height:
        return df.drop(name)
    # Reward maps repeat (a 0/1 correctness and a format reward: a handful of distinct texts per
    # million rows): each distinct text is checked and decoded once, then joined back.
    uniq = series.drop_nulls().unique()
    if bool(uniq.str.strip_chars_start().str.starts_with("{").not_().any()):
        raise Dirty  # e.g. a reward map that is a list
    if unescaped_backslashes and bool(uniq.str.contains("\\", literal=True).any()):
        raise Dirty
    keys = uniq.str.extract_all(_KEY_RE).explode().drop_nulls().unique().to_list()
    try:
        # Polars writes control characters inside keys unescaped: strict=False reads them back
        fields = [json.loads(k[: k.rindex(":")].strip(), strict=False) for k in keys]
    except ValueError as exc:  # a key this cannot read back: the careful path will
        raise Dirty from exc
    if not fields:
        return df.drop(name)
    dtype = pl.Struct({f: pl.String for f in fields})
    try:
        if 2 * uniq.len() <= series.len():
            lookup = pl.DataFrame([uniq.alias("__text"), uniq.str.json_decode(dtype=dtype).alias("__obj")])
            decoded = (
                df.select(pl.col(name).alias("__text"))
                .join(lookup, on="__text", how="left", maintain_order="left")
                .select(pl.col("__obj").alias(name))
                .unnest(name)
            )
        else:
            decoded = df.select(pl.col(name).str.json_decode(dtype=dtype)).unnest(name)
    except Exception as exc:  # a nested object/list where a scalar belongs
        raise Dirty from exc
    out: list[pl.Series] = []
    for f in fields:
        s = decoded[f]
        target = prefix + f if prefix else extra_column(f)
        cast = text_to_float(s) if numeric else s.cast(pl.Float64, strict=False)
        text = int((s.is_not_null() & cast.is_null()).sum()) > 0  # a value that is not a number
        if text and numeric:
            raise Dirty
        out.append((s if text else cast).alias(target))
    return df.drop(name).with_columns(out)
