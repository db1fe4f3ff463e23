"""``analyze()``: ingest → metrics → drift → detectors → verdict → files, and the exit code.

The CLI's ``analyze``, ``html-report``, ``compare`` and ``watch`` all go through here, so a run is
judged the same way everywhere. Each stage is imported inside the function that runs it, so
``logscan --help`` does not load Polars, the detectors or Jinja.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analyzer import columns as C
from analyzer.errors import InputError, output_error
from analyzer.ingest import remote  # light: fsspec is imported when a URL is read
from analyzer.ingest.trackers import split_selector
from analyzer.model import Analysis, DriftResult, FailOn, RunData
from analyzer.paths import run_output_dir
from analyzer.verdict import (
    DEFAULT_FAIL_ON,
    min_steps,
    resolve_fail_on,
    sort_alerts,
    verdict_for,
)

if TYPE_CHECKING:
    import polars as pl

    from analyzer.embeddings import EncoderLike
    from analyzer.incremental import StepMetrics


@dataclass(frozen=True, slots=True)
class AnalyzeOptions:
    """The knobs of one analysis; field names match the CLI's options."""

    output_dir: Path | None = None
    config_path: Path | None = None
    no_embeddings: bool = False
    embedding_model: str | None = None
    max_embed: int | None = None
    device: str | None = None
    overrides: tuple[str, ...] = ()
    fail_on: FailOn | None = None
    junit: bool = False
    md_inline_images: bool = False
    no_plots: bool = False
    no_html: bool = False
    write_reports: bool = True
    # Not CLI options: ``compare`` and ``watch`` judge runs without writing into them.
    write_outputs: bool = True
    drift: bool = True
    # ``compare`` shares one encoder (and its caches) across the runs it analyzes
    encoder: EncoderLike | None = None
    # ``compare`` reads each run through its own analysis state (RUN/logscan/state/) when it
    # writes nothing: only what was appended since the run's last ``analyze`` is parsed
    read_state: bool = False
    # --full: read every file whole instead of only what was appended since the last analysis
    full: bool = False


def output_dir_for(run_path: str | Path, options: AnalyzeOptions) -> Path:
    """``-o DIR`` when given; else ``RUN/logscan/``, or ``<file's folder>/logscan/`` for a file;
    for a run in object storage, ``./logscan-<bucket>-<prefix>/`` (docs/cli.md)."""
    if options.output_dir is not None:
        return Path(options.output_dir)
    return run_output_dir(run_path)


def analyze(run_path: str | Path, options: AnalyzeOptions | None = None) -> Analysis:
    """Ingest ``run_path`` and analyze it (see ``analyze_run``); raises ``InputError`` for bad input."""
    options = options or AnalyzeOptions()
    if remote.is_url(run_path):  # object storage: staged locally, never read as a path
        return _analyze_remote(str(run_path), options)
    run_path = Path(run_path)
    if not run_path.exists() and split_selector(str(run_path)) is None:  # STORE.db#RUN: one run of a tracker's store
        raise InputError(f"{run_path} does not exist; give a run folder, a generations.csv or a trainer_state.json")
    # The config first: a typo in --set should fail before a gigabyte is read.
    config = _load_config(run_path, options)
    fail_on = resolve_fail_on(options.fail_on, config)
    timings: dict[str, float] = {}
    if not options.write_outputs:
        notes: list[str] = []
        with _timed(timings, "ingest"):
            from analyzer.ingest import load_run

            steps = None
            if options.read_state:  # compare: the run's own analysis state, read and never written
                from analyzer.ingest.tail import STATE_DIR, load_with_state

                state_dir = run_output_dir(run_path) / STATE_DIR
                run, cache, notes = load_with_state(run_path, state_dir)
                steps = _step_metrics(state_dir, config, run, cache, full=False)
            else:
                run = load_run(run_path)
        return analyze_run(
            run, options, run_path=run_path, timings=timings, config=config, fail_on=fail_on, notes=notes, steps=steps
        )
    # the analysis state (OUTPUT/state/): a re-run reads only what was appended (docs/cli.md)
    from analyzer.ingest.tail import STATE_DIR, load_with_state, save_state

    state_dir = output_dir_for(run_path, options) / STATE_DIR
    with _timed(timings, "ingest"):
        run, cache, notes = load_with_state(run_path, state_dir, full=options.full)
        steps = _step_metrics(state_dir, config, run, cache, full=options.full)
    analysis = analyze_run(
        run, options, run_path=run_path, timings=timings, config=config, fail_on=fail_on, notes=notes, steps=steps
    )
    if (why := save_state(cache, state_dir)) is not None:
        analysis.notes.append(why)
    else:
        import polars as pl

        from analyzer.incremental import STEPS_DIR
        from analyzer.ingest.tail import write_failure

        try:
            steps.save(state_dir / STEPS_DIR)
        except (OSError, pl.exceptions.PolarsError) as exc:  # Polars has its own error for a failed write
            analysis.notes.append(f"per-step metrics not saved with the analysis state ({write_failure(exc)})")
    return analysis


