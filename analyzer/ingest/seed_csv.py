"""Generations in the seed's CSV schema: a bare ``generations.csv`` (or a folder holding one), and
the CSV variant of a logscan run folder.

Columns: ``timestamp, global_step, question_id, question, ground_truth_answer, model_output,
reasoning, model_answer, total_reward, <name>_reward…`` then optional ``split, group_id`` and
``extra_rewards`` (a JSON object of rewards that appeared after the header was written). Fast path:
Polars reads every column as text and casts; a torn last row is read alone with the csv module.
Only when Polars meets something it cannot vouch for (a value of the wrong type, bytes that are not
UTF-8, a parse error) does the careful path re-read the file with the csv module to say which line.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from analyzer import columns as C
from analyzer.errors import InputError
from analyzer.ingest._common import (
    LINE_COL,
    ORDER_COL,
    RECORD_LINE_COL,
    Collector,
    Columns,
    Dirty,
    expand_object,
    extra_column,
    json_text,
    loads,
    short,
    text_to_float,
    to_float,
    to_int,
)
from trainer_hooks import schema as S

if TYPE_CHECKING:
    import polars as pl

EXTRA_REWARDS_COL: Final = "extra_rewards"
STEP_ALIASES: Final = (S.G_STEP, C.STEP)


def looks_like_seed_csv(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            head = fh.readline(65536).decode("utf-8", errors="replace")
    except OSError:
        return False
    names = {h.strip().strip('"') for h in head.split(",")}
    return bool(names & set(STEP_ALIASES)) and S.G_OUTPUT in names


def reward_name(column: str) -> str | None:
    if column.endswith(S.CSV_REWARD_SUFFIX) and column != S.G_TOTAL_REWARD:
        return column[: -len(S.CSV_REWARD_SUFFIX)]
    return None


def read_generations_csv(path: Path, col: Collector) -> pl.DataFrame | None:
    """One CSV of generations → a frame with canonical columns + ``__line`` (not yet finalised)."""
    if path.stat().st_size == 0:
        col.issue(path, None, "empty file", "empty", skipped=False)
        return None
    col.read(path)
    df: pl.DataFrame | None
    try:
        df = _fast(path, col)
    except Dirty:
        df = _careful(path, col)
    return None if df is None or df.height == 0 else df


def _csv_header(path: Path) -> list[str] | None:
    """The header row as the csv module reads it (None when it cannot)."""
    csv.field_size_limit(sys.maxsize)
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:  # a BOM is not part of the first name
            return next(csv.reader(fh))
    except (OSError, UnicodeDecodeError, StopIteration, csv.Error):
        return None


def _header_check(names: list[str], path: Path) -> str:
    step = next((n for n in STEP_ALIASES if n in names), None)
    if step is None:
        raise InputError(
            f"{path.name}: no global_step column; expected the seed's CSV schema "
            f"({', '.join(S.CSV_BASE_COLUMNS)}, <name>_reward...)"
        )
    return step


# How far back from the end of a file with a torn last row its last two record boundaries are
# looked for (the torn record and the complete one before it) before the careful path takes over.
TAIL_SCAN_BYTES: Final = 64 << 20


class _TornTail:
    """The torn last record of a CSV: where it starts, its text, whether the file ends inside a
    quoted field, and the complete record before it (as Polars must read it)."""

    def __init__(self, start: int, text: str, in_quotes: bool, previous: list[str]) -> None:
        self.start, self.text, self.in_quotes, self.previous = start, text, in_quotes, previous


def _torn_tail(path: Path, size: int, width: int, step_index: int) -> _TornTail:
    """Find the torn last record from the end of the file alone (``Dirty`` when unsure).

    A line end is a record boundary when an even number of quotes precede it. Counting from the
    end, the parity of the quotes after the last boundary is that of the torn record's quotes: 0,
    or 1 when it was cut inside a quoted field. For each parity, the two last line ends with that
    many quotes after them are candidates; the right parity is the one whose candidates enclose
    exactly one good record (``width`` fields, an integer step) — the last complete row.
    """
    window = min(size, 1 << 20)
    with path.open("rb") as fh:
        while True:
            fh.seek(size - window)
            buf = fh.read(window)
            found: dict[int, list[int]] = {0: [], 1: []}
            quotes = 0
            pos = len(buf)
            # line ends from the end, with the parity of the quotes after each
            while pos > 0 and (len(found[0]) < 2 or len(found[1]) < 2):
                nl = buf.rfind(b"\n", 0, pos)
                quotes += buf.count(b'"', nl + 1, pos)
                if nl < 0:
                    break
                found[quotes % 2].append(nl)
                pos = nl
            good = [
                parity for parity, ends in found.items()
                if len(ends) == 2 and _one_good_record(buf[ends[1] + 1 : ends[0] + 1], width, step_index)
            ]
            if len(good) == 1:
                parity = good[0]
                end = found[parity][0] + 1
                prev = next(csv.reader(io.StringIO(buf[found[parity][1] + 1 : end].decode("utf-8"), newline="")))
                text = buf[end:].decode("utf-8", errors="surrogateescape")
                return _TornTail(size - window + end, text, parity == 1, prev)
            if window >= min(size, TAIL_SCAN_BYTES) or len(good) > 1:
                raise Dirty
            window = min(size, window * 4, TAIL_SCAN_BYTES)


def _one_good_record(raw: bytes, width: int, step_index: int) -> bool:
    try:
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline=""), strict=True))
    except (UnicodeDecodeError, csv.Error):
        return False
    return len(rows) == 1 and len(rows[0]) == width and to_int(rows[0][step_index]) is not None


def _fast(path: Path, col: Collector) -> pl.DataFrame:
    """Polars reads the file as text and every cast is checked. A torn last row (the file of a live
    or killed run) costs only itself: Polars reads the complete rows, the csv module the torn one."""
    import polars as pl

    size = path.stat().st_size
    with path.open("rb") as fh:
        fh.seek(-1, 2)
        torn = fh.read(1) not in (b"\n", b"\r")
    names = _csv_header(path)
    if names is None:
        raise Dirty
    tail = None
    if torn:
        step_col = _header_check(names, path)
        tail = _torn_tail(path, size, len(names), names.index(step_col))
        # the torn record's line, for its issue: counted before the frame exists (the count maps
        # the whole file, and those pages would add to the frame's peak memory)
        total_lines = pl.scan_csv(path, has_header=False, quote_char=None, infer_schema=False).select(pl.len()).collect().item()
        tail_line = total_lines - tail.text.count("\n")
    try:
        if tail is not None and tail.in_quotes:
            # Polars refuses a file that ends inside a quoted field: read the rows before it
            count = pl.scan_csv(path, infer_schema=False).select(pl.len()).collect().item()
            df = pl.read_csv(path, infer_schema=False, raise_if_empty=False, n_rows=count - 1)
        else:
            df = pl.read_csv(path, infer_schema=False, raise_if_empty=False)
            if tail is not None:
                df = df.head(df.height - 1)  # the torn record: read below with the csv module
    except Exception as exc:  # polars raises several types for broken CSV
        raise Dirty from exc
    if len(names) != len(df.columns):
        raise Dirty
    if names != df.columns and len(set(names)) == len(names):
        df.columns = names  # Polars keeps the doubled quotes of a quoted name ("q""uote_reward")
    if tail is not None:
        # Polars' last row must be the complete record found before the torn one
        last = df.row(df.height - 1) if df.height else None
        if last is not None and [v or None for v in last] != [f or None for f in tail.previous]:
            raise Dirty
    step_col = _header_check(df.columns, path)
    df = df.with_row_index(ORDER_COL)
    casts: list[pl.Expr] = [pl.col(step_col).str.strip_chars().cast(pl.Int64, strict=False).alias(C.STEP)]
    # membership in a set: a list (or df.columns, a fresh list per call) per column is quadratic
    # in the number of reward columns (10,000 of them took minutes)
    present = set(df.columns)
    numeric = [c for c in [S.G_TOTAL_REWARD, *(c for c in df.columns if reward_name(c))] if c in present]
    if numeric:  # one expression over every numeric column (one per column is slow for thousands)
        casts.append(text_to_float(pl.col(numeric)).name.prefix("__f_"))
    out = df.with_columns(casts)
    # Every value that was there must have survived its cast (as many numbers as non-empty texts
    # in each column); otherwise locate it carefully.
    if out.get_column(C.STEP).null_count():
        raise Dirty
    if numeric:
        # a series knows its null count: no expression to plan over thousands of columns
        numbers = {n: out.height - out.get_column("__f_" + n).null_count() for n in numeric}
        # A number only comes from a non-empty text, so a column with as many numbers as non-null
        # texts passes as it stands; only the others (an empty or blank quoted text, a value that
        # is not a number) have their non-empty texts counted.
        suspect = [n for n in numeric if out.height - out.get_column(n).null_count() != numbers[n]]
        if suspect:
            texts = out.select(pl.col(suspect).str.strip_chars().replace("", None).is_not_null().sum()).row(0)
            if texts != tuple(numbers[n] for n in suspect):
                raise Dirty
    renames: dict[str, str] = {}
    drop: list[str] = []
    for name in numeric:
        drop.append(name)
        rn = reward_name(name)
        renames["__f_" + name] = C.REWARD_PREFIX + rn if rn else C.TOTAL_REWARD
    if step_col != C.STEP:
        drop.append(step_col)
    out = out.drop(drop).rename(renames)
    if EXTRA_REWARDS_COL in out.columns:
        out = _expand_extra_rewards(out, path, col)
    if S.G_EXTRA in out.columns:
        out = expand_object(out, S.G_EXTRA, "", numeric=False)
    col.report.records_read += out.height
    out = out.with_columns(
        (pl.col(ORDER_COL) + 2).cast(pl.Int64).alias(LINE_COL), pl.lit(True).alias(RECORD_LINE_COL)
    )
    if tail is None:
        return out
    # the torn record, as the careful path reads it: a torn row is reported, a whole one kept
    records = _records(_physical_lines(tail.text), 0, len(names), names.index(step_col), path, col, torn=True, line_offset=tail_line - 1)
    rows = _rows_frame(records, names, step_col, path, col, torn=True)
    if rows is None:
        return out
    rows = rows.with_columns(
        (pl.col(ORDER_COL).cast(out.schema[ORDER_COL]) + out.height).alias(ORDER_COL), pl.lit(False).alias(RECORD_LINE_COL)
    )
    return pl.concat([out, rows], how="diagonal_relaxed")


def _object_cell(text: str | None, name: str, path: Path, line: int | None, col: Collector, *, where: str = "") -> dict[str, Any]:
    """A JSON-object cell (``extra_rewards``, ``extra``) as a dict; a cell that is not one is a
    located issue and reads as empty."""
    if not text:
        return {}
    try:
        obj = loads(text)
    except json.JSONDecodeError:
        obj = None
    if not isinstance(obj, dict):
        col.issue(path, line, f"{where}{name} is not a JSON object: {short(text)}", "wrong_type", skipped=False)
        return {}
    return obj


def _extra_rewards(text: str | None, path: Path, line: int | None, col: Collector, *, where: str = "") -> dict[str, float | None]:
    """The ``extra_rewards`` JSON cell as {name: value}; a bad cell or value becomes a located issue."""
    obj = _object_cell(text, EXTRA_REWARDS_COL, path, line, col, where=where)
    out: dict[str, float | None] = {}
    for k, v in obj.items():
        f, ok = to_float(v)
        if not ok:
            col.issue(path, line, f"{where}reward {k!r} is {short(v)}, not a number; set to null", "wrong_type", skipped=False)
        out[k] = f
    return out


def _expand_extra_rewards(df: pl.DataFrame, path: Path, col: Collector) -> pl.DataFrame:
    import polars as pl

    values = df[EXTRA_REWARDS_COL].to_list()
    parsed: dict[str, list[float | None]] = {}
    for i, text in enumerate(values):
        for k, f in _extra_rewards(text, path, None, col, where=f"row {i + 1}: ").items():
            parsed.setdefault(k, [None] * len(values))[i] = f
    new = []
    for k, vals in parsed.items():
        name = C.REWARD_PREFIX + k
        series = pl.Series(name, vals, dtype=pl.Float64)
        if name in df.columns:
            new.append(pl.coalesce(pl.col(name), pl.lit(series)).alias(name))
        else:
            new.append(pl.lit(series).alias(name))
    return df.with_columns(new).drop(EXTRA_REWARDS_COL) if new else df.drop(EXTRA_REWARDS_COL)


def _physical_lines(text: str) -> list[str]:
    """``text`` cut into lines the way the csv module counts them (``\\n``, ``\\r\\n`` or ``\\r``)."""
    return io.StringIO(text, newline="").readlines()


def _records(
    lines: list[str], first: int, width: int, step_index: int, path: Path, col: Collector, *, torn: bool, line_offset: int = 0
) -> Iterator[tuple[int, list[str], bool]]:
    """``(line, fields, is_last)`` of each record of ``lines[first:]`` (``line`` 1-based, plus
    ``line_offset``), parsed strictly; a record the csv module cannot parse is reported here.

    A stray quote (``1,q,"unclosed``) opens a field that runs on over the records below it, up to
    the next quote or the end of the file. When a bad record spans several lines and the lines it
    swallowed hold a good record of their own (``width`` fields, an integer step), only its first
    line is reported and reading resumes on the next line — the next record boundary — so the
    rows after it are kept, and the lost-record count stays true. A bad last record of a file
    without a final line end is its torn last row.
    """
    n = len(lines)
    i = first
    while i < n:
        reader = csv.reader(itertools.islice(lines, i, None), strict=True)
        base = i
        restart = False
        while not restart:
            start = base + reader.line_num  # index of the record's first line
            try:
                fields: list[str] | None = next(reader)
                error = ""
            except StopIteration:
                return
            except csv.Error as exc:
                fields, error = None, str(exc)
            end = base + reader.line_num
            if fields is not None and (len(fields) == width or end - start <= 1):
                if fields and any(f != "" for f in fields):
                    yield line_offset + start + 1, fields, end >= n
                continue
            if end - start > 1 and _holds_a_record(lines[start + 1 : end], width, step_index):
                what = error or f"expected {width} fields, found {len(fields or [])}"
                col.issue(path, line_offset + start + 1, f"unclosed quote? ({what}); row skipped, the rows after it are read", "malformed")
                i = start + 1
                restart = True
            elif fields is not None:
                yield line_offset + start + 1, fields, end >= n  # a row of the wrong width: the caller says so
            elif end >= n and torn:
                col.issue(path, line_offset + start + 1, "torn last row (the writer was interrupted); skipped", "torn_line")
            else:
                col.issue(path, line_offset + start + 1, f"malformed CSV ({error}); row skipped", "malformed")
        if not restart:
            return


def _holds_a_record(lines: list[str], width: int, step_index: int) -> bool:
    """Whether ``lines`` (what a bad record swallowed) parse to at least one good record."""
    reader = csv.reader(lines, strict=False)
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return False
        except csv.Error:
            continue
        if len(fields) == width and to_int(fields[step_index]) is not None:
            return True


def _careful(path: Path, col: Collector) -> pl.DataFrame | None:
    """Row by row with the csv module; every problem gets its file:line."""
    csv.field_size_limit(sys.maxsize)
    raw = path.read_bytes()
    text = raw.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    del raw
    torn = not text.endswith(("\n", "\r"))
    lines = _physical_lines(text)
    del text
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except (StopIteration, csv.Error):
        col.issue(path, 1, "no header row", "empty", skipped=False)
        return None
    if torn and reader.line_num == len(lines) == 1:
        # only a header, cut short: the writer was interrupted before any row (the logger then
        # starts a new part); nothing to read here, but say so
        col.issue(path, 1, "torn header (the writer was interrupted before any row); file skipped", "torn_line")
        return None
    step_col = _header_check(header, path)
    records = _records(lines, reader.line_num, len(header), header.index(step_col), path, col, torn=torn)
    return _rows_frame(records, header, step_col, path, col, torn=torn)


def _rows_frame(
    records: Iterable[tuple[int, list[str], bool]], header: list[str], step_col: str, path: Path, col: Collector, *, torn: bool
) -> pl.DataFrame | None:
    """Records as the careful path reads them (``_records``) → a frame with ``__line`` and
    ``__order``; every problem a located issue."""
    import polars as pl

    rows = Columns()
    for line, fields, last in records:
        if any("\udc80" <= ch <= "\udcff" for f in fields for ch in f):
            col.issue(path, line, "not valid UTF-8; row skipped", "not_utf8")
            continue
        if len(fields) != len(header):
            if last and torn:
                col.issue(path, line, "torn last row (the writer was interrupted); skipped", "torn_line")
            else:
                col.issue(path, line, f"expected {len(header)} fields, found {len(fields)}; row skipped", "malformed")
            continue
        rec = dict(zip(header, fields, strict=True))
        step = to_int(rec.get(step_col))
        if step is None:
            col.issue(path, line, f"{step_col} is {short(rec.get(step_col))}, not an integer; row skipped", "wrong_type", skipped=True)
            continue
        if last and torn:
            col.note(f"{col.rel(path)}: the last row has no line end (written while the run was live?)")
        row: dict[str, Any] = {C.STEP: step, LINE_COL: line}
        for name, value in rec.items():
            if name == step_col:
                continue
            rn = reward_name(name)
            if name == S.G_TOTAL_REWARD or rn:
                f, ok = to_float(value if value != "" else None)
                if not ok:
                    col.issue(path, line, f"{name} is {short(value)}, not a number; set to null", "wrong_type", skipped=False)
                row[C.REWARD_PREFIX + rn if rn else C.TOTAL_REWARD] = f
            elif name == EXTRA_REWARDS_COL:
                for k, f in _extra_rewards(value, path, line, col).items():
                    row.setdefault(C.REWARD_PREFIX + k, f)
            elif name == S.G_EXTRA:
                for k, v in _object_cell(value, S.G_EXTRA, path, line, col).items():
                    name = extra_column(k)
                    if name.startswith(C.REWARD_PREFIX):  # a reward kept in the extra cell (S.csv_reward_column)
                        f, ok = to_float(v)
                        if not ok:
                            col.issue(path, line, f"{k} is {short(v)}, not a number; set to null", "wrong_type", skipped=False)
                        row.setdefault(name, f)
                        continue
                    row.setdefault(name, v if isinstance(v, str | int | float) else json_text(v))
            else:
                row[name] = value if value != "" else None
        rows.append(row)
    col.report.records_read += rows.n
    if rows.n == 0:
        return None
    data: dict[str, pl.Series] = {}
    for k, lst in rows.data.items():
        if k in (C.STEP, LINE_COL):
            dtype: Any = pl.Int64
        elif k.startswith(C.REWARD_PREFIX) or k == C.TOTAL_REWARD or all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in lst):
            dtype = pl.Float64
        else:
            dtype = pl.String
            lst = [None if v is None else str(v) for v in lst]
        data[k] = pl.Series(k, lst, dtype=dtype)
    df = pl.DataFrame(data)
    return df.with_row_index(ORDER_COL)


def record_start_line(path: Path, record: int) -> int | None:
    """The line of ``path`` on which data record ``record`` (0-based, after the header) starts,
    counting line breaks inside quoted fields: read with the csv module up to that record (only
    for the few rows a report names). None when the file ends first."""
    csv.field_size_limit(sys.maxsize)
    try:
        with path.open(encoding="utf-8", errors="replace", newline="") as fh:
            reader = csv.reader(fh)
            for _ in range(record + 1):  # the header, then the records before this one
                next(reader)
            return reader.line_num + 1
    except (OSError, StopIteration, csv.Error):
        return None


def find_seed_csv(folder: Path) -> list[Path]:
    named = sorted(folder.glob("generations*.csv"))
    if named:
        return named
    return [p for p in sorted(folder.glob("*.csv")) if looks_like_seed_csv(p)]
