"""The one Jinja environment, and the reports rendered with it: report.md and report.html (the
view model, ``report_context``); ``write_reports`` also writes the plots and the JUnit XML.

Templates are found in a user template folder first (``report.template_dir`` in the config, or
the ``template_dir`` argument), then in the installed ``analyzer.templates`` package (read through
``importlib.resources``, so a wheel install works). ``StrictUndefined`` turns a template typo into
an error instead of an empty cell; HTML templates are autoescaped.

Model output is untrusted. In HTML it is autoescaped, and the completions table is embedded as
JSON in a ``<script type="application/json">`` block with ``<``, ``>``, ``&`` and U+2028/9
escaped, then turned into DOM nodes with ``textContent`` only; a Content-Security-Policy that
allows only the page's own script (by hash) backs that up. In Markdown every model-derived value
goes through ``md`` (inline / table cells) or ``md_fence`` (code blocks whose fence is longer
than any backtick run in the text).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analyzer import __version__, catalogue
from analyzer import columns as C
from analyzer.errors import ConfigError
from analyzer.report.completions import (
    TABLE_ROW_LIMIT,
    completions_table,
    lookup_samples,
    sample_ids,
)
from analyzer.report.data import analysis_to_dict, coverage_note
from analyzer.report.escape import excerpt, md_code, md_escape, md_fence, md_html, script_json
from analyzer.report.junit import render_junit
from analyzer.report.numbers import fmt, fmt_signed
from analyzer.report.plots import config_get, label  # stdlib + columns at import: no matplotlib

if TYPE_CHECKING:
    import jinja2

    from analyzer.model import Analysis
    from analyzer.report.plots import Plot, SkippedPlot

TEMPLATE_PACKAGE = "analyzer.templates"  # the repository's templates/ folder, installed inside the analyzer
MD_TEMPLATE = "report.md.j2"
HTML_TEMPLATE = "report.html.j2"
HTML_SCRIPT = "report.js"
HTML_STYLE = "report.css"

MD_DIFFS = 3  # sample diffs shown in report.md (PR comments have a 65,536-character limit)
HTML_DIFFS = 20
DIFF_LINES = 60
EVIDENCE_SAMPLES = 3

VERDICTS: Mapping[str, tuple[str, str]] = {
    "healthy": ("🟢", "healthy"),
    "warnings": ("🟠", "warnings"),
    "critical": ("🔴", "critical"),
    "too_short": ("⚪", "too short"),
    "limited": ("🟡", "limited"),
}
SEVERITY_ICONS = {"critical": "🔴", "warning": "🟠", "info": "🔵"}

# --------------------------------------------------------------------------------------------
# The environment


class _PackageLoader:
    """Loads templates from the installed ``templates`` package via importlib.resources."""

    def __init__(self, package: str) -> None:
        self.package = package

    def __call__(self, name: str) -> tuple[str, str | None, Callable[[], bool]] | None:
        from importlib import resources

        if "/" in name or "\\" in name or name.startswith("."):
            return None
        res = resources.files(self.package).joinpath(name)
        if not res.is_file():
            return None
        return res.read_text(encoding="utf-8"), None, lambda: True


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates kept in logscan's user cache (``LOGSCAN_CACHE_DIR``/``~/.cache/logscan``):
    compiling report.md's and report.html's templates costs ~0.4 CPU-seconds per analysis. Jinja
    keys each entry on the template's source checksum, so an edited or user template compiles
    anew; a cache that cannot be read or written is skipped, never an error."""
    import jinja2

    from analyzer.embeddings import user_cache_dir

    class Quiet(jinja2.FileSystemBytecodeCache):
        def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
            with contextlib.suppress(OSError, ValueError, EOFError):
                super().load_bytecode(bucket)

        def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
            with contextlib.suppress(OSError):
                super().dump_bytecode(bucket)

    folder = user_cache_dir() / "jinja"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return Quiet(str(folder))


def _autoescape(name: str | None) -> bool:
    return bool(name) and str(name).endswith((".html", ".html.j2", ".htm", ".xml", ".xml.j2"))


