"""Every detector on a run that has its problem (known onset) and on healthy runs that do not."""

from __future__ import annotations

import dataclasses
from functools import cache

import polars as pl
import pytest
from detector_scenarios import KINDS, alert_kind, delay_tolerance, make_scenario, severity_rank

from analyzer.detectors import REGISTRY, run_detectors
from analyzer.features import build_features
from analyzer.metrics import compute_metrics
from analyzer.model import Alert, DetectorStatus, IngestReport, RunData


@cache
def analyse(
    kind: str | None,
    seed: int = 0,
    noise: float = 1.0,
    gens: bool | None = None,
    ppo: bool | None = None,
):
    sc = make_scenario(kind, seed=seed, noise=noise, with_generations=gens, ppo=ppo)
    features = build_features(sc.run)  # built once and shared, as the pipeline does
    metrics = compute_metrics(sc.run, features=features)
    alerts, statuses = run_detectors(sc.run, metrics, sc.drift, None, features=features)
    return sc, alerts, statuses


def no_internal_errors(statuses: list[DetectorStatus]) -> None:
    broken = [s for s in statuses if s.reason and s.reason.startswith("internal error")]
    assert not broken, broken


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("seed", [0, 1])
def test_kind_is_detected_at_its_onset(kind: str, seed: int) -> None:
    sc, alerts, statuses = analyse(kind, seed, 1.0 if seed == 0 else 2.0)
    no_internal_errors(statuses)
    mine = [a for a in alerts if a.kind == alert_kind(kind)]
    assert mine, (
        f"{sc.name}: no {kind} alert; got {[(a.kind, a.severity.value, a.step) for a in alerts]}"
    )
    best = max(mine, key=lambda a: a.severity.rank)
    assert severity_rank(best.severity.value) >= severity_rank(sc.min_severity), best
    if sc.onset is not None:
        closest = min(mine, key=lambda a: abs((a.step or 0) - sc.onset))
        assert abs(closest.step - sc.onset) <= delay_tolerance(sc.n_steps), (
            closest.step,
            sc.onset,
            closest.message,
        )
    # every alert carries JSON-able evidence with sample ids
    for a in mine:
        assert isinstance(a.evidence.get("sample_ids"), list)
        assert a.message


@pytest.mark.parametrize(
    "kind", ["reward_hacking", "mode_collapse", "repetition", "format_regression", "length_hacking"]
)
def test_text_alerts_point_at_completions_that_show_it(kind: str) -> None:
    sc, alerts, _ = analyse(kind)
    alert = next(a for a in alerts if a.kind == kind and a.severity.rank >= 1)
    ids = alert.evidence["sample_ids"]
    assert ids, alert
    gens = sc.run.generations
    assert gens is not None
    rows = gens.filter(pl.col("sample_id").is_in(ids))
    assert rows.height == len(ids)
    assert (rows["step"] >= sc.onset - delay_tolerance(sc.n_steps)).all()
    if kind == "repetition":
        out = rows["model_output"][0].split()
        assert len(set(out)) < len(out) / 3  # a loop: few distinct words
    if kind == "mode_collapse":
        assert rows["model_output"].n_unique() < rows.height
    if kind == "reward_hacking":
        assert (rows["reward/correctness"] == 2.0).all()
        assert (rows["model_answer"] != rows["ground_truth_answer"]).all()


def test_reward_hacking_reports_both_checks() -> None:
    _, alerts, _ = analyse("reward_hacking")
    checks = {
        a.evidence.get("check")
        for a in alerts
        if a.kind == "reward_hacking" and a.severity.rank >= 1
    }
    assert {"verifier_disagreement", "proxy_up_truth_down"} <= checks


def test_reward_std_collapse_says_all_correct() -> None:
    _sc, alerts, _ = analyse("reward_std_collapse", gens=True)
    a = next(a for a in alerts if a.kind == "reward_std_collapse")
    assert a.evidence["all_correct_share"] > 0.6
    assert "all-correct" in a.message


