"""A logscan run folder (format ``logscan-run/1``, written by ``trainer_hooks``).

``run.json`` (+ ``run.rank{N}.json``), ``events*.jsonl`` and every ``generations*.jsonl`` /
``generations*.csv`` (per rank ``*.rank{N}.*``, later parts ``*.part{N}.*``). Big JSONL files are
read by Polars with an explicit all-text schema and cast afterwards (``"NaN"`` strings become NaN);
only a file the fast path cannot vouch for (a torn or malformed line, a wrong type) is re-read
line by line, so every problem is reported with its file:line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from analyzer import columns as C
from analyzer.columns import split_prefix
from analyzer.errors import InputError
from analyzer.ingest._common import (
    FILE_COL,
    LINE_COL,
    ORDER_COL,
    RECORD_LINE_COL,
    RESERVED,
    TAIL_READER,
    Collector,
    Columns,
    Dirty,
    JSONLimitError,
    buffer_raw_lines,
    empty_steps,
    expand_object,
    extra_column,
    finalize_generations,
    iter_json_objects,
    json_text,
    loads,
    merge_steps,
    metric_values,
    run_files,
    short,
    sorted_order,
    steps_frame,
    text_to_float,
    to_float,
    to_int,
    to_unix_seconds,
    why_empty,
)
from analyzer.ingest.seed_csv import find_seed_csv, read_generations_csv, record_start_line
from analyzer.model import IngestReport, RunData
from trainer_hooks import schema as S

if TYPE_CHECKING:
    import polars as pl

_RANK_RE: Final = re.compile(r"\.rank(\d+)\.")
_PART_RE: Final = re.compile(r"\.part(\d+)\.")
TEXT_FIELDS: Final = (S.G_QUESTION_ID, S.G_QUESTION, S.G_GROUND_TRUTH, S.G_OUTPUT, S.G_REASONING, S.G_ANSWER, S.G_SPLIT, S.G_GROUP_ID)
KNOWN_TOP: Final = (S.G_TIMESTAMP, S.G_STEP, *TEXT_FIELDS, S.G_TOTAL_REWARD, S.G_REWARDS, S.G_RANK, S.G_EXTRA)


def is_logscan_folder(path: Path) -> bool:
    return (
        (path / S.MANIFEST_FILE).is_file()
        or any(path.glob(f"{S.EVENTS_STEM}*.jsonl"))
        or any(path.glob(f"{S.GENERATIONS_STEM}*.jsonl"))
    )


def file_rank(path: Path) -> int | None:
    m = _RANK_RE.search(path.name)
    return int(m.group(1)) if m else None


def _file_key(path: Path) -> tuple[int, int, str]:
    m = _PART_RE.search(path.name)
    return (file_rank(path) or 0, int(m.group(1)) if m else 0, path.name)


# --- manifest -------------------------------------------------------------------------------------
def read_manifest(folder: Path, col: Collector) -> dict[str, Any]:
    """run.json (and run.rank{N}.json): run info; ``reward_names`` is the union over every rank's
    manifest, and ``SESSION_STARTS`` the unix times each rank's sessions resumed at."""
    info: dict[str, Any] = {}
    all_names: dict[str, None] = {}
    all_resumes: dict[int, list[dict[str, Any]]] = {}
    main = folder / S.MANIFEST_FILE
    present = [main] if main.is_symlink() or main.exists() else []
    manifests = sorted(run_files([*present, *folder.glob("run.rank*.json")], col), key=lambda p: (p != main, p.name))
    for path in manifests:
        try:
            data = loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            why = exc.msg if isinstance(exc, JSONLimitError) else type(exc).__name__
            col.issue(path, None, f"unreadable manifest ({why}); ignored", "malformed", skipped=False)
            continue
        if not isinstance(data, dict):
            col.issue(path, None, "manifest is not a JSON object; ignored", "malformed", skipped=False)
            continue
        col.read(path)
        data = _typed_manifest(data, path, col)
        counters = data.get(S.M_COUNTERS)
        if isinstance(counters, dict):
            # trainer_hooks' counters: records_failed did not reach the disk (a write error, a
            # deleted or read-only folder, a full disk; or arguments it could not log)
            for key, what in (
                ("records_dropped", "records dropped (queue full, logged after close, or unwritten when close timed out)"),
                ("records_failed", "records that did not reach the disk (write errors, or arguments it could not log)"),
                ("write_errors", "failed write/fsync calls"),
            ):
                n = to_int(counters.get(key))
                if n:
                    col.issue(path, None, f"the writer reports {n} {what}", "dropped", skipped=False)
        names = data.get(S.M_REWARD_NAMES)
        if isinstance(names, list):  # every rank's reward names count: ranks can log different ones
            all_names.update(dict.fromkeys(str(n) for n in names))
        resumes = data.get(S.M_RESUMES)
        if isinstance(resumes, list):  # each rank's own sessions (ranks resume at slightly different times)
            rank = to_int(data.get(S.M_RANK))
            rank = (file_rank(path) or 0) if rank is None else rank
            all_resumes.setdefault(rank, []).extend(r for r in resumes if isinstance(r, dict))
        if path != main and info:
            continue  # rank manifests only fill in when run.json is missing
        for key in (S.M_RUN_ID, S.M_ALGORITHM, S.M_MODEL, S.M_CONFIG, S.M_STATUS, S.M_REWARD_NAMES,
                    S.M_WORLD_SIZE, S.M_CREATED, S.M_ENDED, S.M_FORMAT, S.M_GENERATIONS_FORMAT, S.M_RESUMES):
            if key in data and key not in info:
                info[key] = data[key]
    if main not in manifests:
        col.note("no run.json: run id, status and config are unknown")
    status = info.get(S.M_STATUS)
    if status == S.RunStatus.RUNNING.value:
        col.note("run.json says the run is still running (or was killed without closing): results cover what was written so far")
    elif status == S.RunStatus.CRASHED.value:
        col.note("run.json says the run crashed")
    fmt = info.get(S.M_FORMAT)
    if fmt and fmt != S.FORMAT:
        col.note(f"run.json format is {fmt!r}; this logscan reads {S.FORMAT!r}")
    info.setdefault(S.M_RUN_ID, folder.resolve().name)
    if all_names:
        info[S.M_REWARD_NAMES] = list(all_names)
    info[SESSION_STARTS] = {
        rank: sorted(t for t in (_unix_time(r.get("time")) for r in rs) if t is not None)
        for rank, rs in all_resumes.items()
    }
    return info


