"""Reports: golden report.md and HTML outline, Markdown/HTML escaping of model text, JUnit, schema.

Regenerate the golden files after an intended change with:
    LOGSCAN_UPDATE_GOLDEN=1 python -m pytest tests/test_render.py
"""

from __future__ import annotations

import base64
import dataclasses
import difflib
import hashlib
import json
import os
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest
import render_fixture

from analyzer.errors import ConfigError
from analyzer.model import Alert, Analysis, DetectorStatus, IngestReport, RunData, Severity
from analyzer.report import render
from analyzer.report.completions import completions_table
from analyzer.report.data import analysis_to_dict, load_schema
from analyzer.report.escape import md_code, md_escape, md_fence, script_json
from analyzer.report.junit import render_junit
from analyzer.report.numbers import fmt
from analyzer.report.render import (
    render_html,
    render_markdown,
    write_html_report,
    write_reports,
)

GOLDEN = Path(__file__).parent / "golden"
REGEN = "LOGSCAN_UPDATE_GOLDEN=1 python -m pytest tests/test_render.py"


# --- helpers ------------------------------------------------------------------------------------


def normalise_md(text: str) -> str:
    text = re.sub(r"logscan \d+\.\d+\.\d+\S*", "logscan VERSION", text)
    text = re.sub(r"generated \S+", "generated TIME", text)
    text = re.sub(r"analysis took [\d.]+ s", "analysis took N s", text)
    return text


class _Outline(HTMLParser):
    """The page's structure: one line per element (tag, id, classes), heading/th/summary texts,
    data-URI images reduced to their MIME type; script/style bodies dropped."""

    VOID = frozenset({"meta", "img", "input", "br", "link", "hr"})
    TEXT = frozenset(
        {
            "h1",
            "h2",
            "h3",
            "th",
            "summary",
            "title",
            "dt",
            "figcaption",
            "label",
            "option",
            "button",
        }
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        desc = tag
        if a.get("id"):
            desc += "#" + a["id"]
        if a.get("class"):
            desc += "." + ".".join(a["class"].split())
        if tag == "img":
            desc += f"[src={(a.get('src') or '').split(';')[0]}]"
        if tag == "meta" and a.get("http-equiv"):
            desc += f"[{a['http-equiv']}={re.sub(r'sha256-[A-Za-z0-9+/=]+', 'sha256-HASH', a.get('content', ''))}]"
        if tag == "meta" and a.get("name") == "generator":
            return
        if tag == "script":
            desc += f"[type={a.get('type', 'text/javascript')}]"
        self.lines.append("  " * len(self.stack) + desc)
        if tag not in self.VOID:
            self.stack.append(tag)
            self.text = []

    def handle_endtag(self, tag):
        if tag in self.VOID or not self.stack:
            return
        if self.stack[-1] in self.TEXT:
            t = " ".join("".join(self.text).split())
            if t:
                self.lines.append("  " * len(self.stack) + "| " + t)
        while self.stack and self.stack.pop() != tag:
            pass
        self.text = []

    def handle_data(self, data):
        if self.stack and self.stack[-1] in ("script", "style"):
            return
        self.text.append(data)


def html_outline(html: str) -> str:
    parser = _Outline()
    parser.feed(html)
    return normalise_md("\n".join(parser.lines)) + "\n"


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("LOGSCAN_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    assert path.exists(), f"golden file {path} is missing; create it with: {REGEN}"
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(True),
                actual.splitlines(True),
                f"golden/{name}",
                "rendered",
                n=2,
            )
        )
        pytest.fail(
            f"{name} differs from its golden file; if the change is intended, regenerate with:\n    {REGEN}\n{diff[:4000]}"
        )


@pytest.fixture(scope="module")
def fixture_analysis() -> Analysis:
    return render_fixture.analysis()


@pytest.fixture(scope="module")
def written(tmp_path_factory, fixture_analysis) -> Path:
    out = tmp_path_factory.mktemp("report")
    write_reports(fixture_analysis, out, junit=True, md_inline_images=False, plots=True, html=True)
    return out


