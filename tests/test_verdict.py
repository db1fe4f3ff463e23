"""analyzer.verdict: the one place that decides — fail-on choices, the verdict, exit codes and the
one order of alerts (docs/architecture.md, "Where deciding lives")."""

from __future__ import annotations

import polars as pl
import pytest

from analyzer import verdict as V
from analyzer.errors import EXIT_ALERTS, EXIT_OK, ConfigError
from analyzer.model import Alert, Analysis, IngestReport, RunData, Severity


def run() -> RunData:
    return RunData(path="mem", steps=pl.DataFrame({"step": [1]}), generations=None, report=IngestReport(source_kind="logscan"))


def alert(sev: str, step: int | None = 3, kind: str = "reward_hacking") -> Alert:
    return Alert(kind=kind, severity=Severity(sev), step=step, message="m")


def test_fail_on_choices_and_default_match_the_docs() -> None:
    assert V.FAIL_ON_CHOICES == ("info", "warning", "critical", "limited", "never")
    assert V.DEFAULT_FAIL_ON == "critical"
    assert V.VERDICTS == ("critical", "warnings", "too_short", "limited", "healthy")


def test_resolve_fail_on_flag_beats_config_beats_default() -> None:
    assert V.resolve_fail_on(None, {}) == "critical"
    assert V.resolve_fail_on(None, {"analyze": {"fail_on": "warning"}}) == "warning"
    assert V.resolve_fail_on("never", {"analyze": {"fail_on": "warning"}}) == "never"
    with pytest.raises(ConfigError, match=r"fail_on = 'sometimes' is not one of info, warning, critical, limited, never"):
        V.resolve_fail_on("sometimes", {})


def test_verdict_precedence() -> None:
    assert V.verdict_for([alert("critical")], 2, limited=True) == "critical"
    assert V.verdict_for([alert("warning")], 2, limited=True) == "warnings"
    assert V.verdict_for([alert("info")], 2, limited=True) == "too_short"
    assert V.verdict_for([alert("info")], 50, limited=True) == "limited"
    assert V.verdict_for([alert("info")], 50) == "healthy"
    assert V.min_steps({"general": {"min_steps": 4}}) == 4 and V.min_steps({}) == V.MIN_STEPS


@pytest.mark.parametrize(
    ("verdict", "severities", "fail_on", "expected"),
    [
        ("healthy", [], "limited", EXIT_OK),
        ("limited", [], "limited", EXIT_ALERTS),
        ("too_short", [], "limited", EXIT_ALERTS),
        ("limited", [], "critical", EXIT_OK),
        ("warnings", ["warning"], "critical", EXIT_OK),
        ("warnings", ["warning"], "warning", EXIT_ALERTS),
        ("critical", ["critical"], "never", EXIT_OK),
        ("healthy", ["info"], "info", EXIT_ALERTS),
    ],
)
def test_exit_code_reads_the_typed_fail_on(verdict: str, severities: list[str], fail_on: V.FailOn, expected: int) -> None:
    a = Analysis(run=run(), metrics=pl.DataFrame(), alerts=[alert(s) for s in severities], verdict=verdict, fail_on=fail_on)
    assert V.exit_code(a) == expected


def test_alerts_at_or_above() -> None:
    a = Analysis(run=run(), metrics=pl.DataFrame(), alerts=[alert("critical"), alert("warning"), alert("info")])
    assert [x.severity.value for x in V.alerts_at_or_above(a, "warning")] == ["critical", "warning"]
    assert [x.severity.value for x in V.alerts_at_or_above(a, "limited")] == ["critical", "warning"]
    assert V.alerts_at_or_above(a, "never") == []


def test_one_alert_order_everywhere() -> None:
    alerts = [
        alert("warning", 30, "reward_hacking"),
        alert("info", 1, "semantic_drift"),
        alert("warning", None, "log_integrity"),
        alert("critical", 41, "kl_explosion"),
        alert("warning", 30, "length_hacking"),
    ]
    ordered = [(a.severity.value, a.step, a.kind) for a in V.sort_alerts(alerts)]
    assert ordered == [
        ("critical", 41, "kl_explosion"),
        ("warning", None, "log_integrity"),  # a finding about the whole run, first in its severity
        ("warning", 30, "length_hacking"),
        ("warning", 30, "reward_hacking"),
        ("info", 1, "semantic_drift"),
    ]
    # the detectors' registry and the reports list alerts in this same order
    from analyzer.report.render import _alerts_view

    a = Analysis(run=run(), metrics=pl.DataFrame(), alerts=alerts)
    assert [row["kind"] for row in _alerts_view(a)] == [k for _, _, k in ordered]


def test_analysis_json_still_carries_the_resolved_fail_on() -> None:
    from analyzer.report.data import analysis_to_dict

    a = Analysis(run=run(), metrics=pl.DataFrame({"step": [1]}), config={"general": {}}, fail_on="warning")
    assert analysis_to_dict(a)["config"] == {"general": {}, "fail_on": "warning"}