def _step_metrics(state_dir: Path, config: dict[str, Any], run: RunData, cache: Any, *, full: bool) -> StepMetrics:
    """The per-step metrics kept in the analysis state (``analyzer.incremental``), for this run as
    read through ``cache``: empty for ``--full``, or when a completion file was read in full."""
    from analyzer.incremental import STEPS_DIR, StepMetrics

    tags, pattern = completion_options(config)
    if full or cache.full_files:  # rows read in full may differ from those the state was built on
        return StepMetrics(tags, pattern)
    return StepMetrics.load(state_dir / STEPS_DIR, tags, pattern, run.generations)


def _analyze_remote(url: str, options: AnalyzeOptions) -> Analysis:
    """A run in object storage: the config from the working directory, the files staged into the
    output folder's cache (kept: a re-run downloads only what changed), or a temporary folder when
    nothing is written."""
    config = _load_config(None, options)
    fail_on = resolve_fail_on(options.fail_on, config)
    timings: dict[str, float] = {}
    staging = output_dir_for(url, options) / "cache" / "remote" if options.write_outputs else None
    with _timed(timings, "ingest"):
        run = remote.load_remote_run(url, staging=staging)
    return analyze_run(run, options, run_path=run.path, timings=timings, config=config, fail_on=fail_on)


