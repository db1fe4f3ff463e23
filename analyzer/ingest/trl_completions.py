"""TRL's completion logs: ``<output_dir>/completions/completions_<step:05d>.parquet``.

Written by ``GRPOTrainer`` when ``log_completions=True`` (TRL ≥ 0.28): columns ``step, prompt,
completion``, one column per reward function, the reward functions' extra logs, and
``advantage``. Conversational prompts/completions are lists of ``{role, content}`` messages; they
are flattened to text (``role: content`` lines for prompts, the contents for completions).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from analyzer import columns as C
from analyzer.errors import InputError
from analyzer.ingest._common import (
    FILE_COL,
    ORDER_COL,
    Collector,
    empty_steps,
    finalize_generations,
    json_text,
)
from analyzer.model import IngestReport, RunData

if TYPE_CHECKING:
    import polars as pl

FOLDER: Final = "completions"
PATTERN: Final = "completions_*.parquet"
_FIXED: Final = {"step", "prompt", "completion", "advantage"}


def find_completion_files(folder: Path) -> list[Path]:
    sub = folder / FOLDER
    if sub.is_dir():
        return sorted(sub.glob(PATTERN))
    if folder.name == FOLDER:
        return sorted(folder.glob(PATTERN))
    return []


def _message_text(value: Any, *, roles: bool) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list):
        parts = []
        for m in value:
            if isinstance(m, dict):
                content = m.get("content")
                if isinstance(content, list):  # multimodal parts: keep the text ones
                    content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
                text = "" if content is None else str(content)
                parts.append(f"{m.get('role')}: {text}" if roles and m.get("role") else text)
            else:
                parts.append(str(m))
        return "\n".join(parts)
    return json_text(value)


def _to_text(df: pl.DataFrame, name: str, *, roles: bool) -> pl.Series:
    import polars as pl

    s = df[name]
    if s.dtype == pl.String:
        return s
    return pl.Series(name, [_message_text(v, roles=roles) for v in s.to_list()], dtype=pl.String)


def _normalised(df: pl.DataFrame, path: Path, col: Collector) -> pl.DataFrame:
    """One completions file → text ``prompt``/``completion``, an Int64 ``step`` (rows without one
    are reported and dropped) and nested extra columns as JSON text, so files concatenate whatever
    types each one's parquet schema holds."""
    import polars as pl

    as_float = pl.col("step").cast(pl.Float64, strict=False)
    out = df.with_columns(
        # a whole number, or null (reported below): 3.7 is not step 3
        pl.when(as_float == as_float.floor()).then(as_float).cast(pl.Int64, strict=False).alias("step"),
        _to_text(df, "completion", roles=False),
        *([_to_text(df, "prompt", roles=True)] if "prompt" in df.columns else []),
        *[
            pl.Series(c, [json_text(v) for v in df[c].to_list()], dtype=pl.String)
            for c, t in df.schema.items()
            if c not in ("step", "prompt", "completion") and t.is_nested()
        ],
    )
    bad = out["step"].null_count()
    if bad:
        col.issue(path, None, f"{bad} rows whose step is not a whole number; skipped", "wrong_type", skipped=False)
        col.report.records_skipped += bad
        out = out.filter(pl.col("step").is_not_null())
    return out


