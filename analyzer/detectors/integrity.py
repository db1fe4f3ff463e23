"""Can the logs be trusted? log_integrity, from the ingest report and the step sequence."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np

from analyzer import columns as C
from analyzer.detectors.base import DetectorContext, alert, register
from analyzer.model import Alert, Severity

# what ingest reports (IngestIssue.kind): records lost vs. things worth knowing
_LOSING = {"malformed", "not_object", "no_step", "not_utf8", "truncated_report"}
_INFO = {"torn_line", "resume", "gap", "unknown_column", "note", "wrong_type", "empty", "dropped"}
_DROPPED_RE = re.compile(r"(\d+) records?")


def _dropped(ctx: DetectorContext) -> int:
    """Records the logger could not write: run.json counters (via run.info) or ingest's issues."""
    counters = ctx.run.info.get("counters") or {}
    total = 0
    if isinstance(counters, dict):
        for k, v in counters.items():
            if ("drop" in str(k) or "fail" in str(k) or "error" in str(k)) and isinstance(
                v, int | float
            ):
                total += int(v)
    if total:
        return total
    for issue in ctx.run.report.issues:
        if issue.kind == "dropped":
            m = _DROPPED_RE.search(issue.reason)
            total += int(m.group(1)) if m else 1
    return total


@register(
    "log_integrity",
    signals="the ingest report (torn lines, malformed records, values of the wrong type, records the "
    "logger dropped as counted in run.json, resumes) and the logged steps (gaps ≥ gap_factor × the "
    "usual spacing): every other conclusion rests on complete logs.",
    defaults={"gap_factor": 5.0, "critical_fraction": 0.05},
    requires=(),
    severity="info for torn lines an interrupted writer explains (at most one per file, plus one per "
    "resume of that file or session run.json records: a killed or still-running writer leaves one cut-short record at the end of "
    "each file it was appending to), wrongly typed values, empty files, resumes and gaps; warning for "
    "malformed / unreadable records, torn lines beyond that, or records the logger dropped; critical "
    "when skipped + dropped records are ≥ critical_fraction of all records.",
)
def log_integrity(ctx: DetectorContext, cfg: dict[str, Any]) -> list[Alert]:
    """Torn lines, malformed records, dropped records, gaps and resumes."""
    rep = ctx.run.report
    out: list[Alert] = []
    kinds = Counter(i.kind for i in rep.issues)
    bad = {k: n for k, n in kinds.items() if k in _LOSING or k not in _INFO}
    dropped = _dropped(ctx)
    records = max(rep.records_read + rep.records_skipped + dropped, 1)
    lost_share = (rep.records_skipped + dropped) / records
    examples = [str(i) for i in rep.issues if i.kind in bad or i.kind == "dropped"][:5]
    # Each interruption of a writer (a kill, or a reader arriving mid-write) cuts at most one record
    # per file it was appending to; a resumed run appends after the cut, so a file may hold one more
    # per resume. Torn lines beyond that are not explained by interruptions.
    torn_by_file = Counter(i.file for i in rep.issues if i.kind == "torn_line")
    resumes_by_file = Counter(str(r.get("file")) for r in rep.resumes)
    # sessions run.json records (trainer_hooks' resumes): a session that resumed at the same step
    # shows no step going back, but its predecessor may still have cut a record in every file
    sessions = ctx.run.info.get("resumes")
    restarts = len(sessions) if isinstance(sessions, list) else 0
    unexplained = sum(
        max(0, n - 1 - max(resumes_by_file.get(f, 0), restarts)) for f, n in torn_by_file.items()
    )
    if bad or dropped or unexplained:
        sev = (
            Severity.CRITICAL if lost_share >= float(cfg["critical_fraction"]) else Severity.WARNING
        )
        parts = [f"{n} {k.replace('_', ' ')}" for k, n in sorted(bad.items())]
        if dropped:
            parts.append(f"{dropped} dropped by the logger")
        if unexplained:
            parts.append(f"{kinds['torn_line']} torn lines")
        out.append(
            alert(
                "log_integrity",
                sev,
                None,
                f"incomplete logs: {', '.join(parts)} ({lost_share:.1%} of the records lost)",
                issues=dict(kinds),
                records_read=rep.records_read,
                records_skipped=rep.records_skipped,
                records_dropped=dropped,
                lost_share=lost_share,
                examples=examples,
                sample_ids=[],
            )
        )
    minor = {k: n for k, n in kinds.items() if k in ("wrong_type", "empty")}
    if minor:
        out.append(
            alert(
                "log_integrity",
                Severity.INFO,
                None,
                "ignored: "
                + ", ".join(
                    f"{n} {k.replace('_', ' ')} issue(s)" for k, n in sorted(minor.items())
                ),
                issues=minor,
                examples=[str(i) for i in rep.issues if i.kind in minor][:5],
                sample_ids=[],
            )
        )
    if torn_by_file and not (bad or dropped or unexplained):
        torn = [i for i in rep.issues if i.kind == "torn_line"]
        where = ", ".join(f"{i.file}:{i.line}" for i in torn[:3]) + (", …" if len(torn) > 3 else "")
        what = (
            f"one torn line skipped ({where})"
            if len(torn) == 1
            else f"{len(torn)} torn lines skipped ({where}), at most one per file and interruption"
        )
        out.append(
            alert(
                "log_integrity",
                Severity.INFO,
                None,
                f"{what}: the writer was interrupted mid-record (killed, or still writing)",
                issues=dict(kinds),
                examples=[str(i) for i in torn[:5]],
                sample_ids=[],
            )
        )
    for r in rep.resumes:
        out.append(
            alert(
                "log_integrity",
                Severity.INFO,
                r.get("to_step"),
                (
                    f"the run was resumed: step went back from {r.get('from_step')} to {r.get('to_step')}"
                    if r.get("from_step") is not None
                    else f"the run was resumed at step {r.get('to_step')}"
                )
                + (f" ({r.get('file')}:{r.get('line')})" if r.get("file") else ""),
                resume=r,
                sample_ids=[],
            )
        )
    if C.STEP in ctx.metrics.columns and ctx.metrics.height >= 4:
        steps = np.sort(ctx.metrics[C.STEP].drop_nulls().to_numpy().astype(np.int64))
        d = np.diff(steps)
        if d.size:
            usual = float(np.median(d))
            big = np.where(d > float(cfg["gap_factor"]) * max(usual, 1.0))[0]
            if big.size:
                gaps = [(int(steps[i]), int(steps[i + 1])) for i in big]
                missing = int(sum(b - a - usual for a, b in gaps) / max(usual, 1.0))
                out.append(
                    alert(
                        "log_integrity",
                        Severity.INFO,
                        gaps[0][0],
                        f"{len(gaps)} gap(s) in the logged steps (usual spacing {usual:g}); first after step {gaps[0][0]}, "
                        f"about {missing} logging points missing",
                        gaps=[list(g) for g in gaps[:10]],
                        usual_spacing=usual,
                        sample_ids=[],
                    )
                )
    return out
