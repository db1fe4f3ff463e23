"""What ``logscan compare`` shows. In the terminal: one column per run — verdict, run kind, core
checks, steps, completions, how drift was scored, alerts per kind and the key metrics first →
last (``format_comparison``). With ``-o DIR``: compare.md and compare.html (``write_compare_reports``)
— the runs table first (ranked by a chosen metric), alerts per kind, overlaid curves of the key
metrics for the baseline and the top-N runs, each metric's first/last/best per run, the prompts
whose answers differ most between runs, and the regression gate's outcome.

It decides nothing: the gate's failures come from ``analyzer.verdict``, the answer distances from
``analyzer.answer_diff``. Run names and model text are untrusted: the templates escape them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analyzer import catalogue
from analyzer import columns as C
from analyzer.coverage import coverage_of
from analyzer.model import Analysis, Severity
from analyzer.report.data import finite_or_none, run_summary
from analyzer.report.escape import excerpt
from analyzer.report.numbers import fmt
from analyzer.report.render import NO_BEST_SHOWN, data_uri

if TYPE_CHECKING:
    from analyzer.answer_diff import AnswerComparison
    from analyzer.report.plots import Plot

# The rows compare shows, in order, when at least one run has the column (analyzer.catalogue).
KEY_METRICS: tuple[str, ...] = catalogue.COMPARE


def run_names(paths: Sequence[str | Path]) -> tuple[list[str], list[str]]:
    """(short names, full names) of the runs: a folder's name, or the whole path when two runs
    share a name; a URL is shown as itself (without credentials), never folded into a path."""
    from analyzer.ingest.remote import display_url, is_url

    full = [display_url(str(p)) if is_url(p) else str(Path(p)) for p in paths]
    names = [(f.rsplit("/", 1)[-1] if is_url(p) else Path(p).resolve().name) or f for p, f in zip(paths, full, strict=True)]
    if len(set(names)) < len(names):
        names = full
    return names, full


# More runs than this and the terminal shows one row per run (ranked) instead of one column each:
# fifty columns fit no terminal.
MAX_TERMINAL_COLUMNS = 6


def format_comparison(
    analyses: Sequence[Analysis], paths: Sequence[str | Path], *, by: str | None = None, notes: Sequence[str] = ()
) -> str:
    """The terminal table: one column per run, or one row per run ranked by ``by`` when there are
    more than ``MAX_TERMINAL_COLUMNS`` runs; then ``notes``, then the note on lexical drift."""
    if len(analyses) > MAX_TERMINAL_COLUMNS:
        return _format_rows(analyses, paths, by, notes)
    names, _ = run_names(paths)
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
    for key in present_metrics(analyses):
        rows.append((f"{key} (first → last)", [_first_last(a, key) for a in analyses]))
    label_w = max(len(label) for label, _ in rows)
    widths = [max(len(n), *(len(vals[i]) for _, vals in rows)) for i, n in enumerate(names)]
    lines = ["  ".join([" " * label_w, *(n.ljust(w) for n, w in zip(names, widths, strict=True))]).rstrip()]
    for label, values in rows:
        cells = (v.ljust(w) for v, w in zip(values, widths, strict=True))
        lines.append("  ".join([label.ljust(label_w), *cells]).rstrip())
    lines += notes
    if any(a.drift is not None and a.drift.method != "embeddings" for a in analyses):
        lines += ["", LEXICAL_NOTE]
    return "\n".join(lines)


def _format_rows(analyses: Sequence[Analysis], paths: Sequence[str | Path], by: str | None, notes: Sequence[str]) -> str:
    """One row per run, best first by ``by``'s final value: rank, run, verdict, steps, alert
    counts, the alert kinds raised, how drift was scored."""
    from analyzer.report.escape import terminal_text

    names, _ = run_names(paths)
    by = ranking_metric(analyses, by)
    header = ["#", "run", "verdict", "steps", "crit/warn/info", *([f"{by} (final)"] if by else []), "drift scored by", "alert kinds"]
    rows = [header]
    for rank, i in enumerate(rank_runs(analyses, by), start=1):
        a = analyses[i]
        kinds = sorted({x.kind for x in a.alerts})
        rows.append(
            [
                str(rank),
                terminal_text(names[i]),
                a.verdict,
                _steps(run_summary(a)),
                _alert_counts(a),
                *([fmt(final_value(a, by), 4)] if by else []),
                _drift_cell(a),
                ", ".join(kinds) or "-",
            ]
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    if by:
        lines.append(f"ranked by {by}'s final value (the mean of its last 10% of steps)")
    lines += notes
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


# --------------------------------------------------------------------------------------------
# compare.md / compare.html

COMPARE_MD_TEMPLATE = "compare.md.j2"
COMPARE_HTML_TEMPLATE = "compare.html.j2"
COMPARE_STYLE = "compare.css"  # after report.css: the page shares the report's look
DEFAULT_TOP = 10
MD_ANSWER_ROWS = 5  # prompts per pair in compare.md (a PR comment is short); compare.html shows more
HTML_ANSWER_ROWS = 10
ANSWER_EXCERPT = 220  # characters of an answer shown
QUESTION_EXCERPT = 140


def present_metrics(analyses: Sequence[Analysis]) -> list[str]:
    """The compare metrics (``KEY_METRICS``) at least one run logged, in their order."""
    return [k for k in KEY_METRICS if any(k in a.metrics.columns for a in analyses)]


def ranking_metric(analyses: Sequence[Analysis], by: str | None) -> str | None:
    """``by`` when given; else the first compare metric with a better direction that a run has
    (logged reward, rebuilt reward, exact-match accuracy, …); None when no run has one."""
    if by:
        return by
    for name in KEY_METRICS:
        if catalogue.direction_of(name) and any(name in a.metrics.columns for a in analyses):
            return name
    return None


FINAL_SHARE = 0.1  # a run's final value of a metric: the mean of its last 10 % of logged values


def final_value(a: Analysis, key: str) -> float | None:
    """The mean of the metric's last ``FINAL_SHARE`` of finite values (at least one): where the
    run ended, without one noisy last step deciding a ranking."""
    column = a.metrics.get_column(key, default=None) if a.metrics is not None else None
    if column is None or not column.dtype.is_numeric():
        return None
    values = [float(v) for v in column.to_list() if finite_or_none(v) is not None]
    if not values:
        return None
    tail = values[-max(1, int(len(values) * FINAL_SHARE)) :]
    return sum(tail) / len(tail)


def rank_runs(analyses: Sequence[Analysis], by: str | None) -> list[int]:
    """Run indices, best first by ``by``'s final value (``final_value``) in its better direction
    (highest first when it has none); runs without a value last, in the order given."""
    if by is None:
        return list(range(len(analyses)))
    sign = catalogue.direction_of(by) or 1
    values = [final_value(a, by) for a in analyses]
    return sorted(range(len(analyses)), key=lambda i: (values[i] is None, -sign * (values[i] or 0.0), i))


def _verdict_cell(a: Analysis) -> dict[str, str]:
    from analyzer.report.render import VERDICTS

    icon, text = VERDICTS.get(a.verdict, ("", a.verdict.replace("_", " ")))
    return {"key": a.verdict, "icon": icon, "text": text}


def _alerts_cell(alerts: Sequence[Any]) -> dict[str, Any]:
    worst = max(alerts, key=lambda x: x.severity.rank)
    from analyzer.report.render import SEVERITY_ICONS

    return {
        "severity": worst.severity.value,
        "icon": SEVERITY_ICONS.get(worst.severity.value, ""),
        "count": len(alerts),
        "first_step": min((x.step for x in alerts if x.step is not None), default=None),
    }


def compare_context(
    analyses: Sequence[Analysis],
    paths: Sequence[str | Path],
    *,
    baseline: int | None = None,
    top: int = DEFAULT_TOP,
    by: str | None = None,
    fail_on: str = "never",
    answers: AnswerComparison | None = None,
    plots: Sequence[Plot] = (),
    image_src: Callable[[Plot], str] | None = None,
    answer_rows: int = MD_ANSWER_ROWS,
    generated_at: str | None = None,
) -> dict[str, Any]:
    """Everything compare.md.j2 / compare.html.j2 render: pure data, model text left raw (the
    templates escape it)."""
    from datetime import datetime

    from analyzer import __version__
    from analyzer.report.compare_plots import run_color
    from analyzer.report.data import summarize_metrics
    from analyzer.verdict import compare_failures, compare_verdict_failures, new_alerts

    names, full = run_names(paths)
    by = ranking_metric(analyses, by)
    order = rank_runs(analyses, by)
    curves = curve_runs(analyses, baseline=baseline, top=top, by=by, order=order)
    colors = {i: run_color(n) for n, i in enumerate(curves)}
    failures = compare_failures(analyses, fail_on, baseline=baseline)
    verdict_failures = set(compare_verdict_failures(analyses, fail_on, baseline=baseline))
    keys = present_metrics(analyses)
    summaries = [
        summarize_metrics(a.metrics.select([c for c in (C.STEP, *keys) if c in a.metrics.columns]))
        if a.metrics is not None and C.STEP in a.metrics.columns
        else {}
        for a in analyses
    ]
    by_sign = catalogue.direction_of(by) if by else 0
    runs = []
    for rank, i in enumerate(order, start=1):
        a = analyses[i]
        summary = run_summary(a)
        new = new_alerts(analyses[baseline].alerts, a.alerts) if baseline is not None and i != baseline else []
        runs.append(
            {
                "index": i,
                "rank": rank,
                "name": names[i],
                "path": full[i],
                "baseline": i == baseline,
                "color": colors.get(i),
                "verdict": _verdict_cell(a),
                "steps": _steps(summary),
                "completions": summary["completions"],
                "alerts": _alert_counts(a),
                "drift": _drift_cell(a),
                "by_value": fmt(final_value(a, by), 4) if by else "—",
                "new_alerts": _grouped(new),
                "fails": i in failures or i in verdict_failures,
            }
        )
    kinds = sorted({x.kind for a in analyses for x in a.alerts})
    alert_rows = []
    for row in runs:
        a = analyses[row["index"]]
        cells = []
        for kind in kinds:
            found = [x for x in a.alerts if x.kind == kind]
            cells.append(_alerts_cell(found) if found else None)
        alert_rows.append({"name": row["name"], "baseline": row["baseline"], "color": row["color"], "cells": cells})
    shown = [i for i in order if i in curves]  # the metrics table: the runs that have curves
    shown.sort(key=lambda i: i != baseline)
    metric_rows = []
    for key in keys:
        cells = []
        for i in shown:
            s = summaries[i].get(key)
            best = s["best"] if s and key not in NO_BEST_SHOWN else None
            cells.append({"first": fmt(s["first"], 3), "last": fmt(s["last"], 3), "best": fmt(best, 3) if best is not None else "—"} if s else None)
        direction = 0 if key in NO_BEST_SHOWN else catalogue.direction_of(key)
        metric_rows.append(
            {
                "name": key,
                "label": catalogue.label_of(key),
                "better": "higher" if direction > 0 else "lower" if direction < 0 else "",
                "cells": cells,
            }
        )
    src = image_src or (lambda p: f"plots/{p.filename}")
    failing = [
        {"name": names[i], "alerts": [{"kind": x.kind, "severity": x.severity.value, "step": x.step, "message": x.message} for x in alerts]}
        for i, alerts in sorted(failures.items())
    ]
    methods = sorted({_drift_cell(a) for a in analyses})
    scored = [m for m in methods if m != "not scored"]
    if not scored:
        drift_line = "Drift was not scored (no run logged completions)"
    else:
        drift_line = f"Drift scored by {', '.join(scored)}" + (" (not scored in runs without completions)" if len(scored) < len(methods) else "")
    view = _answers_view(answers, names, answer_rows)
    if view is not None and view["pairs"] and any(p["shared"] for p in view["pairs"]):
        drift_line += f"; answers compared by {view['method']}"
    return {
        "title": f"logscan compare — {len(analyses)} runs",
        "runs": runs,
        "n_runs": len(analyses),
        "baseline": names[baseline] if baseline is not None else None,
        "by": by,
        "by_label": catalogue.label_of(by) if by else "",
        "by_order": "highest first" if by_sign >= 0 else "lowest first",
        "by_neutral": bool(by) and by_sign == 0,
        "top": top,
        "curve_count": len(curves),
        "not_drawn": len(analyses) - len(curves),
        "kinds": kinds,
        "alert_rows": alert_rows,
        "shown_runs": [{"name": names[i], "baseline": i == baseline, "color": colors.get(i)} for i in shown],
        "metric_rows": metric_rows,
        "plots": _plots_view(plots, src),
        "answers": view,
        "drift_line": drift_line,
        "lexical": any(a.drift is not None and a.drift.method == "tfidf" for a in analyses),
        "gate": {
            "fail_on": fail_on,
            "baseline": baseline is not None,
            "failed": bool(failures or verdict_failures),
            "failing": failing,
            "verdict_failing": [names[i] for i in sorted(verdict_failures)],
        },
        "version": __version__,
        "generated_at": generated_at or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _plots_view(plots: Sequence[Plot], src: Callable[[Plot], str]) -> list[dict[str, Any]]:
    return [{"name": p.name, "title": p.title, "column": p.columns[0] if p.columns else "", "src": src(p)} for p in plots]


def _grouped(alerts: Sequence[Any]) -> list[dict[str, Any]]:
    """Alerts (in the one alert order) as one entry per kind and severity: how many, the first step."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for x in alerts:
        entry = out.setdefault((x.kind, x.severity.value), {"kind": x.kind, "severity": x.severity.value, "count": 0, "step": x.step})
        entry["count"] += 1
        if x.step is not None and (entry["step"] is None or x.step < entry["step"]):
            entry["step"] = x.step
    return list(out.values())