@functools.lru_cache(maxsize=8)
def environment(template_dir: str | None = None) -> jinja2.Environment:
    """THE Jinja environment: user ``template_dir`` first, then the packaged templates."""
    import jinja2

    loaders: list[jinja2.BaseLoader] = []
    if template_dir:
        folder = Path(template_dir)
        if not folder.is_dir():
            raise ConfigError(
                f"template folder {template_dir} does not exist; fix report.template_dir or remove it"
            )
        loaders.append(jinja2.FileSystemLoader(str(folder)))
    loaders.append(jinja2.FunctionLoader(_PackageLoader(TEMPLATE_PACKAGE)))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        autoescape=_autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        bytecode_cache=_bytecode_cache(),
    )
    filters = (md_escape, md_html, md_code, md_fence, excerpt, fmt, fmt_signed)
    names = ("md", "md_html", "md_code", "md_fence", "excerpt", "fmt", "fmt_signed")
    env.filters.update(zip(names, filters, strict=True))
    return env


def template_source(env: jinja2.Environment, name: str) -> str:
    """The raw text of a non-template asset (CSS, JS) found the same way as templates."""
    assert env.loader is not None
    source, _, _ = env.loader.get_source(env, name)
    return source


def resolve_template_dir(analysis: Analysis, template_dir: str | Path | None = None) -> str | None:
    chosen = template_dir or config_get(analysis.config or {}, "report.template_dir")
    # Absolute, so the cached environment does not depend on a later working directory.
    return str(Path(str(chosen)).expanduser().absolute()) if chosen else None


def default_output_dir(analysis: Analysis) -> Path:
    """The pipeline's ``output_dir`` when it recorded one, else ``RUN/logscan/`` (next to the run
    file when RUN is a file)."""
    from analyzer.paths import run_output_dir

    if analysis.output_dir:
        return Path(analysis.output_dir)
    return run_output_dir(Path(analysis.run.path))


# --------------------------------------------------------------------------------------------
# The view model: everything the templates show, computed here so templates stay dumb.

# The key-metrics table, the core metrics a reader expects in any RL run (listed as absent when
# missing) and the PPO mechanics table: the lists of the metric catalogue (analyzer.catalogue).
KEY_METRICS: tuple[str, ...] = catalogue.KEY
CORE_METRICS: tuple[str, ...] = catalogue.CORE
PPO_METRICS: tuple[str, ...] = catalogue.PPO


# A run can have thousands of reward functions: the key-metrics table lists at most this many
# per pattern (those whose value moved most), the completions table shows at most this many
# rewards per completion, and "All metrics" at most MAX_ALL_METRIC_ROWS rows; analysis.json and
# the parquet files hold every one.
MAX_PER_PATTERN = 12
MAX_ALL_METRIC_ROWS = 1000


def _expand(patterns: Iterable[str], names: Iterable[str], summary: Mapping[str, Any] | None = None) -> tuple[list[str], int]:
    """The metric names the patterns select, in order, and how many a pattern matched beyond
    ``MAX_PER_PATTERN`` (left out: those whose range in ``summary`` is smallest)."""
    names = list(names)
    out: list[str] = []
    seen: set[str] = set()
    hidden = 0
    for pat in patterns:
        if pat.startswith("<"):
            body = pat[1:-1]
            prefix, _, suffix = body.partition("*")
            # One level only: reward/<fn> but not TRL's reward/<fn>/std.
            found = sorted(
                n
                for n in names
                if n.startswith(prefix)
                and n.endswith(suffix)
                and "/" not in n[len(prefix) : len(n) - len(suffix)]
                and n not in seen
            )
            if len(found) > MAX_PER_PATTERN:
                hidden += len(found) - MAX_PER_PATTERN
                moved = set(sorted(found, key=lambda n: -_range(summary, n))[:MAX_PER_PATTERN])
                found = [n for n in found if n in moved]
            out += found
            seen.update(found)
        elif pat in names and pat not in seen:
            out.append(pat)
            seen.add(pat)
    return out, hidden