def analyze_run(
    run: RunData,
    options: AnalyzeOptions | None = None,
    *,
    run_path: str | Path | None = None,
    timings: dict[str, float] | None = None,
    config: dict[str, Any] | None = None,
    fail_on: FailOn | None = None,
    notes: list[str] | None = None,
    steps: StepMetrics | None = None,
) -> Analysis:
    """Everything after ingest, on a ``RunData`` already in memory. ``config`` (the effective
    configuration) is loaded for ``run_path`` when not given; ``fail_on``, resolved from it
    (``analyzer.verdict.resolve_fail_on``) when not given: once per analysis either way.
    ``notes``: what ingest has to say first (how the analysis state was used). ``steps``: the
    per-step metrics kept in the analysis state, updated here (only the new completions' steps
    when the run only grew)."""
    options = options or AnalyzeOptions()
    run_path = run_path if run_path is not None else run.path
    if not remote.is_url(run_path):
        run_path = Path(run_path)
    timings = dict(timings or {})
    started = time.perf_counter() - sum(timings.values())
    notes = list(notes or [])

    if config is None:
        config = _load_config(run_path if isinstance(run_path, Path) else None, options)
    if fail_on is None:
        fail_on = resolve_fail_on(options.fail_on, config)

    with _timed(timings, "metrics"):
        from analyzer.features import ANSWER, build_features
        from analyzer.metrics import compute_metrics

        tags, pattern = completion_options(config)
        if steps is not None and (steps.tags, steps.answer_pattern) == (tuple(tags), pattern or ""):
            known = steps.saved_height
            metrics, features = steps.compute(run)
            added = 0 if run.generations is None else run.generations.height - known
            if known and steps.last_full is None:
                notes.append(
                    f"per-step metrics from the analysis state: the features of {added:,} new completions computed, "
                    "and the metrics of the steps they belong to" if added else "per-step metrics from the analysis state: no new completions"
                )
            elif known:
                notes.append(f"per-step metrics computed over the whole run: {steps.last_full}")
        else:
            # one row per completion, built once: the metrics aggregate it, the detectors read it
            features = build_features(run, tags=tags, answer_pattern=pattern)
            metrics = compute_metrics(run, tags=tags, features=features, answer_pattern=pattern)

    out_dir = output_dir_for(run_path, options)
    drift: DriftResult | None = None
    if options.drift:
        with _timed(timings, "drift"):
            drift = _score_drift(run, options, out_dir, notes)
        if drift is not None and drift.per_step is not None and C.STEP in drift.per_step.columns:
            from analyzer.detectors.base import join_drift

            # joined here too (not only inside the detectors) so metrics.parquet has the drift columns
            metrics = join_drift(metrics, drift)

    with _timed(timings, "detectors"):
        from analyzer.detectors import run_detectors

        carried = steps.carried if steps is not None else None
        alerts, statuses = run_detectors(run, metrics, drift, config, features=features, carried=carried)
    alerts = sort_alerts(alerts)

    analysis = Analysis(
        run=run,
        metrics=metrics,
        alerts=alerts,
        detectors=statuses,
        drift=drift,
        config=config,
        verdict="healthy",
        fail_on=fail_on,
        timings=timings,
        notes=notes,
        conventions=(
            features.conventions.as_dict() if features is not None and features.conventions is not None else None
        ),
        answers=features.frame.get_column(ANSWER) if features is not None else None,
    )
    from analyzer.coverage import coverage_of

    analysis.verdict = verdict_for(
        alerts, n_steps(metrics), min_steps=min_steps(config), limited=coverage_of(analysis).limited
    )
    summary: dict[str, dict[str, Any]] | None = None  # the metrics' summary, once (see below)
    if options.write_outputs:
        analysis.output_dir = str(out_dir)
        _make_output_dir(out_dir)
        # The Parquet frames are written on a second thread while the reports render: the writers
        # are native code that releases the GIL, the reports are mostly Python and matplotlib.
        # The writer gets its own frame objects (see frames_to_write): never one Polars object
        # used by two threads at once.
        from concurrent.futures import ThreadPoolExecutor

        report_paths: list[Path] = []
        report_error: Exception | None = None
        to_write = frames_to_write(analysis)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="logscan-write") as pool:
            frames = pool.submit(_write_frames_timed, to_write, out_dir, timings)
            if options.write_reports:
                try:
                    with _timed(timings, "reports"):
                        # computed once for the reports and analysis.json (a second on 50,000 columns)
                        from analyzer.report.data import summarize_metrics

                        summary = summarize_metrics(analysis.metrics)
                        report_paths = _write_reports(analysis, out_dir, options, summary)
                except Exception as exc:
                    report_error = exc
            frame_paths = frames.result()  # a frame that cannot be written is the error to report
        analysis.outputs.extend(str(p) for p in frame_paths)
        analysis.outputs.append(str(out_dir / "analysis.json"))
        analysis.outputs.extend(str(p) for p in report_paths)
        if report_error is not None:
            # the findings are worth keeping when a report cannot be written (a full disk, an
            # unwritable file): analysis.json still lands, saying what failed
            err = report_error
            analysis.notes.append(f"reports not written: {type(err).__name__}: {err}")
            timings["total"] = time.perf_counter() - started
            with suppress(OSError):  # the disk that failed the report may fail this too
                _write_json(analysis, out_dir / "analysis.json", summary)
            if isinstance(err, OSError):
                raise output_error(err, out_dir) from err
            raise err
    timings["total"] = time.perf_counter() - started
    if options.write_outputs:  # once, last: it carries the timings of every stage
        try:
            _write_json(analysis, out_dir / "analysis.json", summary)
        except OSError as exc:
            raise output_error(exc, out_dir) from exc
    return analysis


# --- the verdict's inputs (analyzer.verdict decides) ---------------------------------------------


def n_steps(metrics: pl.DataFrame) -> int:
    if metrics is None or C.STEP not in metrics.columns:
        return 0
    return int(metrics.get_column(C.STEP).drop_nulls().n_unique())


