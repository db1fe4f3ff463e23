"""The source-format registry, and discovery of every source in a run folder.

``FORMATS`` is the one list of the formats logscan reads: for each, its display name, what data it
holds (``scalars`` the trainer logged and/or ``completions``), its loader, where its step sits
relative to the optimiser update (``step_basis``) and the precedence used when a run folder holds
several sources (``analyzer.ingest.merge``). ``discover(folder)`` finds every readable source of a
folder — the folder's own files, ``checkpoint-*/``, ``completions/``, rollout dump folders, and run
folders one level down — and names every file it will not read, with the reason.

Step bases (verified in the libraries' sources, docs/formats.md "Several sources in one folder"):

- ``after_update``: the trainer's ``state.global_step`` after the optimiser step — transformers'
  ``Trainer.log`` (``log_history``'s ``step``), TRL's completion parquet files (written in
  ``GRPOTrainer.log`` at ``state.global_step``), TRL console dicts (the same ``log`` call),
  LLaMA-Factory's ``current_steps`` (its ``on_log`` callback), trainer_hooks' events, and
  trainer_hooks' completions (its reward wrapper stamps ``global_step + 1``);
- ``before_update``: the ``trainer_state.global_step`` a reward function sees while the step's
  completions are scored, i.e. one less — the seed's own CSV logger, and Markdown rollout dumps
  (``Step: 0/N`` is the first rollout);
- ``verl``: verl stamps a step's rollouts, dumps and metrics with the same ``global_steps``.

When a run mixes bases, ``before_update`` completions of the train split move to ``after_update``
(+1); evaluation completions are scored after the step they evaluate, at that step, and stay.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from analyzer.errors import InputError

if TYPE_CHECKING:
    from analyzer.model import IngestReport, RunData

Loader = Callable[[Path, "IngestReport"], "RunData"]


@dataclass(frozen=True, slots=True)
class SourceFormat:
    """One input format: how it is named, what it holds, how it is loaded and aligned."""

    kind: str
    display: str
    data: str  # scalars | completions | scalars+completions
    step_basis: str  # after_update | before_update | verl
    alignment: str  # one sentence: what its step means
    loader: str  # "module:function" in analyzer.ingest, imported on use
    scalar_rank: int = 9  # lower wins when two sources log the same metric at the same step
    completion_rank: int = 9  # lower is kept when two sources hold the same completions

    def load(self, path: Path, report: IngestReport, **kw: Any) -> RunData:
        import importlib

        module, func = self.loader.split(":")
        return getattr(importlib.import_module(f"analyzer.ingest.{module}"), func)(path, report, **kw)


FORMATS: Final[dict[str, SourceFormat]] = {
    f.kind: f
    for f in (
        SourceFormat(
            "logscan", "logscan run folder", "scalars+completions", "after_update",
            "trainer_hooks logs TRL's metrics at state.global_step and stamps completions global_step + 1",
            "logscan_run:load_logscan_run", scalar_rank=2, completion_rank=0,
        ),
        SourceFormat(
            "seed_csv", "seed-schema CSV", "completions", "before_update",
            "the seed's CSV logger writes the trainer_state.global_step its reward function sees (before the update)",
            "logscan_run:load_seed_csv", completion_rank=1,
        ),
        SourceFormat(
            "hf_trainer_state", "Hugging Face trainer_state.json", "scalars", "after_update",
            "log_history's step is state.global_step after the optimiser step",
            "hf_trainer_state:load_trainer_state", scalar_rank=0,
        ),
        SourceFormat(
            "trl_completions", "TRL completion files", "completions", "after_update",
            "GRPOTrainer.log writes completions_<global_step>.parquet after the update, like log_history",
            "trl_completions:load_trl_completions", completion_rank=2,
        ),
        SourceFormat(
            "verl_jsonl", "verl file-logger JSONL", "scalars", "verl",
            "verl logs a step's metrics with the global_steps its rollouts carry",
            "verl:load_verl_jsonl", scalar_rank=1,
        ),
        SourceFormat(
            "verl_rollouts", "verl rollout dumps", "completions", "verl",
            "verl dumps <global_steps>.jsonl in the same step as its metrics",
            "verl:load_verl_rollouts", completion_rank=2,
        ),
        SourceFormat(
            "verl_console", "verl console log", "scalars", "verl",
            "the console logger prints the same step:N as the file logger",
            "console:load_verl_console", scalar_rank=3,
        ),
        SourceFormat(
            "trl_console", "TRL console log", "scalars", "after_update",
            "dicts printed by Trainer.log after the update; the step is the training progress bar's count",
            "console:load_trl_console", scalar_rank=3,
        ),
        SourceFormat(
            "llamafactory", "LLaMA-Factory trainer_log.jsonl", "scalars", "after_update",
            "current_steps is state.global_step in LLaMA-Factory's on_log callback",
            "hf_trainer_state:load_llamafactory", scalar_rank=1,
        ),
        SourceFormat(
            "rollout_markdown", "Markdown rollout dump", "completions", "before_update",
            "Step: X/N is the global_step while the rollout is generated (the first is Step: 0)",
            "console:load_rollout_markdown", completion_rank=3,
        ),
        # experiment trackers (transformers' report_to callbacks; analyzer/ingest/trackers.py)
        SourceFormat(
            "tensorboard", "TensorBoard event files", "scalars", "after_update",
            "TensorBoardCallback writes add_scalar(tag, value, state.global_step) in on_log, after the update",
            "tb_events:load_tensorboard", scalar_rank=3,
        ),
        SourceFormat(
            "wandb", "Weights & Biases run", "scalars+completions", "after_update",
            "WandbCallback logs train/global_step = state.global_step with every record (W&B's own _step is not used); "
            "TRL's completions table has the same step",
            "wandb_files:load_wandb", scalar_rank=3, completion_rank=2,
        ),
        SourceFormat(
            "trackio", "Trackio store", "scalars+completions", "after_update",
            "TrackioCallback logs train/global_step = state.global_step with every record (Trackio's own step is not used); "
            "TRL's completions table has the same step",
            "trackio_db:load_trackio", scalar_rank=3, completion_rank=2,
        ),
        SourceFormat(
            "mlflow", "MLflow SQLite store", "scalars", "after_update",
            "MLflowCallback logs log_metrics(..., step=state.global_step) in on_log, after the update",
            "mlflow_store:load_mlflow_db", scalar_rank=3,
        ),
        SourceFormat(
            "mlflow_files", "MLflow file store", "scalars", "after_update",
            "MLflowCallback logs log_metrics(..., step=state.global_step) in on_log, after the update",
            "mlflow_store:load_mlflow_files", scalar_rank=3,
        ),
    )
}

SOURCE_KINDS: Final = tuple(FORMATS)


def display_name(kind: str) -> str:
    """``hf_trainer_state+trl_completions`` → ``Hugging Face trainer_state.json + TRL completion files``."""
    return " + ".join(FORMATS[k].display if k in FORMATS else k for k in kind.split("+"))


# --- discovery ------------------------------------------------------------------------------------
@dataclass(slots=True)
class Found:
    """A source discovery found: its format, the path its loader gets, the files it covers."""

    kind: str
    path: Path
    files: list[Path]
    nested: str | None = None  # the subfolder (a run folder one level down) it came from
    note: str = ""


@dataclass(slots=True)
class Discovery:
    root: Path
    found: list[Found] = field(default_factory=list)
    not_read: list[tuple[Path, str]] = field(default_factory=list)

    def skip(self, path: Path, reason: str) -> None:
        self.not_read.append((path, reason))


# names that are never training logs: weights, optimiser state, tokenizers, configs
_NOT_LOGS_SUFFIX: Final = frozenset({
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".npy", ".npz", ".pkl", ".pickle", ".gguf", ".h5",
    ".msgpack", ".onnx", ".arrow", ".png", ".jpg", ".jpeg", ".svg", ".gif", ".gz", ".zip", ".tar", ".model",
})
_NOT_LOGS_NAMES: Final = frozenset({
    "config.json", "adapter_config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja",
    "preprocessor_config.json", "model.safetensors.index.json", "training_args.bin",
})
_CHECKPOINT_RE: Final = re.compile(r"checkpoint-(\d+)$")
_DUMP_RE: Final = re.compile(r"^\d+\.jsonl$")


def _not_a_log(path: Path) -> str | None:
    if path.name in _NOT_LOGS_NAMES:
        return "model / tokenizer / config file, not a training log"
    if path.suffix.lower() in _NOT_LOGS_SUFFIX:
        return "binary or model file, not a training log"
    if path.name.startswith("."):
        return "hidden file"
    return None


def _classify(path: Path) -> tuple[str | None, str]:
    """A top-level file's source kind, or None and why it is not read."""
    from analyzer.ingest import _detect_file

    if (why := _not_a_log(path)) is not None:
        return None, why
    try:
        return _detect_file(path), ""
    except InputError as exc:
        reason = str(exc)
        prefix = f"{path}: "
        return None, "unknown format: " + (reason[len(prefix) :] if reason.startswith(prefix) else reason).split("; expected")[0]
    except OSError as exc:
        return None, f"unreadable ({exc.strerror})"


