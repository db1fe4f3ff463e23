"""Report rendering on a big run, measured against the analysis of the same run.

    python benchmarks/render/bench_render.py                   # the 1,000,000-completion run
    python benchmarks/render/bench_render.py --run runs/001    # any run

Baseline: ``analyze()`` of the run without writing anything (ingest + metrics + drift (TF-IDF,
--no-embeddings) + detectors), in the same process. Measured: ``write_reports`` (plots, report.md,
report.html, JUnit) and its parts, and the size of report.html. Generates the synthetic run with
``benchmarks/ingest/gen_big_run.py`` when it is missing (``benchmarks/data/`` is gitignored).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--run", type=Path, default=DATA / "big_run_jsonl")
    args = parser.parse_args()
    if not args.run.exists():
        sys.path.insert(0, str(HERE.parent / "ingest"))
        from gen_big_run import generate  # type: ignore[import-not-found]

        generate(1_000_000, 1_000)

    from analyzer.pipeline import AnalyzeOptions, analyze
    from analyzer.report.plots import render_plots
    from analyzer.report.render import render_html, render_junit, render_markdown, write_reports

    t0 = time.perf_counter()
    analysis = analyze(args.run, AnalyzeOptions(no_embeddings=True, write_outputs=False))
    t_analysis = time.perf_counter() - t0
    n = analysis.run.generations.height if analysis.run.generations is not None else 0

    parts: dict[str, float] = {}
    t = time.perf_counter()
    plots, skipped = render_plots(analysis)
    parts["plots"] = time.perf_counter() - t
    t = time.perf_counter()
    render_markdown(analysis, plots=plots, skipped_plots=skipped)
    parts["markdown"] = time.perf_counter() - t
    t = time.perf_counter()
    html = render_html(analysis, plots=plots, skipped_plots=skipped)
    parts["html"] = time.perf_counter() - t
    t = time.perf_counter()
    render_junit(analysis)
    parts["junit"] = time.perf_counter() - t

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        write_reports(
            analysis, Path(tmp), junit=True, md_inline_images=False, plots=True, html=True
        )
        t_reports = time.perf_counter() - t
        html_size = (Path(tmp) / "report.html").stat().st_size
        md_size = (Path(tmp) / "report.md").stat().st_size

    result = {
        "run": str(args.run),
        "completions": n,
        "steps": analysis.metrics.height,
        "alerts": len(analysis.alerts),
        "analysis_s": round(t_analysis, 2),
        "write_reports_s": round(t_reports, 2),
        "reports_over_analysis": round(t_reports / t_analysis, 3),
        "parts_s": {k: round(v, 2) for k, v in parts.items()},
        "html_bytes": html_size,
        "html_mb": round(html_size / 1e6, 2),
        "html_chars_in_memory": len(html),
        "md_bytes": md_size,
        "python": platform.python_version(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
