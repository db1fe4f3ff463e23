"""``logscan watch``'s live views, drawn with ``rich`` on a terminal.

- compact (default): one status line, then the latest step's reward, KL, completion length (and
  the other watched metrics) with the step each is from, then the alerts, worst first;
- detailed (``--verbose``): also the per-function rewards, the PPO mechanics, accuracy and
  format, the latest completions with their rewards, and the newest alerts' evidence.

Every text that comes from the run — model output, prompts, reward names, alert messages (which
quote logged keys) — is untrusted: it is made terminal-safe (``terminal_text``: control
characters and escape sequences shown as ``\\x1b``…, line breaks as ⏎) and handed to rich as
plain :class:`rich.text.Text`, never parsed as rich markup.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import TYPE_CHECKING, Any

from analyzer import catalogue
from analyzer import columns as C
from analyzer.coverage import coverage_of
from analyzer.report.escape import terminal_text
from analyzer.report.numbers import fmt
from analyzer.values import finite_or_none

if TYPE_CHECKING:
    import polars as pl

    from analyzer.model import Analysis

COMPACT: tuple[str, ...] = (C.REWARD, C.GEN_REWARD_MEAN, C.KL, C.GEN_LEN_CHARS)
LATEST_COMPLETIONS = 6
NEWEST_ALERTS = 3
HEADLINE_CHARS = 200  # the limited verdict's headline, cut (logscan analyze prints it whole)
_SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def _safe(value: object, limit: int | None = None) -> Any:
    from rich.text import Text

    text = terminal_text(value)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return Text(text)


def latest(metrics: pl.DataFrame, key: str) -> tuple[int, float] | None:
    """The last finite value of ``key`` and its step."""
    import polars as pl

    if key not in metrics.columns or C.STEP not in metrics.columns:
        return None
    got = metrics.select(C.STEP, key).filter(pl.col(key).is_not_null() & pl.col(key).cast(pl.Float64).is_finite()).tail(1)
    if got.height == 0:
        return None
    step, value = got.row(0)
    return int(step), float(value)


def status_line(analysis: Analysis, took: float | None = None) -> str:
    m = analysis.metrics
    top = m.get_column(C.STEP).max() if C.STEP in m.columns and m.height else None
    last = "none" if top is None else str(int(top))  # type: ignore[arg-type]
    coverage = coverage_of(analysis)
    status = analysis.run.info.get("status") or "unknown"
    n = analysis.run.generations.height if analysis.run.generations is not None else 0
    timing = f"  refresh {took:.2f} s" if took is not None else ""
    return (
        f"{_dt.datetime.now().strftime('%H:%M:%S')}  {terminal_text(analysis.run.path)}  status {terminal_text(status)}  "
        f"last step {last}  completions {n:,}  verdict {analysis.verdict} "
        f"({len(coverage.ran)}/{len(coverage.core)} core checks){timing}"
    )


def _metric_table(analysis: Analysis, keys: tuple[str, ...], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left", expand=False, show_edge=False, pad_edge=False)
    table.add_column("metric")
    table.add_column("latest", justify="right")
    table.add_column("step", justify="right")
    for key in keys:
        got = latest(analysis.metrics, key)
        if got is not None:
            table.add_row(_safe(catalogue.label_of(key) if key in catalogue.WATCH or key in catalogue.PPO else key), fmt(got[1]), str(got[0]))
    return table if table.row_count else None


def _alerts_table(analysis: Analysis, limit: int) -> Any:
    from rich.table import Table
    from rich.text import Text

    if not analysis.alerts:
        return Text("no alerts", style="green")
    table = Table(title=f"alerts ({len(analysis.alerts)}, worst first)", title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("severity")
    table.add_column("kind")
    table.add_column("step", justify="right")
    table.add_column("message", overflow="fold")
    for a in analysis.alerts[:limit]:
        table.add_row(Text(a.severity.value.upper(), style=_SEVERITY_STYLE.get(a.severity.value, "")), _safe(a.kind),
                      "" if a.step is None else str(a.step), _safe(a.message))
    return table


def _rewards(analysis: Analysis) -> tuple[str, ...]:
    return tuple(c for c in analysis.metrics.columns if c.startswith("gen_reward/") and c.endswith("_mean"))


def _completions(analysis: Analysis) -> Any:
    from rich.table import Table

    gens = analysis.run.generations
    if gens is None or gens.height == 0:
        return None
    tail = gens.tail(LATEST_COMPLETIONS)
    table = Table(title="latest completions", title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("step", justify="right")
    table.add_column("reward", justify="right", min_width=6)
    names = [c for c in gens.columns if c.startswith(C.REWARD_PREFIX)][:4]
    for c in names:
        table.add_column(_safe(c[len(C.REWARD_PREFIX):], 12), justify="right", min_width=6)
    table.add_column("completion", overflow="ellipsis", no_wrap=True)
    for row in tail.iter_rows(named=True):
        table.add_row(
            str(row.get(C.STEP)), fmt(finite_or_none(row.get(C.TOTAL_REWARD))),
            *[fmt(finite_or_none(row.get(c))) for c in names],
            _safe(row.get(C.OUTPUT) or "", 400),
        )
    return table


def _evidence(analysis: Analysis) -> Any:
    from rich.table import Table

    newest = sorted((a for a in analysis.alerts if a.step is not None), key=lambda a: -(a.step or 0))[:NEWEST_ALERTS]
    if not newest:
        return None
    table = Table(title="newest alerts' evidence", title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("alert")
    table.add_column("evidence", overflow="fold")
    for a in newest:
        ev = json.dumps(a.evidence, ensure_ascii=False, default=str, separators=(", ", ": "))
        table.add_row(_safe(f"{a.kind} @ step {a.step}"), _safe(ev, 600))
    return table


def live_view(analysis: Analysis, *, verbose: bool = False, took: float | None = None) -> Any:
    """The renderable of one refresh (compact, or detailed with ``verbose``)."""
    from rich.console import Group
    from rich.text import Text

    parts: list[Any] = [Text(status_line(analysis, took), style="bold")]
    if analysis.verdict == "limited":
        parts.append(_safe("limited: " + coverage_of(analysis).headline(), HEADLINE_CHARS))
    keys = COMPACT + tuple(k for k in catalogue.WATCH if k not in COMPACT) if verbose else COMPACT
    if (block := _metric_table(analysis, keys, "latest")) is not None:
        parts.append(block)
    # the alerts before the details: a terminal too short for the whole view crops the bottom
    parts.append(_alerts_table(analysis, 10 if verbose else 5))
    if verbose:
        for block in (
            _evidence(analysis),
            _metric_table(analysis, _rewards(analysis), "rewards per function (mean)"),
            _metric_table(analysis, catalogue.PPO, "PPO mechanics"),
            _metric_table(analysis, (C.GEN_ACCURACY, C.GEN_FORMAT_OK, f"eval/{C.GEN_ACCURACY}"), "accuracy and format"),
            _completions(analysis),
        ):
            if block is not None:
                parts.append(block)
    return Group(*parts)


def plain_line(analysis: Analysis, took: float | None = None) -> str:
    """One line per refresh when stdout is not a terminal (CI logs): status, the compact metrics
    with their steps, and the alerts' count and worst."""
    bits = [status_line(analysis, took)]
    for key in COMPACT:
        got = latest(analysis.metrics, key)
        if got is not None:
            bits.append(f"{key} {fmt(got[1])}@{got[0]}")
    if analysis.alerts:
        a = analysis.alerts[0]
        bits.append(f"alerts {len(analysis.alerts)} (worst: {a.severity.value} {terminal_text(a.kind)}" + (f" @ step {a.step})" if a.step is not None else ")"))
    else:
        bits.append("no alerts")
    return "  ".join(bits)


class LiveDisplay:
    """Draws each refresh in place on a terminal (``rich.live.Live``); lines that must stay (a
    STOP request, the end of the watch) are printed above the view."""

    def __init__(self, *, verbose: bool = False, console: Any = None) -> None:
        from rich.console import Console

        self.verbose = verbose
        self.console = console or Console()
        self._live: Any = None

    def __enter__(self) -> LiveDisplay:
        from rich.live import Live
        from rich.text import Text

        self._live = Live(Text("logscan watch: reading the run…"), console=self.console, auto_refresh=False, transient=False)
        self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._live.__exit__(*exc)

    def show(self, analysis: Analysis, took: float) -> None:
        self._live.update(live_view(analysis, verbose=self.verbose, took=took), refresh=True)

    def echo(self, text: str) -> None:
        from rich.text import Text

        self._live.console.print(Text(terminal_text(text)))