_MANIFEST_TEXT: Final = (S.M_RUN_ID, S.M_ALGORITHM, S.M_MODEL, S.M_STATUS, S.M_CREATED, S.M_ENDED, S.M_FORMAT, S.M_GENERATIONS_FORMAT)


def _typed_manifest(data: dict[str, Any], path: Path, col: Collector) -> dict[str, Any]:
    """``data`` with its run-info fields of the types analysis.json promises: a number where text
    belongs is read as its text, a single reward name as a list of one, an integral world size
    as an integer; any other wrong type is left out. Each is a located ``wrong_type`` issue."""
    out = dict(data)

    def wrong(key: str, value: Any, fate: str) -> None:
        col.issue(path, None, f"{key} is {short(value)} ({type(value).__name__}); {fate}", "wrong_type", skipped=False)

    for key in _MANIFEST_TEXT:
        value = out.get(key)
        if value is None or isinstance(value, str):
            continue
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = json_text(value)
            wrong(key, value, f"read as the text {out[key]!r}")
        else:
            del out[key]
            wrong(key, value, "not text; ignored")
    names = out.get(S.M_REWARD_NAMES)
    if isinstance(names, str):
        out[S.M_REWARD_NAMES] = [names]
        wrong(S.M_REWARD_NAMES, names, "read as a list of one name")
    elif names is not None and not isinstance(names, list):
        del out[S.M_REWARD_NAMES]
        wrong(S.M_REWARD_NAMES, names, "not a list of names; ignored")
    elif isinstance(names, list) and not all(isinstance(n, str) for n in names):
        out[S.M_REWARD_NAMES] = [n if isinstance(n, str) else json_text(n) for n in names if n is not None]
        wrong(S.M_REWARD_NAMES, names, "names that are not text are read as their JSON text")
    size = out.get(S.M_WORLD_SIZE)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
        as_int = to_int(size)
        if as_int is not None and as_int >= 1:
            out[S.M_WORLD_SIZE] = as_int
            wrong(S.M_WORLD_SIZE, size, f"read as {as_int}")
        else:
            del out[S.M_WORLD_SIZE]
            wrong(S.M_WORLD_SIZE, size, "not a number of processes; ignored")
    for key, kind in ((S.M_CONFIG, dict), (S.M_RESUMES, list), (S.M_COUNTERS, dict)):
        value = out.get(key)
        if value is not None and not isinstance(value, kind):
            del out[key]
            wrong(key, value, f"not {'an object' if kind is dict else 'a list'}; ignored")
    return out


