"""Deciding: the ``--fail-on`` choices, the verdict, the exit code and the one order of alerts.

Every command that judges a run (``analyze``, ``html-report``, ``compare``, ``watch``) and every
report that shows the judgement (the terminal summary, report.md/html, JUnit, analysis.json) asks
this module, so a run is judged and listed the same way everywhere (docs/cli.md, "Exit codes").
What *was checked* — the core checks per kind of run behind the ``limited`` verdict — is
``analyzer.coverage``'s table; this module only turns its answer into a verdict.

Cheap to import (the model and the error codes only): the CLI reads ``FAIL_ON_CHOICES`` for
``--help``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast, get_args

from analyzer.errors import EXIT_ALERTS, EXIT_OK, ConfigError
from analyzer.model import Alert, Analysis, FailOn, Severity

# ``limited`` is not a severity: it fails every verdict but ``healthy`` (docs/cli.md).
FAIL_ON_CHOICES: tuple[FailOn, ...] = get_args(FailOn)
DEFAULT_FAIL_ON: FailOn = "critical"
# Worst first: the verdict is the first that applies (docs/detectors.md, "What was checked").
VERDICTS = ("critical", "warnings", "too_short", "limited", "healthy")
# Fewer logged steps than this (config ``general.min_steps``, shared with the detectors, which
# skip their trend checks below it) and the verdict is "too_short" unless an alert at warning or
# above fired (a NaN loss at step 2 is still worth a "critical").
MIN_STEPS = 10


def resolve_fail_on(flag: str | None, config: Mapping[str, Any]) -> FailOn:
    """The ``--fail-on`` flag, else ``[analyze] fail_on`` from the config, else ``critical``;
    raises ``ConfigError`` (exit 2) for a value that is not one of ``FAIL_ON_CHOICES``."""
    value = flag or _section(config, "analyze").get("fail_on") or DEFAULT_FAIL_ON
    if value not in FAIL_ON_CHOICES:
        raise ConfigError(f"fail_on = {value!r} is not one of {', '.join(FAIL_ON_CHOICES)}")
    return cast(FailOn, value)


def min_steps(config: Mapping[str, Any]) -> int:
    """``general.min_steps``: below it a run without warnings is ``too_short``."""
    return int(_section(config, "general").get("min_steps") or MIN_STEPS)


def verdict_for(alerts: Iterable[Alert], steps: int, *, min_steps: int = MIN_STEPS, limited: bool = False) -> str:
    """critical / warnings when such alerts fired; else too_short below ``min_steps``; else limited
    when the core checks of the run's kind could not all run (``analyzer.coverage``); else healthy."""
    worst = max((a.severity.rank for a in alerts), default=-1)
    if worst >= Severity.CRITICAL.rank:
        return "critical"
    if worst >= Severity.WARNING.rank:
        return "warnings"
    if steps < min_steps:
        return "too_short"
    if limited:
        return "limited"
    return "healthy"


def alert_threshold(fail_on: str) -> Severity | None:
    """The alert severity a ``--fail-on`` value fails on: ``limited`` fails warnings (as every
    verdict but healthy), ``never`` none."""
    if fail_on == "never":
        return None
    return Severity.WARNING if fail_on == "limited" else Severity(fail_on)


def alerts_at_or_above(analysis: Analysis, fail_on: str) -> list[Alert]:
    """The analysis' alerts that ``fail_on`` fails on, in the one alert order."""
    threshold = alert_threshold(fail_on)
    if threshold is None:
        return []
    return [a for a in analysis.alerts if a.severity.rank >= threshold.rank]


def exit_code(analysis: Analysis) -> int:
    """0 when no alert is at or above ``analysis.fail_on`` (``never``: always 0), else 1.
    ``limited`` fails every verdict but ``healthy`` (a warning, too few steps, core checks that
    did not run). Errors exit 2, 70 or 130 (``analyzer.errors``, raised, not decided here)."""
    if analysis.fail_on == "never":
        return EXIT_OK
    if analysis.fail_on == "limited":
        return EXIT_OK if analysis.verdict == "healthy" else EXIT_ALERTS
    return EXIT_ALERTS if alerts_at_or_above(analysis, analysis.fail_on) else EXIT_OK


def new_alerts(baseline: Iterable[Alert], candidate: Iterable[Alert]) -> list[Alert]:
    """The candidate's alerts the baseline lacks, in the one alert order: a kind the baseline did
    not raise, or raised only at a lower severity (a critical ``kl_explosion`` is new beside a
    warning one; a warning beside a critical is not). ``compare --baseline``'s regression gate."""
    worst: dict[str, int] = {}
    for a in baseline:
        worst[a.kind] = max(worst.get(a.kind, -1), a.severity.rank)
    return sort_alerts(a for a in candidate if a.severity.rank > worst.get(a.kind, -1))


def compare_failures(
    analyses: Sequence[Analysis], fail_on: str, *, baseline: int | None = None
) -> dict[int, list[Alert]]:
    """What fails ``logscan compare``, by run index: without a baseline, each run's alerts at or
    above ``fail_on``; with ``baseline`` (an index into ``analyses``), each other run's *new*
    alerts (``new_alerts``) at or above it. ``limited`` fails warnings and above; ``never``
    nothing. A run that fails only by its verdict (``limited``, ``too_short``) is in
    ``compare_verdict_failures``."""
    threshold = alert_threshold(fail_on)
    if threshold is None:
        return {}
    out: dict[int, list[Alert]] = {}
    for i, a in enumerate(analyses):
        if i == baseline:
            continue
        alerts = new_alerts(analyses[baseline].alerts, a.alerts) if baseline is not None else sort_alerts(a.alerts)
        failing = [x for x in alerts if x.severity.rank >= threshold.rank]
        if failing:
            out[i] = failing
    return out


def compare_verdict_failures(analyses: Sequence[Analysis], fail_on: str, *, baseline: int | None = None) -> list[int]:
    """``--fail-on limited`` in ``compare``: the runs whose verdict is not ``healthy`` (with a
    baseline: the other runs whose verdict is worse than the baseline's)."""
    if fail_on != "limited":
        return []
    if baseline is None:
        return [i for i, a in enumerate(analyses) if a.verdict != "healthy"]
    rank = {v: n for n, v in enumerate(VERDICTS)}  # worst first
    base = rank.get(analyses[baseline].verdict, len(VERDICTS))
    return [i for i, a in enumerate(analyses) if i != baseline and rank.get(a.verdict, len(VERDICTS)) < base]


def compare_exit_code(analyses: Sequence[Analysis], fail_on: str, *, baseline: int | None = None) -> int:
    """1 when ``compare_failures`` or ``compare_verdict_failures`` names a run, else 0."""
    failed = compare_failures(analyses, fail_on, baseline=baseline) or compare_verdict_failures(
        analyses, fail_on, baseline=baseline
    )
    return EXIT_ALERTS if failed else EXIT_OK


def alert_order(alert: Alert) -> tuple[int, int, str]:
    """The one order of alerts, everywhere they are listed: worst first, then by the step the
    evidence first held (an alert about the whole run, without a step, first), then by kind."""
    return (-alert.severity.rank, alert.step if alert.step is not None else -1, alert.kind)


def sort_alerts(alerts: Iterable[Alert]) -> list[Alert]:
    """``alerts`` in the one alert order (``alert_order``)."""
    return sorted(alerts, key=alert_order)


def _section(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = config.get(name)
    return value if isinstance(value, Mapping) else {}
