"""What the experiment-tracker readers share: TRL's key names as transformers' ``report_to``
callbacks rewrite them, step rows, read-only SQLite, picking one run of a store, and the
one-line error for a missing optional package (finding a tracker's files in a run folder is
``tracker_discovery``).

The readers are ``tb_events`` (TensorBoard), ``wandb_files`` (Weights & Biases run folders),
``trackio_db`` (Trackio's SQLite store) and ``mlflow_store`` (MLflow's ``mlflow.db`` and
``mlruns/``). Reading never changes a user's files: SQLite stores are opened read-only, and a
store with a pending write-ahead log or journal is read from a private copy (``open_sqlite``).
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from analyzer.errors import InputError
from analyzer.ingest._common import Collector, metric_values, short, to_int
from analyzer.ingest.hf_trainer_state import SUMMARY_KEYS

DISTRIBUTION: Final = "logscan-rl"
GLOBAL_STEP: Final = "train/global_step"  # W&B and Trackio: the trainer's step, logged as a value
TB_EVENTS_GLOB: Final = "events.out.tfevents.*"
PROFILING: Final = "profiling/"  # TRL's timings (trl/extras/profiling.py), logged to W&B, MLflow, Trackio


def missing_extra(package: str, extra: str, what: str) -> InputError:
    """The one-line error for a reader whose optional package is not installed (exit code 2)."""
    return InputError(f'reading {what} needs the {package} package: pip install "{DISTRIBUTION}[{extra}]"')


def tracker_key(key: str) -> str:
    """A key as transformers' tracker callbacks log it → as ``Trainer.log`` had it.

    ``rewrite_logs`` (transformers ``integrations/integration_utils.py``) prefixes train keys with
    ``train/`` and turns ``eval_`` into ``eval/``; the key map then reads them like
    ``log_history``'s (``train/kl`` → ``kl``, ``train/rewards/f/mean`` → ``reward/f``).
    """
    return key[len("train/") :] if key.startswith("train/") and len(key) > len("train/") else key


class StepRows:
    """Scalars by step from a tracker's history, in logging order: a step lower than the previous
    one is a resume (the later record of a step wins, as in every reader); the end-of-training
    summary (``train_runtime``, ``train_loss``…) goes to ``info["train_summary"]``."""

    def __init__(self, col: Collector, info: dict[str, Any]) -> None:
        self.col = col
        self.info = info
        self.rows: dict[int, dict[str, float | None]] = {}
        self._prev: int | None = None

    def add(self, step: int, pairs: dict[str, Any], path: Path, where: int | None = None, *, label: str = "{}") -> None:
        pairs = {tracker_key(k): v for k, v in pairs.items()}
        pairs.pop("global_step", None)
        summary = {k: pairs.pop(k) for k in list(pairs) if k in SUMMARY_KEYS}
        if summary:
            self.info.setdefault("train_summary", {}).update(summary)
        # TRL's profiling timings are logged while a step runs, at the step before it
        # (``state.global_step`` before the update): moved to the step they time
        timed = {k: pairs.pop(k) for k in list(pairs) if k.startswith(PROFILING)}
        if timed:
            self.rows.setdefault(step + 1, {}).update(metric_values(timed, path, where, self.col, label=label))
        if not pairs:
            return
        if self._prev is not None and step < self._prev:
            self.col.resume(path, where, self._prev, step)
        self._prev = step
        self.rows.setdefault(step, {}).update(metric_values(pairs, path, where, self.col, label=label))


def history_keys(records: list[tuple[Any, Any, dict[str, Any]]]) -> set[str]:
    """Every key a tracker's history logged, mapped to logscan's names (``tracker_key``)."""
    return {tracker_key(k) for _, _, r in records for k in r}


def reward_function_names(keys: set[str]) -> list[str]:
    """The reward functions named by mapped history keys (``rewards/<fn>/mean``): the columns
    TRL's completion tables are read with."""
    return sorted(k[len("rewards/") : -len("/mean")] for k in keys if k.startswith("rewards/") and k.endswith("/mean"))