def md_to_html(text: str) -> str:
    markdown_it = pytest.importorskip("markdown_it")
    md = (
        markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough")
    )
    return md.render(text)


# --- golden files -------------------------------------------------------------------------------


def test_report_md_matches_golden(written):
    check_golden("report.md", normalise_md((written / "report.md").read_text(encoding="utf-8")))


def test_report_html_outline_matches_golden(written):
    check_golden(
        "report.html.outline", html_outline((written / "report.html").read_text(encoding="utf-8"))
    )


def test_write_reports_writes_every_file(written):
    names = sorted(p.relative_to(written).as_posix() for p in written.rglob("*") if p.is_file())
    assert names == [
        "plots/entropy.png",
        "plots/kl.png",
        "plots/length.png",
        "plots/losses.png",
        "plots/mechanics.png",
        "plots/quality.png",
        "plots/reward.png",
        "report.html",
        "report.junit.xml",
        "report.md",
    ]


def test_report_md_starts_with_the_verdict_and_links_plots(written):
    text = (written / "report.md").read_text(encoding="utf-8")
    first = text.splitlines()[0]
    assert first.startswith("**🔴 Verdict: critical**")
    assert "`kl_explosion`" in first and "step 41" in first
    for name in ("reward", "kl", "length", "entropy", "quality", "losses", "mechanics"):
        assert f"](plots/{name}.png)" in text
        assert (written / "plots" / f"{name}.png").exists()


def test_md_inline_images_are_data_uris(fixture_analysis, tmp_path):
    write_reports(
        fixture_analysis, tmp_path, junit=False, md_inline_images=True, plots=True, html=False
    )
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    uris = re.findall(r"!\[[^\]]*\]\((data:image/png;base64,[A-Za-z0-9+/=]+)\)", text)
    assert len(uris) == 7
    png = base64.b64decode(uris[0].split(",", 1)[1])
    assert png.startswith(b"\x89PNG") and png == (tmp_path / "plots" / "reward.png").read_bytes()
    assert not (tmp_path / "report.html").exists()


# --- Markdown escaping --------------------------------------------------------------------------

NASTY = (
    "a | b || c\nnew line\r\nthird <script>alert(1)</script> <img src=x onerror=alert(1)> "
    "[x](javascript:alert(1)) ![i](javascript:alert(2)) ``` ```` `code` *em* _u_ ~~s~~ @octocat &amp; \u2028end"
)


def test_md_escape_keeps_one_table_cell_and_no_markup():
    cell = md_escape(NASTY)
    assert "\n" not in cell and "\r" not in cell and "\u2028" not in cell
    assert re.search(r"(?<!\\)\|", cell) is None  # every pipe escaped
    assert "<script" not in cell and "<img" not in cell
    html = md_to_html(f"| h |\n|---|\n| {cell} |\n")
    assert html.count("<td>") == 1 and html.count("<tr>") == 2
    assert (
        "<script" not in html
        and "<img" not in html
        and "javascript:" not in re.sub(r">[^<]*<", "><", html)
    )
    assert "<em>" not in html and "<code>" not in html and "<s>" not in html and "<a " not in html
    # The text survives, visibly: the pipes and the tag are shown as text.
    assert "a | b || c" in html.replace("&lt;", "<") and "&lt;script&gt;" in html


def test_md_code_survives_backticks_and_pipes():
    for text in ("plain", "has ` one", "``` three", "a | b", "`edge`"):
        code = md_code(text)
        html = md_to_html(f"| h |\n|---|\n| {code} |\n")
        assert html.count("<td>") == 1
        inner = re.search(r"<code>(.*)</code>", html, re.S)
        assert inner is not None
        assert inner.group(1).replace("&lt;", "<").replace("&amp;", "&").strip() == text.strip()


