"""What ``logscan compare`` shows: one column per run — verdict, run kind, core checks, steps,
completions, how drift was scored, alerts per kind and the key metrics first → last."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from analyzer import catalogue
from analyzer.coverage import coverage_of
from analyzer.model import Analysis, Severity
from analyzer.report.data import finite_or_none, run_summary
from analyzer.report.numbers import fmt

# The rows compare shows, in order, when at least one run has the column (analyzer.catalogue).
KEY_METRICS: tuple[str, ...] = catalogue.COMPARE


def format_comparison(analyses: Sequence[Analysis], paths: Sequence[str | Path]) -> str:
    from analyzer.ingest.remote import display_url, is_url

    # a URL is shown as itself (without credentials), never folded into a path
    full = [display_url(str(p)) if is_url(p) else str(Path(p)) for p in paths]
    names = [(f.rsplit("/", 1)[-1] if is_url(p) else Path(p).name) or f for p, f in zip(paths, full, strict=True)]
    if len(set(names)) < len(names):
        names = full
    summaries = [run_summary(a) for a in analyses]
    coverages = [coverage_of(a) for a in analyses]
    rows: list[tuple[str, list[str]]] = [
        ("verdict", [a.verdict for a in analyses]),
        ("run kind", [c.kind for c in coverages]),
        # ✗: a core check could not run (or the kind has none of its own): see `analyze`'s headline
        ("core checks ran", [f"{len(c.ran)}/{len(c.core)}" + (" ✗" if c.limited else "") for c in coverages]),
        ("source", [a.run.report.source_kind for a in analyses]),
        ("steps", [_steps(s) for s in summaries]),
        ("completions", [str(s["completions"]) for s in summaries]),
        # drift scored lexically and by embeddings are different measurements: say which was used
        ("drift scored by", [_drift_cell(a) for a in analyses]),
        ("alerts crit/warn/info", [_alert_counts(a) for a in analyses]),
    ]
    # one row per alert kind any run raised: its worst severity and count in each run
    kinds = sorted({x.kind for a in analyses for x in a.alerts})
    rows += [(f"alert {kind}", [_kind_cell(a, kind) for a in analyses]) for kind in kinds]
    for key in KEY_METRICS:
        if any(key in a.metrics.columns for a in analyses):
            rows.append((f"{key} (first → last)", [_first_last(a, key) for a in analyses]))
    label_w = max(len(label) for label, _ in rows)
    widths = [max(len(n), *(len(vals[i]) for _, vals in rows)) for i, n in enumerate(names)]
    lines = ["  ".join([" " * label_w, *(n.ljust(w) for n, w in zip(names, widths, strict=True))]).rstrip()]
    for label, values in rows:
        cells = (v.ljust(w) for v, w in zip(values, widths, strict=True))
        lines.append("  ".join([label.ljust(label_w), *cells]).rstrip())
    if any(a.drift is not None and a.drift.method != "embeddings" for a in analyses):
        lines += ["", LEXICAL_NOTE]
    return "\n".join(lines)


# Plain compare scores drift lexically (fast, no model); a default `analyze` uses embeddings, so the
# drift-based alerts can differ in severity between the two: the table says so.
LEXICAL_NOTE = (
    "note: drift was scored lexically (TF-IDF), as `logscan analyze --no-embeddings` does; a default "
    "`logscan analyze` scores it with embeddings, so catastrophic_forgetting and semantic_drift can "
    "differ from it in severity. Pass --embeddings to compare the way analyze judges."
)


def _drift_cell(a: Analysis) -> str:
    if a.drift is None or a.drift.method == "none":
        return "not scored"
    if a.drift.method == "embeddings":
        return f"embeddings ({a.drift.model})" if a.drift.model else "embeddings"
    return "TF-IDF (lexical)" if a.drift.method == "tfidf" else a.drift.method


def _steps(summary: dict[str, Any]) -> str:
    if not summary["steps"]:
        return "-"
    return f"{summary['first_step']}..{summary['last_step']} ({summary['steps']})"


def _alert_counts(a: Analysis) -> str:
    return "/".join(
        str(sum(1 for x in a.alerts if x.severity is s)) for s in (Severity.CRITICAL, Severity.WARNING, Severity.INFO)
    )


def _kind_cell(a: Analysis, kind: str) -> str:
    found = [x for x in a.alerts if x.kind == kind]
    if not found:
        return "-"
    worst = max(found, key=lambda x: x.severity.rank)
    return worst.severity.value + (f" ×{len(found)}" if len(found) > 1 else "")


def _first_last(a: Analysis, key: str) -> str:
    if key not in a.metrics.columns:
        return "-"
    values = [v for v in a.metrics.get_column(key).to_list() if finite_or_none(v) is not None]
    if not values:
        return "-"
    return f"{fmt(values[0], 3)} → {fmt(values[-1], 3)}"
