"""Where a run's results go by default: ``RUN/logscan/`` (``<file's folder>/logscan/`` for a
file), ``./logscan-<bucket>-<prefix>/`` for a run in object storage (docs/cli.md).

Below the pipeline and the reports, which both need it (``-o DIR`` is the pipeline's option).
"""

from __future__ import annotations

from pathlib import Path

from analyzer.ingest import remote  # light: fsspec is imported when a URL is read

OUTPUT_DIRNAME = "logscan"


def run_output_dir(run_path: str | Path) -> Path:
    """The default output folder of the run at ``run_path`` (a folder, a file or a URL)."""
    if remote.is_url(run_path):
        return remote.default_output_dir(str(run_path))
    run_path = Path(run_path)
    base = run_path if run_path.is_dir() else run_path.parent
    return base / OUTPUT_DIRNAME
