"""verl: the file logger's JSON Lines (``{"step": N, "data": {metric: value}}``, one line per
training step, from ``verl.utils.tracking``) and the rollout dumps of ``RayPPOTrainer.
_dump_generations`` (``<rollout_data_dir>/<step>.jsonl``: ``input, output, gts, score, step`` and
the reward function's extra infos).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

from analyzer import columns as C
from analyzer.errors import InputError
from analyzer.ingest._common import (
    ORDER_COL,
    Collector,
    Columns,
    empty_steps,
    finalize_generations,
    iter_json_objects,
    json_text,
    metric_values,
    run_files,
    short,
    steps_frame,
    to_float,
    to_int,
    why_empty,
)
from analyzer.model import IngestReport, RunData

_DUMP_RE: Final = re.compile(r"^\d+\.jsonl$")
_DUMP_KEYS: Final = {"input", "output", "gts", "score", "step"}


def is_file_logger_line(obj: Any) -> bool:
    return isinstance(obj, dict) and "step" in obj and isinstance(obj.get("data"), dict)


def is_rollout_line(obj: Any) -> bool:
    return isinstance(obj, dict) and {"input", "output"} <= obj.keys() and ("score" in obj or "step" in obj)


def rollout_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if _DUMP_RE.match(p.name)), key=lambda p: int(p.stem))


def load_verl_jsonl(path: Path, report: IngestReport) -> RunData:
    col = Collector(report, path.parent)
    col.read(path)
    rows: dict[int, dict[str, float | None]] = {}
    prev: int | None = None
    for lineno, obj in iter_json_objects(path, col):
        step = to_int(obj.get("step"))
        data = obj.get("data")
        if step is None:
            col.issue(path, lineno, f"step is {short(obj.get('step'))}, not an integer; skipped", "no_step")
            continue
        if not isinstance(data, dict):
            col.issue(path, lineno, f"data is {type(data).__name__}, not an object; skipped", "wrong_type", skipped=True)
            continue
        if prev is not None and step < prev:
            col.resume(path, lineno, prev, step)
        prev = step
        # a resumed segment re-logs steps: the later line wins
        rows.setdefault(step, {}).update(metric_values(data, path, lineno, col))
    col.finish()
    if not rows:
        raise InputError(f"{path}: no verl metric lines ({why_empty(report, 'empty')})")
    info: dict[str, Any] = {"run_id": path.stem}
    return RunData(path=str(path), steps=steps_frame(rows), generations=None, report=report, info=info)


def load_verl_rollouts(path: Path, report: IngestReport) -> RunData:
    import polars as pl

    root = path if path.is_dir() else path.parent
    col = Collector(report, root)
    order = [path] if path.is_file() else rollout_files(path)
    usable = set(run_files(order, col))  # a dump that is a broken symlink is named, not opened
    files = [p for p in order if p in usable]
    split = "eval" if re.search(r"val", root.name, re.IGNORECASE) else "train"
    cols = Columns()
    for path_i in files:
        if path_i.stat().st_size == 0:
            col.issue(path_i, None, "empty file", "empty", skipped=False)
            continue
        col.read(path_i)
        file_step = to_int(path_i.stem)
        for lineno, obj in iter_json_objects(path_i, col):
            step = to_int(obj.get("step", file_step))
            if step is None:
                col.issue(path_i, lineno, f"step is {short(obj.get('step'))}, not an integer; skipped", "no_step")
                continue
            score, ok = to_float(obj.get("score"))
            if not ok:
                col.issue(path_i, lineno, f"score is {short(obj.get('score'))}, not a number; set to null", "wrong_type", skipped=False)
            row: dict[str, Any] = {
                C.STEP: step,
                C.QUESTION: json_text(obj.get("input")),
                C.OUTPUT: json_text(obj.get("output")),
                C.GROUND_TRUTH: json_text(obj.get("gts")),
                C.TOTAL_REWARD: score,
                C.SPLIT: split,
            }
            for key, value in obj.items():
                if key in _DUMP_KEYS:
                    continue
                # keep the reward function's extra infos as they are: numbers (and booleans, e.g.
                # ``acc``) as floats, text as text (a ``pred`` of "4" stays the string "4")
                kept: Any = float(value) if isinstance(value, bool | int | float) else json_text(value)
                row[key if key not in row else f"extra/{key}"] = kept
            cols.append(row)
    col.finish()
    if cols.n == 0:
        raise InputError(f"{path}: no readable verl rollout records ({why_empty(report, 'empty')})")
    data = {}
    for k, lst in cols.data.items():
        kinds = {type(v) for v in lst if v is not None}
        if k == C.STEP:
            data[k] = pl.Series(k, lst, dtype=pl.Int64)
        elif k == C.TOTAL_REWARD or (kinds and kinds <= {float}):
            data[k] = pl.Series(k, lst, dtype=pl.Float64)
        else:
            data[k] = pl.Series(k, [None if v is None else str(v) for v in lst], dtype=pl.String)
    df = pl.DataFrame(data).with_row_index(ORDER_COL)
    gens = finalize_generations(df, col)
    info: dict[str, Any] = {"run_id": root.resolve().name}
    return RunData(path=str(path), steps=empty_steps(), generations=gens, report=report, info=info)