def curve_runs(
    analyses: Sequence[Analysis], *, baseline: int | None, top: int, by: str | None, order: Sequence[int] | None = None
) -> list[int]:
    """The runs drawn in the figures, in drawing order: the baseline, then the ``top`` best by ``by``
    (``order``: ``rank_runs(analyses, by)`` when the caller has it already)."""
    best = [i for i in (rank_runs(analyses, by) if order is None else order) if i != baseline][:top]
    return ([baseline] if baseline is not None else []) + best


def _head_tail(text: str, limit: int) -> str:
    """One line of at most about ``limit`` characters keeping the beginning and the end (where a
    completion puts its answer)."""
    line = excerpt(text, 10 * limit + 10)
    if len(line) <= limit:
        return line
    head = int(limit * 0.6)
    return line[:head].rstrip() + " … " + line[-(limit - head - 3) :].lstrip()


def _answers_view(answers: AnswerComparison | None, names: Sequence[str], rows: int) -> dict[str, Any] | None:
    if answers is None:
        return None
    method = {"embeddings": f"embeddings ({answers.model})" if answers.model else "embeddings", "tfidf": "TF-IDF (lexical)"}
    pairs = []
    for pair in answers.pairs:
        pairs.append(
            {
                "a": names[pair.a],
                "b": names[pair.b],
                "shared": pair.shared,
                "scored": pair.scored,
                "rows": [
                    {
                        "question_id": d.question_id,
                        "question": excerpt(d.question, QUESTION_EXCERPT),
                        "distance": fmt(d.distance, 3),
                        "a": {"step": d.a.step, "split": d.a.split, "reward": fmt(d.a.reward, 3), "n": d.a.n, "text": _head_tail(d.a.text, ANSWER_EXCERPT)},
                        "b": {"step": d.b.step, "split": d.b.split, "reward": fmt(d.b.reward, 3), "n": d.b.n, "text": _head_tail(d.b.text, ANSWER_EXCERPT)},
                    }
                    for d in pair.top[:rows]
                ],
            }
        )
    return {
        "method": method.get(answers.method, answers.method),
        "lexical": answers.method == "tfidf",
        "embedded": answers.embedded,
        "cached": answers.cached,
        "pairs": pairs,
    }


