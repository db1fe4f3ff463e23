"""The terminal summary of an analysis: the verdict line (also the last line of ``analyze -q``),
the run, its sources and files not read, drift, checks, and the alerts worst first. Text that comes
from the logs is terminal-safe (``escape.terminal_text``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from analyzer.coverage import coverage_of
from analyzer.ingest.sources import display_name  # display names: the registry of formats
from analyzer.model import Analysis, Severity, SourceRead
from analyzer.report.data import run_summary
from analyzer.report.escape import terminal_text
from analyzer.verdict import exit_code, min_steps

MAX_NOT_READ_SHOWN = 8

MAX_ISSUES_SHOWN = 5
MAX_ALERTS_SHOWN = 10


def verdict_line(analysis: Analysis) -> str:
    counts = {s: sum(1 for a in analysis.alerts if a.severity is s) for s in Severity}
    parts = [f"{counts[s]} {s.value}" for s in (Severity.CRITICAL, Severity.WARNING, Severity.INFO) if counts[s]]
    alerts = ", ".join(parts) if parts else "no alerts"
    label = analysis.verdict.upper().replace("_", " ")
    extra = ""
    if analysis.verdict == "too_short":
        extra = f" (fewer than {min_steps(analysis.config)} steps: too short to judge trends)"
    elif analysis.verdict == "limited":
            extra = f" ({coverage_of(analysis).headline()})"
    return f"logscan: {label} — {alerts}{extra}; exit {exit_code(analysis)} (--fail-on {analysis.fail_on})"


def _drift_line(analysis: Analysis) -> str | None:
    """How drift was scored — and, when it fell back to TF-IDF, why (a user who expected
    embeddings must see that they did not get them)."""
    drift = analysis.drift
    if drift is None or drift.method == "none":
        return None
    if drift.method == "embeddings":
        return f"embeddings ({drift.model}): {drift.embedded} embedded, {drift.cached} from the cache"
    why = next((n for n in drift.notes if n.startswith("lexical drift (TF-IDF) because")), "lexical (TF-IDF)")
    return why if len(why) <= 240 else why[:239] + "…"


def summary_text(analysis: Analysis, quiet: bool = False) -> str:
    """A short plain-text summary; ``quiet`` keeps only the verdict line. Text that comes from the
    logs (run info, keys in alert messages, issue reasons) is terminal-safe: control characters
    shown as escapes, line breaks as ⏎, so a log cannot rewrite the terminal or fake a line."""
    first = verdict_line(analysis)
    if quiet:
        return terminal_text(first)
    run, report = analysis.run, analysis.run.report
    summary = run_summary(analysis)
    lines = [first]
    kind = display_name(report.source_kind)
    described = [kind]
    for key in ("algorithm", "model", "status"):
        if run.info.get(key):
            described.append(f"{key} {terminal_text(run.info[key])}")
    lines.append(f"run:         {terminal_text(run.path)}  ({', '.join(described)})")
    if summary["steps"]:
        lines.append(f"steps:       {summary['first_step']}..{summary['last_step']} ({summary['steps']} steps)")
    else:
        lines.append("steps:       none")
    if summary["completions"]:
        per = ", ".join(f"{n} {s}" for s, n in summary["splits"].items())
        lines.append(f"completions: {summary['completions']} ({per})")
    else:
        lines.append("completions: none (metrics from logged scalars only)")
    lines.append(
        f"read:        {len(report.files_read)} file(s), {report.records_read} record(s)"
        + (f": {_short_list(report.files_read)}" if report.files_read else "")
    )
    # every source read and every file of the folder not read, with why (docs/formats.md)
    for src in report.sources:
        lines.append(f"source:      {terminal_text(source_line(src))}")
    for nr in report.not_read[:MAX_NOT_READ_SHOWN]:
        lines.append(f"not read:    {terminal_text(nr.file)} ({terminal_text(nr.reason)})")
    if len(report.not_read) > MAX_NOT_READ_SHOWN:
        lines.append(f"  … and {len(report.not_read) - MAX_NOT_READ_SHOWN} more not read (see analysis.json)")
    if report.records_skipped or report.issues:
        lines.append(f"skipped:     {report.records_skipped} record(s), {len(report.issues)} issue(s)")
        for issue in report.issues[:MAX_ISSUES_SHOWN]:
            lines.append(f"  - {terminal_text(issue)}")
        if len(report.issues) > MAX_ISSUES_SHOWN:
            lines.append(f"  … and {len(report.issues) - MAX_ISSUES_SHOWN} more (see analysis.json)")
    for resume in report.resumes:
        where = f"{resume.get('file')}:{resume.get('line')}" if resume.get("line") else str(resume.get("file"))
        came_from = "" if resume.get("from_step") is None else f"step {resume['from_step']} → "
        lines.append(
            f"resumed:     at {terminal_text(where)}: {came_from}back to step {resume.get('to_step')} (the latest segment wins)"
        )
    if (drift_line := _drift_line(analysis)) is not None:
        lines.append(f"drift:       {terminal_text(drift_line)}")
    coverage = coverage_of(analysis)
    lines.append(f"checks:      {terminal_text(_checks_line(coverage, analysis.verdict))}")
    not_run = [d for d in analysis.detectors if not d.ran]
    for note in analysis.notes:
        lines.append(f"note:        {terminal_text(note)}")
    if not_run:
        by_reason: dict[str, list[str]] = {}
        for d in not_run:
            by_reason.setdefault(d.reason or "no reason given", []).append(d.name)
        for reason, names in by_reason.items():
            lines.append(f"not run:     {', '.join(names)}: {terminal_text(reason)}")
    if analysis.alerts:
        lines.append("alerts (worst first):")
        for alert in analysis.alerts[:MAX_ALERTS_SHOWN]:
            at = f" @ step {alert.step}" if alert.step is not None else ""
            lines.append(f"  {alert.severity.value.upper():8s} {alert.kind}{at}: {terminal_text(alert.message)}")
        if len(analysis.alerts) > MAX_ALERTS_SHOWN:
            lines.append(f"  … and {len(analysis.alerts) - MAX_ALERTS_SHOWN} more (see analysis.json)")
    if analysis.output_dir:
        lines.append(f"written:     {analysis.output_dir}/ ({_outputs_list(analysis)})")
    return "\n".join(lines)


def _checks_line(coverage: Any, verdict: str) -> str:
    """The summary's ``checks:`` line: the run's kind and how many core checks ran; the whole
    headline (what was not checked, what to log) when that is not already the verdict line's."""
    if coverage.limited and verdict != "limited":
        return coverage.headline()
    optional = f" (+{len(coverage.optional_ran)} optional)" if coverage.optional_ran else ""
    return coverage.summary() + optional