def _range(summary: Mapping[str, Any] | None, name: str) -> float:
    s = (summary or {}).get(name) or {}
    lo, hi = s.get("min"), s.get("max")
    return float(hi - lo) if isinstance(lo, float | int) and isinstance(hi, float | int) else 0.0


def _trend(summary: Mapping[str, Any]) -> tuple[str, str]:
    """(arrow, change implied by the fitted trend over the run)."""
    slope = summary.get("trend_slope")
    if slope is None:
        return "·", "—"
    span = (summary.get("last_step") or 0) - (summary.get("first_step") or 0)
    # A fitted line can overshoot what the metric did (a share's slope × span can read +1.06):
    # the change shown stays within the metric's own observed range.
    observed = abs(summary["max"] - summary["min"])
    change = max(-observed, min(observed, slope * span))
    scale = max(observed, abs(summary["mean"]), 1e-12)
    arrow = "→" if abs(change) < 0.05 * scale else ("↗" if change > 0 else "↘")
    return arrow, fmt_signed(change)


# An RL policy's loss is not a score: its lowest value says nothing about the run, so the
# reports show no "best" for it (analysis.json keeps the field).
NO_BEST_SHOWN = frozenset({C.LOSS, C.POLICY_LOSS})


def _metric_row(name: str, s: Mapping[str, Any]) -> dict[str, Any]:
    arrow, change = _trend(s)
    return {
        "name": name,
        "label": label(name),
        "first": fmt(s["first"]),
        "best": "—" if name in NO_BEST_SHOWN else fmt(s["best"]),
        "last": fmt(s["last"]),
        "min": fmt(s["min"]),
        "max": fmt(s["max"]),
        "mean": fmt(s["mean"]),
        "n": s["n"],
        "arrow": arrow,
        "change": change,
        "note": None,  # a caveat shown beside the metric (the accuracy's coverage)
    }


EVIDENCE_TABLE_ROWS = 5
EVIDENCE_TABLE_COLUMNS = 7
EVIDENCE_CELL = 60  # characters of a text cell in an evidence table


def _evidence_key(key: Any) -> str:
    return str(key).replace("_", " ")


def _fmt_evidence(value: Any) -> str:
    """One evidence value on one line: numbers formatted, lists shortened, a mapping as
    ``key value`` pairs (never raw JSON cut mid-string)."""
    if value is None:  # a value the detector could not know (e.g. no max length logged)
        return "—"
    if isinstance(value, float | int) and not isinstance(value, bool):
        return fmt(value)
    if isinstance(value, list | tuple):
        items = [_fmt_evidence(v) for v in value[:8]]
        more = f", … ({len(value)} in all)" if len(value) > 8 else ""
        return "[" + ", ".join(items) + more + "]"
    if isinstance(value, Mapping):
        return ", ".join(f"{_evidence_key(k)} {_fmt_evidence(v)}" for k, v in value.items())
    return excerpt(value, 200)


def _evidence_item(key: str, value: Any) -> dict[str, Any]:
    """An evidence entry as the templates show it: ``text`` for a plain value, ``fields`` (sub-
    bullets) for a mapping, ``table`` for a list of mappings (e.g. the prompts drifting most)."""
    item: dict[str, Any] = {"key": _evidence_key(key), "text": "", "fields": [], "table": None}
    if isinstance(value, Mapping) and value:
        item["fields"] = [(_evidence_key(k), _fmt_evidence(v)) for k, v in value.items()]
    elif isinstance(value, list | tuple) and value and all(isinstance(v, Mapping) for v in value):
        columns: list[str] = []
        for row in value[:EVIDENCE_TABLE_ROWS]:
            columns += [str(k) for k in row if str(k) not in columns]
        columns = columns[:EVIDENCE_TABLE_COLUMNS]
        rows = [
            [
                excerpt(row.get(c), EVIDENCE_CELL) if isinstance(row.get(c), str) else _fmt_evidence(row.get(c))
                for c in columns
            ]
            for row in value[:EVIDENCE_TABLE_ROWS]
        ]
        item["table"] = {
            "columns": [_evidence_key(c) for c in columns],
            "rows": rows,
            "more": max(0, len(value) - EVIDENCE_TABLE_ROWS),
        }
    else:
        item["text"] = _fmt_evidence(value)
    return item