def test_kl_budget_respects_per_sequence_unit() -> None:
    # PPO logs a per-sequence KL (healthy values ~ 1-4): judged against the per-token budget it
    # would be a false explosion.
    sc, alerts, statuses = analyse(None, 1, 1.0, False, True)
    assert sc.run.info["algorithm"] == "ppo"
    assert not [a for a in alerts if a.kind == "kl_explosion"]
    assert next(s for s in statuses if s.name == "kl_explosion").ran


HEALTHY = [
    (seed, noise, gens) for seed in (0, 1, 2) for noise in (0.5, 1.0, 2.0) for gens in (True, False)
]


@pytest.mark.parametrize(("seed", "noise", "gens"), HEALTHY)
def test_healthy_runs_raise_no_warning(seed: int, noise: float, gens: bool) -> None:
    sc, alerts, statuses = analyse(None, seed, noise, gens, (not gens) and seed % 2 == 1)
    no_internal_errors(statuses)
    loud = [(a.kind, a.severity.value, a.step, a.message) for a in alerts if a.severity.rank >= 1]
    assert not loud, f"{sc.name}: {loud}"
    ran = {s.name for s in statuses if s.ran}
    assert {"nan_values", "loss_spike", "kl_explosion", "entropy_collapse", "log_integrity"} <= ran
    if gens:
        assert {"mode_collapse", "repetition", "reward_hacking", "format_regression"} <= ran


def test_scalar_only_run_skips_text_detectors_with_reasons() -> None:
    _, _, statuses = analyse(None, 0, 1.0, False)
    by = {s.name: s for s in statuses}
    for name in ("mode_collapse", "repetition"):
        assert not by[name].ran
        assert "completions" in (by[name].reason or "")
    assert not by["value_reward_mismatch"].ran  # GRPO: no critic
    assert not by["semantic_drift"].ran and "drift" in (by["semantic_drift"].reason or "")
    assert len(statuses) == len(REGISTRY)


def test_absent_kl_is_skipped_not_healthy() -> None:
    sc = make_scenario(None, seed=0, with_generations=False)
    run = RunData(sc.run.path, sc.run.steps.drop("kl"), None, sc.run.report, sc.run.info)
    _, statuses = run_detectors(run, run.steps, None, None)
    kl = next(s for s in statuses if s.name == "kl_explosion")
    assert not kl.ran and "beta = 0" in (kl.reason or "")


def test_too_short_run_is_reported_not_judged() -> None:
    steps = pl.DataFrame(
        {"step": [1, 2, 3], "reward": [0.1, 0.2, float("nan")], "kl": [0.1, 0.2, 0.3]}
    )
    run = RunData("x", steps, None, IngestReport(source_kind="hf_trainer_state"))
    alerts, statuses = run_detectors(run, steps, None, None)
    by = {s.name: s for s in statuses}
    assert "too short" in (by["kl_explosion"].reason or "")
    assert by["nan_values"].ran  # NaN is never healthy, however short the run
    assert [a.kind for a in alerts] == ["nan_values"]
    from analyzer.detectors import too_short_reason

    assert too_short_reason(steps) is not None
    assert too_short_reason(pl.DataFrame({"step": list(range(50))})) is None


def test_config_disables_and_tunes_detectors() -> None:
    sc, _, _ = analyse("kl_explosion")
    metrics = compute_metrics(sc.run)
    alerts, statuses = run_detectors(sc.run, metrics, None, {"kl_explosion": {"enabled": False}})
    assert not [a for a in alerts if a.kind == "kl_explosion"]
    st = next(s for s in statuses if s.name == "kl_explosion")
    assert not st.ran and "disabled" in (st.reason or "")
    # a budget far above the explosion's peak leaves only the super-linear growth evidence, if any
    alerts, _ = run_detectors(sc.run, metrics, None, {"kl_explosion": {"budget_per_token": 1e9}})
    assert all(a.severity.value != "critical" for a in alerts if a.kind == "kl_explosion")


