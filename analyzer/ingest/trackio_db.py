"""Trackio's local store (``$TRACKIO_DIR``, by default ``~/.cache/huggingface/trackio/``): one
SQLite database per project, ``<project>.db``, read with the standard library's ``sqlite3``
(read-only: ``trackers.open_sqlite``); no Trackio install needed.

``metrics(id, run_id, timestamp, run_name, step, metrics, ...)`` holds one JSON object per
``trackio.log`` call (non-finite numbers as the strings ``"NaN"``, ``"Infinity"``,
``"-Infinity"``); ``configs(run_id, run_name, config)`` one row per run. A store holds every run
of its project: one is read (``STORE.db#RUN`` picks one by name or id when there are several).

transformers' ``TrackioCallback`` logs ``{train/<key>: value, ..., "train/global_step":
state.global_step}``; Trackio's own ``step`` counts ``log`` calls (TRL's completion tables
advance it too), so records are put on ``train/global_step`` (``trackers.history_rows``), read in
the order Trackio stored them (its ``step``, then ``id``; timestamps are per flush). A second
launch under the same run name appends to the same run: its ``train/global_step`` going back is a
resume. TRL's ``completions`` table is stored inline (``{"_type": "trackio.table", "_value":
[rows]}``) and read as completions, like TRL's parquet files.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Final

from analyzer.errors import InputError
from analyzer.ingest._common import Collector, empty_steps, loads, steps_frame, why_empty
from analyzer.ingest.hf_trainer_state import guess_algorithm
from analyzer.ingest.trackers import (
    history_keys,
    history_rows,
    open_sqlite,
    pick_run,
    reward_function_names,
)
from analyzer.model import IngestReport, RunData

TABLE_TYPE: Final = "trackio.table"


def load_trackio(path: Path, report: IngestReport, *, run: str | None = None) -> RunData:
    """A Trackio project store ``<project>.db``; ``run``: a run name or id when it holds several."""
    import polars as pl

    from analyzer.ingest.trl_completions import completion_tables

    col = Collector(report, path.parent)
    try:
        with open_sqlite(path) as db:
            runs = [(r[0], r[1] or "") for r in db.execute(
                "SELECT run_id, run_name FROM metrics GROUP BY run_id ORDER BY MIN(id)")]
            rid = pick_run(runs, run, path, "Trackio store")
            name = next(n for r, n in runs if r == rid)
            cfg_row = db.execute("SELECT config FROM configs WHERE run_id = ?", (rid,)).fetchone()
            raw = db.execute("SELECT id, step, metrics FROM metrics WHERE run_id = ? ORDER BY step, id", (rid,)).fetchall()
    except sqlite3.Error as exc:
        raise InputError(f"{path}: not a readable Trackio store ({exc})") from exc
    col.read(path)
    info: dict[str, Any] = {"run_id": rid, "run_name": name, "project": path.stem, "world_size": 1}
    if cfg_row is not None:
        try:
            cfg = loads(cfg_row[0])
        except ValueError:
            cfg = None
        if isinstance(cfg, dict):
            info["config"] = {k: v for k, v in cfg.items() if not k.startswith("_")} or None
    records: list[tuple[int | None, int | None, dict[str, Any]]] = []
    tables: list[tuple[Path, pl.DataFrame]] = []
    skipped: dict[str, int] = {}
    for row_id, step, text in raw:
        try:
            obj = loads(text)
        except ValueError as exc:
            col.issue(path, row_id, f"metrics row {row_id}: malformed JSON ({type(exc).__name__}); skipped", "malformed")
            continue
        if not isinstance(obj, dict):
            col.issue(path, row_id, f"metrics row {row_id}: not a JSON object; skipped", "not_object")
            continue
        report.records_read += 1
        flat: dict[str, Any] = {}
        for k, v in obj.items():
            if isinstance(v, dict) and v.get("_type") == TABLE_TYPE:
                rows = v.get("_value")
                if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows) and "completion" in rows[0]:
                    tables.append((path, pl.DataFrame([{c: _cell(x) for c, x in r.items()} for r in rows], strict=False, infer_schema_length=None)))
                else:
                    skipped[k] = skipped.get(k, 0) + 1
            elif isinstance(v, dict):
                skipped[k] = skipped.get(k, 0) + 1  # media (images, audio…) and other objects: not scalars
            else:
                flat[k] = v
        records.append((row_id, step, flat))
    if skipped:
        shown = ", ".join(f"{k} ({v})" for k, v in sorted(skipped.items()))
        col.note(f"Trackio: logged media and tables other than TRL's completions are not read: {shown}")
    rows = history_rows(records, path, col, info)
    keys = history_keys(records)
    names = reward_function_names(keys)
    gens = completion_tables(tables, col, names or None) if tables else None
    col.note(f"Trackio project {path.stem!r}, run {name or rid}, read from {path.name} read-only")
    col.finish()
    if not rows.rows and gens is None:
        raise InputError(f"{path}: no metric with a step in this Trackio run ({why_empty(report, 'nothing logged')})")
    info["algorithm"] = guess_algorithm(keys)
    info["reward_names"] = names
    steps = steps_frame(rows.rows) if rows.rows else empty_steps()
    return RunData(path=str(path), steps=steps, generations=gens, report=report, info=info)


def _cell(v: Any) -> Any:
    import json

    return json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v


__all__ = ["load_trackio"]
