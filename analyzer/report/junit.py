"""``report.junit.xml``: one test case per detector, so CI systems show what logscan checked."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analyzer.model import Alert, Analysis

_XML_BAD = re.compile(r"[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(value: Any) -> str:
    return _XML_BAD.sub("", str(value))


def fail_threshold(analysis: Analysis, fail_on: str | None = None) -> str:
    return str(fail_on or analysis.fail_on)


def render_junit(analysis: Analysis, *, fail_on: str | None = None) -> str:
    """JUnit XML: one test case per detector; failed when it raised an alert at or above
    ``fail_on``, skipped when it did not run. Alerts of kinds no detector claims get their own case.
    One more case, ``logscan.verdict/core_checks``, says what was checked: skipped when the core
    checks of the run's kind did not all run (failed for a limited or too-short run under
    ``--fail-on limited``); the suite's properties carry the verdict, run kind and headline."""
    import xml.etree.ElementTree as ET

    from analyzer.coverage import coverage_of
    from analyzer.verdict import alert_threshold

    threshold = fail_threshold(analysis, fail_on)
    severity = alert_threshold(threshold)
    rank = None if severity is None else severity.rank
    names = [d.name for d in analysis.detectors]

    def owner(alert: Alert) -> str:
        det = alert.evidence.get("detector")
        if isinstance(det, str) and det in names:
            return det
        if alert.kind in names:
            return alert.kind
        return next(
            (n for n in names if alert.kind.startswith(n) or n.startswith(alert.kind)), alert.kind
        )

    by_owner: dict[str, list[Alert]] = {}
    for a in analysis.alerts:
        by_owner.setdefault(owner(a), []).append(a)
    cases = [(d.name, d.ran, d.reason) for d in analysis.detectors]
    cases += [(k, True, None) for k in by_owner if k not in names]
    suite_name = f"logscan {analysis.run.info.get('run_id') or analysis.run.path}"
    suite = ET.Element("testsuite", name=_xml_text(suite_name))
    coverage = coverage_of(analysis)
    props = ET.SubElement(suite, "properties")
    for key, value in (
        ("verdict", analysis.verdict),
        ("fail_on", threshold),
        ("run_kind", coverage.kind),
        ("core_checks", f"{len(coverage.ran)}/{len(coverage.core)}"),
        ("checks", coverage.headline()),
    ):
        ET.SubElement(props, "property", name=key, value=_xml_text(value))
    failures = skipped = 0
    for name, ran, reason in cases:
        case = ET.SubElement(suite, "testcase", classname="logscan.detectors", name=_xml_text(name))
        fired = by_owner.get(name, [])
        if not ran:
            skipped += 1
            ET.SubElement(case, "skipped", message=_xml_text(reason or "did not run"))
            continue
        bad = [a for a in fired if rank is not None and a.severity.rank >= rank]
        if bad:
            failures += 1
            worst = max(bad, key=lambda a: a.severity.rank)
            fail = ET.SubElement(
                case,
                "failure",
                message=_xml_text(
                    f"{worst.severity.value}: {worst.kind} at step {worst.step}: {worst.message}"
                ),
                type=worst.severity.value,
            )
            fail.text = _xml_text(
                "\n".join(
                    f"[{a.severity.value}] {a.kind} @ step {a.step}: {a.message}\n  evidence: {json.dumps(a.evidence, default=str, ensure_ascii=False)}"
                    for a in fired
                )
            )
        elif fired:
            out = ET.SubElement(case, "system-out")
            out.text = _xml_text(
                "\n".join(
                    f"[{a.severity.value}] {a.kind} @ step {a.step}: {a.message}" for a in fired
                )
            )
    # what was checked, as a case of its own: skipped when the core checks did not all run (a
    # limited or too-short run), failed only when --fail-on limited asked for it
    case = ET.SubElement(suite, "testcase", classname="logscan.verdict", name="core_checks")
    if analysis.verdict in ("limited", "too_short") or coverage.limited:
        why = coverage.headline() if coverage.limited else f"too short: {coverage.summary()}"
        if threshold == "limited" and analysis.verdict in ("limited", "too_short"):
            failures += 1
            ET.SubElement(case, "failure", message=_xml_text(f"{analysis.verdict}: {why}"), type=analysis.verdict)
        else:
            skipped += 1
            ET.SubElement(case, "skipped", message=_xml_text(f"{analysis.verdict}: {why}"))
    else:
        ET.SubElement(case, "system-out").text = _xml_text(coverage.summary())
    cases.append(("core_checks", True, None))
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(failures))
    suite.set("skipped", str(skipped))
    suite.set("errors", "0")
    root = ET.Element(
        "testsuites",
        name="logscan",
        tests=str(len(cases)),
        failures=str(failures),
        skipped=str(skipped),
        errors="0",
    )
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
