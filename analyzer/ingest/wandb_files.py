"""Weights & Biases run folders (``wandb/run-*/``, ``wandb/offline-run-*/``), read from disk with
wandb's own protobuf classes (the ``wandb`` extra); nothing is sent anywhere.

A run's history, config and summary live only in ``run-<id>.wandb`` (wandb 0.31 writes no
``wandb-history.jsonl``): a 7-byte header (``:W&B``, 0xBEE1, version 0), then LevelDB-log framing
— 32 KiB blocks of records (FULL, or FIRST/MIDDLE…/LAST pieces) each with a CRC32 of its type and
data — around ``wandb_internal_pb2.Record`` messages. wandb 0.31 has no Python API for local runs
any more, so the framing is read here (the format is documented in wandb's
``sdk/internal/datastore.py`` of earlier versions and unchanged); a torn or corrupt tail — a live
or killed run — ends the read with an issue, keeping what came before.

transformers' ``WandbCallback`` logs ``{train/<key>: value, ..., "train/global_step":
state.global_step}`` without ``step=``: W&B's own ``_step`` counts ``log`` calls (TRL's completion
tables advance it too), so records are put on ``train/global_step`` (``trackers.history_rows``).
TRL's ``completions`` tables are written beside the log as
``files/media/table/completions_<n>_<hash>.table.json`` (``{"columns": [...], "data": [...]}``,
bare ``NaN`` allowed) with a ``step`` column: read as completions, like TRL's parquet files.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from analyzer.errors import InputError
from analyzer.ingest._common import Collector, empty_steps, loads, steps_frame, why_empty
from analyzer.ingest.hf_trainer_state import guess_algorithm
from analyzer.ingest.trackers import (
    history_keys,
    history_rows,
    missing_extra,
    reward_function_names,
)
from analyzer.model import IngestReport, RunData

FOLDER: Final = "wandb"
_HEADER: Final = struct.Struct("<4sHB")  # ":W&B", 0xBEE1, version
_RECORD: Final = struct.Struct("<IHB")  # crc32, length, type
_BLOCK: Final = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
_TYPE_CRC: Final = {t: zlib.crc32(bytes([t])) for t in (_FULL, _FIRST, _MIDDLE, _LAST)}
TABLES: Final = "files/media/table"


def is_run_dir(d: Path) -> bool:
    try:
        return any(d.glob("run-*.wandb"))
    except OSError:
        return False


def is_wandb_dir(d: Path) -> bool:
    try:
        return any(is_run_dir(r) for r in d.iterdir() if r.is_dir() and r.name.startswith(("run-", "offline-run-")))
    except OSError:
        return False


def history_files(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("run-*.wandb"))


def _run_id(run_dir: Path) -> str:
    return run_dir.name.rsplit("-", 1)[-1]


def select_runs(wandb_dir: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The run folders to read — one W&B run: the newest run id (``latest-run``'s, else the newest
    folder), with every folder of that id (a resumed run gets one folder per launch) — and the
    others, each with why it is not read."""
    if is_run_dir(wandb_dir):
        return [wandb_dir], []
    runs = sorted(r for r in wandb_dir.iterdir() if r.is_dir() and not r.is_symlink() and is_run_dir(r))
    if not runs:
        return [], []
    latest = wandb_dir / "latest-run"
    newest = latest.resolve() if latest.is_symlink() and latest.resolve() in {r.resolve() for r in runs} else None
    # run folders are named <run|offline-run>-<YYYYmmdd_HHMMSS>-<id>: the date orders them
    by_date = sorted(runs, key=lambda r: r.name.split("-")[-2] if r.name.count("-") >= 2 else r.name)
    rid = _run_id(newest) if newest is not None else _run_id(by_date[-1])
    chosen = [r for r in by_date if _run_id(r) == rid]
    others = [(r, f"another W&B run ({_run_id(r)}); this run's is {rid} (analyze it with logscan analyze {r})") for r in runs if r not in chosen]
    return chosen, others


