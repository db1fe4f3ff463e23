"""Ingest: any run a user has (a path) → :class:`~analyzer.model.RunData` with canonical frames.

``load_run(folder)`` reads every source of a run folder and merges them into one run
(``analyzer.ingest.sources`` finds them, ``analyzer.ingest.merge`` merges them; every file not
read is listed with the reason in ``RunData.report.not_read``, every source read in
``RunData.sources``). ``load_run(file)`` reads that one file. ``detect_source(path)`` names the
main format; the formats are registered in ``analyzer.ingest.sources.FORMATS``:

=========================== ===============================================================
source kind                 what it is
=========================== ===============================================================
``logscan``                 a logscan run folder (``run.json``, ``events*.jsonl``, ``generations*``)
``seed_csv``                a bare seed-schema CSV, or a folder holding one
``hf_trainer_state``        an HF Trainer output/checkpoint folder or its ``trainer_state.json``
``trl_completions``         TRL ``completions/completions_*.parquet`` without a trainer state
``verl_jsonl``              verl's file logger (``{"step": N, "data": {...}}`` lines)
``verl_rollouts``           verl rollout dumps (``<dir>/<step>.jsonl``)
``verl_console``            a verl console log (``step:N - key:value - ...``)
``trl_console``             a TRL/transformers console log (``{'loss': ...}`` lines)
``llamafactory``            LLaMA-Factory's ``trainer_log.jsonl``
``rollout_markdown``        a Markdown dump of rollouts (``## === Rollout Step N ===`` …)
``tensorboard``             TensorBoard event files (``runs/<launch>/events.out.tfevents.*``)
``wandb``                   a W&B run folder (``wandb/run-*/``, ``wandb/offline-run-*/``)
``trackio``                 a Trackio project store (``<project>.db``; ``STORE.db#RUN``)
``mlflow``                  an MLflow SQLite store (``mlflow.db``; ``mlflow.db#RUN``)
``mlflow_files``            an MLflow file store (``mlruns/``)
=========================== ===============================================================

Problems inside files become located issues in ``RunData.report``; ``InputError`` (one line,
exit code 2) only when the path is missing or nothing usable is left. See docs/formats.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from analyzer.errors import InputError
from analyzer.ingest.sources import FORMATS, SOURCE_KINDS  # the registry of formats
from analyzer.model import IngestReport, RunData, SourceRead

_HELP: Final = (
    "expected a logscan run folder, a seed-schema CSV, a Hugging Face output folder or "
    "trainer_state.json, TRL completions, a verl log or rollout dump, a console log, or a "
    "tracker's logs (TensorBoard, W&B, Trackio, MLflow)"
)


def _first_json_object(path: Path) -> object | None:
    """The first non-blank line of a JSONL file, parsed; None when it is not JSON."""
    from analyzer.ingest._common import loads

    try:
        with path.open("rb") as fh:
            for raw in fh:
                if raw.strip():
                    return loads(raw.decode("utf-8"))
    except ValueError:  # not JSON, not UTF-8, or beyond what logscan reads (too deep, a huge integer)
        return None
    return None


def _detect_jsonl(path: Path) -> str | None:
    from analyzer.ingest import verl
    from trainer_hooks import schema as S

    if path.name == "trainer_log.jsonl":
        return "llamafactory"
    obj = _first_json_object(path)
    if not isinstance(obj, dict):
        if path.name.startswith((S.GENERATIONS_STEM, S.EVENTS_STEM)):
            return "logscan"
        return None
    if "current_steps" in obj:
        return "llamafactory"
    if verl.is_file_logger_line(obj):
        return "verl_jsonl"
    if verl.is_rollout_line(obj):
        return "verl_rollouts"
    if S.G_STEP in obj or S.E_PHASE in obj or path.name.startswith((S.GENERATIONS_STEM, S.EVENTS_STEM)):
        return "logscan"
    return None


def _detect_file(path: Path) -> str:
    from analyzer.ingest import console, seed_csv

    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty")
    if path.name == "run.json":
        return "logscan"
    if (tracker := _detect_tracker_file(path)) is not None:
        return tracker
    if suffix == ".json":
        try:
            with path.open("rb") as fh:
                head = fh.read(1 << 16)
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror})") from exc
        if b'"log_history"' in head or path.name == "trainer_state.json":
            return "hf_trainer_state"
        # a large trainer_state.json may hold log_history after the first 64 KB
        from analyzer.ingest._common import JSONLimitError, loads

        try:
            data = loads(path.read_bytes())
        except ValueError as exc:
            why = exc.msg if isinstance(exc, JSONLimitError) else type(exc).__name__
            raise InputError(f"{path}: not valid JSON ({why}); {_HELP}") from exc
        if isinstance(data, dict) and "log_history" in data:
            return "hf_trainer_state"
        raise InputError(f"{path}: a JSON file without log_history; {_HELP}")
    if suffix == ".jsonl":
        kind = _detect_jsonl(path)
        if kind is None:
            raise InputError(f"{path}: unrecognised JSON Lines (first record has none of the known keys); {_HELP}")
        return kind
    if suffix == ".csv":
        if seed_csv.looks_like_seed_csv(path):
            return "seed_csv"
        raise InputError(f"{path}: a CSV without the seed's columns (global_step, model_output, ...)")
    if suffix == ".parquet":
        return "trl_completions"
    kind = console.sniff(path)
    if kind is None:
        raise InputError(f"{path}: not a format logscan reads; {_HELP}")
    return kind


def _detect_tracker_file(path: Path) -> str | None:
    """A tracker's file: a TensorBoard event file, a W&B ``.wandb`` log, a Trackio or MLflow store."""
    from analyzer.ingest.trackers import TB_EVENTS_GLOB, sqlite_kind

    if path.name.startswith(TB_EVENTS_GLOB[:-1]):
        return "tensorboard"
    if path.suffix == ".wandb":
        return "wandb"
    if path.suffix.lower() in (".db", ".sqlite", ".sqlite3"):
        return sqlite_kind(path)
    return None