def _state_step(path: Path) -> int | None:
    """``global_step`` of a trainer_state.json, None when it cannot be read."""
    from analyzer.ingest._common import loads, to_int

    try:
        data = loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("log_history"), list):
        return None
    return to_int(data.get("global_step")) or 0


def _trainer_states(folder: Path, disc: Discovery, rel: Callable[[Path], str]) -> tuple[Path, str] | None:
    """The trainer_state.json to read among the folder's own and its checkpoints': the highest
    ``global_step`` wins; the folder's own state wins a tie (it is written last). The others are
    listed as not read, saying why."""
    from analyzer.ingest.hf_trainer_state import STATE_FILE, find_states

    states = find_states(folder)
    if not states:
        return None
    steps = {p: _state_step(p) for p in states}
    readable = [p for p in states if steps[p] is not None]
    if not readable:  # the loader reports why each is unreadable
        return states[0], ""
    own = folder / STATE_FILE
    best = max(readable, key=lambda p: (steps[p] or 0, p == own))
    for p in states:
        if p == best:
            continue
        if steps[p] is None:
            disc.skip(p, "not a readable trainer state (malformed JSON or no log_history)")
        elif p == own:
            disc.skip(p, f"stale copy: global_step {steps[p]}, older than {rel(best)} ({steps[best]})")
        elif best == own and steps[p] == steps[best]:
            disc.skip(p, f"same global_step ({steps[p]}) as the folder's own trainer_state.json, which is used")
        else:
            disc.skip(p, f"older checkpoint: global_step {steps[p]}; {rel(best)} has {steps[best]}")
    why = "highest global_step" + (", the folder's own state wins a tie" if best == own else "")
    others = ", ".join(rel(p) for p in states if p != best)
    return best, (f"several Trainer states; using {rel(best)} ({why}: {steps[best]}), not {others}" if others else "")