def _records(path: Path, col: Collector) -> Iterator[tuple[int, bytes]]:
    """``(record number, protobuf bytes)`` of a ``.wandb`` file; a torn or corrupt tail is an issue."""
    data = path.read_bytes()
    if len(data) < _HEADER.size:
        col.issue(path, None, "shorter than the W&B header (a run that had not flushed yet)", "empty", skipped=False)
        return
    ident, magic, version = _HEADER.unpack_from(data)
    if ident != b":W&B" or magic != 0xBEE1:
        col.issue(path, None, "not a W&B log (bad header)", "malformed", skipped=False)
        return
    if version != 0:
        col.issue(path, None, f"W&B log format version {version}: read as version 0", "malformed", skipped=False)
    pos, n, pending = _HEADER.size, 0, b""
    while pos < len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _RECORD.size:  # the block's tail is zero padding
            pos += left
            continue
        if pos + _RECORD.size > len(data):
            break
        crc, length, kind = _RECORD.unpack_from(data, pos)
        if crc == 0 and length == 0 and kind == 0:  # zeros: the file ends here (preallocated)
            break
        body = data[pos + _RECORD.size : pos + _RECORD.size + length]
        if len(body) < length or length > left - _RECORD.size:
            col.issue(path, n + 1, "torn last record: the log is cut short (a live or killed run); the rest is not read", "torn_line")
            return
        if kind not in _TYPE_CRC or zlib.crc32(body, _TYPE_CRC[kind]) & 0xFFFFFFFF != crc:
            col.issue(path, n + 1, "corrupt record (checksum mismatch); the rest of the log is not read", "malformed")
            return
        pos += _RECORD.size + length
        if kind == _FULL:
            pending = b""
            n += 1
            yield n, body
        elif kind == _FIRST:
            pending = body
        elif kind == _MIDDLE:
            pending += body
        else:
            n += 1
            yield n, pending + body
            pending = b""
    if pending:
        col.issue(path, n + 1, "torn last record: the log is cut short (a live or killed run); the rest is not read", "torn_line")


def _config(items: Any, info: dict[str, Any]) -> None:
    cfg = info.get("config") or {}
    for item in items:
        try:
            cfg[_key(item)] = loads(item.value_json)
        except ValueError:
            cfg[_key(item)] = item.value_json
    cfg.pop("_wandb", None)
    if cfg:
        info["config"] = cfg


def _value(item: Any) -> Any:
    which = item.WhichOneof("value")
    if which is None:
        text = item.value_json
        return loads(text) if text else None
    if which == "none":
        return None
    if which == "json":
        return loads(item.json)
    return getattr(item, which)


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def _read_log(path: Path, col: Collector, info: dict[str, Any]) -> list[tuple[int | None, int | None, dict[str, Any]]]:
    try:
        from wandb.proto import wandb_internal_pb2 as pb
    except ImportError as exc:
        raise missing_extra("wandb", "wandb", "Weights & Biases runs") from exc
    out: list[tuple[int | None, int | None, dict[str, Any]]] = []
    col.read(path)
    for n, raw in _records(path, col):
        rec = pb.Record()  # type: ignore[attr-defined]  # generated protobuf module
        try:
            rec.ParseFromString(raw)
        except Exception:  # protobuf's DecodeError
            col.issue(path, n, "a record wandb's protobuf classes cannot decode; skipped", "malformed")
            continue
        which = rec.WhichOneof("record_type")
        if which == "run":
            r = rec.run
            info["run_id"] = r.run_id or info.get("run_id")
            info["run_name"] = r.display_name or info.get("run_name")
            info["project"] = r.project or info.get("project")
            _config(r.config.update, info)
        elif which == "config":
            _config(rec.config.update, info)
        elif which == "exit":
            info["status"] = "finished" if rec.exit.exit_code == 0 else "crashed"
        elif which == "history":
            col.report.records_read += 1
            row: dict[str, Any] = {}
            own: int | None = rec.history.step.num if rec.history.HasField("step") else None
            for item in rec.history.item:
                key = _key(item)
                try:
                    value = _value(item)
                except ValueError:
                    col.issue(path, n, f"history value of {key!r} is not JSON; ignored", "malformed", skipped=False)
                    continue
                if key == "_step" and own is None:
                    own = value if isinstance(value, int) else None
                if key.startswith("_"):  # W&B's own: _step, _runtime, _timestamp
                    continue
                row[key] = value
            out.append((n, own, row))
    return out