@pytest.mark.parametrize(
    "text", ["x = 1\n```\nbreak out?\n```\n<script>alert(1)</script>", "````` five", "no ticks"]
)
def test_md_fence_cannot_be_closed_by_model_text(text):
    block = md_fence(text, "diff")
    html = md_to_html(block + "\n\nafter\n")
    code = re.search(r"<pre><code[^>]*>(.*?)</code></pre>", html, re.S)
    assert code is not None
    assert (
        code.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').rstrip("\n")
        == text
    )
    assert "<script" not in html and html.rstrip().endswith("<p>after</p>")


def _payload_analysis() -> Analysis:
    base = render_fixture.analysis()
    payload = "evil | cell\n<script>window.__pwned=1</script> [x](javascript:alert(1)) ```"
    base.alerts.insert(
        0,
        Alert(
            "custom|kind`",
            Severity.CRITICAL,
            3,
            payload,
            {
                "note": payload,
                "nested": {"text": payload, "n": 2},
                "top_drifting": [{"question_id": payload, "question": payload, "distance": 0.5}],
                "sample_ids": [0, 4, 8],
            },
        ),
    )
    assert base.drift is not None
    first = base.drift.sample_diffs[0]
    base.drift.sample_diffs[0] = dataclasses.replace(
        first,
        question="</summary></details><script>window.__pwned=1</script> | @octocat",
        similarity=0.0,
    )
    return base


def test_report_md_neutralises_model_text_everywhere():
    text = render_markdown(_payload_analysis())
    html = md_to_html(text)
    assert "<script" not in html
    assert "<img" not in html.replace('<img src="plots/', "")  # only our plot images
    assert 'href="javascript' not in html and "onerror=" not in html.replace("onerror=&quot;", "")
    assert "<svg" not in html
    # Every table keeps its column count in every row.
    for table in re.findall(r"<table>.*?</table>", html, re.S):
        head = len(re.findall(r"<th[ >]", table))
        for row in re.findall(r"<tbody>.*?</tbody>", table, re.S):
            for tr in re.findall(r"<tr>(.*?)</tr>", row, re.S):
                assert len(re.findall(r"<td[ >]", tr)) == head, tr
    assert "&lt;/summary&gt;&lt;/details&gt;&lt;script&gt;" in text and "@\u200boctocat" in text
    # Code fences: everything after a diff block is still ordinary Markdown.
    assert "<h2>Detectors</h2>" in html and "<h2>Ingest</h2>" in html


# --- HTML ---------------------------------------------------------------------------------------


def test_html_is_self_contained_and_has_a_strict_csp(written):
    html = (written / "report.html").read_text(encoding="utf-8")
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html)
    assert csp is not None
    policy = csp.group(1)
    assert (
        "default-src 'none'" in policy and "img-src data:" in policy and "unsafe-eval" not in policy
    )
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in policy
    assert "innerHTML" not in scripts[0] and "insertAdjacentHTML" not in scripts[0]
    # No external resource anywhere: every src/href is a data URI or an in-page anchor.
    for url in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert url.startswith(("data:", "#")), url


def test_html_escapes_payloads_and_embeds_safe_json(written):
    html = (written / "report.html").read_text(encoding="utf-8")
    for payload in render_fixture.PAYLOADS:
        assert payload not in html or not re.search(r"[<>]", payload)
    assert (
        "<script>window.__pwned" not in html
        and "<img src=x" not in html
        and "<svg onload" not in html
    )
    block = re.search(
        r'<script type="application/json" id="completions-data">(.*?)</script>', html, re.S
    )
    assert block is not None
    raw = block.group(1)
    assert not re.search(r"[<>&\u2028\u2029]", raw)
    data = json.loads(raw)
    assert data["info"]["total"] == 720 and len(data["rows"]) == 720
    outs = {r["out"] for r in data["rows"]}
    assert any(
        "<script>window.__pwned=1</script>" in o for o in outs
    )  # the text itself round-trips
    assert any("\u2028" in o for o in outs)


def test_script_json_round_trips_anything():
    value = {"s": "</script><!-- & \u2028 \u2029 \"q\" 'a' \\", "n": [1, 2.5, None]}
    text = script_json(value)
    assert not re.search(r"[<>&\u2028\u2029]", text)
    assert json.loads(text) == value


