"""``logscan compare``: several runs side by side — a terminal table, and with ``-o DIR`` the
reports compare.md and compare.html; ``--fail-on`` / ``--baseline`` make it a CI gate.

Each run goes through the same pipeline as ``logscan analyze`` (nothing written into the runs),
so a comparison agrees with ``logscan analyze --no-embeddings`` on each run — or, with
``embeddings=True``, with a default ``logscan analyze``. The two can differ: drift scored lexically
(TF-IDF) and drift scored by embeddings are different measurements, and catastrophic_forgetting and
semantic_drift read them. With embeddings, one encoder serves every run: it reads each run's own
embedding cache (``RUN/logscan/cache/``, read-only) before embedding anything, and writes what it
computes to ``DIR/cache/`` only when ``-o DIR`` is given. A run that ``analyze`` read before is
read through its analysis state (``RUN/logscan/state/``, read-only): only what was appended since
is parsed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from analyzer.model import Analysis

if TYPE_CHECKING:
    from analyzer.answer_diff import AnswerComparison
    from analyzer.embeddings import EncoderLike


@dataclass(slots=True)
class Comparison:
    """The runs compared (``paths``, ``analyses`` in the same order), the baseline's index, the
    gate's ``fail_on`` and what was written."""

    paths: list[str | Path]
    analyses: list[Analysis]
    baseline: int | None
    fail_on: str
    written: list[Path] = field(default_factory=list)
    answers: AnswerComparison | None = None
    reused: int = 0  # embeddings read from the runs' own caches
    states: int = 0  # runs read through their own analysis state (RUN/logscan/state/)

    @property
    def exit_code(self) -> int:
        from analyzer.verdict import compare_exit_code

        return compare_exit_code(self.analyses, self.fail_on, baseline=self.baseline)


def compare_analyses(
    paths: Sequence[str | Path], *, embeddings: bool = False, encoder: EncoderLike | None = None
) -> list[Analysis]:
    from analyzer.pipeline import AnalyzeOptions, analyze

    options = AnalyzeOptions(no_embeddings=not embeddings, write_outputs=False, encoder=encoder, read_state=True)
    return [analyze(p, options) for p in paths]  # a URL stays text (analyzer/ingest/remote.py)


def compare_text(paths: Sequence[str | Path], *, embeddings: bool = False) -> str:
    """A plain-text table: one column per run; rows for verdict, steps, alerts and key metrics."""
    from analyzer.report.compare_view import format_comparison

    return format_comparison(compare_analyses(paths, embeddings=embeddings), paths)


def with_baseline(paths: Sequence[str | Path], baseline: str | Path | None) -> tuple[list[str | Path], int | None]:
    """The runs to compare and the baseline's index: the run given as ``baseline`` (the same
    folder, however it was spelled), or ``baseline`` added as the first run."""
    from analyzer.ingest.remote import is_url

    runs = list(paths)
    if baseline is None:
        return runs, None

    def same(p: str | Path) -> str:
        return str(p).rstrip("/") if is_url(p) else str(Path(p).resolve())

    for i, p in enumerate(runs):
        if same(p) == same(baseline):
            return runs, i
    return [baseline, *runs], 0


def shared_encoder(paths: Sequence[str | Path], out_dir: Path | None) -> tuple[EncoderLike | None, int]:
    """The embedding encoder every run shares, reading the runs' own caches (read-only) and
    writing to ``out_dir/cache/`` when given; None when the model cannot be found (each run then
    falls back to TF-IDF with the pipeline's note)."""
    from analyzer.embeddings import (
        CACHE_FILE,
        EmbeddingCache,
        Encoder,
        LayeredCache,
        ReadOnlyCache,
        load_encoder,
    )
    from analyzer.ingest.remote import is_url
    from analyzer.paths import run_output_dir

    encoder, _ = load_encoder()
    if not isinstance(encoder, Encoder):
        return None, 0
    theirs = [
        ReadOnlyCache(f)
        for p in paths
        if not is_url(p) and (f := run_output_dir(p) / "cache" / CACHE_FILE).is_file()
    ]
    own = EmbeddingCache(out_dir / "cache" / CACHE_FILE) if out_dir is not None else None
    encoder.cache = LayeredCache(own, theirs)
    return encoder, len(theirs)


def _has_state(path: str | Path) -> bool:
    from analyzer.ingest.remote import is_url
    from analyzer.ingest.tail import STATE_DIR, STATE_FILE
    from analyzer.paths import run_output_dir

    return not is_url(path) and (run_output_dir(path) / STATE_DIR / STATE_FILE).is_file()


def run_compare(
    paths: Sequence[str | Path],
    *,
    embeddings: bool = False,
    output: Path | None = None,
    baseline: str | Path | None = None,
    fail_on: str | None = None,
    top: int = 10,
    by: str | None = None,
    plots: bool = True,
) -> Comparison:
    """Analyze the runs, and with ``output`` write compare.md / compare.html there. ``fail_on``
    defaults to ``never`` (``warning`` with a baseline: a regression gate)."""
    from analyzer.answer_diff import compare_answers
    from analyzer.embeddings import LayeredCache, TfidfEncoder
    from analyzer.errors import InputError
    from analyzer.report.compare_view import curve_runs, ranking_metric, write_compare_reports

    runs, base = with_baseline(paths, baseline)
    if len(runs) < 2:
        raise InputError("compare needs at least two runs")
    gate = fail_on or ("warning" if base is not None else "never")
    encoder: EncoderLike | None = None
    if embeddings:
        encoder, _ = shared_encoder(runs, output)
    analyses = compare_analyses(runs, embeddings=embeddings, encoder=encoder)
    result = Comparison(runs, analyses, base, gate, states=sum(1 for p in runs if _has_state(p)))
    if by is not None and not any(by in a.metrics.columns for a in analyses):
        from analyzer.report.compare_view import present_metrics

        present = present_metrics(analyses)
        raise InputError(
            f"--by {by}: no run has this metric; "
            + (f"try one of {', '.join(present)}" if present else "no run has any of the key metrics either")
        )
    if output is not None:
        reference = base if base is not None else 0
        chosen = curve_runs(analyses, baseline=base, top=top, by=ranking_metric(analyses, by))
        pairs = [(reference, i) for i in chosen if i != reference]
        if reference not in chosen:  # the reference is the first run, outside the top N
            pairs = [(reference, i) for i in chosen]
        generations = [a.run.generations for a in analyses]
        result.answers = compare_answers(generations, pairs, encoder if encoder is not None else TfidfEncoder())
        result.written = write_compare_reports(
            analyses, runs, output, baseline=base, top=top, by=by, fail_on=gate, answers=result.answers, plots=plots
        )
    cache = getattr(encoder, "cache", None)
    if isinstance(cache, LayeredCache):
        result.reused = cache.served_by_others
        cache.close()
    return result