def _without_media(
    records: list[tuple[int | None, int | None, dict[str, Any]]], dropped: dict[str, int]
) -> list[tuple[int | None, int | None, dict[str, Any]]]:
    """History rows without media references: a logged table (image, …) is a group of nested
    keys ``<name>/_type`` (``table-file``), ``<name>/path``, ``<name>/sha256``… whose content is a
    file under ``files/media/`` (tables are read from there)."""
    out = []
    for n, own, r in records:
        media = tuple(k[: -len("_type")] for k in r if k.endswith("/_type"))
        out.append((n, own, {k: v for k, v in r.items() if not isinstance(v, dict) and not (media and k.startswith(media))}))
        for m in media:
            dropped[m.rstrip("/")] = dropped.get(m.rstrip("/"), 0) + 1
    return out


def _tables(run_dirs: list[Path], col: Collector) -> list[tuple[Path, Any]]:
    import polars as pl

    out: list[tuple[Path, Any]] = []
    files = [f for d in run_dirs for f in sorted((d / TABLES).glob("*.table.json"), key=_table_order)]
    for f in files:
        col.read(f)
        try:
            doc = loads(f.read_bytes())
        except (OSError, ValueError) as exc:
            col.issue(f, None, f"unreadable W&B table ({type(exc).__name__}); skipped", "malformed", skipped=False)
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("columns"), list) or not isinstance(doc.get("data"), list):
            col.issue(f, None, "not a W&B table (no columns/data); skipped", "malformed", skipped=False)
            continue
        cols = [str(c) for c in doc["columns"]]
        if "completion" not in cols or "step" not in cols:
            continue  # a table that is not TRL's completions
        rows = [r for r in doc["data"] if isinstance(r, list) and len(r) == len(cols)]
        if len(rows) < len(doc["data"]):
            col.issue(f, None, f"{len(doc['data']) - len(rows)} rows whose length is not the columns'; skipped", "malformed", skipped=False)
        data = {c: [_cell(r[i]) for r in rows] for i, c in enumerate(cols)}
        out.append((f, pl.DataFrame(data, strict=False)))
    return out


def _cell(v: Any) -> Any:
    """A table cell: nested values (a chat prompt's messages) as their JSON text."""
    return json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v


def _table_order(f: Path) -> tuple[int, str]:
    parts = f.name.split("_")  # completions_<n>_<hash>.table.json: n is the history step
    try:
        return int(parts[-2]), f.name
    except (ValueError, IndexError):
        return 1 << 62, f.name


def load_wandb(path: Path, report: IngestReport) -> RunData:
    """A W&B run folder, a ``wandb/`` folder (its newest run), a folder holding ``wandb/``, or a
    ``.wandb`` file."""
    from analyzer.ingest.trl_completions import completion_tables

    if path.is_file():
        run_dirs, root = [path.parent], path.parent
    else:
        base = path if is_run_dir(path) or is_wandb_dir(path) else path / FOLDER
        run_dirs, _ = select_runs(base) if base.is_dir() else ([], [])
        root = path
    if not run_dirs:
        raise InputError(f"{path}: no W&B run (wandb/run-*/run-*.wandb)")
    col = Collector(report, root)
    info: dict[str, Any] = {"world_size": 1}
    records: list[tuple[int | None, int | None, dict[str, Any]]] = []
    first = history_files(run_dirs[0])[0] if history_files(run_dirs[0]) else run_dirs[0]
    for d in run_dirs:
        for f in history_files(d) if path.is_dir() else [path]:
            records += _read_log(f, col, info)
    if len(run_dirs) > 1:
        col.note(f"W&B: run {info.get('run_id')} was launched {len(run_dirs)} times; its folders are read in order")
    media: dict[str, int] = {}
    records = _without_media(records, media)
    if media:
        shown = ", ".join(f"{k} ({v})" for k, v in sorted(media.items()))
        col.note(f"W&B: logged media and tables are not metrics: {shown}; TRL's completions tables are read from {TABLES}/")
    rows = history_rows(records, first, col, info)
    keys = history_keys(records)
    names = reward_function_names(keys)
    gens = completion_tables(_tables(run_dirs, col), col, names or None)
    col.finish()
    if not rows.rows and gens is None:
        raise InputError(f"{path}: no history with a step in this W&B run ({why_empty(report, 'nothing logged')})")
    info["algorithm"] = guess_algorithm(keys)
    info["reward_names"] = names
    if "status" not in info:
        info["status"] = "running"  # no exit record: live, or killed
    steps = steps_frame(rows.rows) if rows.rows else empty_steps()
    return RunData(path=str(path), steps=steps, generations=gens, report=report, info=info)


__all__ = ["FOLDER", "is_run_dir", "is_wandb_dir", "load_wandb", "select_runs"]
