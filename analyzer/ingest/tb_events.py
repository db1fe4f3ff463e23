"""TensorBoard event files (``events.out.tfevents.*``), read with the ``tensorboard`` package's own
event loader (the ``tensorboard`` extra).

transformers' ``TensorBoardCallback`` writes ``<output_dir>/runs/<date>_<host>/`` (one folder per
launch), ``add_scalar("train/<key>", value, state.global_step)`` for every number ``Trainer.log``
has (``eval/<key>`` for evaluation): the step is the trainer's step after the update, like
``log_history``'s. torch's ``SummaryWriter`` and tensorboardX write the same records (tensorboardX
as 32-bit ``simple_value``s); TF2 summaries are scalar tensors, read too.

``EventAccumulator`` keeps only 10,000 points per tag by default and drops the points "orphaned"
by a restart: both are turned off (``size_guidance`` 0, ``purge_orphaned_data=False``) so every
logged point is read; a step going back (a second launch in the same folder) is a resume, later
points win. Several launch folders of one ``runs/`` are read in the order they started.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from analyzer.errors import InputError
from analyzer.ingest._common import Collector, steps_frame, why_empty
from analyzer.ingest.hf_trainer_state import guess_algorithm
from analyzer.ingest.trackers import TB_EVENTS_GLOB, StepRows, missing_extra, tracker_key
from analyzer.model import IngestReport, RunData

RUNS_FOLDER: Final = "runs"  # transformers' default logging_dir: <output_dir>/runs/<date>_<host>


def event_folders(path: Path) -> list[Path]:
    """The folders holding event files: ``path`` itself (a file's folder), else its subfolders
    (``runs/<launch>/``) and theirs (``<output_dir>/runs/<launch>/``)."""
    if path.is_file():
        return [path.parent]
    if any(path.glob(TB_EVENTS_GLOB)):
        return [path]
    found = sorted({f.parent for f in path.glob(f"*/{TB_EVENTS_GLOB}")})
    if not found and (path / RUNS_FOLDER).is_dir():
        found = sorted({f.parent for f in (path / RUNS_FOLDER).glob(f"*/{TB_EVENTS_GLOB}")})
    return found


def _torn(path: Path) -> bool:
    """Whether an event file ends inside a record (a live writer, a killed run). The loader stops
    there quietly; only the TFRecord framing (length, its CRC, data, the data's CRC) is walked."""
    import struct

    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            pos = 0
            while pos < size:
                fh.seek(pos)
                head = fh.read(8)
                if len(head) < 8:
                    return True
                pos += 12 + struct.unpack("<Q", head)[0] + 4
            return pos > size
    except OSError:
        return False


def _points(folder: Path, files: list[Path], col: Collector) -> list[tuple[float, int, str, float]]:
    try:
        from tensorboard.backend.event_processing import event_accumulator as ea
        from tensorboard.util import tensor_util
    except ImportError as exc:
        raise missing_extra("tensorboard", "tensorboard", "TensorBoard event files") from exc
    acc = ea.EventAccumulator(
        str(folder), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0, ea.HISTOGRAMS: 1, ea.IMAGES: 1,
                                    ea.AUDIO: 1, ea.COMPRESSED_HISTOGRAMS: 1}, purge_orphaned_data=False)
    try:
        acc.Reload()
    except Exception as exc:  # a corrupt record: tensorboard raises its own error types
        col.issue(files[0], None, f"unreadable event file ({type(exc).__name__}: {exc}); read up to it", "malformed", skipped=False)
    for f in files:
        col.read(f)
        if _torn(f):
            col.issue(f, None, "torn last record: the event file is cut short (a live or killed run); the points before it are read", "torn_line")
    out: list[tuple[float, int, str, float]] = []
    tags = acc.Tags()
    for tag in tags.get(ea.SCALARS, []):
        out += [(e.wall_time, e.step, tag, e.value) for e in acc.Scalars(tag)]
    for tag in tags.get(ea.TENSORS, []):
        for e in acc.Tensors(tag):
            try:
                arr = tensor_util.make_ndarray(e.tensor_proto)
            except Exception:
                continue
            if arr.size == 1 and arr.dtype.kind in "fiub":
                out.append((e.wall_time, e.step, tag, float(arr.reshape(-1)[0])))
    col.report.records_read += len(out)
    return out


def load_tensorboard(path: Path, report: IngestReport) -> RunData:
    """An event file, a folder of them, a ``runs/`` folder of launches, or an output folder."""
    folders = event_folders(path)
    if not folders:
        raise InputError(f"{path}: no TensorBoard event files (events.out.tfevents.*)")
    root = path if path.is_dir() else path.parent
    col = Collector(report, root)
    launches = []
    for folder in folders:
        files = sorted(folder.glob(TB_EVENTS_GLOB)) if path.is_dir() or folder != path.parent else [path]
        pts = _points(folder, files, col)
        if pts:
            launches.append((min(p[0] for p in pts), folder, pts))
    launches.sort(key=lambda t: t[0])
    info: dict[str, Any] = {"run_id": (folders[0] if len(folders) == 1 else root).resolve().name, "world_size": 1}
    rows = StepRows(col, info)
    keys: set[str] = set()
    for _, folder, pts in launches:
        # in the order they were written: consecutive points of one step are one record, and a
        # step lower than the one before is a resume (a second launch into the same folder)
        pts.sort(key=lambda p: p[0])
        record: dict[str, float] = {}
        current: int | None = None
        for _wall, step, tag, value in pts:
            if current is not None and step != current:
                rows.add(current, record, folder)
                record = {}
            current = step
            record[tag] = value
            keys.add(tracker_key(tag))
        if current is not None:
            rows.add(current, record, folder)
    if len(launches) > 1:
        col.note(f"TensorBoard: {len(launches)} launch folders read in the order they started ({', '.join(col.rel(f) for _, f, _ in launches)}); a step logged twice keeps the later launch's value")
    col.finish()
    if not rows.rows:
        raise InputError(f"{path}: no scalar in the TensorBoard event files ({why_empty(report, 'no scalar summaries')})")
    info["algorithm"] = guess_algorithm(keys)
    return RunData(path=str(path), steps=steps_frame(rows.rows), generations=None, report=report, info=info)


__all__ = ["RUNS_FOLDER", "event_folders", "load_tensorboard"]