def history_rows(
    records: list[tuple[int | None, int | None, dict[str, Any]]], path: Path, col: Collector, info: dict[str, Any]
) -> StepRows:
    """W&B's and Trackio's history → scalars by the trainer's step.

    ``records``: ``(line or record number, the tracker's own step, {key: value})`` in logging
    order. Both trackers count their own steps (advanced by every ``log`` call, tables included),
    so the trainer's step is the ``train/global_step`` transformers' callback logs with every
    record. A record without it (a user's own ``log`` call) takes the last one logged before it;
    only when no record has one is the tracker's own step used (noted).
    """
    rows = StepRows(col, info)
    has_global = any(GLOBAL_STEP in r for _, _, r in records)
    if not has_global:
        col.note(f"{col.rel(path)}: no {GLOBAL_STEP} logged; the tracker's own step counter is used as the step")
    last: int | None = None
    early = 0
    for where, own, rec in records:
        if has_global:
            raw = rec.get(GLOBAL_STEP)
            gs = to_int(raw.get("value") if isinstance(raw, dict) else raw) if raw is not None else None
            if gs is None and raw is not None:
                col.issue(path, where, f"{GLOBAL_STEP} is {short(raw)}, not an integer; the last step is used", "wrong_type", skipped=False)
            step = gs if gs is not None else last
            if step is None and rec and all(k.startswith(PROFILING) for k in rec):
                step = 0  # the first step's timings, logged before any train/global_step
            if step is None:
                early += 1
                continue
            last = step
        elif own is None:
            col.issue(path, where, "a record without a step; skipped", "no_step")
            continue
        else:
            step = own
        rows.add(step, {k: v for k, v in rec.items() if k != GLOBAL_STEP}, path, where)
    if early:
        col.note(f"{col.rel(path)}: {early} records logged before the first {GLOBAL_STEP} have no trainer step; not read")
    return rows


def sqlite_kind(path: Path) -> str | None:
    """``trackio`` or ``mlflow`` for a SQLite file holding that tracker's tables, else None."""
    try:
        with path.open("rb") as fh:
            if fh.read(16) != b"SQLite format 3\x00":
                return None
        with open_sqlite(path) as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except (OSError, sqlite3.Error):
        return None
    if {"metrics", "runs", "experiments"} <= tables:
        return "mlflow"
    if "metrics" in tables and "configs" in tables:
        return "trackio"
    return None


@contextmanager
def open_sqlite(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection that cannot change the store or its folder.

    Without a ``-wal`` or ``-journal`` file beside it the store is opened ``mode=ro&immutable=1``
    (no lock files, no log written). With one (a live or crashed writer: Trackio runs in WAL mode),
    a read-only open would create ``-shm``/``-wal`` files or need to roll the journal back, so the
    store and its log are copied to a temporary folder and the copy is read: the pending writes
    are seen, the user's files are not touched.
    """
    sides = [p for p in (path.with_name(path.name + s) for s in ("-wal", "-journal")) if p.is_file() and p.stat().st_size]
    tmp = tempfile.TemporaryDirectory(prefix="logscan-sqlite-") if sides else None
    try:
        if tmp is not None:
            copy = Path(tmp.name) / path.name
            shutil.copyfile(path, copy)
            for s in sides:
                shutil.copyfile(s, Path(tmp.name) / s.name)
            db = sqlite3.connect(copy)
        else:
            db = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro&immutable=1", uri=True)
        try:
            db.execute("PRAGMA query_only = ON")
            yield db
        finally:
            db.close()
    finally:
        if tmp is not None:
            tmp.cleanup()


def pick_run(runs: list[tuple[str, str]], selector: str | None, path: Path, what: str) -> str:
    """The id of the run to read among ``runs`` (``(id, name)``, oldest first) of a store.

    One run: that one. Several: the one whose id or name is ``selector`` (``STORE#RUN`` on the
    command line); without one, an ``InputError`` listing them, as for a folder of runs.
    """
    if selector is not None:
        hits = [rid for rid, name in runs if selector in (rid, name)]
        if len(hits) == 1:
            return hits[0]
        if hits:  # one name, several runs (a re-launch under the same name): the latest
            return hits[-1]
        shown = ", ".join(name or rid for rid, name in runs[:8]) + (", …" if len(runs) > 8 else "")
        raise InputError(f"{path}: no run {selector!r} in this {what} (it holds {shown})")
    if not runs:
        raise InputError(f"{path}: this {what} holds no run")
    if len(runs) == 1:
        return runs[0][0]
    shown = ", ".join(name or rid for rid, name in runs[:5]) + (", …" if len(runs) > 5 else "")
    first = runs[0][1] or runs[0][0]
    article = "an" if what[0] in "AEIOUM" else "a"  # an MLflow store, a Trackio store
    raise InputError(
        f"{path}: {article} {what} of {len(runs)} runs ({shown}), not a run; analyze one of them "
        f"(logscan analyze '{path}#{first}') or compare them (logscan compare RUN_A RUN_B …)"
    )


SELECTOR_RE: Final = re.compile(r"^(?P<path>.+\.db)#(?P<run>[^#/]+)$")


def split_selector(text: str) -> tuple[Path, str] | None:
    """``store.db#run`` → ``(Path("store.db"), "run")`` when the store exists; else None."""
    m = SELECTOR_RE.match(text)
    if m is None or not Path(m.group("path")).is_file():
        return None
    return Path(m.group("path")), m.group("run")


__all__ = [
    "GLOBAL_STEP",
    "StepRows",
    "history_rows",
    "missing_extra",
    "open_sqlite",
    "pick_run",
    "split_selector",
    "sqlite_kind",
    "tracker_key",
]