# Internal key of read_manifest's result: per rank, when its resumed sessions started (unix
# seconds, sorted).
SESSION_STARTS: Final = "__session_starts"


def _unix_time(value: Any) -> float | None:
    """A resume's ``time``: ISO-8601 text (what trainer_hooks writes) or unix seconds."""
    import datetime as dt

    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.timestamp()
    return None


# --- events -----------------------------------------------------------------------------------------
_SUMMARY_PHASES: Final = (S.TrainingPhase.TRAIN_END.value, S.TrainingPhase.RUN_END.value)


def read_events(
    folder: Path, col: Collector, session_starts: dict[int, list[float]] | None = None, summary: dict[str, Any] | None = None
) -> pl.DataFrame:
    """events*.jsonl → the steps frame. Records of a step merge, except across segments: a record
    from a later segment (a later resumed session — ``session_starts`` against the record's time —
    or after the step went back) replaces what earlier segments logged for that step. Metrics of
    the end-of-training events go into ``summary``, not into the last step."""
    import bisect

    files = sorted(run_files(folder.glob(f"{S.EVENTS_STEM}*.jsonl"), col), key=_file_key)
    per_rank: dict[int, dict[int, dict[str, float | None]]] = {}
    segment_of: dict[int, dict[int, tuple[int, int]]] = {}
    for path in files:
        if path.stat().st_size == 0:
            col.issue(path, None, "empty file", "empty", skipped=False)
            continue
        col.read(path)
        rank_default = file_rank(path) or 0
        prev_step: int | None = None
        stepped_back = session = 0
        for lineno, obj in iter_json_objects(path, col):
            step = to_int(obj.get(S.E_STEP))
            phase = obj.get(S.E_PHASE)
            if phase == S.TrainingPhase.RUN_RESUME.value:
                col.note(f"{col.rel(path)}:{lineno}: the run was resumed (run_resume event)")
            t, ok = to_float(obj.get(S.E_TIME))
            record_rank = to_int(obj.get(S.E_RANK))
            starts = (session_starts or {}).get(rank_default if record_rank is None else record_rank)
            if ok and t is not None and starts:
                session = bisect.bisect_right(starts, t)
            metrics = obj.get(S.E_METRICS)
            if metrics is None or metrics == {}:
                continue
            if not isinstance(metrics, dict):
                col.issue(path, lineno, f"metrics is {type(metrics).__name__}, not an object; record skipped", "wrong_type", skipped=True)
                continue
            if phase in _SUMMARY_PHASES and summary is not None:
                # train_runtime, train_loss, …: the run's summary, not values of its last step
                summary.update({str(k): v for k, v in metrics.items()})
                continue
            if step is None:
                col.issue(path, lineno, f"step is {short(obj.get(S.E_STEP))}, not an integer; record skipped", "no_step")
                continue
            if prev_step is not None and step < prev_step:
                col.resume(path, lineno, prev_step, step)
                stepped_back += 1
            prev_step = step
            rank = to_int(obj.get(S.E_RANK))
            rank = rank_default if rank is None else rank
            prefix = split_prefix(obj.get(S.E_SPLIT) or "train")
            mapped = metric_values(metrics, path, lineno, col, label="metric {!r}", prefix=prefix)
            steps_of, segments = per_rank.setdefault(rank, {}), segment_of.setdefault(rank, {})
            segment, seen = (session, stepped_back), segments.get(step)
            if seen is None or segment > seen:  # a later segment re-logs the step: its record replaces
                steps_of[step], segments[step] = dict(mapped), segment
            elif segment == seen:  # several records of one step merge
                steps_of[step].update(mapped)
    frames = [steps_frame(per_rank[r]) for r in sorted(per_rank)]
    if len(frames) > 1:
        col.note("metrics of rank 0 are used; other ranks only fill metrics rank 0 did not log")
    return merge_steps(frames)