def test_third_party_detector_registers_like_builtins() -> None:
    from analyzer.detectors import Skip, register

    @register("always_info", signals="nothing; a test plugin", defaults={"level": 1})
    def always_info(ctx, cfg):
        if cfg["level"] < 0:
            raise Skip("negative level")
        from analyzer.model import Severity

        return [Alert("always_info", Severity.INFO, None, f"level {cfg['level']}")]

    try:
        sc = make_scenario(None, with_generations=False)
        alerts, statuses = run_detectors(sc.run, sc.run.steps, None, {"always_info": {"level": 3}})
        assert any(a.kind == "always_info" and a.message == "level 3" for a in alerts)
        _, statuses = run_detectors(sc.run, sc.run.steps, None, {"always_info": {"level": -1}})
        st = next(s for s in statuses if s.name == "always_info")
        assert not st.ran and st.reason == "negative level"
    finally:
        REGISTRY.pop("always_info", None)


def test_broken_detector_does_not_hide_the_others() -> None:
    from analyzer.detectors import register

    @register("broken", signals="raises")
    def broken(ctx, cfg):
        raise ZeroDivisionError("boom")

    try:
        sc = make_scenario("nan_values")
        alerts, statuses = run_detectors(sc.run, sc.run.steps, None, None)
        st = next(s for s in statuses if s.name == "broken")
        assert not st.ran and "internal error: ZeroDivisionError" in (st.reason or "")
        assert any(a.kind == "nan_values" for a in alerts)
    finally:
        REGISTRY.pop("broken", None)


def test_describe_lists_every_detector_with_keys() -> None:
    from analyzer.detectors import describe_detectors

    text = describe_detectors()
    for name, spec in REGISTRY.items():
        assert f"\n{name}: {spec.summary}" in text and spec.summary
        for key in spec.defaults:
            assert f"{name}.{key} = " in text
    assert "kl_explosion.budget_per_token = 0.5" in text


def test_evidence_is_json_serialisable() -> None:
    import json

    for kind in ("kl_explosion", "reward_hacking", "log_integrity", "nan_values"):
        _, alerts, _ = analyse(kind)
        json.dumps([a.to_dict() for a in alerts], allow_nan=False)


# --- variants: the same problem seen through other inputs ---------------------------------------


def test_forgetting_from_eval_drift_columns() -> None:
    import numpy as np

    from analyzer.model import DriftResult

    sc = make_scenario(None, seed=3, with_generations=False)
    t = np.arange(1, sc.n_steps + 1)
    d_eval = (
        0.05
        + 0.5 * np.clip((t - 120) / 10, 0, 1)
        + 0.01 * np.random.default_rng(0).standard_normal(t.size)
    )
    drift = DriftResult("fake", None, pl.DataFrame({"step": t, "drift_eval_mean": d_eval}))
    alerts, _ = run_detectors(sc.run, sc.run.steps, drift, None)
    cf = [a for a in alerts if a.kind == "catastrophic_forgetting"]
    assert cf and cf[0].evidence["signal"] == "drift_eval_mean"
    assert abs(cf[0].step - 120) <= delay_tolerance(sc.n_steps)
    assert cf[0].severity.value == "critical"  # drift 0.55 ≥ drift_critical 0.5


def test_forgetting_from_eval_completions() -> None:
    sc = make_scenario("catastrophic_forgetting", with_generations=True)
    metrics = compute_metrics(sc.run)
    assert "eval/gen_accuracy" in metrics.columns
    alerts, _ = run_detectors(sc.run, metrics, None, None)
    cf = [a for a in alerts if a.kind == "catastrophic_forgetting"]
    assert cf, alerts
    assert abs(cf[0].step - sc.onset) <= 2 * delay_tolerance(sc.n_steps)  # eval every 10 steps
    # train accuracy held, so this is not reported as reward hacking
    assert not [a for a in alerts if a.kind == "reward_hacking" and a.severity.rank >= 1]


def test_truncation_from_completions_alone() -> None:
    sc = make_scenario("truncation", with_generations=True)
    run = dataclasses.replace(sc.run, steps=sc.run.steps.drop("clipped_ratio"))
    alerts, _ = run_detectors(run, compute_metrics(run), None, None)
    tr = [a for a in alerts if a.kind == "truncation"]
    assert tr and "completions without an answer" in tr[0].evidence["signal"]
    assert abs(tr[0].step - sc.onset) <= delay_tolerance(sc.n_steps)
    assert tr[0].evidence["sample_ids"]