def _checkpoint_files(folder: Path, disc: Discovery, used: set[Path]) -> None:
    for ck in sorted(p for p in folder.iterdir() if p.is_dir() and _CHECKPOINT_RE.search(p.name)):
        for f in sorted(ck.rglob("*")):
            if f.is_file() and f not in used and f.name != "trainer_state.json":
                disc.skip(f, "checkpoint file (weights, optimiser or config), not a training log")


def _is_own_output(folder: Path) -> bool:
    from analyzer.ingest import _own_output

    return _own_output(folder) is not None


def discover(folder: Path, *, nested: bool = True) -> Discovery:
    """Every source in ``folder`` (see the module docstring) and every file not read, with why."""
    from analyzer.ingest import _detect_dir, logscan_run, trl_completions
    from analyzer.ingest._common import not_a_regular_file
    from trainer_hooks import schema as S

    disc = Discovery(folder)

    def rel(p: Path) -> str:
        try:
            return str(p.relative_to(folder))
        except ValueError:
            return p.name

    claimed: set[Path] = set()
    entries = sorted(folder.iterdir())
    files = [p for p in entries if p.is_file()]
    dirs = [p for p in entries if p.is_dir()]

    # 1. a logscan run (run.json, events*.jsonl, generations*.jsonl|csv) — or a seed CSV's files
    if logscan_run.is_logscan_folder(folder) or ((folder / S.MANIFEST_FILE).is_file()):
        # entries, not files: a broken link among them is the reader's to report (run_files)
        own = [p for p in entries if not p.is_dir() and (p.name == S.MANIFEST_FILE or re.match(r"run\.rank\d+\.json$", p.name)
               or (p.name.startswith((S.EVENTS_STEM, S.GENERATIONS_STEM)) and p.suffix in (".jsonl", ".csv")))]
        if _manifest_says_jsonl(folder):
            # run.json says the hooks wrote JSONL: a generations*.csv beside it is another logger's
            # (the seed's CSV logger), read as its own source with its own step alignment
            own = [p for p in own if p.suffix != ".csv"]
        disc.found.append(Found("logscan", folder, own))
        claimed.update(own)
    # 2. the trainer state: the newest of the folder's own and its checkpoints'
    if (picked := _trainer_states(folder, disc, rel)) is not None:
        state, note = picked
        disc.found.append(Found("hf_trainer_state", state, [state], note=note))
        claimed.add(state)
        claimed.update(p for p, _ in disc.not_read)  # the older states: listed, not read
    # 3. TRL's completions/ folder
    if (comp := trl_completions.find_completion_files(folder)):
        disc.found.append(Found("trl_completions", comp[0].parent if folder.name != "completions" else folder, comp))
        claimed.update(comp)
    # 3b. experiment trackers: TensorBoard runs/, wandb/, Trackio and MLflow stores, mlruns/
    from analyzer.ingest.tracker_discovery import find_tracker_sources

    trackers = find_tracker_sources(folder, entries)
    disc.found += [Found(kind, path, files) for kind, path, files in trackers.found]
    disc.not_read += trackers.skipped
    tracker_dirs = trackers.covered
    claimed.update(tracker_dirs)
    # 4. the remaining files, one by one (seed CSVs are grouped: ranks and parts of one log)
    csvs: list[Path] = []
    dumps: list[Path] = []
    for p in entries:  # a broken link, a FIFO, a device: named, never opened
        if p not in claimed and not p.is_dir() and (why := not_a_regular_file(p)) is not None:
            disc.skip(p, why)
    for p in files:
        if p in claimed:
            continue
        if _DUMP_RE.match(p.name):
            dumps.append(p)
            continue
        if p.name in {"analysis.json", "metrics.parquet", "generations.parquet", "report.md", "report.html", "report.junit.xml"} and _is_own_output(folder):
            disc.skip(p, "logscan's own output")
            continue
        kind, why = _classify(p)
        if kind is None:
            disc.skip(p, why)
        elif kind == "seed_csv":
            csvs.append(p)
        elif kind == "trl_completions":
            disc.found.append(Found("trl_completions", p, [p]))
        elif kind == "logscan":  # a stray events/generations file the folder check did not claim
            disc.skip(p, "a logscan run file outside a logscan run folder")
        else:
            disc.found.append(Found(kind, p, [p]))
    for group in _csv_groups(csvs):
        disc.found.append(Found("seed_csv", group[0] if len(group) == 1 else folder, group))
    if dumps:
        disc.found.append(Found("verl_rollouts", folder, dumps))
    # 5. subfolders: checkpoints (above), completions (above), rollout dumps, logscan's own output,
    # run folders one level down (judged against the folder's own sources by the merge), the rest
    later: list[Path] = []
    for d in dirs:
        if _CHECKPOINT_RE.search(d.name) or (d.name == trl_completions.FOLDER and comp) or d in tracker_dirs:
            continue
        if d.name.startswith("."):
            disc.skip(d, "hidden folder")
            continue
        if _is_own_output(d):
            disc.skip(d, "logscan's own output")
            continue
        inner = sorted(p for p in d.iterdir() if p.is_file() and _DUMP_RE.match(p.name)) if _readable_dir(d) else []
        if inner:
            disc.found.append(Found("verl_rollouts", d, inner))
            continue
        later.append(d)
    # run folders one level down count only beside the folder's own sources (a folder of runs is
    # explained by the caller without reading them)
    for d in later:
        if not nested or not disc.found:
            disc.skip(d, "a subfolder (searched only beside a run's own files)" if nested else "a folder two levels down (not searched)")
            continue
        try:
            _detect_dir(d, explain=False)
        except (InputError, OSError):
            disc.skip(d, "holds no training log logscan reads")
            continue
        sub = discover(d, nested=False)
        for f in sub.found:
            f.nested = d.name
        disc.found.extend(sub.found)
        disc.not_read.extend(sub.not_read)
    _checkpoint_files(folder, disc, claimed)
    return disc


