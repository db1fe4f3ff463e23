"""MLflow's local tracking stores, read with the standard library (no MLflow install needed).

- The SQLite store (``mlflow.db``, MLflow 3's default): ``metrics(key, value, timestamp,
  run_uuid, step, is_nan)`` — a NaN is stored as 0.0 with ``is_nan = 1`` —, ``runs`` (name,
  status), ``params``. Opened read-only (``trackers.open_sqlite``), never with ``MlflowClient``:
  MLflow migrates an older database's schema in place when its client opens it.
- The file store (``mlruns/<experiment>/<run>/metrics/<key>``, a ``/`` in a key is a subfolder):
  one ``<timestamp ms> <value> <step>`` line per point, in no particular order.

transformers' ``MLflowCallback`` logs ``Trainer.log``'s keys unprefixed (``loss``,
``completions/mean_length``, ``eval_loss``; characters outside ``[0-9A-Za-z_\\-. :/]`` become
``_``) at ``step=state.global_step``: the trainer's step after the update, like ``log_history``.
Points are replayed in the order they were logged (timestamp, then step), so a run resumed
under the same run id shows its step going back.
"""

from __future__ import annotations

import math
import re
import sqlite3
from pathlib import Path
from typing import Any, Final

from analyzer.errors import InputError
from analyzer.ingest._common import Collector, steps_frame, to_float, to_int, why_empty
from analyzer.ingest.hf_trainer_state import guess_algorithm
from analyzer.ingest.trackers import StepRows, open_sqlite, pick_run, tracker_key
from analyzer.model import IngestReport, RunData

DB_NAME: Final = "mlflow.db"
FILE_STORE: Final = "mlruns"
# MLflow's RunStatus: RUNNING 1, SCHEDULED 2, FINISHED 3, FAILED 4, KILLED 5
_STATUS: Final = {"RUNNING": "running", "SCHEDULED": "running", "FINISHED": "finished", "FAILED": "crashed", "KILLED": "crashed",
                  "1": "running", "2": "running", "3": "finished", "4": "crashed", "5": "crashed"}


def run_folders(store: Path) -> list[Path]:
    """The run folders of a file store (``mlruns/<exp>/<run>/`` with ``metrics/``), or of one
    experiment folder, or the run folder itself."""
    if _is_run(store):
        return [store]
    out: list[Path] = []
    for exp in sorted(p for p in store.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if _is_run(exp):
            out.append(exp)
            continue
        try:
            out += sorted(r for r in exp.iterdir() if _is_run(r))
        except OSError:
            continue
    return out


def _is_run(d: Path) -> bool:
    return (d / "metrics").is_dir() and (d / "meta.yaml").is_file()


def is_file_store(folder: Path) -> bool:
    try:
        return bool(run_folders(folder))
    except OSError:
        return False


def _meta(path: Path) -> dict[str, str]:
    """The flat ``key: value`` lines of a ``meta.yaml`` (MLflow writes no nesting there)."""
    out: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z_]+):\s*(.*?)\s*$", line)
        if m:
            out[m.group(1)] = m.group(2).strip("'\"")
    return out


def _finish(rows: StepRows, info: dict[str, Any], keys: set[str], report: IngestReport, path: Path, col: Collector) -> RunData:
    col.finish()
    if not rows.rows:
        raise InputError(f"{path}: no metric with a step in this MLflow run ({why_empty(report, 'nothing logged')})")
    info["algorithm"] = guess_algorithm(keys)
    info.setdefault("world_size", 1)
    return RunData(path=str(path), steps=steps_frame(rows.rows), generations=None, report=report, info=info)


