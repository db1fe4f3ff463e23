"""The ``logscan`` command line: parses options, calls the library, turns errors into messages.

Nothing heavy is imported at module level: ``logscan --help`` must stay instant (a test checks
that polars, torch and sentence-transformers are not imported).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from analyzer import __version__
from analyzer.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, InputError, LogscanError
from analyzer.verdict import FAIL_ON_CHOICES  # cheap: the stages are imported when they run

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# ``ctx.meta`` key (meta is shared by a command's context and the group's): the output folder of
# the command that is running, where a crash's traceback is saved.
OUTPUT_DIR_META = "logscan.output_dir"
TRACEBACK_FILE = "logscan-traceback.txt"


class LogscanGroup(click.Group):
    """Turns every ``LogscanError`` into ``Error: <message>`` and its exit code, never a traceback;
    and any other exception (a bug) into one ``Error: internal error …`` line and exit code
    ``EXIT_INTERNAL``, so a crash never reads as a verdict (1) or as bad input (2)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LogscanError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)  # Click's own "Aborted!" exits 1: a verdict's code
            ctx.exit(EXIT_INTERRUPTED)
        except Exception as exc:
            if isinstance(exc, BrokenPipeError):
                raise  # `logscan … | head`: Click's own handling of a closed pipe
            where = _save_traceback(ctx)
            click.echo(f"Error: internal error ({_one_line(exc)}); please report it with {where}", err=True)
            ctx.exit(EXIT_INTERNAL)