def test_reward_std_collapse_from_completions_alone() -> None:
    sc = make_scenario("reward_std_collapse", with_generations=True)
    run = dataclasses.replace(sc.run, steps=sc.run.steps.drop("frac_reward_zero_std"))
    alerts, _ = run_detectors(
        run, run.steps, None, None
    )  # no gen_* columns either: rebuilt from text
    a = next(a for a in alerts if a.kind == "reward_std_collapse")
    assert a.evidence["signal"] == "zero-spread groups (completions)"
    assert abs(a.step - sc.onset) <= delay_tolerance(sc.n_steps)


def test_superlinear_kl_within_budget() -> None:
    import numpy as np

    sc = make_scenario(None, seed=4, with_generations=False)
    t = sc.run.steps["step"].to_numpy()
    rng = np.random.default_rng(4)
    kl = 0.02 + 0.3 * np.clip((t - 110) / 90, 0, None) ** 2 + 0.002 * rng.standard_normal(t.size)
    steps = sc.run.steps.with_columns(pl.Series("kl", kl))
    run = RunData(sc.run.path, steps, None, sc.run.report, sc.run.info)
    alerts, _ = run_detectors(run, steps, None, None)
    kl_alerts = [a for a in alerts if a.kind == "kl_explosion"]
    assert kl_alerts and kl_alerts[0].evidence["superlinear"] is not None
    assert kl_alerts[0].evidence["exceeded_budget_at"] is None  # peak 0.32 < budget 0.5
    assert kl_alerts[0].severity.value == "warning"
    assert abs(kl_alerts[0].step - 110) <= 3 * delay_tolerance(sc.n_steps)


def test_nan_rewards_in_completions_are_critical() -> None:
    sc = make_scenario(None, seed=0, with_generations=True)
    gens = sc.run.generations.with_columns(
        pl.when(pl.col("sample_id") == 1000)
        .then(float("nan"))
        .otherwise(pl.col("total_reward"))
        .alias("total_reward")
    )
    run = RunData(sc.run.path, sc.run.steps, gens, sc.run.report, sc.run.info)
    alerts, _ = run_detectors(run, run.steps, None, None)
    nan = next(a for a in alerts if a.kind == "nan_values")
    assert nan.severity.value == "critical" and nan.evidence["sample_ids"] == [1000]


def test_one_torn_line_is_info_and_gaps_are_noted() -> None:
    from analyzer.model import IngestIssue

    sc = make_scenario(None, seed=0, with_generations=False)
    report = IngestReport(source_kind="logscan", records_read=200)
    report.issues.append(
        IngestIssue("events.jsonl", 201, "truncated JSON at end of file", "torn_line")
    )
    steps = sc.run.steps.filter((pl.col("step") < 60) | (pl.col("step") > 90))
    run = RunData(sc.run.path, steps, None, report, sc.run.info)
    alerts, _ = run_detectors(run, steps, None, None)
    li = [a for a in alerts if a.kind == "log_integrity"]
    assert {a.severity.value for a in li} == {"info"}
    gap = next(a for a in li if "gap" in a.message)
    assert gap.step == 59 and gap.evidence["gaps"] == [[59, 91]]


def _odd_runs() -> list[tuple[str, RunData]]:
    sc = make_scenario(None, seed=5, with_generations=True, n_steps=40)
    g = sc.run.generations
    steps = sc.run.steps
    rep = IngestReport(source_kind="logscan")
    n = steps.height
    return [
        ("empty", RunData("e", pl.DataFrame({"step": pl.Series([], dtype=pl.Int64)}), None, rep)),
        ("only steps", RunData("s", pl.DataFrame({"step": list(range(30))}), None, rep)),
        (
            "all-NaN column",
            RunData(
                "n", pl.DataFrame({"step": list(range(30)), "kl": [float("nan")] * 30}), None, rep
            ),
        ),
        (
            "all-null columns",
            RunData(
                "z", steps.with_columns(pl.lit(None, dtype=pl.Float64).alias("entropy")), None, rep
            ),
        ),
        (
            "bare completions",
            RunData(
                "b", steps.select("step"), g.select("step", "model_output", "total_reward"), rep
            ),
        ),
        (
            "no truth, no groups, no split",
            RunData(
                "t", steps, g.drop("ground_truth_answer", "group_id", "split", "question_id"), rep
            ),
        ),
        (
            "null rewards",
            RunData(
                "r",
                steps,
                g.with_columns(pl.lit(None, dtype=pl.Float64).alias("total_reward")),
                rep,
            ),
        ),
        ("empty texts", RunData("x", steps, g.with_columns(pl.lit("").alias("model_output")), rep)),
        (
            "constant curves",
            RunData(
                "c",
                pl.DataFrame(
                    {
                        "step": list(range(n)),
                        "kl": [0.1] * n,
                        "entropy": [1.0] * n,
                        "loss": [0.0] * n,
                        "grad_norm": [1.0] * n,
                    }
                ),
                None,
                rep,
            ),
        ),
    ]