# --- generations JSONL ----------------------------------------------------------------------------
# The file is parsed by Polars in chunks of this many bytes (cut at line ends): peak memory stays
# near the size of the frame instead of twice the file, and a bad line only sends its own chunk
# down the careful path, which then knows exact line numbers.
CHUNK_BYTES: Final = 64 << 20
# A chunk Polars rejects is cut into pieces of this size and only the rejected pieces are read line
# by line (~25 ms per MB in Python, against ~1.5 s for a whole chunk).
PIECE_BYTES: Final = 1 << 20


def _discover(path: Path) -> list[str]:
    """Top-level keys: trainer_hooks.schema's, plus any in the first 200 records or the last 1 MB.

    trainer_hooks writes no others (a user's fields go under ``extra``). Reward names need no
    discovery: the rewards object is read as JSON text and every name in it is kept.
    """
    keys: dict[str, None] = dict.fromkeys(KNOWN_TOP)
    with path.open("rb") as fh:
        head = [fh.readline() for _ in range(200)]
        size = path.stat().st_size
        fh.seek(max(0, size - (1 << 20)))
        tail = fh.read().split(b"\n")[1:]
    for raw in head + tail:
        try:
            obj = loads(raw)
        except (ValueError, RecursionError):
            continue
        if isinstance(obj, dict):
            keys.update(dict.fromkeys(obj))
    return list(keys)


def _scan_schema(keys: list[str]) -> dict[str, pl.DataType]:
    import polars as pl

    # Everything as text: Polars turns numbers (and nested JSON) into their text, and the
    # casts below then accept logscan's "NaN"/"Infinity" strings. The rewards object too: read as
    # its JSON text, every reward name in it is kept (expand_object), including one that first
    # appears mid-file and that neither run.json nor the sampled records name.
    return {k: pl.String() for k in keys}