def _detect_dir(path: Path, *, explain: bool = True) -> str:
    from analyzer.ingest import hf_trainer_state, logscan_run, seed_csv, trl_completions, verl

    if logscan_run.is_logscan_folder(path):
        return "logscan"
    if any(path.glob("generations*.csv")):
        return "logscan" if (path / "run.json").is_file() else "seed_csv"
    if hf_trainer_state.find_states(path):
        return "hf_trainer_state"
    if trl_completions.find_completion_files(path):
        return "trl_completions"
    if (path / hf_trainer_state.LLAMAFACTORY_LOG).is_file():
        return "llamafactory"
    if verl.rollout_files(path):
        return "verl_rollouts"
    if seed_csv.find_seed_csv(path):
        return "seed_csv"
    from analyzer.ingest.tracker_discovery import dir_kind

    if (tracker := dir_kind(path)) is not None:
        return tracker
    if not explain:  # a subfolder looked at by _runs_inside: a format check only, no recursion
        raise InputError(f"{path}: not a run")
    if (source := _own_output(path)) is not None:
        raise InputError(f"{path}: this is logscan's own output, made from {source}; analyze that run instead")
    runs = _runs_inside(path)
    if runs:
        shown = ", ".join(r.name for r in runs[:5]) + (", …" if len(runs) > 5 else "")
        raise InputError(
            f"{path}: a folder of {len(runs)} runs ({shown}), not a run; analyze one of them "
            f"(logscan analyze {runs[0]}) or compare them (logscan compare RUN_A RUN_B …)"
        )
    raise InputError(f"{path}: nothing logscan can read in this folder; {_HELP}")


def _runs_inside(path: Path, limit: int = 200) -> list[Path]:
    """The immediate subfolders logscan could read as runs (the first ``limit`` looked at)."""
    found = []
    try:
        children = sorted(c for c in path.iterdir() if c.is_dir())[:limit]
    except OSError:
        return []
    for child in children:
        try:
            _detect_dir(child, explain=False)
        except (InputError, OSError):
            continue
        found.append(child)
    return found


# what ``logscan analyze`` writes (docs/reports.md): given one of these, point at the run instead
_OUTPUT_NAMES = frozenset({"generations.parquet", "metrics.parquet", "analysis.json", "report.md", "report.html", "report.junit.xml"})


def _own_output(path: Path) -> str | None:
    """When ``path`` is (in) a folder logscan wrote its results to, the run those results are of."""
    folder = path if path.is_dir() else path.parent
    marker = folder / "analysis.json"
    if not marker.is_file() or marker.stat().st_size > (64 << 20):
        return None
    from analyzer.ingest._common import loads

    try:
        data = loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not str(data.get("format", "")).startswith("logscan-analysis/"):
        return None
    run = data.get("run")
    where = run.get("path") if isinstance(run, dict) else None
    return str(where or "the run it was made from")