def test_completions_table_samples_large_runs_keeping_alert_samples(fixture_analysis):
    rows, info = completions_table(fixture_analysis, limit=60)
    assert info == {**info, "total": 720, "shown": len(rows), "sampled": True}
    assert len(rows) <= 60
    ids = {r["id"] for r in rows}
    for alert in fixture_analysis.alerts:
        assert set(alert.evidence.get("sample_ids", [])) <= ids
    steps = {r["step"] for r in rows}
    assert len(steps) >= 30  # spread across the run, not the first rows
    assert [r["step"] for r in rows] == sorted(r["step"] for r in rows)
    again, _ = completions_table(fixture_analysis, limit=60)
    assert again == rows  # deterministic
    html = render_html(fixture_analysis, table_limit=60)
    assert (
        "Sampled: 60 of 720 completions" in html
        or f"Sampled: {len(rows)} of 720 completions" in html
    )


def test_write_html_report_defaults_to_the_output_dir(fixture_analysis, tmp_path):
    fixture_analysis.output_dir = str(tmp_path / "out")
    try:
        path = write_html_report(fixture_analysis, plots=False)
    finally:
        fixture_analysis.output_dir = None
    assert path == tmp_path / "out" / "report.html"
    assert "No plots were drawn." in path.read_text(encoding="utf-8")
    explicit = write_html_report(fixture_analysis, tmp_path / "x" / "r.html", plots=False)
    assert explicit.exists()


# --- missing inputs -----------------------------------------------------------------------------


def _bare_analysis(metrics: pl.DataFrame, verdict: str = "healthy") -> Analysis:
    run = RunData(
        path="runs/bare",
        steps=metrics,
        generations=None,
        report=IngestReport(
            source_kind="hf_trainer_state", files_read=["trainer_state.json"], records_read=3
        ),
    )
    return Analysis(run=run, metrics=metrics, verdict=verdict)


def test_reports_render_with_almost_nothing(tmp_path):
    metrics = pl.DataFrame(
        {"step": pl.Series([1, 2, 3], dtype=pl.Int64), "reward": [0.1, float("nan"), 0.3]}
    )
    a = _bare_analysis(metrics, verdict="too_short")
    paths = write_reports(a, tmp_path, junit=True, md_inline_images=False, plots=True, html=True)
    assert {p.name for p in paths} == {"reward.png", "report.md", "report.html", "report.junit.xml"}
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert md.startswith("**⚪ Verdict: too short** — only 3 step(s) logged")
    assert "Not in this run: `gen_reward_mean`, `gen_accuracy`" in md
    assert (
        "Not drawn: quality (no accuracy, format, diversity or drift column); kl (no kl column"
        in md
    )
    assert "Drift was not scored." in md and "No detector status was recorded." in md
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "This run has no completions" in html and 'id="completions-data"' not in html
    suite = ET.parse(tmp_path / "report.junit.xml").getroot()
    # no detector ran: the one case is what was checked, skipped (too short, nothing checked)
    assert (suite.get("tests"), suite.get("skipped"), suite.get("failures")) == ("1", "1", "0")
    assert _cases((tmp_path / "report.junit.xml").read_text(encoding="utf-8")) == {"core_checks": "skipped"}


def test_reports_render_with_no_metrics_at_all(tmp_path):
    a = _bare_analysis(pl.DataFrame({"step": pl.Series([], dtype=pl.Int64)}), verdict="too_short")
    write_reports(a, tmp_path, junit=False, md_inline_images=False, plots=True, html=True)
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "No per-step metrics were found." in md and "No plots were drawn." in md


# --- JUnit --------------------------------------------------------------------------------------


def _cases(xml: str) -> dict[str, str]:
    root = ET.fromstring(xml.split("\n", 1)[1])
    out = {}
    for case in root.iter("testcase"):
        state = "passed"
        if case.find("failure") is not None:
            state = "failed"
        elif case.find("skipped") is not None:
            state = "skipped"
        out[case.get("name")] = state
    return out