def _alerts_view(analysis: Analysis) -> list[dict[str, Any]]:
    from analyzer.verdict import sort_alerts

    alerts = sort_alerts(analysis.alerts)
    samples = lookup_samples(
        analysis, (i for a in alerts for i in sample_ids(a)[:EVIDENCE_SAMPLES])
    )
    out = []
    for n, a in enumerate(alerts, start=1):
        ids = sample_ids(a)
        shown = []
        for sid in ids[:EVIDENCE_SAMPLES]:
            row = samples.get(sid, {})
            shown.append(
                {
                    "id": sid,
                    "step": row.get(C.STEP),
                    "split": row.get(C.SPLIT) or "",
                    "reward": fmt(row.get(C.TOTAL_REWARD)) if row else "—",
                    "question_id": row.get(C.QUESTION_ID) or "",
                    "text": row.get(C.OUTPUT) or "",
                    "found": bool(row),
                }
            )
        evidence = [_evidence_item(k, v) for k, v in a.evidence.items() if k != "sample_ids"]
        out.append(
            {
                "n": n,
                "kind": a.kind,
                "severity": a.severity.value,
                "icon": SEVERITY_ICONS.get(a.severity.value, ""),
                "step": a.step,
                "message": a.message,
                "evidence": evidence,
                "samples": shown,
                "more_samples": max(0, len(ids) - len(shown)),
                "sample_ids": ids,
            }
        )
    return out


def _verdict_view(
    analysis: Analysis, alerts: list[dict[str, Any]], summary: Mapping[str, Any]
) -> dict[str, Any]:
    icon, text = VERDICTS.get(analysis.verdict, ("", analysis.verdict.replace("_", " ")))
    counts = {
        s: sum(1 for a in alerts if a["severity"] == s) for s in ("critical", "warning", "info")
    }
    worst = alerts[0] if alerts else None
    parts = [f"{counts[s]} {s}" for s in ("critical", "warning", "info") if counts[s]]
    from analyzer.coverage import coverage_of

    coverage = coverage_of(analysis)
    return {
        "key": analysis.verdict,
        "icon": icon,
        "text": text,
        "worst": worst,
        "counts": counts,
        "counts_text": ", ".join(parts) if parts else "no alerts",
        "steps": summary.get("steps", 0),
        # what was checked: the headline of a limited run; under any other verdict, the headline
        # when core checks did not run, else how many ran
        "checks": coverage.headline() if coverage.limited else coverage.summary(),
    }


def _diffs_view(analysis: Analysis, limit: int) -> list[dict[str, Any]]:
    if analysis.drift is None:
        return []
    # Most changed first: lowest similarity, then largest semantic distance.
    diffs = sorted(
        analysis.drift.sample_diffs,
        key=lambda d: (d.similarity, -(d.semantic_distance or 0.0)),
    )[:limit]
    out = []
    for d in diffs:
        lines = d.unified_diff.splitlines()
        truncated = max(0, len(lines) - DIFF_LINES)
        out.append(
            {
                **dataclasses.asdict(d),
                "diff_text": "\n".join(lines[:DIFF_LINES]),
                "diff_lines": [
                    (
                        "add"
                        if ln.startswith("+") and not ln.startswith("+++")
                        else "del"
                        if ln.startswith("-") and not ln.startswith("---")
                        else "hunk"
                        if ln.startswith("@@")
                        else "ctx",
                        ln,
                    )
                    for ln in lines[:DIFF_LINES]
                ],
                "truncated_lines": truncated,
            }
        )
    return out


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _display_path(path: str) -> str:
    """The run path as the user typed it, unless that names no folder (``.``, ``..``, ``./``):
    then the resolved folder's name, so the report says ``run sample-grpo`` rather than ``run .``."""
    if Path(path).name in ("", ".", ".."):
        return Path(path).resolve().name or path
    return path