def load_mlflow_db(path: Path, report: IngestReport, *, run: str | None = None) -> RunData:
    """``mlflow.db`` (or a folder holding it); ``run``: a run id or name when it holds several."""
    file = path / DB_NAME if path.is_dir() else path
    col = Collector(report, file.parent)
    try:
        with open_sqlite(file) as db:
            runs = [(r[0], r[1] or "") for r in db.execute(
                "SELECT run_uuid, name FROM runs WHERE run_uuid IN (SELECT DISTINCT run_uuid FROM metrics) ORDER BY start_time, run_uuid")]
            rid = pick_run(runs, run, file, "MLflow store")
            name, status, exp = db.execute(
                "SELECT r.name, r.status, e.name FROM runs r LEFT JOIN experiments e ON e.experiment_id = r.experiment_id WHERE r.run_uuid = ?",
                (rid,)).fetchone()
            params = dict(db.execute("SELECT key, value FROM params WHERE run_uuid = ?", (rid,)).fetchall())
            points = db.execute(
                "SELECT key, value, is_nan, step, timestamp FROM metrics WHERE run_uuid = ? ORDER BY timestamp, step, rowid", (rid,)).fetchall()
    except sqlite3.Error as exc:
        raise InputError(f"{file}: not a readable MLflow SQLite store ({exc})") from exc
    col.read(file)
    info: dict[str, Any] = {"run_id": rid, "run_name": name, "experiment": exp, "status": _STATUS.get(str(status)),
                            "config": params or None}
    rows = StepRows(col, info)
    keys: set[str] = set()
    record: dict[str, Any] = {}
    current: tuple[int, int] | None = None
    for key, value, is_nan, step, ts in points:
        report.records_read += 1
        value = math.nan if is_nan else value
        s = to_int(step)
        if s is None:
            col.issue(file, None, f"metric {key!r}: step {step!r} is not an integer; skipped", "no_step")
            continue
        if current is not None and (ts, s) != current:
            rows.add(current[1], record, file, label=f"metric {{}} at step {current[1]}")
            record = {}
        current = (ts, s)
        record[key] = value
        keys.add(tracker_key(key))
    if current is not None:
        rows.add(current[1], record, file, label=f"metric {{}} at step {current[1]}")
    col.note(f"MLflow run {name or rid} ({rid}) of experiment {exp!r}, read from {file.name} read-only")
    return _finish(rows, info, keys, report, path, col)


def load_mlflow_files(path: Path, report: IngestReport, *, run: str | None = None) -> RunData:
    """An ``mlruns/`` file store, one experiment of it, or one run folder."""
    runs = run_folders(path)
    metas = {r: _meta(r / "meta.yaml") for r in runs}
    chosen = pick_run([(r.name, metas[r].get("run_name", "")) for r in runs], run, path, "MLflow file store")
    folder = next(r for r in runs if r.name == chosen)
    meta = metas[folder]
    col = Collector(report, path if path.is_dir() else path.parent)
    info: dict[str, Any] = {"run_id": folder.name, "run_name": meta.get("run_name"), "status": _STATUS.get(meta.get("status", ""))}
    params: dict[str, str] = {}
    if (folder / "params").is_dir():
        for p in sorted(folder.joinpath("params").rglob("*")):
            if p.is_file():
                try:
                    params[p.relative_to(folder / "params").as_posix()] = p.read_text(encoding="utf-8", errors="replace")
                except OSError:
                    continue
    info["config"] = params or None
    points: list[tuple[float, int, int, str, float | None]] = []  # (timestamp, step, order, key, value)
    for mfile in sorted(p for p in folder.joinpath("metrics").rglob("*") if p.is_file()):
        key = mfile.relative_to(folder / "metrics").as_posix()
        col.read(mfile)
        try:
            lines = mfile.read_bytes().decode("utf-8", "replace").splitlines()
        except OSError as exc:
            col.issue(mfile, None, f"unreadable ({exc.strerror})", "malformed", skipped=False)
            continue
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            parts = line.split()
            ts = to_float(parts[0])[0] if parts else None
            value, ok = to_float(parts[1]) if len(parts) >= 2 else (None, False)
            step = to_int(parts[2]) if len(parts) >= 3 else None
            if len(parts) != 3 or ts is None or not ok or step is None:
                col.issue(mfile, lineno, "expected '<timestamp> <value> <step>'; line skipped", "malformed")
                continue
            report.records_read += 1
            points.append((ts, step, len(points), key, value))
    points.sort()
    rows = StepRows(col, info)
    keys = {tracker_key(p[3]) for p in points}
    i = 0
    while i < len(points):
        ts, step = points[i][0], points[i][1]
        record: dict[str, Any] = {}
        while i < len(points) and points[i][:2] == (ts, step):
            record[points[i][3]] = points[i][4]
            i += 1
        rows.add(step, record, folder / "metrics", label=f"metric {{}} at step {step}")
    col.note(f"MLflow run {meta.get('run_name') or folder.name} ({folder.name}), read from the file store")
    return _finish(rows, info, keys, report, path, col)


__all__ = ["DB_NAME", "FILE_STORE", "is_file_store", "load_mlflow_db", "load_mlflow_files", "run_folders"]