def _manifest_says_jsonl(folder: Path) -> bool:
    from analyzer.ingest._common import loads
    from trainer_hooks import schema as S

    path = folder / S.MANIFEST_FILE
    if not path.is_file():  # a device (run.json -> /dev/zero) would be read until memory runs out
        return False
    try:
        data = loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get(S.M_GENERATIONS_FORMAT) == "jsonl"


def _readable_dir(d: Path) -> bool:
    try:
        next(iter(d.iterdir()), None)
    except OSError:
        return False
    return True


_RANK_PART_RE: Final = re.compile(r"\.(?:rank|part)\d+(?=\.)")


def _csv_groups(csvs: list[Path]) -> list[list[Path]]:
    """Seed CSVs grouped by log: every ``generations*.csv`` is one log (ranks, parts, splits: as a
    seed-schema folder has always been read); another name is its own log, with its own ranks and
    parts (``x.csv``, ``x.rank1.csv``). Separate logs are separate sources: the merge decides
    whether they are one run."""
    from trainer_hooks import schema as S

    groups: dict[str, list[Path]] = {}
    for p in csvs:
        key = S.GENERATIONS_STEM if p.name.startswith(S.GENERATIONS_STEM) else _RANK_PART_RE.sub("", p.name)
        groups.setdefault(key, []).append(p)
    return list(groups.values())


__all__ = ["FORMATS", "SOURCE_KINDS", "Discovery", "Found", "SourceFormat", "discover", "display_name"]