def _chunks(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """``(number of the chunk's first line, its number of lines, bytes)``; chunks end at line ends
    (except a torn tail).

    Boundaries are found by seeking, so each chunk is read once with no copying. The next chunk is
    read by a helper thread while the caller parses this one (Polars releases the GIL): copying a
    gigabyte out of the page cache is ~0.4 CPU-seconds that would otherwise add to the parse.
    """
    from concurrent.futures import ThreadPoolExecutor

    size = path.stat().st_size

    def read(fh: Any, start: int) -> tuple[bytes, int]:
        end = min(start + CHUNK_BYTES, size)
        if end < size:
            fh.seek(end)
            end += len(fh.readline())  # to the end of the line the cut fell in
        fh.seek(start)
        chunk = fh.read(end - start)
        return chunk, chunk.count(b"\n") + (not chunk.endswith(b"\n"))

    line = 1
    with path.open("rb") as fh, ThreadPoolExecutor(1, thread_name_prefix="logscan-read") as pool:
        start = 0
        pending = pool.submit(read, fh, start) if size else None
        while pending is not None:
            chunk, n_lines = pending.result()
            start += len(chunk)
            # only the helper thread touches the file; at most one chunk is read ahead
            pending = pool.submit(read, fh, start) if start < size and chunk else None
            yield line, n_lines, chunk
            line += n_lines


def _typed(df: pl.DataFrame, *, literal_backslash: bool = True) -> pl.DataFrame:
    """The all-text frame of one chunk → typed canonical columns; ``Dirty`` if a value does not fit.

    One query checks every cast, one more builds the frame: per-chunk overhead matters when a
    gigabyte arrives as a few dozen chunks. ``literal_backslash``: the chunk may hold an escaped
    backslash (see ``expand_object``).
    """
    import polars as pl

    # unknown top-level keys named like canonical columns or rewards: as the careful path names them
    renames = {c: extra_column(c) for c in df.columns if c not in KNOWN_TOP and extra_column(c) != c}
    if renames:
        if set(renames.values()) & set(df.columns):
            raise Dirty
        df = df.rename(renames)
    schema = df.schema

    def number(e: pl.Expr, dtype: Any) -> pl.Expr:  # a step or rank is an integer, never a boolean
        return text_to_float(e) if dtype == pl.Float64 else e.str.strip_chars().cast(dtype, strict=False)

    typed: list[pl.Expr] = [number(pl.col(S.G_STEP), pl.Int64).alias(C.STEP)]
    checks: list[pl.Expr] = [typed[0].is_null().any()]
    for src, dst, dtype in ((S.G_TOTAL_REWARD, C.TOTAL_REWARD, pl.Float64), (S.G_RANK, C.RANK, pl.Int64)):
        if src in schema:
            typed.append(number(pl.col(src), dtype).alias(dst))
            checks.append((pl.col(src).is_not_null() & typed[-1].is_null()).any())
    extra_used = (pl.col(S.G_EXTRA).is_not_null() & (pl.col(S.G_EXTRA) != "{}")).any()
    flags = df.lazy().select(*checks, *([extra_used] if S.G_EXTRA in schema else [])).collect().row(0)
    if any(flags[: len(checks)]):
        raise Dirty
    keep_extra = S.G_EXTRA in schema and bool(flags[-1])
    skip = {S.G_STEP, S.G_TOTAL_REWARD, S.G_RANK} | ({S.G_EXTRA} if S.G_EXTRA in schema and not keep_extra else set())
    df = df.lazy().select(*[c for c in df.columns if c not in skip], *typed).collect()
    if S.G_REWARDS in df.columns:  # the object's JSON text (_scan_schema): every name in it
        df = expand_object(df, S.G_REWARDS, C.REWARD_PREFIX, numeric=True, unescaped_backslashes=literal_backslash)
    if keep_extra:
        df = expand_object(df, S.G_EXTRA, "", numeric=False, unescaped_backslashes=literal_backslash)
    for name in [c for c in df.columns if c not in RESERVED and c not in TEXT_FIELDS and not c.startswith(C.REWARD_PREFIX)]:
        if df.schema[name] == pl.String:  # an unknown top-level key: a number if every value is one
            value = df[name].cast(pl.Float64, strict=False)
            if int((df[name].is_not_null() & value.is_null()).sum()) == 0:
                df = df.with_columns(value.alias(name))
    return df


def _read_jsonl_careful(path: Path, col: Collector, raw_lines: Iterable[tuple[int, bytes]] | None = None) -> pl.DataFrame | None:
    import polars as pl

    cols = Columns()
    for lineno, obj in iter_json_objects(path, col, raw_lines):
        step = to_int(obj.get(S.G_STEP))
        if step is None:
            col.issue(path, lineno, f"global_step is {short(obj.get(S.G_STEP))}, not an integer; record skipped", "wrong_type", skipped=True)
            continue
        row: dict[str, Any] = {C.STEP: step, LINE_COL: lineno}
        total, ok = to_float(obj.get(S.G_TOTAL_REWARD))
        if not ok:
            col.issue(path, lineno, f"total_reward is {short(obj.get(S.G_TOTAL_REWARD))}, not a number; set to null", "wrong_type", skipped=False)
        row[C.TOTAL_REWARD] = total
        rank = obj.get(S.G_RANK)
        if rank is not None:
            row[C.RANK] = to_int(rank)
            if row[C.RANK] is None:
                col.issue(path, lineno, f"rank is {short(rank)}, not an integer; ignored", "wrong_type", skipped=False)
        for key in TEXT_FIELDS:
            value = obj.get(key)
            if value is not None and not isinstance(value, str):
                col.issue(path, lineno, f"{key} is {type(value).__name__}, not text; kept as its JSON text", "wrong_type", skipped=False)
                value = json_text(value)
            row[key] = value
        ts = obj.get(S.G_TIMESTAMP)
        row[C.TIMESTAMP] = None if ts is None else str(ts)
        rewards = obj.get(S.G_REWARDS)
        if isinstance(rewards, dict):
            for name, value in rewards.items():
                f, ok = to_float(value)
                if not ok:
                    col.issue(path, lineno, f"reward {name!r} is {short(value)}, not a number; set to null", "wrong_type", skipped=False)
                row[C.REWARD_PREFIX + str(name)] = f
        elif rewards is not None:
            col.issue(path, lineno, f"rewards is {type(rewards).__name__}, not an object; ignored", "wrong_type", skipped=False)
        extra = obj.get(S.G_EXTRA)
        extras = dict(extra) if isinstance(extra, dict) else {}
        if extra is not None and not isinstance(extra, dict):
            col.issue(path, lineno, f"extra is {type(extra).__name__}, not an object; ignored", "wrong_type", skipped=False)
        for key, value in obj.items():
            if key not in KNOWN_TOP:
                extras[key] = value
        for key, value in extras.items():
            row[extra_column(key)] = value
        cols.append(row)
    if cols.n == 0:
        return None
    return pl.DataFrame([_series(k, lst) for k, lst in cols.data.items()])


def _series(name: str, values: list[Any]) -> pl.Series:
    import polars as pl

    if name in (C.STEP, LINE_COL, C.RANK):
        return pl.Series(name, values, dtype=pl.Int64)
    if name == C.TOTAL_REWARD or name.startswith(C.REWARD_PREFIX):
        # the rewards object's values are coerced already; a "reward/…" key under extra is not
        return pl.Series(name, [v if isinstance(v, float) or v is None else to_float(v)[0] for v in values], dtype=pl.Float64)
    if name in TEXT_FIELDS:
        return pl.Series(name, values, dtype=pl.String)
    kinds = {type(v) for v in values if v is not None}
    if kinds <= {int, float}:
        return pl.Series(name, values, dtype=pl.Float64)
    if kinds <= {str}:
        return pl.Series(name, values, dtype=pl.String)
    return pl.Series(name, [json_text(v) for v in values], dtype=pl.String)


def _read_chunk(
    path: Path, col: Collector, schema: dict[str, pl.DataType], first_line: int, n_lines: int, chunk: bytes
) -> pl.DataFrame | None:
    """One chunk: Polars when it can vouch for every line, else smaller pieces, and line by line
    only for the pieces (≤ ``PIECE_BYTES``) that hold a problem."""
    import polars as pl

    try:
        raw = pl.read_ndjson(chunk, schema=schema)
        if raw.height != n_lines:
            # Polars' reader is lenient: a broken line can come back as extra or missing rows;
            # a chunk vouches for itself only with one row per line (blank lines also land here)
            raise Dirty
        df = _typed(raw, literal_backslash=_has_literal_backslash(chunk))
    except (Dirty, pl.exceptions.PolarsError):
        pieces = list(_pieces(chunk, first_line)) if len(chunk) > PIECE_BYTES else []
        if len(pieces) > 1:  # narrow it down before paying for Python per line
            parts = [_read_chunk(path, col, schema, *piece) for piece in pieces]
            kept = [p for p in parts if p is not None and p.height]
            return pl.concat(kept, how="diagonal_relaxed", rechunk=False) if kept else None
        # polars cannot say which line: re-read this piece line by line
        return _read_jsonl_careful(path, col, buffer_raw_lines(chunk, first_line))
    col.report.records_read += df.height
    return df.with_columns(pl.int_range(first_line, first_line + df.height, dtype=pl.Int64).alias(LINE_COL))


def _has_literal_backslash(chunk: bytes) -> bool:
    """Whether a JSON text may hold a backslash character (``\\\\`` or ``\\u005c``): a fast
    byte search, and none at all in most logs."""
    if chunk.find(b"\\") < 0:
        return False
    return b"\\\\" in chunk or b"\\u005c" in chunk or b"\\u005C" in chunk


def _pieces(chunk: bytes, first_line: int) -> Iterator[tuple[int, int, bytes]]:
    """``chunk`` cut at line ends into ``(first line, number of lines, bytes)`` of ≈ PIECE_BYTES."""
    start, line = 0, first_line
    while start < len(chunk):
        nl = chunk.find(b"\n", min(start + PIECE_BYTES, len(chunk)) - 1)
        end = len(chunk) if nl < 0 else nl + 1
        piece = chunk[start:end]
        n_lines = piece.count(b"\n") + (not piece.endswith(b"\n"))
        yield line, n_lines, piece
        line += n_lines
        start = end


def read_generations_jsonl(path: Path, col: Collector) -> pl.DataFrame | None:
    import polars as pl

    if path.stat().st_size == 0:
        col.issue(path, None, "empty file", "empty", skipped=False)
        return None
    col.read(path)
    schema = _scan_schema(_discover(path))
    frames: list[pl.DataFrame] = []
    for first_line, n_lines, chunk in _chunks(path):
        df = _read_chunk(path, col, schema, first_line, n_lines, chunk)
        if df is not None and df.height:
            frames.append(df)
    if not frames:
        return None
    out = pl.concat(frames, how="diagonal_relaxed", rechunk=False) if len(frames) > 1 else frames[0]
    return out.with_row_index(ORDER_COL)


# --- resumes ------------------------------------------------------------------------------------------
def resolve_resumes(
    df: pl.DataFrame,
    col: Collector,
    *,
    files_by_seq: list[str],
    paths: list[Path] | None = None,
    session_starts: dict[int, list[float]] | None = None,
) -> pl.DataFrame:
    """Within one rank's sequence of records (``FILE_COL`` = index into ``files_by_seq``, then
    ``ORDER_COL``), a step going back starts a new segment: for every step logged by several
    segments only the latest segment's records are kept. ``paths`` (parallel to ``files_by_seq``)
    locate the physical line of a CSV record read by record number. ``session_starts`` (when
    run.json records resumed sessions) also start a segment at each session, by the records'
    timestamps: a session that resumes from a checkpoint re-logs a step without the step going
    back, and its records replace the interrupted session's."""
    import polars as pl

    if C.RANK not in df.columns:
        df = df.with_columns(pl.lit(0, dtype=pl.Int64).alias(C.RANK))
    df = df.with_columns(pl.col(C.RANK).fill_null(0))
    df = sorted_order(df, [C.RANK, FILE_COL, ORDER_COL])
    prev = pl.col(C.STEP).shift(1).over(C.RANK)
    df = df.with_columns((pl.col(C.STEP) < prev).fill_null(False).alias("__back"))
    sessions = _sessions(df, session_starts or {})
    if sessions is not None:
        df = df.with_columns(sessions.alias("__session"))
    backs = df.filter(pl.col("__back"))
    if backs.height == 0 and (sessions is None or sessions.n_unique() == 1):
        return df.drop("__back", "__session", strict=False).with_columns(
            pl.int_range(pl.len(), dtype=pl.Int64).alias(ORDER_COL)
        )
    prev_rows = df.with_columns(prev.alias("__prev")).filter(pl.col("__back"))
    by_record = RECORD_LINE_COL in df.columns
    for row in prev_rows.select(
        FILE_COL, LINE_COL, "__prev", C.STEP, C.RANK, ORDER_COL,
        pl.col(RECORD_LINE_COL).fill_null(False) if by_record else pl.lit(False),
    ).iter_rows():  # fmt: skip
        line = row[1]
        if row[6] and paths is not None:  # a CSV record number: find the line it starts on
            line = record_start_line(paths[row[0]], int(row[5])) or line
        col.report.resumes.append({"file": files_by_seq[row[0]], "line": line, "from_step": row[2], "to_step": row[3], "rank": row[4]})
    seg = pl.col("__back").cast(pl.Int64).cum_sum().over(C.RANK)
    if sessions is not None:  # (session, step-back segment), both growing along a rank's records
        seg = pl.col("__session").cast(pl.Int64) * (1 << 32) + seg
    df = df.with_columns(seg.alias("__seg"))
    keep = pl.col("__seg") == pl.col("__seg").max().over([C.RANK, C.STEP])
    dropped = df.filter(~keep)
    if dropped.height:
        stale = dropped[C.STEP].to_list()
        lo, hi = min(stale), max(stale)
        col.note(
            f"resumed run: {dropped.height} completions of steps {lo}-{hi} were logged again after a resume; "
            "the latest segment's records are used"
        )
    out = df.filter(keep).drop("__back", "__seg", "__session", strict=False)
    return out.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(ORDER_COL))


