"""analyzer.coverage and the ``limited`` verdict: a run whose core checks could not all run is
not "healthy"; the headline says what was not checked and what to log — in the terminal,
analysis.json (schema-valid), report.md/html, JUnit, ``compare`` and ``watch``."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import polars as pl
import pytest
from click.testing import CliRunner

from analyzer import coverage as cov
from analyzer.cli import cli
from analyzer.detectors import REGISTRY, Skip, register
from analyzer.detectors.base import alert
from analyzer.model import Alert, DetectorStatus, IngestReport, RunData, Severity
from analyzer.pipeline import AnalyzeOptions, analyze
from analyzer.report.data import analysis_to_dict, load_schema
from analyzer.report.render import render_html, render_junit, render_markdown
from analyzer.report.terminal import summary_text
from analyzer.verdict import exit_code, verdict_for

REPO = Path(__file__).resolve().parent.parent
HEALTHY = REPO / "examples" / "runs" / "healthy-grpo"
ORPO_REAL = "chandlerzuo__rlhf_recsys/outputs__trainer_state.json"
FAST = ("--no-embeddings", "--no-plots", "--no-html")
OPTIONS = AnalyzeOptions(no_embeddings=True, write_outputs=False)


# --- generated twins: trainer_state.json files as TRL writes them -----------------------------


def write_state(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    state = {"global_step": entries[-1]["step"], "max_steps": entries[-1]["step"], "log_history": entries}
    (path / "trainer_state.json").write_text(json.dumps(state), encoding="utf-8")
    return path / "trainer_state.json"


def orpo_entries(steps: int = 30) -> list[dict[str, Any]]:
    """TRL ORPOTrainer's keys (trl/experimental/orpo: rewards/*, logps/*, logits/*, nll_loss,
    log_odds_ratio, log_odds_chosen): a run that learns calmly."""
    out = []
    for i in range(1, steps + 1):
        t = i / steps
        chosen, rejected = -1.0 + 0.3 * t, -1.1 - 0.2 * t
        out.append({
            "step": i * 10, "epoch": t * 3, "loss": 1.0 - 0.5 * t + 0.01 * math.sin(i), "grad_norm": 4.0 + math.sin(i),
            "learning_rate": 1e-6, "rewards/chosen": 0.1 * chosen, "rewards/rejected": 0.1 * rejected,
            "rewards/accuracies": 0.5 + 0.3 * t, "rewards/margins": 0.1 * (chosen - rejected),
            "logps/chosen": chosen, "logps/rejected": rejected, "logits/chosen": -2.0, "logits/rejected": -2.0,
            "nll_loss": 0.9 - 0.4 * t, "log_odds_ratio": -0.6 + 0.3 * t, "log_odds_chosen": 0.1 + 0.4 * t,
        })
    return out


def grpo_scalar_entries(steps: int = 40) -> list[dict[str, Any]]:
    """TRL GRPOTrainer's scalars (trl/trainer/grpo_trainer.py) with every optional key logged,
    nothing wrong — but no completions."""
    out = []
    for i in range(1, steps + 1):
        t = i / steps
        out.append({
            "step": i, "epoch": t, "loss": 0.01 + 0.001 * math.sin(i), "grad_norm": 0.5 + 0.05 * math.sin(i),
            "learning_rate": 1e-6, "reward": 0.4 + 0.3 * t + 0.01 * math.sin(3 * i), "reward_std": 0.3,
            "frac_reward_zero_std": 0.1 + 0.02 * math.sin(i), "completions/mean_length": 120 + math.sin(i),
            "completions/clipped_ratio": 0.02, "kl": 0.001 + 0.0005 * t, "entropy": 0.9 - 0.1 * t,
            "rewards/correct/mean": 0.3 + 0.3 * t, "rewards/format/mean": 0.5 + 0.2 * t,
        })
    return out


@pytest.fixture
def orpo_twin(tmp_path: Path) -> Path:
    return write_state(tmp_path / "orpo", orpo_entries())


@pytest.fixture
def grpo_scalars(tmp_path: Path) -> Path:
    return write_state(tmp_path / "grpo", grpo_scalar_entries())


def invoke(*args: object) -> Any:
    return CliRunner().invoke(cli, [str(a) for a in args])


# --- the verdict --------------------------------------------------------------------------------


PREFERENCE_CORE = ("nan_values", "loss_spike", "log_integrity", "preference_not_learning",
                   "likelihood_displacement", "preference_overoptimisation", "preference_trivial_pairs")
# ORPO has no reference model: likelihood displacement does not apply to it
ORPO_CORE = tuple(n for n in PREFERENCE_CORE if n != "likelihood_displacement")


def test_real_orpo_trainer_state_gets_its_preference_checks(realdata: Path) -> None:
    a = analyze(realdata / ORPO_REAL, OPTIONS)
    c = cov.coverage_of(a)
    assert a.alerts == [] and a.verdict == "healthy"
    assert c.kind == "preference" and "rewards/chosen" in c.kind_reason
    assert c.ran == ORPO_CORE and c.not_run == () and not c.limited
    assert "likelihood_displacement" in c.not_applicable
    assert exit_code(a) == 0
    line = summary_text(a, quiet=True)
    assert line.startswith("logscan: HEALTHY")


def test_generated_orpo_twin_is_healthy_with_the_preference_checks(orpo_twin: Path) -> None:
    a = analyze(orpo_twin, OPTIONS)
    c = cov.coverage_of(a)
    assert a.alerts == [] and a.verdict == "healthy"
    assert c.kind == "preference" and c.ran == ORPO_CORE and "likelihood_displacement" in c.not_applicable


def test_generated_preference_twin_without_margins_is_limited_and_fails_only_on_fail_on_limited(
    tmp_path: Path,
) -> None:
    # without rewards/margins (and no eval set), over-optimisation cannot be judged: limited
    entries = [{k: v for k, v in e.items() if k != "rewards/margins"} for e in orpo_entries()]
    run = write_state(tmp_path / "nomargins", entries)
    a = analyze(run, OPTIONS)
    assert a.alerts == [] and a.verdict == "limited"
    c = cov.coverage_of(a)
    assert c.kind == "preference" and [n for n, _ in c.not_run] == ["preference_overoptimisation"]
    # exit 0 by default, 1 with --fail-on limited; the verdict line names what was not checked
    result = invoke("analyze", run, "-o", tmp_path / "out", "--junit", *FAST)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("logscan: LIMITED — no alerts (5 of 6 core checks")
    assert "checks:      5 of 6 core checks for a preference-optimisation run" in result.output
    strict = invoke("analyze", run, "-o", tmp_path / "out", "--junit", "--fail-on", "limited", *FAST)
    assert strict.exit_code == 1, strict.output
    assert strict.output.splitlines()[0].endswith("exit 1 (--fail-on limited)")
    junit = ET.parse(tmp_path / "out" / "report.junit.xml").getroot()
    case = next(c for c in junit.iter("testcase") if c.get("name") == "core_checks")
    failure = case.find("failure")
    assert failure is not None and failure.get("message", "").startswith("limited: 5 of 6 core checks")


def test_a_preference_run_whose_preference_check_ran_can_be_healthy(orpo_twin: Path) -> None:
    """A detector declared core for preference runs (core_for) gives the kind a specific check:
    when every core check ran and nothing fired, a DPO/ORPO run is healthy."""

    @register("margin_check", signals="rewards/margins", core_for=("preference",))
    def margin_check(ctx: Any, cfg: dict[str, Any]) -> list[Alert]:
        """Test-only preference check."""
        if not ctx.has("rewards/margins"):
            raise Skip("rewards/margins was not logged")
        return []

    try:
        a = analyze(orpo_twin, OPTIONS)
        c = cov.coverage_of(a)
        assert c.core == (*ORPO_CORE, "margin_check")
        assert not c.limited and a.verdict == "healthy"
        # the same detector unable to run makes it limited again, with its own reason as the hint
        entries = [{k: v for k, v in e.items() if k != "rewards/margins"} for e in orpo_entries()]
        b = analyze(write_state(orpo_twin.parent.parent / "nomargins", entries), OPTIONS)
        cb = cov.coverage_of(b)
        assert b.verdict == "limited" and ("margin_check", "rewards/margins was not logged") in cb.not_run
        assert "provide what margin_check needs (rewards/margins was not logged) to enable margin_check" in cb.headline()
    finally:
        del REGISTRY["margin_check"]


def test_grpo_run_with_everything_logged_and_nothing_wrong_is_healthy() -> None:
    a = analyze(HEALTHY, OPTIONS)
    c = cov.coverage_of(a)
    assert a.alerts == [] and a.verdict == "healthy" and exit_code(a) == 0
    assert c.kind == "rl_completions" and not c.limited and c.not_run == ()
    assert len(c.ran) == len(c.core) == 9
    assert "checks:      9 of 9 core checks for a GRPO/PPO/RLOO run with completions ran" in summary_text(a)
    # healthy passes even the strictest gate
    a.fail_on = "limited"
    assert exit_code(a) == 0


def test_scalar_only_grpo_trainer_state_is_limited_with_a_hint_naming_completions(grpo_scalars: Path) -> None:
    a = analyze(grpo_scalars, OPTIONS)
    c = cov.coverage_of(a)
    assert a.alerts == [] and a.verdict == "limited" and exit_code(a) == 0
    assert c.kind == "rl_scalars"
    # kl, entropy, clipped_ratio, frac_reward_zero_std and two reward functions were logged: only
    # the checks that read the completions' text could not run
    assert [n for n, _ in c.not_run] == ["mode_collapse", "repetition"]
    first = c.hints[0]
    assert first.log.startswith("log completions with trainer_hooks")
    assert {"mode_collapse", "repetition"} <= set(first.enables)
    assert f"log completions with trainer_hooks (or TRL's log_completions=True) to enable {len(first.enables)} more checks" in c.headline()
    assert "not checked: mode_collapse, repetition" in summary_text(a, quiet=True)


def test_limited_in_analysis_json_validates_and_reports_show_it(grpo_scalars: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = invoke("analyze", grpo_scalars, "-o", out, "--junit", "--no-embeddings", "--no-plots")
    assert result.exit_code == 0, result.output
    data = json.loads((out / "analysis.json").read_text(encoding="utf-8"))
    jsonschema.validate(data, load_schema())
    assert data["verdict"] == "limited"
    assert data["coverage"]["kind"] == "rl_scalars" and data["coverage"]["limited"] is True
    assert [n["name"] for n in data["coverage"]["not_run"]] == ["mode_collapse", "repetition"]
    assert [(h["log"].split(" (")[0], h["enables"]) for h in data["coverage"]["hints"]] == [
        ("log completions with trainer_hooks", ["mode_collapse", "repetition", "coherence_loss", "semantic_drift"]),
        ("log eval or probe prompts' completions", ["catastrophic_forgetting"]),
    ]
    assert data["coverage"]["optional_ran"] == [
        "kl_explosion",
        "entropy_collapse",
        "format_regression",
        "reward_regression",
        "extreme_values",
    ]
    md = (out / "report.md").read_text(encoding="utf-8")
    assert md.startswith("**🟡 Verdict: limited** — no warning across 40 steps, but not everything that matters was checked: ")
    assert "not checked: mode\\_collapse, repetition" in md.splitlines()[0]
    assert "`mode_collapse` ✗" in md and "`reward_hacking` ✓" in md
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'class="verdict verdict-limited"' in html and "not checked: mode_collapse, repetition" in html
    # JUnit: visible as a skipped case and as properties, not a failure under the default gate
    junit = ET.parse(out / "report.junit.xml").getroot()
    suite = junit.find("testsuite")
    assert suite is not None and suite.get("failures") == "0"
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["verdict"] == "limited" and props["run_kind"] == "rl_scalars" and props["core_checks"] == "7/9"
    case = next(c for c in suite.iter("testcase") if c.get("name") == "core_checks")
    assert case.get("classname") == "logscan.verdict"
    skipped = case.find("skipped")
    assert skipped is not None and "log completions with trainer_hooks" in skipped.get("message", "")


def test_fail_on_limited_exits_non_zero_on_a_limited_run(grpo_scalars: Path, tmp_path: Path) -> None:
    result = invoke("analyze", grpo_scalars, "-o", tmp_path / "out", "--fail-on", "limited", "-q", *FAST)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("logscan: LIMITED — no alerts (7 of 9 core checks")
    # and the config's fail_on takes it too
    (tmp_path / "logscan.toml").write_text('[analyze]\nfail_on = "limited"\n', encoding="utf-8")
    result = invoke("analyze", grpo_scalars, "-o", tmp_path / "out", "--config", tmp_path / "logscan.toml", "-q", *FAST)
    assert result.exit_code == 1, result.output


def test_compare_and_watch_show_the_limited_verdict(grpo_scalars: Path) -> None:
    result = invoke("compare", grpo_scalars.parent, HEALTHY)
    assert result.exit_code == 0, result.output
    rows = {line.split("  ")[0].strip(): line.split() for line in result.output.splitlines()[1:]}
    assert rows["verdict"][-2:] == ["limited", "healthy"]
    assert rows["run kind"][-2:] == ["rl_scalars", "rl_completions"]
    assert rows["core checks ran"][-3:] == ["7/9", "✗", "9/9"]
    watched = invoke("watch", grpo_scalars.parent, "--once")
    assert watched.exit_code == 0, watched.output
    first, second = watched.output.splitlines()[:2]
    assert first.endswith("verdict limited (7/9 core checks)")
    assert second.startswith("  limited: 7 of 9 core checks") and "log completions with trainer_hooks" in second


# --- the rule, on runs built in memory ----------------------------------------------------------


def _run(columns: dict[str, list[float]], *, generations: pl.DataFrame | None = None, algorithm: str | None = None) -> RunData:
    steps = pl.DataFrame({"step": list(range(1, 21)), **{k: v * 20 for k, v in columns.items()}})
    return RunData(path="mem", steps=steps, generations=generations, report=IngestReport("test"), info={"algorithm": algorithm})


def test_run_kind_is_read_from_the_data() -> None:
    gens = pl.DataFrame({"step": [1], "model_output": ["x"]})
    assert cov.run_kind(_run({"loss": [0.1]}, generations=gens))[0] == "rl_completions"
    assert cov.run_kind(_run({"loss": [0.1], "rewards/margins": [0.1]}))[0] == "preference"
    assert cov.run_kind(_run({"loss": [0.1], "eval/rewards/accuracies": [0.5]}))[0] == "preference"
    # Online DPO logs a sampled reward as well: judged as RL
    assert cov.run_kind(_run({"reward": [0.1], "rewards/chosen": [0.1]}))[0] == "rl_scalars"
    kind, why, critic = cov.run_kind(_run({"reward": [0.1], "value_loss": [0.2]}))
    assert (kind, critic) == ("rl_scalars", True) and "reward" in why
    assert cov.run_kind(_run({"loss": [0.1]}, algorithm="dpo"))[0] == "preference"
    assert cov.run_kind(_run({"loss": [0.1]}, algorithm="grpo"))[0] == "rl_scalars"
    assert cov.run_kind(_run({"loss": [0.1], "grad_norm": [1.0]}))[0] == "unknown"


def test_ppo_checks_its_critic_instead_of_groups() -> None:
    grpo_core, grpo_optional = cov.core_checks("rl_scalars")
    ppo_core, ppo_optional = cov.core_checks("rl_scalars", critic=True)
    assert "reward_std_collapse" in grpo_core and "value_reward_mismatch" not in (*grpo_core, *grpo_optional)
    assert "value_reward_mismatch" in ppo_core and "reward_std_collapse" in ppo_optional


def _statuses(ran: set[str], skipped: dict[str, str]) -> list[DetectorStatus]:
    return [DetectorStatus(n, True) for n in ran] + [DetectorStatus(n, False, r) for n, r in skipped.items()]


def test_disabled_core_check_is_the_users_choice_and_internal_errors_count() -> None:
    run = _run({"reward": [0.1]}, generations=pl.DataFrame({"step": [1], "model_output": ["x"]}))
    core, _ = cov.core_checks("rl_completions")
    c = cov.assess(run, None, _statuses(set(core) - {"mode_collapse"}, {"mode_collapse": "disabled in config (mode_collapse.enabled = false)"}))
    assert not c.limited and c.disabled == ("mode_collapse",) and "disabled: mode_collapse" in c.headline()
    c = cov.assess(run, None, _statuses(set(core) - {"repetition"}, {"repetition": "internal error: ValueError: x"}))
    assert c.limited and c.not_run == (("repetition", "internal error: ValueError: x"),) and c.hints == ()
    assert c.headline().endswith("not checked: repetition; repetition: internal error: ValueError: x")
    # a core check with no status at all (an Analysis built by hand) did not run either
    c = cov.assess(run, None, _statuses(set(core) - {"truncation"}, {}))
    assert c.not_run == (("truncation", "not run (no status recorded)"),)


def test_verdict_precedence() -> None:
    def a(sev: Severity) -> Alert:
        return alert("x", sev, 1, "m")

    assert verdict_for([a(Severity.CRITICAL)], 50, limited=True) == "critical"
    assert verdict_for([a(Severity.WARNING)], 50, limited=True) == "warnings"
    assert verdict_for([], 3, limited=True) == "too_short"
    assert verdict_for([a(Severity.INFO)], 50, limited=True) == "limited"
    assert verdict_for([], 50, limited=False) == "healthy"


def test_headline_text_from_a_plugin_is_escaped_in_reports(grpo_scalars: Path) -> None:
    @register("hostile_check", signals="nothing", core_for=("rl_scalars",))
    def hostile_check(ctx: Any, cfg: dict[str, Any]) -> list[Alert]:
        """Test-only detector whose skip reason carries markup."""
        raise Skip("<script>window.__pwned=1</script> [x](javascript:alert(1)) | cell")

    try:
        a = analyze(grpo_scalars, OPTIONS)
        assert a.verdict == "limited"
        html = render_html(a)
        assert "<script>window.__pwned" not in html and "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
        md = render_markdown(a)
        assert "<script>" not in md and "\\[x\\](javascript:alert(1)) \\| cell" in md
        junit = render_junit(a)
        assert ET.fromstring(junit.split("\n", 1)[1]) is not None
        data = analysis_to_dict(a)
        jsonschema.validate(data, load_schema())
        assert data["coverage"]["not_run"][-1]["name"] == "hostile_check"
    finally:
        del REGISTRY["hostile_check"]


def test_a_limited_run_with_an_info_alert_still_heads_its_report_with_what_was_not_checked(grpo_scalars: Path) -> None:
    a = analyze(grpo_scalars, OPTIONS)
    a.alerts.append(alert("log_integrity", Severity.INFO, None, "1 torn line"))
    assert verdict_for(a.alerts, 40, limited=cov.coverage_of(a).limited) == "limited"
    md = render_markdown(a)
    assert md.startswith("**🟡 Verdict: limited** — no warning across 40 steps, but not everything that matters was checked: 7 of 9")
    html = render_html(a)
    assert "but not everything that matters was checked</span>" in html and "worst: <code>log_integrity" not in html


def test_docs_table_of_core_checks_matches_the_code() -> None:
    """docs/detectors.md's table of core checks per kind is the one in analyzer/coverage.py."""
    import re

    text = (REPO / "docs" / "detectors.md").read_text(encoding="utf-8")
    section = text[text.index("| kind | core checks | optional |") :]
    rows = [line for line in section.splitlines()[2:] if line.startswith("|")]
    documented = {}
    for row in rows[:4]:
        kinds, core, optional = (cell.strip() for cell in row.strip("|").split("|"))
        names = lambda cell: tuple(re.findall(r"`([a-z_]+)`", re.sub(r"\([^)]*\)", "", cell.split(" — ")[0])))  # noqa: E731
        documented[kinds.split("`")[1] if kinds.startswith("`") else "critic"] = (names(core), names(optional))
    assert documented["rl_completions"] == cov.core_checks("rl_completions")
    assert cov.core_checks("rl_scalars") == cov.core_checks("rl_completions")
    # the preference checks join the kind's core by registering with core_for=("preference",)
    assert documented["preference"] == cov.core_checks("preference", registry=REGISTRY.values())
    assert documented["unknown"] == (cov.core_checks("unknown")[0], ())
    ppo_core, ppo_optional = cov.core_checks("rl_scalars", critic=True)
    assert "value_reward_mismatch" in ppo_core and "reward_std_collapse" in ppo_optional