def _one_line(exc: BaseException, limit: int = 200) -> str:
    from analyzer.report.escape import terminal_text

    text = terminal_text(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _save_traceback(ctx: click.Context) -> str:
    """Write the current exception's traceback where the user will find it; returns the words for
    the ``Error:`` line that say where it went. With ``--debug`` it goes to stderr; else to
    ``logscan-traceback.txt`` in the command's output folder, else to a file in the system's
    temporary folder (the output folder may be what failed)."""
    import tempfile
    import traceback

    text = traceback.format_exc()
    if ctx.meta.get("logscan.debug"):
        click.echo(text.rstrip("\n"), err=True)
        return "the traceback above"
    out_dir = ctx.meta.get(OUTPUT_DIR_META)
    if out_dir is not None:
        try:
            path = Path(out_dir) / TRACEBACK_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            return f"the traceback saved in {path}"
        except OSError:
            pass
    try:
        fd, name = tempfile.mkstemp(prefix="logscan-traceback-", suffix=".txt")
        with open(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        return f"the traceback saved in {name}"
    except OSError:
        click.echo(text.rstrip("\n"), err=True)
        return "the traceback above"


@click.group(cls=LogscanGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="logscan")
@click.option("--debug", is_flag=True, help="On an internal error, print the full traceback to stderr.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """logscan: did this RL fine-tuning run learn what we wanted, or did it hack the reward,
    blow up, collapse or forget?

    \b
    Example:
        logscan analyze runs/001 --fail-on warning
    """
    ctx.meta["logscan.debug"] = debug


class RunPath(click.Path):
    """A local path (given as a ``Path``), or a URL of a run in object storage (``s3://…``, kept as
    text: a ``Path`` would fold its ``//``; analyzer/ingest/remote.py reads it)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from analyzer.ingest.remote import is_url

        if is_url(value):
            return value
        return super().convert(value, param, ctx)


def run_argument(fn: F) -> F:
    return click.argument(
        "run", type=RunPath(path_type=Path, exists=False), metavar="RUN"
    )(fn)


def analysis_options(fn: F) -> F:
    """Options shared by every command that runs the analysis pipeline."""
    options = [
        click.option(
            "--config",
            "config_path",
            type=click.Path(path_type=Path, dir_okay=False),
            help="A logscan.toml or pyproject.toml with a [tool.logscan] table.",
        ),
        click.option(
            "--no-embeddings",
            is_flag=True,
            help="Score drift lexically (TF-IDF) instead of with a sentence-transformers model.",
        ),
        click.option(
            "--embedding-model",
            metavar="NAME_OR_PATH",
            help="Embedding model: a local path, or a name found in installed packages or the HF cache "
            "(default: all-MiniLM-L6-v2).",
        ),
        click.option(
            "--max-embed",
            type=click.IntRange(min=0),
            help="At most this many completions are embedded (stratified sample; 0 = all).",
        ),
        click.option("--device", help="Torch device for embeddings, e.g. cpu or cuda (default: auto)."),
        click.option(
            "--set",
            "overrides",
            multiple=True,
            metavar="KEY=VALUE",
            help="Override one config value, e.g. --set kl_explosion.budget_per_token=0.2 (repeatable).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _analyze(run: Path | str, **kwargs: Any) -> Any:
    from analyzer.pipeline import AnalyzeOptions, analyze, output_dir_for

    options = AnalyzeOptions(**kwargs)
    click.get_current_context().meta[OUTPUT_DIR_META] = output_dir_for(run, options)
    return analyze(run, options)


@cli.command()
@run_argument
@click.option(
    "--fail-on",
    type=click.Choice(FAIL_ON_CHOICES),
    default=None,
    help="Exit 1 when an alert at or above this severity fired (default: critical); "
    "limited: unless the verdict is healthy (every core check ran, no warning).",
)
@click.option(
    "-o",
    "--output",
    "output_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where to write the results (default: RUN/logscan/; for a URL, ./logscan-<bucket>-<prefix>/).",
)
@click.option("--junit", is_flag=True, help="Also write report.junit.xml: one test case per detector.")
@click.option(
    "--md-inline-images",
    is_flag=True,
    help="Embed plots in report.md as data URIs (for places where relative image links break).",
)
@click.option("--no-plots", is_flag=True, help="Skip the matplotlib plots.")
@click.option("--no-html", is_flag=True, help="Skip report.html.")
@click.option(
    "--full",
    is_flag=True,
    help="Read every file whole, ignoring the analysis state (OUTPUT/state/) that lets a re-run read "
    "only what was appended since the last analysis.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the verdict line.")
@analysis_options
def analyze(run: Path, fail_on: str | None, quiet: bool, **kwargs: Any) -> None:
    """Analyze a run: ingest, rebuild metrics, detect pathologies, score drift, write reports.

    RUN is a logscan run folder, a seed-schema generations.csv, a Hugging Face / TRL output or
    checkpoint folder (or its trainer_state.json), or a verl log. Results go to RUN/logscan/.
    RUN may be in object storage (s3://, gs://, az://, hf://): it is read from there and the
    results go to ./logscan-<bucket>-<prefix>/.

    \b
    Exit codes: 0 no alert at or above --fail-on (a limited run too, unless --fail-on limited),
    1 alerts at or above it, 2 bad input,
    70 internal error (a bug: please report it), 130 interrupted.
    \b
    Example:
        logscan analyze runs/001 --fail-on warning -o out/
        logscan analyze s3://bucket/runs/001
    """
    from analyzer.embeddings import progress_bars
    from analyzer.report.terminal import summary_text
    from analyzer.verdict import exit_code

    # -q: the verdict line only, so no progress bar either
    with progress_bars(False) if quiet else contextlib.nullcontext():
        result = _analyze(run, fail_on=fail_on, **kwargs)
    click.echo(summary_text(result, quiet=quiet))
    sys.exit(exit_code(result))


@cli.command("html-report")
@run_argument
@click.option(
    "-o",
    "--output",
    "output_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the page (default: RUN/logscan/report.html).",
)
@analysis_options
def html_report(run: Path, output_file: Path | None, **kwargs: Any) -> None:
    """Render one self-contained HTML report (plots inline, model text escaped).

    Runs the analysis afresh (current logs, --config and --set), so the page never shows a stale
    result; analysis.json and the parquet files in RUN/logscan/ are refreshed to match it (with
    -o FILE, when RUN/logscan/ can be written).

    \b
    Example:
        logscan html-report runs/001 -o report.html
    """
    from analyzer.errors import output_error
    from analyzer.pipeline import AnalyzeOptions, output_dir_for
    from analyzer.report.render import write_html_report
    from analyzer.report.terminal import summary_text

    data_dir = output_dir_for(run, AnalyzeOptions())
    refresh = True
    if output_file is not None and (why := _unwritable(data_dir)) is not None:
        # -o names where the page goes: a run that is read-only (or whose logscan/ is in the
        # way) must not refuse it; only the data files beside the run are not refreshed
        refresh = False
        click.echo(f"note: {data_dir} cannot be written ({why}): its analysis.json and parquet files were not refreshed", err=True)
    result = _analyze(run, write_reports=False, write_outputs=refresh, **kwargs)
    try:
        path = write_html_report(result, output_file)
    except OSError as exc:
        raise output_error(exc, output_file.parent if output_file else data_dir) from exc
    click.echo(f"Wrote {path}")
    # the verdict, as analyze prints it; html-report itself is not a CI gate (it exits 0)
    click.echo(summary_text(result, quiet=True).rsplit("; exit ", 1)[0])


def _unwritable(folder: Path) -> str | None:
    """Why files cannot be written into ``folder`` (created if missing), or None when they can."""
    import errno
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTDIR):
            return "a file or folder is in the way"
        return exc.strerror or type(exc).__name__
    return None


@cli.command()
@run_argument
@click.option("--question-id", "question_id", help="The prompt's question_id.")
@click.option("--prompt", help="Pick the prompt whose text contains this substring.")
@click.option("--split", help="Only completions of this split (train, eval, probe).")
@click.option("--limit", type=click.IntRange(min=1), default=10, show_default=True, help="At most this many steps.")
def samples(run: Path, question_id: str | None, prompt: str | None, split: str | None, limit: int) -> None:
    """Show how one prompt's completions changed over the run, with diffs and rewards.

    \b
    Example:
        logscan samples runs/001 --question-id gsm8k-17
        logscan samples runs/001 --prompt "How many apples"
    """
    from analyzer.samples import samples_text

    if not question_id and not prompt:
        raise click.UsageError("give --question-id ID or --prompt TEXT")
    click.echo(samples_text(run, question_id=question_id, prompt=prompt, split=split, limit=limit))


@cli.command()
@click.argument("runs", nargs=-1, required=True, type=RunPath(path_type=Path), metavar="RUN_A RUN_B ...")
@click.option(
    "--embeddings/--no-embeddings",
    default=False,
    show_default=True,
    help="Score drift with the embedding model, as a default `analyze` does (slower; each run's "
    "own embedding cache is reused); without it drift is lexical (TF-IDF), as `analyze --no-embeddings`.",
)
@click.option(
    "-o",
    "--output",
    "output_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Also write compare.md, compare.html and plots/compare-*.png into this folder.",
)
@click.option(
    "--baseline",
    type=RunPath(path_type=Path),
    metavar="RUN",
    help="Judge the other runs against this one (one of the runs, or added as the first): "
    "--fail-on then counts only the alerts it lacks.",
)
@click.option(
    "--fail-on",
    type=click.Choice(FAIL_ON_CHOICES),
    default=None,
    help="Exit 1 when a run has an alert at or above this severity (with --baseline: a new one). "
    "Default: never; warning with --baseline.",
)
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True, help="Draw curves for the N best runs by --by.")
@click.option("--by", "by", metavar="METRIC", help="Rank the runs by this metric's final value, the mean of its last 10% of steps "
              "(default: the first key metric the runs have with a better direction, e.g. reward).")
@click.option("--no-plots", is_flag=True, help="Skip the curves (compare.md/html without figures).")
@click.pass_context
def compare(
    ctx: click.Context,
    runs: tuple[Path, ...],
    embeddings: bool,
    output_dir: Path | None,
    baseline: Path | None,
    fail_on: str | None,
    top: int,
    by: str | None,
    no_plots: bool,
) -> None:
    """Compare runs side by side: verdicts, alerts and key metrics; with -o, a report.

    \b
    Exit codes: 0 nothing fails --fail-on (default never; warning with --baseline), 1 a run has
    an alert at or above it (with --baseline: one the baseline lacks), 2 bad input,
    70 internal error, 130 interrupted.
    \b
    Example:
        logscan compare runs/001 runs/002
        logscan compare runs/main runs/pr-42 --baseline runs/main -o compare/
        logscan compare sweep/* -o sweep-report/ --top 5 --by gen_accuracy
    """
    from analyzer.compare import run_compare
    from analyzer.report.compare_view import format_comparison, format_gate

    if len(runs) + (baseline is not None) < 2:
        raise click.UsageError("compare needs at least two runs")
    if output_dir is not None:
        ctx.meta[OUTPUT_DIR_META] = output_dir
    result = run_compare(
        list(runs), embeddings=embeddings, output=output_dir, baseline=baseline, fail_on=fail_on,
        top=top, by=by, plots=not no_plots,
    )
    notes = []  # what was reused, above the table's closing note on drift
    if result.states:
        notes.append(f"analysis state: {result.states} of {len(result.paths)} runs read through their own (only what was appended since was parsed)")
    if result.reused:
        notes.append(f"embeddings: {result.reused:,} read from the runs' own caches (nothing written into the runs)")
    click.echo(format_comparison(result.analyses, result.paths, by=by, notes=notes))
    for line in format_gate(result.analyses, result.paths, result.fail_on, baseline=result.baseline):
        click.echo(line)
    if result.written:
        shown = [p for p in result.written if p.suffix in (".md", ".html")]
        click.echo("Wrote " + ", ".join(str(p) for p in shown) + f" ({len(result.written) - len(shown)} plot(s) beside them)")
    ctx.exit(result.exit_code)


@cli.command()
@run_argument
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=0.5,
    show_default=True,
    help="Seconds between refreshes (never less than the last refresh took).",
)
@click.option("--once", is_flag=True, help="Print one snapshot and exit (for scripts and tests).")
@click.option(
    "--stop-on",
    type=click.Choice(["warning", "critical"]),
    default=None,
    help="Ask the run to stop (writes RUN/STOP) when an alert at or above this severity fires.",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="The detailed view: per-function rewards, PPO mechanics, accuracy and format, the latest "
    "completions with their rewards, the newest alerts' evidence.",
)
@click.option("--plain", is_flag=True, help="One line per refresh, as when stdout is not a terminal (CI logs).")
def watch(run: Path, interval: float, once: bool, stop_on: str | None, verbose: bool, plain: bool) -> None:
    """Live terminal view of a running run: latest metrics and alerts, refreshed.

    Each refresh reads only what the run appended. On a terminal the view is redrawn in place
    (--verbose: the detailed one); otherwise, or with --plain, one line per refresh.

    \b
    Example:
        logscan watch runs/001 --stop-on critical
        logscan watch runs/001 -v
    """
    from analyzer.ingest.remote import display_url, is_url
    from analyzer.watch import watch_run

    if is_url(run):
        raise InputError(f"{display_url(str(run))}: watch follows a local run as it is written; for a run in object storage use logscan analyze")
    if once or plain or not sys.stdout.isatty():
        watch_run(run, interval=interval, once=once, stop_on=stop_on, echo=click.echo)
        return
    from analyzer.report.watch_live import LiveDisplay

    with LiveDisplay(verbose=verbose) as view:
        watch_run(run, interval=interval, stop_on=stop_on, echo=view.echo, display=view.show)


@cli.command()
def detectors() -> None:
    """List the detectors, what signal each reads, and their config keys and defaults.

    \b
    Example:
        logscan detectors
    """
    from analyzer.coverage import describe_checks

    click.echo(describe_checks())


def main() -> None:
    from analyzer.ingest._common import return_freed_memory_promptly

    return_freed_memory_promptly()  # before anything imports polars: lower peak RSS on big runs
    try:
        cli.main(prog_name="logscan", standalone_mode=True)
    except LogscanError as exc:  # pragma: no cover - LogscanGroup handles these
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":  # pragma: no cover
    main()