def _sessions(df: pl.DataFrame, starts: dict[int, list[float]]) -> pl.Series | None:
    """Per record (in ``df``'s order), the session it was written in: how many of its rank's
    resumed sessions had started by its timestamp. None without resumes or timestamps (a record
    without one belongs to the session of the record before it)."""
    import numpy as np
    import polars as pl

    if not any(starts.values()) or C.TIMESTAMP not in df.columns:
        return None
    ts = to_unix_seconds(df[C.TIMESTAMP]).fill_null(strategy="forward").fill_null(float("-inf")).to_numpy()
    ranks = df[C.RANK].to_numpy()
    out = np.zeros(len(ts), dtype=np.int64)
    for rank, times in starts.items():
        if times:
            mine = ranks == rank
            out[mine] = np.searchsorted(np.asarray(times), ts[mine], side="right")
    return pl.Series("__session", out, dtype=pl.Int64)


def read_generations(
    folder: Path, col: Collector, session_starts: dict[int, list[float]] | None = None
) -> pl.DataFrame | None:
    files = [*folder.glob(f"{S.GENERATIONS_STEM}*.jsonl"), *folder.glob(f"{S.GENERATIONS_STEM}*.csv")]
    return read_generation_files(files, col, session_starts)


def read_generation_files(
    files: list[Path], col: Collector, session_starts: dict[int, list[float]] | None = None
) -> pl.DataFrame | None:
    """JSONL / CSV generations files → one frame (not yet finalised), in (rank, part, name) order:
    the rank a file's name carries fills a missing ``rank``; resumes are resolved per rank."""
    import polars as pl

    frames: list[pl.DataFrame] = []
    names: list[str] = []
    paths: list[Path] = []
    for path in sorted(run_files(files, col), key=_file_key):
        jsonl = path.suffix == ".jsonl"
        reader = read_generations_jsonl if jsonl else read_generations_csv
        tail = TAIL_READER.get()  # an incremental read (analyzer.ingest.tail): new bytes only
        df = reader(path, col) if tail is None else tail(path, col, "jsonl" if jsonl else "csv", reader)
        if df is None or df.height == 0:
            continue
        rank = file_rank(path)
        if rank is not None and (C.RANK not in df.columns or df[C.RANK].null_count() == df.height):
            df = df.with_columns(pl.lit(rank, dtype=pl.Int64).alias(C.RANK))
        df = df.with_columns(pl.lit(len(names), dtype=pl.Int64).alias(FILE_COL))
        names.append(col.rel(path))
        paths.append(path)
        frames.append(df)
    if not frames:
        return None
    # One chunk per column. The readers concatenate per-chunk / per-piece / per-file frames without
    # copying and then add whole-frame columns (the row index), so the columns come chunked
    # differently; filtering such a frame (a resume drops rows) leaves empty chunks, on which
    # Polars' pl.format panics ("assertion failed: i < self.len()"). Cheap: strings are views.
    df = (pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]).rechunk()
    frames.clear()
    df = resolve_resumes(df, col, files_by_seq=names, paths=paths, session_starts=session_starts)
    return df.drop(LINE_COL, FILE_COL, RECORD_LINE_COL, strict=False)