def report_context(
    analysis: Analysis,
    *,
    plots: Sequence[Plot] = (),
    skipped_plots: Sequence[SkippedPlot] = (),
    image_src: Callable[[Plot], str] | None = None,
    generated_at: str | None = None,
    diffs: int = MD_DIFFS,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything report.md.j2 / report.html.j2 render. Pure data, no markup. ``data`` is
    ``analysis_to_dict(analysis)`` when the caller already has it (``write_reports`` renders two
    reports from one)."""
    if data is None:
        data = analysis_to_dict(analysis, generated_at=generated_at)
    summary = data["metrics"]
    alerts = _alerts_view(analysis)
    key_names, key_hidden = _expand(KEY_METRICS, summary.keys(), summary)
    ppo = [n for n in PPO_METRICS if n in summary]
    src = image_src or (lambda p: f"plots/{p.filename}")
    ingest = data["ingest"]
    detectors = data["detectors"]
    drift = data["drift"]
    run = data["run"]
    run_display = _display_path(str(run["path"]))
    title_id = run.get("run_id") or Path(run_display).name or run_display
    # the recomputed accuracy is shown with its coverage wherever it is shown
    acc_note = coverage_note(data["summary"].get("answers"))
    metric_rows = [_metric_row(n, summary[n]) for n in key_names]
    for row in metric_rows:
        if row["name"] == C.GEN_ACCURACY and acc_note:
            row["note"] = acc_note
    return {
        "title": f"logscan report — {title_id}",
        "run_label": title_id,
        "run_display": run_display,
        "data": data,
        "run": run,
        "summary": data["summary"],
        "verdict": _verdict_view(analysis, alerts, data["summary"]),
        "alerts": alerts,
        "metric_rows": metric_rows,
        "answers": data["summary"].get("answers"),
        "metric_rows_hidden": key_hidden,
        "all_metric_rows": [_metric_row(n, summary[n]) for n in sorted(summary)[:MAX_ALL_METRIC_ROWS]],
        "all_metric_count": len(summary),
        "absent_metrics": [n for n in CORE_METRICS if n not in summary],
        "ppo_rows": [_metric_row(n, summary[n]) for n in ppo]
        if (C.VALUE_LOSS in summary or C.CLIP_FRACTION in summary or C.POLICY_LOSS in summary)
        else [],
        "plots": [
            {
                "name": p.name,
                "title": p.title,
                "src": src(p),
                "alerts": p.alerts,
                "columns": p.columns,
                "note": acc_note if C.GEN_ACCURACY in p.columns else None,
            }
            for p in plots
        ],
        "skipped_plots": [{"name": s.name, "reason": s.reason} for s in skipped_plots],
        "coverage": data["coverage"],
        "detectors_ran": [d for d in detectors if d["ran"]],
        "detectors_skipped": [d for d in detectors if not d["ran"]],
        "ingest": ingest,
        "ingest_issues": ingest["issues"][:20],
        "ingest_issues_more": max(0, len(ingest["issues"]) - 20),
        "unknown_keys": ingest["unknown_keys"],
        "drift": drift,
        "top_drifting": (drift or {}).get("top_drifting", [])[:10],
        "diffs": _diffs_view(analysis, diffs),
        "diff_count": len(analysis.drift.sample_diffs) if analysis.drift else 0,
        "config_json": json.dumps(data["config"], indent=2, sort_keys=True, default=str),
        "run_config_json": json.dumps(
            run.get("config") or {}, indent=2, sort_keys=True, default=str
        ),
        "timings": data["timings"],
        "total_seconds": data["timings"].get("total")
        or sum(v for v in data["timings"].values() if isinstance(v, int | float)),
        "notes": [str(n) for n in analysis.notes],
        "version": __version__,
        "generated_at": data["generated_at"],
    }


# --------------------------------------------------------------------------------------------
# Writers


def render_markdown(
    analysis: Analysis,
    *,
    plots: Sequence[Plot] = (),
    skipped_plots: Sequence[SkippedPlot] = (),
    inline_images: bool = False,
    template_dir: str | Path | None = None,
    generated_at: str | None = None,
    data: dict[str, Any] | None = None,
) -> str:
    env = environment(resolve_template_dir(analysis, template_dir))
    src = (lambda p: data_uri(p.png, "image/png")) if inline_images else None
    ctx = report_context(
        analysis,
        plots=plots,
        skipped_plots=skipped_plots,
        image_src=src,
        generated_at=generated_at,
        data=data,
    )
    return env.get_template(MD_TEMPLATE).render(**ctx)


def render_html(
    analysis: Analysis,
    *,
    plots: Sequence[Plot] = (),
    skipped_plots: Sequence[SkippedPlot] = (),
    template_dir: str | Path | None = None,
    generated_at: str | None = None,
    table_limit: int = TABLE_ROW_LIMIT,
    data: dict[str, Any] | None = None,
) -> str:
    """The self-contained page: plots as data URIs, table data as escaped JSON, CSP by hash."""
    from markupsafe import Markup

    env = environment(resolve_template_dir(analysis, template_dir))
    ctx = report_context(
        analysis,
        plots=plots,
        skipped_plots=skipped_plots,
        image_src=lambda p: data_uri(p.png, "image/png"),
        generated_at=generated_at,
        diffs=HTML_DIFFS,
        data=data,
    )
    rows, info = completions_table(analysis, limit=table_limit)
    script = template_source(env, HTML_SCRIPT)
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    ctx.update(
        table_info=info,
        table_json=Markup(script_json({"rows": rows, "info": info})),
        script=Markup(script),
        style=Markup(template_source(env, HTML_STYLE)),
        # Our own constant (quotes must stay quotes for readers of the page source).
        csp=Markup(
            "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
            f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
        ),
    )
    return env.get_template(HTML_TEMPLATE).render(**ctx)


def write_reports(
    analysis: Analysis,
    out_dir: Path,
    *,
    junit: bool = False,
    md_inline_images: bool = False,
    plots: bool = True,
    html: bool = True,
    svg: bool = False,
    fail_on: str | None = None,
    template_dir: str | Path | None = None,
    metrics_summary: dict[str, dict[str, Any]] | None = None,
) -> list[Path]:
    """Write report.md, report.html, plots/*.png (and .svg), report.junit.xml; return the paths.

    ``metrics_summary``: ``report_data.summarize_metrics(analysis.metrics)`` when the caller
    already has it (the pipeline shares one with ``analysis.json``)."""
    from analyzer.report.plots import render_plots, write_plots

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    rendered: list[Plot] = []
    skipped: list[SkippedPlot] = []
    if plots:
        rendered, skipped = render_plots(
            analysis, svg=svg or bool(config_get(analysis.config or {}, "report.svg"))
        )
        written += write_plots(rendered, out_dir / "plots")
    # both reports from the same inputs: the plots, the skipped ones, the templates, one data dict
    shared: dict[str, Any] = {
        "plots": rendered,
        "skipped_plots": skipped,
        "template_dir": template_dir,
        "data": analysis_to_dict(analysis, metrics_summary=metrics_summary),
    }

    def write(name: str, text: str) -> None:
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)

    write("report.md", render_markdown(analysis, inline_images=md_inline_images, **shared))
    if html:
        write("report.html", render_html(analysis, **shared))
    if junit:
        write("report.junit.xml", render_junit(analysis, fail_on=fail_on))
    return written


def write_html_report(
    analysis: Analysis,
    path: Path | str | None = None,
    *,
    template_dir: str | Path | None = None,
    plots: bool = True,
) -> Path:
    """Write the self-contained report.html (default ``<output_dir>/report.html``)."""
    from analyzer.report.plots import render_plots

    target = Path(path) if path is not None else default_output_dir(analysis) / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    rendered, skipped = render_plots(analysis) if plots else ([], [])
    target.write_text(
        render_html(analysis, plots=rendered, skipped_plots=skipped, template_dir=template_dir),
        encoding="utf-8",
    )
    return target