def test_logscan_detectors_prints_the_core_checks_per_kind() -> None:
    result = invoke("detectors")
    assert result.exit_code == 0
    text = result.output[result.output.index("Core checks per kind of run") :]
    assert "rl_scalars: GRPO/PPO/RLOO run with logged scalars only\n    core:     nan_values, loss_spike, log_integrity, reward_hacking" in text
    assert (
        "preference: preference-optimisation run (DPO/ORPO/CPO/KTO)\n    core:     " + ", ".join(PREFERENCE_CORE) + "\n"
    ) in text
    assert "no preference-specific check" not in text


@pytest.mark.parametrize(
    ("name", "verdict", "kind"),
    [
        # verl PPO console log: a critic (value loss, explained variance) and no completions
        ("Bihan__dstack-configs/verl_demo.log", "limited", "rl_scalars"),
        # TRL DPO with a NaN grad norm: the warning wins, the coverage still says preference
        ("harryc295__soup-dpo-takehome/results__trainer_state.json", "warnings", "preference"),
        # 4 logged steps: too short for the trend checks, but its levels are judged (65-70 % of the
        # completions clipped at the length limit, a format reward of 0 at every step)
        ("5ivatej__meta-hackathon/results__trainer_state.json", "warnings", "rl_scalars"),
        # LLaMA-Factory's own log: loss, accuracy (its rewards/accuracies), learning rate — a preference
        # run whose margins are only in trainer_state.json
        ("chandlerzuo__rlhf_recsys/outputs__trainer_log.jsonl", "limited", "preference"),
    ],
)
def test_real_logs_verdict_and_kind(realdata: Path, name: str, verdict: str, kind: str) -> None:
    a = analyze(realdata / name, OPTIONS)
    c = cov.coverage_of(a)
    assert (a.verdict, c.kind) == (verdict, kind)
    # none of these but the DPO run logged everything its kind needs
    assert c.limited == (not name.startswith("harryc295"))
    if name.startswith("chandlerzuo"):
        assert [n for n, _ in c.not_run] == ["likelihood_displacement", "preference_overoptimisation"]
    if name.startswith("Bihan"):
        assert "value_reward_mismatch" in c.ran and "reward_std_collapse" not in c.core
        assert [n for n, _ in c.not_run] == ["mode_collapse", "repetition"]
        assert c.hints[0].log.startswith("log completions with trainer_hooks")