def load_logscan_run(folder: Path, report: IngestReport, *, generation_files: list[Path] | None = None) -> RunData:
    """``generation_files``: only these (a run folder's merge leaves out a CSV another logger wrote
    beside a JSONL run); default every ``generations*`` file of the folder."""
    col = Collector(report, folder)
    info = read_manifest(folder, col)
    starts = info.pop(SESSION_STARTS, {})
    summary: dict[str, Any] = {}
    steps = read_events(folder, col, starts, summary)
    if summary:
        info["train_summary"] = summary
    gens = (
        read_generations(folder, col, starts)
        if generation_files is None
        else read_generation_files(generation_files, col, starts)
    )
    if gens is not None:
        gens = finalize_generations(gens, col)
    col.finish()
    if gens is None and steps.height == 0:
        raise InputError(f"{folder}: nothing readable in this logscan run folder ({why_empty(report, 'no rows')})")
    names = list(info.get(S.M_REWARD_NAMES) or [])
    if gens is not None:
        names += [c[len(C.REWARD_PREFIX):] for c in gens.columns if c.startswith(C.REWARD_PREFIX) and c[len(C.REWARD_PREFIX):] not in names]
    info[S.M_REWARD_NAMES] = names
    info.setdefault(S.M_WORLD_SIZE, 1)
    for r in info.pop(S.M_RESUMES, None) or []:
        col.note(f"run.json records a resume: {r}")
    return RunData(path=str(folder), steps=steps, generations=gens, report=report, info=info)


def load_seed_csv(path: Path, report: IngestReport) -> RunData:
    """A bare seed-schema CSV (or a folder holding CSVs of that schema), read like a logscan run's
    CSV generations (file-name ranks and parts, resumes)."""
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