def test_junit_one_case_per_detector_failing_at_fail_on(fixture_analysis, written):
    cases = _cases((written / "report.junit.xml").read_text(encoding="utf-8"))
    assert cases == {
        "nan_values": "passed",
        "loss_spike": "passed",
        "log_integrity": "passed",
        "kl_explosion": "failed",
        "reward_hacking": "passed",
        "length_hacking": "passed",
        "entropy_collapse": "passed",
        "semantic_drift": "passed",
        "value_reward_mismatch": "skipped",
        "catastrophic_forgetting": "skipped",
        "reward_std_collapse": "passed",
        "mode_collapse": "passed",
        "repetition": "passed",
        "truncation": "passed",
        "core_checks": "passed",  # every core check of a GRPO run with completions ran
    }
    warn = _cases(render_junit(fixture_analysis, fail_on="warning"))
    assert [k for k, v in warn.items() if v == "failed"] == [
        "kl_explosion",
        "reward_hacking",
        "length_hacking",
    ]
    assert "failed" not in _cases(render_junit(fixture_analysis, fail_on="never")).values()
    root = ET.fromstring(render_junit(fixture_analysis, fail_on="info").split("\n", 1)[1])
    suite = root.find("testsuite")
    assert suite is not None and (
        suite.get("tests"),
        suite.get("failures"),
        suite.get("skipped"),
    ) == ("15", "4", "2")


def test_junit_is_valid_xml_with_hostile_text():
    a = _bare_analysis(pl.DataFrame({"step": pl.Series([1], dtype=pl.Int64)}))
    a.detectors = [DetectorStatus("weird", True, None, 1)]
    a.alerts = [Alert("weird", Severity.CRITICAL, 1, 'bad \x00\x1b ]]> <x> & "q"', {"t": "\x07"})]
    xml = render_junit(a)
    root = ET.fromstring(xml.split("\n", 1)[1])
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None and ']]> <x> & "q"' in failure.get("message", "")


# --- analysis.json ------------------------------------------------------------------------------


def test_analysis_dict_validates_against_the_shipped_schema(fixture_analysis):
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(load_schema())
    data = analysis_to_dict(fixture_analysis)
    text = json.dumps(data, allow_nan=False)
    jsonschema.validate(json.loads(text), load_schema())
    assert data["format"] == "logscan-analysis/1"
    assert data["metrics"]["gen_accuracy"]["best"] == pytest.approx(0.9)
    assert data["metrics"]["kl"]["best"] is None
    assert data["summary"]["splits"] == {"train": 480, "eval": 240}


def test_schema_rejects_what_it_should(fixture_analysis):
    jsonschema = pytest.importorskip("jsonschema")
    data = analysis_to_dict(fixture_analysis)
    data["alerts"][0]["severity"] = "fatal"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, load_schema())


def test_nan_metrics_become_null_or_drop():
    metrics = pl.DataFrame(
        {
            "step": pl.Series([1, 2], dtype=pl.Int64),
            "loss": [float("nan"), float("inf")],
            "kl": [0.1, float("nan")],
        }
    )
    data = analysis_to_dict(_bare_analysis(metrics))
    assert "loss" not in data["metrics"] and data["metrics"]["kl"]["n"] == 1
    json.dumps(data, allow_nan=False)


# --- the environment ----------------------------------------------------------------------------


def test_user_template_folder_wins(fixture_analysis, tmp_path):
    (tmp_path / "report.md.j2").write_text(
        "custom {{ verdict.text|md }} {{ alerts|length }}\n", encoding="utf-8"
    )
    text = render_markdown(fixture_analysis, template_dir=tmp_path)
    assert text == "custom critical 4\n"
    fixture_analysis.config["report"] = {"template_dir": str(tmp_path)}
    try:
        assert render_markdown(fixture_analysis) == "custom critical 4\n"
    finally:
        del fixture_analysis.config["report"]


