"""run.json, the run's manifest: what it holds, how it is read back and written atomically.

Pure functions; ``RunLogger`` owns the manifest dict and decides when it is written (its
``_write_manifest``: one lock, the write-error counter, one warning).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import schema
from ._encode import sanitize


def utc_now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat()


def hostname() -> str:
    try:
        return socket.gethostname()
    except OSError:
        return "unknown host"


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest at ``path``: None when there is none, ``{}`` when it cannot be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def previous_counters(value: Any) -> dict[str, int]:
    """The counters of earlier sessions from a manifest (tolerating a damaged one)."""
    out = dict.fromkeys(schema.COUNTER_KEYS, 0)
    if isinstance(value, dict):
        for k in schema.COUNTER_KEYS:
            with contextlib.suppress(TypeError, ValueError):
                out[k] = int(value.get(k) or 0)
    return out


def new_manifest(
    prev: dict[str, Any],
    *,
    run_id: str,
    now: str,
    algorithm: str | None,
    model: str | None,
    config: Any,
    reward_names: list[str],
    world_size: int,
    rank: int,
    generations_format: str,
    counters: dict[str, int],
    resumes: list[Any],
) -> dict[str, Any]:
    """This session's manifest: what was passed wins, the previous session's ``prev`` fills in."""
    return {
        schema.M_FORMAT: schema.FORMAT,
        schema.M_RUN_ID: run_id,
        schema.M_CREATED: prev.get(schema.M_CREATED, now),
        schema.M_ENDED: None,
        schema.M_STATUS: schema.RunStatus.RUNNING.value,
        schema.M_ALGORITHM: algorithm if algorithm is not None else prev.get(schema.M_ALGORITHM),
        schema.M_MODEL: model if model is not None else prev.get(schema.M_MODEL),
        schema.M_CONFIG: sanitize(config) if config is not None else prev.get(schema.M_CONFIG),
        schema.M_REWARD_NAMES: reward_names,
        schema.M_WORLD_SIZE: world_size,
        schema.M_RANK: rank,
        schema.M_GENERATIONS_FORMAT: generations_format,
        schema.M_COUNTERS: dict(counters),
        schema.M_RESUMES: resumes,
        schema.M_WRITER: {"pid": os.getpid(), "host": hostname(), "since": now},
    }


def add_reward_names(manifest: dict[str, Any], names: Iterable[str]) -> None:
    """List ``names`` in the manifest after the names it has, each once."""
    manifest[schema.M_REWARD_NAMES] = list(
        dict.fromkeys([*manifest[schema.M_REWARD_NAMES], *names])
    )


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """run.json's content (indented JSON, NaN as its string, lone surrogates escaped)."""
    data = json.dumps(sanitize(manifest), ensure_ascii=False, indent=2) + "\n"
    return data.encode("utf-8", "backslashreplace")


def temp_path(path: Path) -> Path:
    """A temporary name beside ``path`` that no other process or thread writes."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def write_atomic(path: Path, tmp: Path, data: bytes) -> None:
    """Write ``data`` to ``tmp``, fsync, and rename it over ``path`` (readers never see half)."""
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