def _section(config: dict[str, Any], name: str) -> dict[str, Any]:
    value = config.get(name)
    return value if isinstance(value, dict) else {}


def completion_options(config: dict[str, Any]) -> tuple[tuple[str, ...], str]:
    """``(tags, answer_pattern)`` of the ``general`` section: how the completions are read
    (``analyze`` and ``watch`` alike)."""
    from analyzer.features import DEFAULT_TAGS

    general = _section(config, "general")
    return tuple(general.get("tags") or DEFAULT_TAGS), str(general.get("answer_pattern") or "")


# --- the stages -------------------------------------------------------------------------------


def _load_config(run_path: Path | None, options: AnalyzeOptions) -> dict[str, Any]:
    from analyzer.config import load_config, register_section
    from analyzer.report.data import REPORT_CONFIG_DEFAULTS

    # [tool.logscan.analyze] fail_on = "warning": the CI gate's default, below the --fail-on flag.
    register_section("analyze", {"fail_on": DEFAULT_FAIL_ON})
    register_section("report", REPORT_CONFIG_DEFAULTS)
    return dict(load_config(run_path, options.config_path, list(options.overrides)))


def _score_drift(run: RunData, options: AnalyzeOptions, out_dir: Path, notes: list[str]) -> DriftResult | None:
    if run.generations is None or run.generations.height == 0:
        notes.append("drift: skipped (no completions in this run)")
        return None
    from analyzer import drift as drift_mod

    drift_options = drift_mod.DriftOptions(
        no_embeddings=options.no_embeddings,
        embedding_model=options.embedding_model,
        max_embed=options.max_embed,
        device=options.device,
        cache_dir=out_dir / "cache" if options.write_outputs else None,
    )
    return drift_mod.score_drift(run, encoder=options.encoder, options=drift_options)


def _write_reports(
    analysis: Analysis,
    out_dir: Path,
    options: AnalyzeOptions,
    metrics_summary: dict[str, dict[str, Any]] | None = None,
) -> list[Path]:
    from analyzer.report.render import write_reports

    return write_reports(
        analysis,
        out_dir,
        junit=options.junit,
        md_inline_images=options.md_inline_images,
        plots=not options.no_plots,
        html=not options.no_html,
        metrics_summary=metrics_summary,
    )


# --- files ------------------------------------------------------------------------------------


def _make_output_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder {out_dir}: {exc.strerror}; pass -o DIR") from exc


def _write_frames_timed(
    frames: list[tuple[str, pl.DataFrame]], out_dir: Path, timings: dict[str, float]
) -> list[Path]:
    with _timed(timings, "write"):
        return write_frame_files(frames, out_dir)


def frames_to_write(analysis: Analysis) -> list[tuple[str, pl.DataFrame]]:
    """``(file name, frame)`` for ``metrics.parquet`` and ``generations.parquet`` (when there are
    completions): each frame a clone, a new Polars object over the same column buffers (no copy).

    The writer thread needs its own objects. Polars 2 guards each DataFrame object with a lock
    that it can hold while running Python (a garbage collection during ``df.schema``); a second
    thread asking for that lock while it holds the GIL (``to_arrow`` rechunks in place) waits
    forever, and so does the first, for the GIL. Sharing ``analysis.metrics`` with the reports
    hung ``analyze`` about once in 15 runs of 2,000 reward columns."""
    frames = [("metrics.parquet", analysis.metrics.clone())]
    gens = analysis.run.generations
    if gens is not None and gens.height:
        answers = analysis.answers
        if answers is not None and answers.len() == gens.height:
            # beside model_answer (logged, or ingest's first <answer>): what the accuracy judged
            gens = gens.with_columns(answers.alias(C.JUDGED_ANSWER))
        frames.append(("generations.parquet", gens.clone()))
    return frames


