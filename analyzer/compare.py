"""``logscan compare``: several runs side by side — verdict, alert counts, key metrics first → last.

Each run goes through the same pipeline as ``logscan analyze`` (nothing written into the runs),
so a comparison agrees with ``logscan analyze --no-embeddings`` on each run — or, with
``embeddings=True``, with a default ``logscan analyze``. The two can differ: drift scored lexically
(TF-IDF) and drift scored by embeddings are different measurements, and catastrophic_forgetting and
semantic_drift read them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from analyzer.model import Analysis


def compare_analyses(paths: Sequence[str | Path], *, embeddings: bool = False) -> list[Analysis]:
    from analyzer.pipeline import AnalyzeOptions, analyze

    options = AnalyzeOptions(no_embeddings=not embeddings, write_outputs=False)
    return [analyze(p, options) for p in paths]  # a URL stays text (analyzer/ingest/remote.py)


def compare_text(paths: Sequence[str | Path], *, embeddings: bool = False) -> str:
    """A plain-text table: one column per run; rows for verdict, steps, alerts and key metrics."""
    from analyzer.report.compare_view import format_comparison

    return format_comparison(compare_analyses(paths, embeddings=embeddings), paths)
