"""``logscan samples``: how one prompt's completions changed over a run, with diffs and rewards.

The command loads the run; ``analyzer.report.samples_view`` formats it.
"""

from __future__ import annotations

from pathlib import Path


def samples_text(
    run_path: str | Path,
    *,
    question_id: str | None = None,
    prompt: str | None = None,
    split: str | None = None,
    limit: int = 10,
) -> str:
    """Load ``run_path`` and format one prompt's completions over time (``logscan samples``)."""
    from analyzer.ingest import load_run
    from analyzer.report.samples_view import format_samples

    run = load_run(run_path)
    return format_samples(run, question_id=question_id, prompt=prompt, split=split, limit=limit)