@pytest.mark.parametrize("case", range(9))
def test_odd_inputs_never_crash(case: int) -> None:
    name, run = _odd_runs()[case]
    alerts, statuses = run_detectors(run, None, None, None)
    no_internal_errors(statuses)
    assert len(statuses) == len(REGISTRY)
    if name == "constant curves":
        assert not alerts


def test_docs_cover_every_detector_and_key(repo_root) -> None:
    text = (repo_root / "docs" / "detectors.md").read_text()
    from analyzer.detectors import GENERAL_DEFAULTS

    for name, spec in REGISTRY.items():
        assert f"### {name}" in text, name
        for key in spec.defaults:
            if key != "enabled":
                assert f"`{key}" in text, f"{name}.{key} is not documented"
    for key in GENERAL_DEFAULTS:
        assert f"`{key}`" in text


def test_docs_plugin_example_runs(repo_root) -> None:
    text = (repo_root / "docs" / "detectors.md").read_text()
    block = text.split("## Writing a detector", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    try:
        exec(compile(block, "docs/detectors.md", "exec"), namespace)
        steps = pl.DataFrame({"step": list(range(1, 31)), "learning_rate": [0.0] * 30})
        run = RunData("lr", steps, None, IngestReport(source_kind="logscan"))
        alerts, _ = run_detectors(run, steps, None, None)
        assert [a.kind for a in alerts] == ["lr_zero"]
    finally:
        REGISTRY.pop("lr_zero", None)


@pytest.mark.parametrize(
    ("n_steps", "prompts", "group"),
    [(60, 4, 4), (100, 2, 8), (120, 8, 2)],
)
def test_healthy_runs_of_other_shapes_raise_no_warning(
    n_steps: int, prompts: int, group: int
) -> None:
    for seed in (0, 1):
        sc = make_scenario(
            None, seed=seed, n_steps=n_steps, prompts_per_step=prompts, group_size=group
        )
        alerts, statuses = run_detectors(sc.run, compute_metrics(sc.run), sc.drift, None)
        no_internal_errors(statuses)
        loud = [
            (a.kind, a.severity.value, a.step, a.message) for a in alerts if a.severity.rank >= 1
        ]
        assert not loud, f"{sc.name} ({n_steps} steps, {prompts}x{group}): {loud}"


@pytest.mark.parametrize("kind", ["kl_explosion", "mode_collapse", "reward_hacking", "truncation"])
def test_late_onset_in_a_longer_run(kind: str) -> None:
    sc = make_scenario(
        kind, seed=2, n_steps=300, onset_fraction=0.7, prompts_per_step=2, group_size=8
    )
    alerts, _ = run_detectors(sc.run, compute_metrics(sc.run), sc.drift, None)
    mine = [a for a in alerts if a.kind == kind and a.severity.rank >= 1]
    assert mine
    assert min(abs(a.step - sc.onset) for a in mine) <= delay_tolerance(sc.n_steps)


def test_reward_std_collapse_from_the_start_is_critical_and_all_wrong() -> None:
    # a broken reward that always returns 0: no group ever has spread, from step 1
    sc = make_scenario(None, seed=0, with_generations=True)
    gens = sc.run.generations.with_columns(
        pl.lit(0.0).alias("total_reward"),
        pl.lit(0.0).alias("reward/correctness"),
        pl.lit(0.0).alias("reward/format"),
    )
    steps = sc.run.steps.drop("frac_reward_zero_std")
    run = RunData(sc.run.path, steps, gens, sc.run.report, sc.run.info)
    alerts, _ = run_detectors(run, steps, None, None)
    a = next(a for a in alerts if a.kind == "reward_std_collapse")
    assert a.severity.value == "critical"
    assert a.step == 1
    assert "all-wrong" in a.message and a.evidence["all_wrong_share"] == 1.0


def test_forgetting_from_five_sparse_eval_drift_points() -> None:
    from analyzer.model import DriftResult

    sc = make_scenario(None, seed=1, with_generations=False, n_steps=60)

    def eval_drift(values: list[float]) -> DriftResult:
        per_step = pl.DataFrame({"step": [20, 30, 40, 50, 60], "drift_eval_mean": values})
        return DriftResult("fake", None, per_step)

    drift = eval_drift([0.05, 0.055, 0.2, 0.48, 0.41])
    alerts, _ = run_detectors(sc.run, sc.run.steps, drift, None)
    cf = [a for a in alerts if a.kind == "catastrophic_forgetting"]
    assert cf and cf[0].step == 40 and cf[0].severity.value == "warning"
    # healthy sparse eval drift stays quiet
    calm = eval_drift([0.05, 0.03, 0.06, 0.04, 0.05])
    alerts, _ = run_detectors(sc.run, sc.run.steps, calm, None)
    assert not [a for a in alerts if a.kind == "catastrophic_forgetting"]


@pytest.mark.parametrize(
    ("torn", "resumes", "severity"),
    [
        # a live or killed run: one cut record at the end of each file being appended to
        ([("events.jsonl", 32), ("generations.jsonl", 121), ("generations.rank1.jsonl", 98)], [], "info"),
        # killed, then resumed into the same file: one more cut record, explained by the resume
        ([("generations.jsonl", 50), ("generations.jsonl", 121)], [("generations.jsonl", 51)], "info"),
        # two cut records in one file and no resume: not what an interruption leaves
        ([("generations.jsonl", 50), ("generations.jsonl", 121)], [], "warning"),
        # resumed at the same step: no step went back, but run.json records the new session
        ([("generations.jsonl", 50), ("generations.jsonl", 121)], "session", "info"),
    ],
    ids=["one-per-file", "resumed", "unexplained", "session"],
)
def test_torn_lines_an_interrupted_writer_explains_are_info(torn, resumes, severity) -> None:
    from analyzer.model import IngestIssue

    sc = make_scenario(None, seed=0, with_generations=False)
    report = IngestReport(source_kind="logscan", records_read=500)
    report.issues += [IngestIssue(f, line, "torn last line: the record is cut short", "torn_line") for f, line in torn]
    info = dict(sc.run.info)
    if resumes == "session":
        info["resumes"] = [{"at": "2026-01-01T00:00:00+00:00", "from_step": 40}]
    else:
        report.resumes += [{"file": f, "line": line, "from_step": 9, "to_step": 5, "rank": 0} for f, line in resumes]
    run = RunData(sc.run.path, sc.run.steps, None, report, info)
    alerts, _ = run_detectors(run, sc.run.steps, None, None)
    li = [a for a in alerts if a.kind == "log_integrity" and "torn" in a.message]
    assert len(li) == 1 and li[0].severity.value == severity
    assert f"{torn[0][0]}:{torn[0][1]}" in li[0].message or severity == "warning"


@pytest.mark.parametrize(("truth", "answer", "cause"), [
    ("4", "4", "mostly all-correct"),  # every answer right: saturated
    (None, "4", "mostly all-correct"),  # no ground truth: the constant positive reward's word
    ("4", "5", "mostly all-wrong"),  # rewarded although wrong: the reward is broken
])
def test_a_reward_that_never_varies_is_not_called_too_hard(truth, answer, cause) -> None:
    """Found by a bug hunt: with every reward 1.0, the top-half test counted every group as
    all-wrong ("the prompts are too hard"). A constant positive reward is judged by exact match when
    there is a ground truth; a constant reward that is never positive still means all wrong."""
    from analyzer.metrics import compute_metrics as metrics_of

    rows = [
        {"step": s, "split": "train", "sample_id": s * 8 + k, "question_id": f"q{k // 4}", "group_id": f"{s}:q{k // 4}",
         "question": "2+2?", "ground_truth_answer": truth, "model_output": f"<reasoning>r</reasoning><answer>{answer}</answer>",
         "model_answer": answer, "total_reward": 1.0}
        for s in range(30) for k in range(8)
    ]
    gens = pl.DataFrame(rows, infer_schema_length=None)
    run = RunData("const", pl.DataFrame({"step": pl.Series([], dtype=pl.Int64)}), gens, IngestReport("logscan"), {})
    alerts, _ = run_detectors(run, metrics_of(run), None, None)
    collapse = next(a for a in alerts if a.kind == "reward_std_collapse")
    assert cause in collapse.evidence["cause"]


@pytest.mark.parametrize("every", [1, 5])
def test_forgetting_on_an_eval_logged_every_few_steps(every: int) -> None:
    """Found by a bug hunt: with eval logged every 5 steps, the significance test compared 4 points
    with 7 and could never reach z = 3, so a halved eval reward went unreported."""
    import random

    rng = random.Random(4)
    steps = list(range(100))
    evals = [s for s in steps if s % every == 0]
    frame = pl.DataFrame({
        "step": steps,
        "loss": [0.01] * 100,
        "reward": [0.5 + rng.gauss(0, 0.02) for _ in steps],
        "eval/reward": [10.0 - (5.0 if s >= 60 else 0.0) + rng.gauss(0, 0.02) if s in evals else None for s in steps],
    })
    run = RunData("sparse", frame, None, IngestReport("logscan"), {})
    alerts, _ = run_detectors(run, frame, None, None)
    forgetting = [a for a in alerts if a.kind == "catastrophic_forgetting"]
    assert len(forgetting) == 1 and forgetting[0].severity.value in ("warning", "critical")
    assert abs(forgetting[0].step - 60) <= every


def test_reward_std_collapse_points_at_the_same_completions_every_time() -> None:
    """The zero-spread groups come out of a group_by in no set order: the completions named must
    still be the same on every run of the same data (earliest step first, then by id)."""
    sc = make_scenario("reward_std_collapse", with_generations=True)
    metrics = compute_metrics(sc.run)
    picks = set()
    for _ in range(8):
        alerts, _ = run_detectors(sc.run, metrics, sc.drift, None)
        a = next(a for a in alerts if a.kind == "reward_std_collapse")
        picks.add(tuple(a.evidence["sample_ids"]))
    assert len(picks) == 1, picks
    ids = list(next(iter(picks)))
    assert ids
    g = sc.run.generations
    assert g is not None
    steps = dict(zip(g["sample_id"].to_list(), g["step"].to_list(), strict=True))
    assert [(steps[i], i) for i in ids] == sorted((steps[i], i) for i in ids)


def test_forgetting_without_a_train_reward_does_not_say_it_held() -> None:
    """A run without a train reward (a DPO run) cannot show that the reward held: the headline
    says so instead of claiming it."""
    import numpy as np

    from analyzer.model import DriftResult

    sc = make_scenario(None, seed=3, with_generations=False)
    steps = sc.run.steps.drop([c for c in sc.run.steps.columns if "reward" in c])
    t = np.arange(1, sc.n_steps + 1)
    d_eval = 0.05 + 0.5 * np.clip((t - 120) / 10, 0, 1) + 0.01 * np.random.default_rng(0).standard_normal(t.size)
    drift = DriftResult("fake", None, pl.DataFrame({"step": t, "drift_eval_mean": d_eval}))
    run = dataclasses.replace(sc.run, steps=steps)
    alerts, _ = run_detectors(run, steps, drift, None)
    cf = [a for a in alerts if a.kind == "catastrophic_forgetting"]
    assert cf and "train reward held" not in cf[0].message
    assert "no train reward was logged" in cf[0].message
    assert "train_reward_before" not in cf[0].evidence
    # with the reward, the same drift says it held
    alerts, _ = run_detectors(sc.run, sc.run.steps, drift, None)
    assert "while the train reward held" in next(a for a in alerts if a.kind == "catastrophic_forgetting").message
