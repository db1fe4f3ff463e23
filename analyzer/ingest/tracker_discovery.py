"""Finding experiment trackers' logs in a run folder (``sources.discover`` asks it): TensorBoard
event files, W&B run folders, MLflow's file store, and the side files of the SQLite stores. The
readers' shared helpers are ``trackers``; this module imports the readers, and nothing of the
ingest imports it but ``sources`` and the package's folder detection, so there is no cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from analyzer.ingest import mlflow_store, tb_events, wandb_files
from analyzer.ingest.trackers import TB_EVENTS_GLOB, sqlite_kind


@dataclass(slots=True)
class Trackers:
    """What ``find_tracker_sources`` found: ``(kind, path, files)`` sources, ``(path, why)`` files
    not read, and the folder's entries they cover."""

    found: list[tuple[str, Path, list[Path]]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    covered: set[Path] = field(default_factory=set)


SQLITE_SIDE_FILES: Final = ("-wal", "-shm", "-journal")


def find_tracker_sources(folder: Path, entries: list[Path]) -> Trackers:
    """The tracker logs among a run folder's entries (``entries``: its sorted listing): the
    sources found, the files not read (with why), and the entries they cover, which the rest of
    discovery leaves alone.

    Looked at: event files in the folder or in ``runs/<launch>/`` (any subfolder's launches too);
    ``wandb/`` (or the folder being ``wandb/`` or one W&B run folder); ``mlruns/`` holding runs
    (an ``mlruns/`` of artifacts only, beside ``mlflow.db``, is listed as not read); the SQLite
    stores' ``-wal``/``-shm`` and Trackio's ``.lock`` files, read with their store. The stores
    themselves (``mlflow.db``, ``<project>.db``) and single files (an event file, a ``.wandb``
    file) are found by their content like any file."""
    out = Trackers()
    covered = out.covered
    names = {p.name for p in entries}
    for p in entries:
        if p.is_file() and (p.name.endswith(SQLITE_SIDE_FILES) or p.suffix == ".lock") and (
            p.name.removesuffix(p.suffix) + ".db" in names or any(p.name == n + s for n in names for s in SQLITE_SIDE_FILES)
        ):
            out.skipped.append((p, "the SQLite store's log or lock file (read with the store)"))
            covered.add(p)
    # W&B: the folder is a run folder, the wandb/ folder, or holds wandb/
    wb = folder if wandb_files.is_wandb_dir(folder) or wandb_files.is_run_dir(folder) else folder / wandb_files.FOLDER
    if wb.is_dir() and (wandb_files.is_wandb_dir(wb) or wandb_files.is_run_dir(wb)):
        chosen, others = wandb_files.select_runs(wb)
        if chosen:
            out.found.append(("wandb", wb, [f for d in chosen for f in wandb_files.history_files(d)]))
            for d, why in others:
                out.skipped.append((d, why))
            covered.update(entries if wb == folder else [wb])
    # MLflow's file store
    ml = folder if mlflow_store.is_file_store(folder) and folder.name != tb_events.RUNS_FOLDER else folder / mlflow_store.FILE_STORE
    if ml.is_dir() and ml not in covered:
        if mlflow_store.is_file_store(ml):
            out.found.append(("mlflow_files", ml, [p for r in mlflow_store.run_folders(ml) for p in sorted((r / "metrics").rglob("*")) if p.is_file()]))
            covered.update(entries if ml == folder else [ml])
        elif ml != folder:
            out.skipped.append((ml, "MLflow artifacts, no run metrics (an SQLite store's runs are in mlflow.db)"))
            covered.add(ml)
    # TensorBoard: the folder's own event files, runs/<launch>/, <dir>/<launch>/
    own = [p for p in entries if p.name.startswith(TB_EVENTS_GLOB[:-1]) and p.is_file()]
    if own:
        out.found.append(("tensorboard", folder, own))
        covered.update(own)
    for d in (e for e in entries if e.is_dir() and e not in covered and not e.name.startswith(".")):
        try:
            files = sorted(d.glob(TB_EVENTS_GLOB)) or sorted(d.glob(f"*/{TB_EVENTS_GLOB}"))
        except OSError:
            continue
        if files and not own:
            out.found.append(("tensorboard", d, files))
            covered.add(d)
            own = files  # one TensorBoard source per run folder: the first found
        elif files:
            out.skipped.append((d, f"more TensorBoard event files (this run's are read from {own[0].parent.name})"))
            covered.add(d)
    return out


def dir_kind(folder: Path) -> str | None:
    """The tracker whose logs ``folder`` holds (a run folder with only a tracker's logs), or None."""
    try:
        if wandb_files.is_run_dir(folder) or wandb_files.is_wandb_dir(folder) or wandb_files.is_wandb_dir(folder / wandb_files.FOLDER):
            return "wandb"
        if tb_events.event_folders(folder):
            return "tensorboard"
        if mlflow_store.is_file_store(folder) or mlflow_store.is_file_store(folder / mlflow_store.FILE_STORE):
            return "mlflow_files"
        for db in sorted(folder.glob("*.db")):
            if (kind := sqlite_kind(db)) is not None:
                return kind
    except OSError:
        return None
    return None


__all__ = ["Trackers", "dir_kind", "find_tracker_sources"]