def _concat(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """The files' rows in one frame. A column the files type differently (a Categorical in one, an
    integer in another) becomes Float64 when every type is numeric, else text — only that column,
    so the reward columns stay numbers."""
    import polars as pl

    types: dict[str, set[pl.DataType]] = {}
    for f in frames:
        for c, t in f.schema.items():
            if t != pl.Null:
                types.setdefault(c, set()).add(t)
    fix = {
        c: pl.Float64 if all(t.is_numeric() for t in ts) else pl.String
        for c, ts in types.items()
        if len(ts) > 1
    }
    if fix:
        frames = [f.with_columns(pl.col(c).cast(t, strict=False) for c, t in fix.items() if c in f.columns) for f in frames]
    return pl.concat(frames, how="diagonal_relaxed")


def read_completions(files: list[Path], col: Collector, reward_names: list[str] | None) -> pl.DataFrame | None:
    import polars as pl

    tables: list[tuple[Path, pl.DataFrame]] = []
    for path in files:
        try:
            df = pl.read_parquet(path)
        except Exception as exc:  # polars/arrow raise many types for a broken file
            col.issue(path, None, f"unreadable parquet ({type(exc).__name__}); file skipped", "malformed", skipped=False)
            continue
        col.read(path)
        tables.append((path, df))
    return completion_tables(tables, col, reward_names)


def completion_tables(tables: list[tuple[Path, pl.DataFrame]], col: Collector, reward_names: list[str] | None) -> pl.DataFrame | None:
    """TRL's completion tables (each with the file it came from, in logging order) → generations.
    The parquet files and the ``completions`` tables TRL logs to W&B and Trackio have one layout."""
    import polars as pl

    frames = []
    previous: pl.DataFrame | None = None
    repeats = 0
    for i, (path, df) in enumerate(tables):
        missing = {"step", "completion"} - set(df.columns)
        if missing:
            col.issue(path, None, f"not a TRL completions file (no {', '.join(sorted(missing))} column); skipped", "malformed", skipped=False)
            continue
        col.report.records_read += df.height
        # TRL writes its whole buffer of the last generation at every logging step: until the next
        # generation replaces it (steps_per_generation > logging_steps, num_iterations > 1) a file
        # repeats the previous one's completions under a later step — the same completions, once
        body = df.drop("step")
        if previous is not None and body.equals(previous):
            repeats += df.height
            continue
        previous = body
        df = _normalised(df, path, col)
        frames.append(df.with_columns(pl.lit(i, dtype=pl.Int64).alias(FILE_COL)).with_row_index(ORDER_COL))
    if repeats:
        col.note(
            f"TRL completions: {repeats} rows repeat the previous file's completions (TRL logs its last "
            "generation again at each logging step until the next one); each completion is counted once, "
            "at the step it was first logged"
        )
    frames = [f for f in frames if f.height]
    if not frames:
        return None
    df = _concat(frames)
    numeric = [c for c, t in df.schema.items() if c not in _FIXED and not c.startswith("__") and (t.is_numeric() or t == pl.Boolean)]
    rewards = [r for r in (reward_names or []) if r in df.columns] or numeric
    if not reward_names:
        col.note("TRL completions: reward columns taken to be every numeric column (no reward names in trainer_state.json)")
    renames = {r: C.REWARD_PREFIX + r for r in rewards}
    out = df.with_columns(
        pl.col("step").alias(C.STEP),
        pl.col("completion").alias(C.OUTPUT),
        *([pl.col("prompt").alias(C.QUESTION)] if "prompt" in df.columns else []),
        # a value that is not a number (text in a reward column) becomes null, like any other reader
        *[pl.col(r).cast(pl.Float64, strict=False) for r in rewards],
        *([pl.col("advantage").cast(pl.Float64, strict=False).alias(C.ADVANTAGE)] if "advantage" in df.columns else []),
    ).drop([c for c in ("completion", "prompt") if c in df.columns] + (["step"] if C.STEP != "step" else []))
    out = out.rename(renames)
    # order: file (= step) then row; finalize sorts by step, rank, __order
    out = out.sort([FILE_COL, ORDER_COL]).drop(FILE_COL, ORDER_COL).with_row_index(ORDER_COL)
    return finalize_generations(out, col)


def load_trl_completions(path: Path, report: IngestReport) -> RunData:
    root = path if path.is_dir() else path.parent
    col = Collector(report, root)
    files = [path] if path.is_file() else find_completion_files(path)
    gens = read_completions(files, col, None)
    col.finish()
    if gens is None:
        raise InputError(f"{path}: no readable TRL completion parquet files")
    names = [c[len(C.REWARD_PREFIX) :] for c in gens.columns if c.startswith(C.REWARD_PREFIX)]
    info = {"run_id": root.resolve().name, "reward_names": names, "world_size": 1, "algorithm": "grpo"}
    return RunData(path=str(path), steps=empty_steps(), generations=gens, report=report, info=info)