def write_frame_files(frames: list[tuple[str, pl.DataFrame]], out_dir: Path) -> list[Path]:
    """Each ``(file name, frame)`` to ``out_dir`` as Parquet; a failed write is an output error.

    ``analysis.json`` is not written here: ``analyze_run`` writes it once, last, because it holds
    the timings of every stage, the reports included."""
    _make_output_dir(out_dir)
    written = []
    for name, frame in frames:
        path = out_dir / name
        try:
            write_parquet(frame, path)
        except OSError as exc:
            raise output_error(exc, out_dir) from exc
        except Exception as exc:  # Polars reports a failed write (a full disk) as its own error
            raise output_error(OSError(0, str(exc).splitlines()[0], str(path)), out_dir) from exc
        written.append(path)
    return written


# From this many columns on, a frame is written by pyarrow without column statistics, dictionary
# pages or compression: Polars' writer spends ~3 s on a 30 x 50,000 metrics frame (10,000 reward
# functions) whatever its options, pyarrow ~1.1 s; the file reads back as the same frame. A
# narrow frame (the common case) keeps Polars' writer and its statistics.
WIDE_PARQUET_COLUMNS = 1000


def write_parquet(frame: pl.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` as Parquet (see ``WIDE_PARQUET_COLUMNS``)."""
    if frame.width < WIDE_PARQUET_COLUMNS:
        # zstd at level 1, not Polars' default 3: on a million completions 3.6 instead of 4.4
        # CPU-seconds for a file 6 % larger (152 instead of 144 MB)
        try:
            frame.write_parquet(path, compression="zstd", compression_level=1)
        except OSError:
            raise
        except Exception:
            # Polars does not always say why a write failed: when the footer is the write that
            # hits a full disk it reports "Invalid thrift: transport error". The same bytes
            # written through Python raise the OSError that says why (or land, if it passed).
            import io

            buf = io.BytesIO()
            frame.write_parquet(buf, compression="zstd", compression_level=1)
            path.write_bytes(buf.getvalue())
        return
    import polars as pl
    import pyarrow.parquet as pq

    # Nor compressed (a metrics frame has a row per step: nothing to gain, ~0.3 s to lose on 50,000
    # column chunks), nor with the Arrow schema beside Parquet's own (another ~0.3 s) when
    # Parquet's types say everything: numbers, booleans and text read back as they were.
    plain = all(dt.is_numeric() or dt in (pl.Boolean, pl.String) for dt in frame.dtypes)
    pq.write_table(
        frame.to_arrow(),
        path,
        write_statistics=False,
        use_dictionary=False,
        compression="none",
        store_schema=not plain,
    )


def analysis_dict(
    analysis: Analysis, metrics_summary: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """``analysis.json``'s content (format ``logscan-analysis/1``), plus the pipeline's notes.
    ``metrics_summary``: ``summarize_metrics(analysis.metrics)`` when already computed."""
    from analyzer.report.data import analysis_to_dict, jsonable

    data = analysis_to_dict(analysis, metrics_summary=metrics_summary)
    data["output_dir"] = analysis.output_dir
    data["notes"] = jsonable(list(analysis.notes))
    return data


def _write_json(
    analysis: Analysis, path: Path, metrics_summary: dict[str, dict[str, Any]] | None = None
) -> None:
    data = analysis_dict(analysis, metrics_summary)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(analysis_json_text(data), encoding="utf-8")
    tmp.replace(path)


def analysis_json_text(data: dict[str, Any]) -> str:
    """``analysis.json``'s text: indented, except that each metric's summary is one line. A run
    with thousands of metric columns has hundreds of thousands of summary values, and indenting
    makes Python's json module encode in Python instead of C (seconds, and a file of mostly
    whitespace)."""
    metrics = data.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        return json.dumps(data, indent=2, allow_nan=False, ensure_ascii=False) + "\n"
    import uuid

    marker = f"\u0000metrics-{uuid.uuid4().hex}\u0000"  # no log text can spell it
    text = json.dumps({**data, "metrics": marker}, indent=2, allow_nan=False, ensure_ascii=False)
    lines = ",\n".join(
        f"    {json.dumps(name, ensure_ascii=False)}: {json.dumps(summary, allow_nan=False, ensure_ascii=False)}"
        for name, summary in metrics.items()
    )
    return text.replace(json.dumps(marker), "{\n" + lines + "\n  }", 1) + "\n"


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = round(timings.get(stage, 0.0) + time.perf_counter() - t0, 4)