def test_missing_template_folder_is_a_config_error(fixture_analysis, tmp_path):
    with pytest.raises(ConfigError, match=r"template folder .* does not exist"):
        render_markdown(fixture_analysis, template_dir=tmp_path / "nope")


def test_strict_undefined_and_autoescape():
    import jinja2

    env = render.environment()
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("{{ missing.attr }}").render()
    assert env.get_template("report.html.j2").environment.autoescape("report.html.j2") is True  # type: ignore[operator]
    assert env.autoescape("report.md.j2") is False  # type: ignore[operator]


# --- property tests: no text breaks out of its cell or fence ------------------------------------


def test_md_escape_property_one_cell_no_markup():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    alphabet = st.sampled_from(
        [
            *list("ab |`*_[]()<>&!#~\\:/-+.=\"'@\n\r\t\u2028 "),
            "javascript:",
            "<script>",
            "```",
            "](",
            "<br>",
        ]
    )

    @hypothesis.settings(max_examples=300, deadline=None, database=None)
    @hypothesis.given(st.lists(alphabet, max_size=40).map("".join))
    def check(text):
        html = md_to_html(f"| h | x |\n|---|---|\n| {md_escape(text)} | end |\n")
        body = html.split("<tbody>", 1)[1]
        assert body.count("<td>") == 2 and "<td>end</td>" in body
        tags = set(re.findall(r"<(/?[a-z]+)", body))
        assert tags <= {"tr", "/tr", "td", "/td", "br", "/tbody", "/table"}, (text, body)

    check()


def test_md_fence_property_round_trips():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    alphabet = st.sampled_from([*list("ab `~\n<>&"), "```", "~~~", "````"])

    @hypothesis.settings(max_examples=300, deadline=None, database=None)
    @hypothesis.given(st.lists(alphabet, max_size=30).map("".join))
    def check(text):
        html = md_to_html(md_fence(text, "diff") + "\n\nafter\n")
        code = re.search(r"<pre><code[^>]*>(.*?)</code></pre>", html, re.S)
        assert code is not None, html
        shown = (
            code.group(1)
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", '"')
            .replace("&amp;", "&")
        )
        assert shown.rstrip("\n") == text.replace("\r", "").rstrip("\n")
        assert html.rstrip().endswith("<p>after</p>")

    check()


# --- through the real pipeline -------------------------------------------------------------------


def test_pipeline_output_validates_and_reports_are_written(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    pipeline = pytest.importorskip("analyzer.pipeline")
    run = tmp_path / "generations.csv"
    render_fixture.write_seed_csv(
        run, steps=10, per_prompt=3, reasoning=lambda step: f"s{step} | `x` <script>alert(1)</script>"
    )
    out = tmp_path / "out"
    analysis = pipeline.analyze(
        run, pipeline.AnalyzeOptions(output_dir=out, no_embeddings=True, junit=True)
    )
    data = json.loads((out / "analysis.json").read_text(encoding="utf-8"))
    jsonschema.validate(data, load_schema())
    assert data["verdict"] == analysis.verdict and data["summary"]["completions"] == 60
    for name in ("report.md", "report.html", "report.junit.xml"):
        assert (out / name).exists(), name
    md = (out / "report.md").read_text(encoding="utf-8")
    assert md.startswith("**")  # (a <script> may sit inside a fenced diff block: code, not HTML)
    html = md_to_html(md)
    assert "<script" not in html


def test_report_config_section_drives_svg_and_templates(fixture_analysis, tmp_path):
    config = pytest.importorskip("analyzer.config")
    from analyzer.report.data import REPORT_CONFIG_DEFAULTS

    config.register_section("report", REPORT_CONFIG_DEFAULTS)
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "report.md.j2").write_text("mine: {{ verdict.key }}\n", encoding="utf-8")
    loaded = config.load_config(
        None, None, ["report.svg=true", f"report.template_dir={tmp_path / 'tpl'}"], cwd=tmp_path
    )
    assert loaded["report"] == {"template_dir": str(tmp_path / "tpl"), "svg": True}
    saved = fixture_analysis.config
    fixture_analysis.config = {**saved, "report": loaded["report"]}
    try:
        paths = write_reports(
            fixture_analysis,
            tmp_path / "out",
            junit=False,
            md_inline_images=False,
            plots=True,
            html=False,
        )
    finally:
        fixture_analysis.config = saved
    assert sum(p.suffix == ".svg" for p in paths) == 7
    assert (tmp_path / "out" / "report.md").read_text(encoding="utf-8") == "mine: critical\n"


