"""Generations in the seed's CSV schema: a bare ``generations.csv`` (or a folder holding one), and
the CSV variant of a logscan run folder.

Columns: ``timestamp, global_step, question_id, question, ground_truth_answer, model_output,
reasoning, model_answer, total_reward, <name>_reward…`` then optional ``split, group_id`` and
``extra_rewards`` (a JSON object of rewards that appeared after the header was written). Fast path:
Polars reads every column as text and casts; only when that meets something it cannot vouch for
(a torn last row, a value of the wrong type, bytes that are not UTF-8) does the careful path re-read
the file with the csv module to say which line.
"""

from __future__ import annotations

import csv
import io
import json
import sys
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
    empty_steps,
    expand_object,
    extra_column,
    finalize_generations,
    json_text,
    loads,
    short,
    text_to_float,
    to_float,
    to_int,
    why_empty,
)
from analyzer.model import IngestReport, RunData
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
        with path.open(encoding="utf-8", newline="") as fh:
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


def _fast(path: Path, col: Collector) -> pl.DataFrame:
    import polars as pl

    with path.open("rb") as fh:
        fh.seek(-1, 2)
        if fh.read(1) not in (b"\n", b"\r"):
            raise Dirty  # torn last row: let the careful path say so
    try:
        df = pl.read_csv(path, infer_schema=False, raise_if_empty=False)
    except Exception as exc:  # polars raises several types for broken CSV
        raise Dirty from exc
    names = _csv_header(path)
    if names is None or len(names) != len(df.columns):
        raise Dirty
    if names != df.columns and len(set(names)) == len(names):
        df.columns = names  # Polars keeps the doubled quotes of a quoted name ("q""uote_reward")
    step_col = _header_check(df.columns, path)
    df = df.with_row_index(ORDER_COL)
    casts: list[pl.Expr] = [pl.col(step_col).str.strip_chars().cast(pl.Int64, strict=False).alias(C.STEP)]
    numeric = [S.G_TOTAL_REWARD] + [c for c in df.columns if reward_name(c)]
    for name in numeric:
        if name in df.columns:
            casts.append(text_to_float(pl.col(name)).alias("__f_" + name))
    out = df.with_columns(casts)
    # Every value that was there must have survived its cast; otherwise locate it carefully.
    bad = out.select(
        [(pl.col(C.STEP).is_null()).any().alias("__step")]
        + [
            (pl.col(n).is_not_null() & (pl.col(n).str.strip_chars() != "") & pl.col("__f_" + n).is_null()).any().alias(n)
            for n in numeric
            if n in df.columns
        ]
    ).row(0)
    if any(bad):
        raise Dirty
    renames: dict[str, str] = {}
    drop: list[str] = []
    for name in numeric:
        if name not in df.columns:
            continue
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
    return out.with_columns(
        (pl.col(ORDER_COL) + 2).cast(pl.Int64).alias(LINE_COL), pl.lit(True).alias(RECORD_LINE_COL)
    )


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


def _careful(path: Path, col: Collector) -> pl.DataFrame | None:
    """Row by row with the csv module; every problem gets its file:line."""
    import polars as pl

    csv.field_size_limit(sys.maxsize)
    raw = path.read_bytes()
    text = raw.decode("utf-8", errors="surrogateescape")
    torn = not raw.endswith((b"\n", b"\r"))
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except (StopIteration, csv.Error):
        col.issue(path, 1, "no header row", "empty", skipped=False)
        return None
    if torn and reader.line_num == 1 and not text.rstrip("\r\n").count("\n"):
        # only a header, cut short: the writer was interrupted before any row (the logger then
        # starts a new part); nothing to read here, but say so
        col.issue(path, 1, "torn header (the writer was interrupted before any row); file skipped", "torn_line")
        return None
    step_col = _header_check(header, path)
    rows = Columns()
    prev_end = reader.line_num
    records: list[tuple[int, list[str]]] = []
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            col.issue(path, prev_end + 1, f"malformed CSV ({exc}); row skipped", "malformed")
            prev_end = reader.line_num
            continue
        start = prev_end + 1
        prev_end = reader.line_num
        if not fields or all(f == "" for f in fields):
            continue
        records.append((start, fields))
    last_index = len(records) - 1
    for idx, (line, fields) in enumerate(records):
        if any("\udc80" <= ch <= "\udcff" for f in fields for ch in f):
            col.issue(path, line, "not valid UTF-8; row skipped", "not_utf8")
            continue
        if len(fields) != len(header):
            if idx == last_index and torn:
                col.issue(path, line, "torn last row (the writer was interrupted); skipped", "torn_line")
            else:
                col.issue(path, line, f"expected {len(header)} fields, found {len(fields)}; row skipped", "malformed")
            continue
        rec = dict(zip(header, fields, strict=True))
        step = to_int(rec.get(step_col))
        if step is None:
            col.issue(path, line, f"{step_col} is {short(rec.get(step_col))}, not an integer; row skipped", "wrong_type", skipped=True)
            continue
        if idx == last_index and torn:
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


def load_seed_csv(path: Path, report: IngestReport) -> RunData:
    """A bare seed-schema CSV (or a folder holding CSVs of that schema), read like a logscan run's
    CSV generations (file-name ranks and parts, resumes)."""
    from analyzer.ingest.logscan_run import read_generation_files

    root = path if path.is_dir() else path.parent
    col = Collector(report, root)
    df = read_generation_files(find_seed_csv(path) if path.is_dir() else [path], col)
    col.finish()
    if df is None:
        raise InputError(f"{path}: no readable generations in the CSV ({why_empty(report, 'no rows')})")
    gens = finalize_generations(df, col)
    reward_names = [c[len(C.REWARD_PREFIX) :] for c in gens.columns if c.startswith(C.REWARD_PREFIX)]
    info = {"run_id": path.stem if path.is_file() else path.name, "reward_names": reward_names, "world_size": 1}
    return RunData(path=str(path), steps=empty_steps(), generations=gens, report=report, info=info)