def _outputs_list(analysis: Analysis) -> str:
    """Top-level file names; files in a subfolder collapse to ``plots/ (8 files)``."""
    base = Path(analysis.output_dir or ".")
    files: list[str] = []
    folders: dict[str, int] = {}
    for p in analysis.outputs:
        try:
            rel = Path(p).relative_to(base)
        except ValueError:
            rel = Path(Path(p).name)
        if len(rel.parts) > 1:
            folders[rel.parts[0]] = folders.get(rel.parts[0], 0) + 1
        elif rel.name not in files:
            files.append(rel.name)
    return ", ".join([*files, *(f"{d}/ ({n} files)" for d, n in folders.items())])


def source_line(src: SourceRead) -> str:
    """``seed-schema CSV: generations.csv, 3,360 record(s), steps 1–200 (completions, train steps +1)``."""
    where = f"steps {src.first_step}–{src.last_step}" if src.first_step is not None else "no steps"
    what = src.data + (f", train steps {src.step_shift:+d}" if src.step_shift else "")
    note = f"; {src.note}" if src.note else ""
    return f"{src.name}: {_short_list(src.files)}, {src.records} record(s), {where} ({what}){note}"


def _short_list(paths: list[str], limit: int = 4) -> str:
    names = [Path(p).name for p in paths[:limit]]
    more = f", … (+{len(paths) - limit})" if len(paths) > limit else ""
    return ", ".join(names) + more
