"""What ``logscan watch`` prints at each refresh: the latest value (and its step) of the key
metrics, then the alerts, worst first."""

from __future__ import annotations

import datetime as _dt

from analyzer import catalogue
from analyzer import columns as C
from analyzer.coverage import coverage_of
from analyzer.model import Analysis
from analyzer.report.escape import terminal_text
from analyzer.report.numbers import fmt
from analyzer.report.watch_live import latest

WATCHED: tuple[str, ...] = catalogue.WATCH  # the key metrics watch shows (analyzer.catalogue)


def snapshot_text(analysis: Analysis) -> str:
    """Latest value (and its step) of the key metrics, then the alerts, worst first."""
    now = _dt.datetime.now().strftime("%H:%M:%S")
    status = analysis.run.info.get("status") or "unknown"
    m = analysis.metrics
    last = str(m.get_column(C.STEP).max()) if C.STEP in m.columns and m.height else None
    coverage = coverage_of(analysis)
    checks = f"{len(coverage.ran)}/{len(coverage.core)} core checks"
    lines = [
        f"[{now}] {terminal_text(analysis.run.path)}  status {terminal_text(status)}  last step {last}  "
        f"verdict {analysis.verdict} ({checks})"
    ]
    if analysis.verdict == "limited":
        lines.append(f"  limited: {terminal_text(coverage.headline())}")
    for key in WATCHED:
        if (got := latest(m, key)) is not None:
            step, value = got
            lines.append(f"  {key:24s} {fmt(value):>12s}  (step {step})")
    if analysis.alerts:
        lines.append("  alerts:")
        for a in analysis.alerts[:8]:
            at = f" @ step {a.step}" if a.step is not None else ""
            lines.append(f"    {a.severity.value.upper():8s} {a.kind}{at}: {terminal_text(a.message)}")
    else:
        lines.append("  no alerts")
    return "\n".join(lines)
