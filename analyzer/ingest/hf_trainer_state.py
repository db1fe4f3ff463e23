"""Hugging Face Trainer output: ``trainer_state.json`` (``log_history``) of an output or checkpoint
folder, TRL's completion parquet files next to it, and LLaMA-Factory's ``trainer_log.jsonl``.

``log_history`` entries are merged per ``step`` (a train entry and an eval entry of one step become
one row; ``eval_*`` keys become ``eval/<canonical>``). The last entry TRL/transformers write at the
end of training (``train_runtime``, ``train_loss``…) is a summary, kept in ``info`` rather than
as a step. Python's json writes ``NaN``/``Infinity`` literally; Python's json reads them back.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

from analyzer import columns as C
from analyzer.errors import InputError
from analyzer.ingest._common import (
    Collector,
    iter_json_objects,
    loads,
    metric_values,
    short,
    steps_frame,
    to_int,
    why_empty,
)
from analyzer.ingest.keymap import canonical_key
from analyzer.model import IngestReport, RunData

STATE_FILE: Final = "trainer_state.json"
LLAMAFACTORY_LOG: Final = "trainer_log.jsonl"
SUMMARY_KEYS: Final = frozenset(
    {"train_runtime", "train_loss", "train_samples_per_second", "train_steps_per_second", "total_flos"}
)
_LLAMAFACTORY_PROGRESS: Final = frozenset({"current_steps", "total_steps", "percentage", "elapsed_time", "remaining_time"})
_LLAMAFACTORY_RENAME: Final = {"accuracy": "rewards/accuracies"}
_CHECKPOINT_RE: Final = re.compile(r"checkpoint-(\d+)$")


def find_states(folder: Path) -> list[Path]:
    """``trainer_state.json`` of the folder itself and of each ``checkpoint-*/``."""
    found = [folder / STATE_FILE] if (folder / STATE_FILE).is_file() else []
    checkpoints = sorted(
        (int(m.group(1)), p / STATE_FILE)
        for p in folder.iterdir()
        if (m := _CHECKPOINT_RE.search(p.name)) and (p / STATE_FILE).is_file()
    )
    return found + [state for _, state in checkpoints]


def _load_state(path: Path, col: Collector) -> dict[str, Any] | None:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        col.issue(path, None, f"unreadable ({exc.strerror})", "malformed", skipped=False)
        return None
    if not raw.strip():
        col.issue(path, None, "empty file", "empty", skipped=False)
        return None
    try:
        data = loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        col.issue(path, None, f"not valid UTF-8 (byte {exc.start})", "not_utf8", skipped=False)
        return None
    except json.JSONDecodeError as exc:
        col.issue(path, exc.lineno, f"malformed JSON ({exc.msg}); file skipped", "malformed", skipped=False)
        return None
    if not isinstance(data, dict) or not isinstance(data.get("log_history"), list):
        col.issue(path, None, "no log_history list: not a Trainer state", "malformed", skipped=False)
        return None
    return data


def _pick_state(path: Path, col: Collector) -> tuple[Path, dict[str, Any]]:
    candidates = [path] if path.is_file() else find_states(path)
    loaded = [(p, d) for p in candidates if (d := _load_state(p, col)) is not None]
    if not loaded:
        raise InputError(f"{path}: no readable trainer_state.json ({why_empty(col.report, 'nothing found')})")
    # the latest state wins: highest global_step; the output folder's own state wins a tie
    best = max(loaded, key=lambda pd: (to_int(pd[1].get("global_step")) or 0, pd[0].parent == path))
    if len(loaded) > 1:
        others = ", ".join(col.rel(p) for p, _ in loaded if p is not best[0])
        col.note(f"several Trainer states; using {col.rel(best[0])} (highest global_step), not {others}")
    return best


def guess_algorithm(keys: set[str]) -> str | None:
    if any(k.startswith("objective/") for k in keys):
        return "ppo"
    if "odds_ratio_loss" in keys or "log_odds_ratio" in keys:
        return "orpo"
    # TRL's KTOTrainer: kl (its reference point) and rewards/*, never rewards/accuracies (unpaired data)
    if "kl" in keys and "rewards/chosen" in keys and "rewards/accuracies" not in keys:
        return "kto"
    if "rewards/chosen" in keys or "rewards/margins" in keys:
        return "dpo"
    if {"frac_reward_zero_std", "reward_std"} & keys or any(k.startswith("completions/") for k in keys):
        return "grpo"
    return None


def parse_log_history(entries: list[Any], path: Path, col: Collector, info: dict[str, Any]) -> dict[int, dict[str, float | None]]:
    rows: dict[int, dict[str, float | None]] = {}
    prev: int | None = None
    for i, entry in enumerate(entries):
        where = f"log_history[{i}]"
        if not isinstance(entry, dict):
            col.issue(path, None, f"{where} is {type(entry).__name__}, not an object; skipped", "not_object")
            continue
        step = to_int(entry.get("step"))
        if step is None:
            col.issue(path, None, f"{where}: step is {short(entry.get('step'))}, not an integer; skipped", "no_step")
            continue
        col.report.records_read += 1
        if SUMMARY_KEYS & entry.keys():
            info["train_summary"] = {k: v for k, v in entry.items() if k != "step"}
            continue
        if prev is not None and step < prev:
            col.resume(path, None, prev, step)
        prev = step
        pairs = {k: v for k, v in entry.items() if k != "step"}
        rows.setdefault(step, {}).update(metric_values(pairs, path, None, col, label=where + ": {}"))
    return rows


def _model_name(folder: Path) -> str | None:
    for name, key in (("adapter_config.json", "base_model_name_or_path"), ("config.json", "_name_or_path")):
        p = folder / name
        if p.is_file():
            try:
                value = loads(p.read_text(encoding="utf-8")).get(key)
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(value, str) and value:
                return value
    return None


def load_trainer_state(path: Path, report: IngestReport, *, with_completions: bool = True) -> RunData:
    """``with_completions=False``: the state alone (a run folder's merge reads ``completions/`` as
    its own source)."""
    from analyzer.ingest.trl_completions import find_completion_files, read_completions

    root = path if path.is_dir() else path.parent
    col = Collector(report, root)
    state_path, state = _pick_state(path, col)
    col.read(state_path)
    info: dict[str, Any] = {"run_id": root.resolve().name}
    rows = parse_log_history(state["log_history"], state_path, col, info)
    keys = {k for e in state["log_history"] if isinstance(e, dict) for k in e}
    info["algorithm"] = guess_algorithm(keys)
    for key in ("global_step", "max_steps", "logging_steps", "eval_steps", "save_steps", "num_train_epochs", "train_batch_size"):
        if key in state:
            info[key] = state[key]
    info["model"] = _model_name(state_path.parent) or _model_name(root)
    info["world_size"] = 1
    info["status"] = "finished" if "train_summary" in info else None
    # per-function reward means (TRL's rewards/<name>/mean, older rewards/<name>), by the keymap's rules
    reward_names = sorted({
        name[len(C.REWARD_PREFIX) :]
        for k in keys
        if k.startswith("rewards/") and not k.endswith("/std") and (name := canonical_key(k)[0]).startswith(C.REWARD_PREFIX)
    })
    info["reward_names"] = reward_names
    steps = steps_frame(rows)
    gens = None
    files = find_completion_files(state_path.parent) or (find_completion_files(root) if root != state_path.parent else [])
    if not with_completions:
        files = []
    elif not files and state_path.parent.parent != root:
        files = find_completion_files(state_path.parent.parent)
    if files:
        gens = read_completions(files, col, reward_names)
        report.source_kind = "hf_trainer_state+trl_completions"
    col.finish()
    if steps.height == 0 and gens is None:
        raise InputError(f"{state_path}: log_history holds no step entries ({why_empty(report, 'nothing found')})")
    return RunData(path=str(path), steps=steps, generations=gens, report=report, info=info)


def load_llamafactory(path: Path, report: IngestReport) -> RunData:
    """LLaMA-Factory's ``trainer_log.jsonl``: ``current_steps`` + loss, accuracy, learning_rate…"""
    file = path / LLAMAFACTORY_LOG if path.is_dir() else path
    root = file.parent
    col = Collector(report, root)
    col.read(file)
    rows: dict[int, dict[str, float | None]] = {}
    info: dict[str, Any] = {"run_id": root.resolve().name, "world_size": 1}
    for lineno, obj in iter_json_objects(file, col):
        step = to_int(obj.get("current_steps"))
        if step is None:
            col.issue(file, lineno, f"current_steps is {short(obj.get('current_steps'))}, not an integer; skipped", "no_step")
            continue
        if "total_steps" in obj:
            info["max_steps"] = obj["total_steps"]
        # LLaMA-Factory's LogCallback writes the entry's rewards/accuracies as "accuracy" (preference
        # stages: DPO, ORPO, SimPO); under its real name the run is judged as preference optimisation
        values = {_LLAMAFACTORY_RENAME.get(k, k): v for k, v in obj.items() if k not in _LLAMAFACTORY_PROGRESS}
        mapped = metric_values(values, file, lineno, col)
        if set(mapped) <= {C.EPOCH}:
            continue  # the final progress-only line
        rows.setdefault(step, {}).update(mapped)
    col.finish()
    if not rows:
        raise InputError(f"{file}: no step entries with metrics ({why_empty(report, 'nothing found')})")
    return RunData(path=str(path), steps=steps_frame(rows), generations=None, report=report, info=info)


__all__ = ["load_llamafactory", "load_trainer_state"]