def render_compare(kind: str, context: Mapping[str, Any], *, template_dir: str | None = None) -> str:
    """compare.md (``kind="md"``) or the self-contained compare.html (``kind="html"``: plots as
    data URIs, no script at all, a CSP that allows none)."""
    from markupsafe import Markup

    from analyzer.report.render import HTML_STYLE, environment, template_source

    env = environment(template_dir)
    if kind == "md":
        return env.get_template(COMPARE_MD_TEMPLATE).render(**context)
    style = template_source(env, HTML_STYLE) + "\n" + template_source(env, COMPARE_STYLE)
    return env.get_template(COMPARE_HTML_TEMPLATE).render(
        **context,
        style=Markup(style),
        # Our own constant. The page has no script: script-src 'none'.
        csp=Markup(
            "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'none'; "
            "base-uri 'none'; form-action 'none'"
        ),
    )


def write_compare_reports(
    analyses: Sequence[Analysis],
    paths: Sequence[str | Path],
    out_dir: Path,
    *,
    baseline: int | None = None,
    top: int = DEFAULT_TOP,
    by: str | None = None,
    fail_on: str = "never",
    answers: AnswerComparison | None = None,
    plots: bool = True,
) -> list[Path]:
    """Write compare.md, compare.html and plots/compare-*.png into ``out_dir``; return the paths."""
    from analyzer.report.compare_plots import Curve, render_compare_plots, run_color
    from analyzer.report.plots import write_plots

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names, _ = run_names(paths)
    by = ranking_metric(analyses, by)
    rendered: list[Plot] = []
    if plots:
        chosen = curve_runs(analyses, baseline=baseline, top=top, by=by)
        curves = [Curve(names[i], run_color(n), analyses[i].metrics, i == baseline) for n, i in enumerate(chosen)]
        columns = present_metrics(analyses)
        rendered = render_compare_plots(curves, columns)
    written = write_plots(rendered, out_dir / "plots")
    common = {"baseline": baseline, "top": top, "by": by, "fail_on": fail_on, "answers": answers, "plots": rendered}
    md = compare_context(analyses, paths, **common)  # type: ignore[arg-type]
    # compare.html differs only in its images (inlined) and its answer rows (more): the rest of
    # the context (summaries, ranking, gate) is not computed a second time
    html = {
        **md,
        "plots": _plots_view(rendered, lambda p: data_uri(p.png, "image/png")),
        "answers": _answers_view(answers, names, HTML_ANSWER_ROWS),
    }
    for name, text in (("compare.md", render_compare("md", md)), ("compare.html", render_compare("html", html))):
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def format_gate(
    analyses: Sequence[Analysis], paths: Sequence[str | Path], fail_on: str, *, baseline: int | None = None
) -> list[str]:
    """The terminal lines under the table: with a baseline, each run's new alerts; then the
    gate's outcome (nothing when ``fail_on`` is ``never`` and there is no baseline)."""
    from analyzer.report.escape import terminal_text
    from analyzer.verdict import compare_failures, compare_verdict_failures, new_alerts

    names, _ = run_names(paths)
    lines: list[str] = []
    if baseline is not None:
        lines.append("")
        lines.append(f"new alerts vs the baseline {terminal_text(names[baseline])}:")
        for i, a in enumerate(analyses):
            if i == baseline:
                continue
            new = new_alerts(analyses[baseline].alerts, a.alerts)
            listed = ", ".join(
                f"{x['kind']} ({x['severity']}{' ×' + str(x['count']) if x['count'] > 1 else ''})" for x in _grouped(new)
            ) or "none"
            lines.append(f"  {terminal_text(names[i])}: {listed}")
    if fail_on == "never":
        return lines
    failures = compare_failures(analyses, fail_on, baseline=baseline)
    by_verdict = compare_verdict_failures(analyses, fail_on, baseline=baseline)
    scope = "new alerts only" if baseline is not None else "any run"
    if failures or by_verdict:
        failed = sorted({*failures, *by_verdict})
        lines.append(
            f"gate: FAILED (--fail-on {fail_on}, {scope}): "
            + ", ".join(terminal_text(names[i]) for i in failed)
            + "; exit 1"
        )
    else:
        lines.append(f"gate: passed (--fail-on {fail_on}, {scope}); exit 0")
    return lines