def detect_source(path: str | Path) -> str:
    """The source kind of ``path`` (one of ``SOURCE_KINDS``); ``InputError`` when unrecognised."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if p.is_file() and p.name in _OUTPUT_NAMES and (source := _own_output(p)) is not None:
        raise InputError(f"{p}: this is logscan's own output, made from {source}; analyze that run instead")
    try:
        return _detect_dir(p) if p.is_dir() else _detect_file(p)
    except PermissionError as exc:
        raise InputError(f"{p}: permission denied") from exc


def load_run(path: str | Path) -> RunData:
    """Read a run in any supported format. Raises ``InputError`` when nothing usable is there.
    A URL (``s3://…``, ``gs://…``, ``az://…``, ``hf://…``) is staged locally first (``remote``)."""
    from analyzer.ingest import remote

    if remote.is_url(path):
        return remote.load_remote_run(str(path))
    p = Path(path)
    if not p.exists() and (picked := _store_and_run(str(path))) is not None:
        return picked
    if p.is_dir():
        from analyzer.ingest.merge import load_folder

        try:
            merged = load_folder(p)
        except PermissionError as exc:
            raise InputError(f"{exc.filename or p}: permission denied") from exc
        except MemoryError as exc:
            raise InputError(f"{p}: ran out of memory while reading; is this really a training log?") from exc
        if merged is not None:  # a run folder: every source in it, merged (analyzer/ingest/merge.py)
            merged.path = str(path)
            _complete_info(merged)
            return merged
    kind = detect_source(p)
    report = IngestReport(source_kind=kind)
    if p.is_file() and kind == "logscan":
        p = p.parent  # run.json / events.jsonl / generations.jsonl: read the whole folder
    try:
        run = FORMATS[kind].load(p, report)
    except PermissionError as exc:
        raise InputError(f"{exc.filename or p}: permission denied") from exc
    except IsADirectoryError as exc:
        raise InputError(f"{exc.filename or p}: expected a file, found a folder") from exc
    except MemoryError as exc:
        raise InputError(f"{p}: ran out of memory while reading; is this really a training log?") from exc
    run.path = str(path)
    if not report.sources:
        from analyzer.ingest.merge import source_read

        kinds = kind.split("+")  # hf_trainer_state+trl_completions: one entry per part
        report.sources = [source_read(kinds[0], run)] if len(kinds) == 1 else _split_sources(run, kinds)
    _complete_info(run)
    return run


def _store_and_run(text: str) -> RunData | None:
    """``STORE.db#RUN``: one run (id or name) of a Trackio or MLflow store that holds several."""
    from analyzer.ingest.merge import source_read
    from analyzer.ingest.trackers import split_selector, sqlite_kind

    hit = split_selector(text)
    if hit is None:
        return None
    store, name = hit
    kind = sqlite_kind(store)
    if kind is None:
        raise InputError(f"{store}: not a Trackio or MLflow store; STORE#RUN selects a run of one")
    report = IngestReport(source_kind=kind)
    run = FORMATS[kind].load(store, report, run=name)
    run.path = text
    report.sources = [source_read(kind, run)]
    _complete_info(run)
    return run


def _split_sources(run: RunData, kinds: list[str]) -> list[SourceRead]:
    """A trainer state read with its completion files (a file path): one entry for each."""
    from analyzer.ingest.merge import source_read
    from analyzer.ingest.sources import FORMATS as F

    scal = RunData(run.path, run.steps, None, IngestReport(kinds[0], [f for f in run.report.files_read if f.endswith(".json")]), {})
    comp = RunData(run.path, run.steps.head(0), run.generations, IngestReport(kinds[1], [f for f in run.report.files_read if not f.endswith(".json")]), {})
    return [source_read(k, r) for k, r in zip(kinds, (scal, comp), strict=True) if k in F]


def _complete_info(run: RunData) -> None:
    """Every source fills the same ``info`` keys (None when the input does not say)."""
    from analyzer.columns import REWARD_PREFIX

    info = run.info
    info.setdefault("source_kind", run.report.source_kind)
    for key in ("run_id", "algorithm", "model", "config", "status", "world_size"):
        info.setdefault(key, None)
    if not info.get("reward_names"):
        if run.generations is not None:
            names = run.reward_names
        else:  # per-function reward means the trainer logged (reward/<name>, not reward/<name>/std)
            names = [c[len(REWARD_PREFIX) :] for c in run.steps.columns if c.startswith(REWARD_PREFIX) and "/" not in c[len(REWARD_PREFIX) :]]
        info["reward_names"] = names


__all__ = ["SOURCE_KINDS", "detect_source", "load_run"]