def test_a_run_given_as_dot_is_named_by_its_folder(tmp_path, monkeypatch):
    run_dir = tmp_path / "my-grpo-run"
    run_dir.mkdir()
    monkeypatch.chdir(run_dir)
    assert render._display_path(".") == "my-grpo-run"
    assert render._display_path("./") == "my-grpo-run"
    assert render._display_path("runs/a") == "runs/a"


def test_evidence_values_render_readably():
    """Evidence a detector could not know (None) shows as a dash, never as an empty cell."""
    assert render._fmt_evidence(None) == "—"
    assert render._fmt_evidence(0.5) == fmt(0.5)
    assert render._fmt_evidence([1, None]) == "[1, —]"
    assert render._fmt_evidence("<b>x</b>") == "<b>x</b>"  # escaped by the template, not here


def test_evidence_mappings_and_lists_of_records_are_bullets_and_tables_not_json():
    """A first-time user saw raw JSON cut mid-string (`top_drifting: [{"question_id": … "s…`)."""
    nested = render._evidence_item("superlinear", {"onset_step": 32, "slope_after": 0.0113769})
    assert nested["fields"] == [("onset step", "32"), ("slope after", "0.01138")] and not nested["table"]
    rows = [{"question_id": f"q{i}", "question": "x" * 200, "distance": 0.5 + i} for i in range(7)]
    table = render._evidence_item("top_drifting", rows)["table"]
    assert table["columns"] == ["question id", "question", "distance"]
    assert len(table["rows"]) == render.EVIDENCE_TABLE_ROWS and table["more"] == 2
    assert table["rows"][0][0] == "q0" and len(table["rows"][0][1]) == render.EVIDENCE_CELL
    assert table["rows"][1][2] == "1.5"
    assert render._evidence_item("last", 0.25) == {"key": "last", "text": "0.25", "fields": [], "table": None}
    text = render_markdown(_payload_analysis())
    assert '{"' not in text and "- top drifting:" in text and "  - n: 2" in text
    assert "  | question id | question | distance |" in text


def test_trend_stays_within_the_metric_range_and_a_loss_has_no_best():
    """A share's fitted slope × span read +1.06; an RL loss's minimum is not its "best"."""
    share = {"first": 0.1, "last": 0.9, "min": 0.0, "max": 0.92, "mean": 0.4, "best": 0.0,
             "trend_slope": 0.018, "n": 60, "first_step": 1, "last_step": 60}
    assert render._trend(share) == ("↗", "+0.92")
    falling = {**share, "trend_slope": -0.05}
    assert render._trend(falling) == ("↘", "-0.92")
    assert render._trend({**share, "trend_slope": 0.01})[1] == "+0.59"  # inside the range: unchanged
    assert render._metric_row("loss", share)["best"] == "—"
    assert render._metric_row("policy_loss", share)["best"] == "—"
    assert render._metric_row("value_loss", share)["best"] == "0"
    assert render._metric_row("gen_frac_zero_spread_groups", share)["best"] == "0"


def test_the_report_lists_and_best_direction_come_from_the_metric_catalogue():
    from analyzer import catalogue
    from analyzer.report import data as report_data

    assert (render.KEY_METRICS, render.CORE_METRICS, render.PPO_METRICS) == (catalogue.KEY, catalogue.CORE, catalogue.PPO)
    for name in (*catalogue.BY_NAME, "eval/gen_accuracy", "probe/loss", "reward/fn", "reward/fn/std"):
        assert report_data.metric_direction(name) == catalogue.direction_of(name), name


