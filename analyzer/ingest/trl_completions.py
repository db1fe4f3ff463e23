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


def read_completions(files: list[Path], col: Collector, reward_names: list[str] | None) -> pl.DataFrame | None:
    import polars as pl

    frames = []
    for i, path in enumerate(files):
        try:
            df = pl.read_parquet(path)
        except Exception as exc:  # polars/arrow raise many types for a broken file
            col.issue(path, None, f"unreadable parquet ({type(exc).__name__}); file skipped", "malformed", skipped=False)
            continue
        col.read(path)
        missing = {"step", "completion"} - set(df.columns)
        if missing:
            col.issue(path, None, f"not a TRL completions file (no {', '.join(sorted(missing))} column); skipped", "malformed", skipped=False)
            continue
        col.report.records_read += df.height
        frames.append(df.with_columns(pl.lit(i, dtype=pl.Int64).alias(FILE_COL)).with_row_index(ORDER_COL))
    if not frames:
        return None
    df = pl.concat(frames, how="diagonal_relaxed")
    numeric = [c for c, t in df.schema.items() if c not in _FIXED and not c.startswith("__") and t.is_numeric()]
    rewards = [r for r in (reward_names or []) if r in df.columns] or numeric
    if not reward_names:
        col.note("TRL completions: reward columns taken to be every numeric column (no reward names in trainer_state.json)")
    renames = {r: C.REWARD_PREFIX + r for r in rewards}
    out = df.with_columns(
        pl.col("step").cast(pl.Int64).alias(C.STEP),
        _to_text(df, "completion", roles=False).alias(C.OUTPUT),
        *([_to_text(df, "prompt", roles=True).alias(C.QUESTION)] if "prompt" in df.columns else []),
        *[pl.col(r).cast(pl.Float64) for r in rewards],
        *([pl.col("advantage").cast(pl.Float64).alias(C.ADVANTAGE)] if "advantage" in df.columns else []),
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