def test_compiled_templates_are_kept_in_the_user_cache(tmp_path, monkeypatch):
    """The second process to render a report loads the compiled templates instead of compiling
    them; a cache it cannot write to is skipped, and the reports are the same either way."""
    import jinja2

    analysis = render_fixture.analysis()

    def md() -> str:  # the report without the time it was rendered
        return re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "", render.render_markdown(analysis, plots=[], skipped_plots=[]))

    monkeypatch.setenv("LOGSCAN_CACHE_DIR", str(tmp_path / "cache"))
    render.environment.cache_clear()
    first = md()
    assert list((tmp_path / "cache" / "jinja").iterdir())
    compiled: list[str] = []
    real = jinja2.Environment.compile

    def counting(self, source, name=None, filename=None, raw=False, defer_init=False):
        compiled.append(name)
        return real(self, source, name, filename, raw, defer_init)

    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    render.environment.cache_clear()  # as a new process starts
    assert md() == first
    assert compiled == []
    # a cache folder that cannot be made (a file in its way): compiled as before, no error
    (tmp_path / "blocked").write_text("")
    monkeypatch.setenv("LOGSCAN_CACHE_DIR", str(tmp_path / "blocked"))
    render.environment.cache_clear()
    assert md() == first
    assert compiled
    # damaged entries are recompiled, not an error
    monkeypatch.setenv("LOGSCAN_CACHE_DIR", str(tmp_path / "cache"))
    for entry in (tmp_path / "cache" / "jinja").iterdir():
        entry.write_bytes(b"\x00garbage")
    render.environment.cache_clear()
    assert md() == first
    render.environment.cache_clear()


def test_the_completions_table_shows_the_answer_the_accuracy_judged(tmp_path):
    """Ingest fills a missing model_answer with the first <answer>; the run's convention (the last
    innermost <answer> pair) is what the accuracy judged, and what the table shows. A report
    rebuilt from files (no answers computed) shows model_answer."""
    from analyzer.pipeline import AnalyzeOptions, analyze

    run = tmp_path / "run"
    run.mkdir()
    lines = []
    for step in range(1, 13):
        for k in range(4):
            out = f"<reasoning>try {k}</reasoning><answer>{k}</answer> wait, no <answer>4</answer>"
            lines.append(json.dumps({"timestamp": 1.7e9 + step, "global_step": step, "question": "2+2?",
                                     "ground_truth_answer": "4", "model_output": out, "total_reward": 1.0,
                                     "rewards": {"correct": 1.0}, "split": "train"}))
    (run / "generations.jsonl").write_text("\n".join(lines) + "\n")
    analysis = analyze(run, AnalyzeOptions(no_embeddings=True, write_outputs=False))
    assert analysis.run.generations is not None and set(analysis.run.generations["model_answer"]) == {"0", "1", "2", "3"}
    rows, _ = completions_table(analysis)
    assert rows and {r["ans"] for r in rows} == {"4"}
    assert analysis.metrics["gen_accuracy"].drop_nulls().to_list() == [1.0] * 12  # what was judged
    rebuilt = dataclasses.replace(analysis, answers=None)
    assert {r["ans"] for r in completions_table(rebuilt)[0]} == {"0", "1", "2", "3"}
    # the files agree: generations.parquet keeps the fill in model_answer and the judged answer
    # beside it; the page html-report writes shows the judged answer too
    from click.testing import CliRunner

    from analyzer.cli import cli

    got = CliRunner().invoke(cli, ["html-report", str(run), "--no-embeddings", "-o", str(tmp_path / "page.html")])
    assert got.exit_code == 0, got.output
    gens = pl.read_parquet(run / "logscan" / "generations.parquet")
    assert set(gens["model_answer"]) == {"0", "1", "2", "3"} and set(gens["judged_answer"]) == {"4"}
    page = (tmp_path / "page.html").read_text()
    assert '"ans":"4"' in page and '"ans":"0"' not in page
