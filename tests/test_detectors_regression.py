"""reward_regression: the run gets worse (the reward, a component or an eval score falls from its peak)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from detector_scenarios import delay_tolerance, make_scenario

from analyzer.detectors import run_detectors
from analyzer.features import build_features
from analyzer.metrics import compute_metrics
from analyzer.model import IngestReport, RunData

ROLLOUTS = "JuncyLu__trl_DAPO/training_logs__20251022_181457__rollout_results.md"


def _detect(run: RunData):
    features = build_features(run)
    metrics = compute_metrics(run, features=features)
    alerts, statuses = run_detectors(run, metrics, None, None, features=features)
    return alerts, {s.name: s for s in statuses}


def _dapo_like(n_steps: int = 37, per_step: int = 16, seed: int = 0) -> RunData:
    """Twin of the real DAPO rollout dump: format reward 0.9 → 0 and the total 3 → ~0.5 from step 5."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {
        k: []
        for k in (
            "step",
            "split",
            "sample_id",
            "question_id",
            "question",
            "model_output",
            "total_reward",
            "reward/accuracy",
            "reward/format",
        )
    }
    sid = 0
    for step in range(n_steps):
        broken = min(1.0, max(0.0, (step - 4) / 6))  # ramps from step 5 to step 10
        for q in range(per_step):
            fmt_ok = rng.random() < 0.9 * (1 - broken)
            acc_ok = rng.random() < (0.85 - 0.45 * broken)
            text = (
                "<think>count the legs</think> Answer: B. pond"
                if fmt_ok
                else "The image shows a pond with ducks, so maybe B or C, it is hard to tell"
            )
            fr, ar = float(fmt_ok), 3.0 * acc_ok - 1.0 * (not acc_ok)
            for k, v in (
                ("step", step),
                ("split", "train"),
                ("sample_id", sid),
                ("question_id", f"q{q // 4}-{step}"),
                ("question", "Where do the ducks swim? A. road B. pond C. tree"),
                ("model_output", text),
                ("total_reward", fr + ar),
                ("reward/accuracy", ar),
                ("reward/format", fr),
            ):
                rows[k].append(v)
            sid += 1
    gens = pl.DataFrame(rows)
    return RunData(
        "<dapo-like>",
        pl.DataFrame({"step": list(range(n_steps))}),
        gens,
        IngestReport(source_kind="logscan"),
        {"algorithm": "grpo", "reward_names": ["accuracy", "format"]},
    )


def _check_dapo_alert(run: RunData, alerts) -> None:
    reg = [a for a in alerts if a.kind == "reward_regression"]
    assert reg, [(a.kind, a.message) for a in alerts]
    a = reg[0]
    assert a.severity.value == "critical"
    ev = a.evidence
    assert ev["check"] == "train"
    assert 3 <= ev["onset_step"] <= 7, ev
    assert ev["onset_step"] <= ev["first_evidence_step"] <= 10
    assert ev["peak"] > 2.5 and ev["peak_step"] <= ev["onset_step"]
    assert ev["late"] < 1.5 and ev["below_warmup"]
    assert ev["components_fell"]["format"]["late"] == 0
    # the headline says onset, first evidence, peak with its step, and the low with its step
    msg = a.message
    assert (
        f"fell from step {ev['onset_step']} (sustained from step {ev['first_evidence_step']})"
        in msg
    )
    assert f"at step {ev['peak_step']}" in msg and f"by step {ev['lowest_step']}" in msg
    # completions of the onset period that show it: below the peak, at the onset or shortly after
    gens = run.generations
    assert gens is not None
    rows = gens.filter(pl.col("sample_id").is_in(ev["sample_ids"]))
    assert rows.height == len(ev["sample_ids"]) > 0
    assert (rows["step"] >= ev["onset_step"]).all()
    assert (rows["step"] <= ev["first_evidence_step"] + 3).all()
    assert (rows["total_reward"] < ev["peak"]).all()


def test_dapo_like_run_that_gets_worse_is_critical() -> None:
    run = _dapo_like()
    alerts, _ = _detect(run)
    _check_dapo_alert(run, alerts)


def test_real_dapo_rollouts_are_no_longer_healthy(real_run) -> None:
    run = real_run(ROLLOUTS)
    alerts, statuses = _detect(run)
    assert statuses["reward_regression"].ran
    _check_dapo_alert(run, alerts)
    reg = next(a for a in alerts if a.kind == "reward_regression")
    assert "also fell:" in reg.message and "'format'" in reg.message  # 0.94 → 0 in the dump


@pytest.mark.parametrize("gens", [True, False])
def test_generated_regression_is_found_at_its_onset(gens: bool) -> None:
    sc = make_scenario("reward_regression", seed=3, noise=1.0, with_generations=gens)
    features = build_features(sc.run)
    alerts, _ = run_detectors(
        sc.run, compute_metrics(sc.run, features=features), None, None, features=features
    )
    reg = [a for a in alerts if a.kind == "reward_regression" and a.evidence["check"] == "train"]
    assert reg
    assert abs(reg[0].step - sc.onset) <= delay_tolerance(sc.n_steps)
    assert reg[0].evidence["peak_step"] <= reg[0].step <= reg[0].evidence["first_evidence_step"]


def test_one_noisy_low_point_is_not_a_regression() -> None:
    rng = np.random.default_rng(0)
    n = 120
    reward = 1.0 + 0.5 * (1 - np.exp(-np.arange(n) / 30)) + 0.05 * rng.standard_normal(n)
    reward[70] = -3.0  # one bad batch
    reward[71] = 0.0
    steps = pl.DataFrame({"step": np.arange(n), "reward": reward})
    run = RunData("x", steps, None, IngestReport(source_kind="logscan"), {"algorithm": "grpo"})
    alerts, _ = run_detectors(run, steps, None, None)
    assert not [a for a in alerts if a.kind == "reward_regression"]


def test_a_preference_run_s_falling_rejected_reward_is_not_a_regression() -> None:
    # DPO's rewards/rejected is meant to fall: an implicit reward, not a reward function
    n = 80
    t = np.arange(n)
    steps = pl.DataFrame(
        {
            "step": t,
            "loss": 0.69 - 0.3 * t / n,
            "rewards/chosen": 0.1 * t / n,
            "rewards/rejected": -3.0 * t / n,
            "rewards/margins": 3.1 * t / n,
        }
    )
    run = RunData("x", steps, None, IngestReport(source_kind="logscan"), {"algorithm": "dpo"})
    alerts, _ = run_detectors(run, steps, None, None)
    assert not [a for a in alerts if a.kind == "reward_regression"]


def _train_and_eval(train_falls: bool) -> pl.DataFrame:
    rng = np.random.default_rng(2)
    n = 100
    t = np.arange(1, n + 1)
    acc = np.minimum(0.7, 0.3 + 0.01 * t)
    ev = np.where(t > 50, acc - 0.4 * np.clip((t - 50) / 5, 0, 1), acc)
    train = np.where(t > 50, acc - 0.4 * np.clip((t - 50) / 5, 0, 1), acc) if train_falls else acc
    frame = pl.DataFrame({"step": t, "reward": 2 * train + 0.03 * rng.standard_normal(n)})
    every = t[t % 4 == 0]
    evals = pl.DataFrame(
        {"step": every, "eval/gen_accuracy": ev[every - 1] + 0.01 * rng.standard_normal(every.size)}
    )
    return frame.join(evals, on="step", how="left")


def test_eval_score_falling_with_the_train_reward_is_reported() -> None:
    steps = _train_and_eval(train_falls=True)
    run = RunData("x", steps, None, IngestReport(source_kind="logscan"), {"algorithm": "grpo"})
    alerts, _ = run_detectors(run, steps, None, None)
    checks = {a.evidence["check"]: a for a in alerts if a.kind == "reward_regression"}
    assert {"train", "eval"} <= set(checks)
    assert checks["eval"].evidence["signal"] == "eval/gen_accuracy"
    assert checks["eval"].severity.value == "critical"  # an accuracy drop of 0.4 ≥ 0.3


def test_eval_score_falling_alone_is_left_to_forgetting() -> None:
    steps = _train_and_eval(train_falls=False)
    run = RunData("x", steps, None, IngestReport(source_kind="logscan"), {"algorithm": "grpo"})
    alerts, _ = run_detectors(run, steps, None, None)
    assert not [a for a in alerts if a.kind == "reward_regression"]
    assert [a for a in alerts if a.kind == "catastrophic_forgetting"]


def test_a_component_falling_while_the_total_holds_is_named_in_the_headline() -> None:
    # the format reward is lost while correctness makes up for it: the total holds
    rng = np.random.default_rng(4)
    n = 120
    t = np.arange(1, n + 1)
    fmt = np.where(
        t > 60, 0.9 - 0.85 * np.clip((t - 60) / 8, 0, 1), 0.9
    ) + 0.02 * rng.standard_normal(n)
    corr = np.where(
        t > 60, 1.0 + 0.85 * np.clip((t - 60) / 8, 0, 1), 1.0
    ) + 0.02 * rng.standard_normal(n)
    steps = pl.DataFrame(
        {"step": t, "reward": fmt + corr, "reward/format": fmt, "reward/correctness": corr}
    )
    run = RunData("x", steps, None, IngestReport(source_kind="logscan"), {"algorithm": "grpo"})
    alerts, _ = run_detectors(run, steps, None, None)
    reg = [a for a in alerts if a.kind == "reward_regression"]
    assert len(reg) == 1, reg
    a = reg[0]
    assert a.evidence["signal"] == "reward component 'format'"
    assert a.message.startswith("reward component 'format' fell from step ")
    assert abs(a.step - 61) <= 5 and a.severity.value == "critical"  # 0.9 → 0.05: ≥ half lost


def test_an_eval_score_falling_without_a_train_reward_is_a_regression() -> None:
    rng = np.random.default_rng(5)
    t = np.arange(4, 201, 4)
    acc = np.where(
        t > 100, 0.7 - 0.3 * np.clip((t - 100) / 12, 0, 1), 0.7
    ) + 0.01 * rng.standard_normal(t.size)
    steps = pl.DataFrame(
        {"step": t, "loss": 0.5 + 0.01 * rng.standard_normal(t.size), "eval/gen_accuracy": acc}
    )
    run = RunData("x", steps, None, IngestReport(source_kind="logscan"), {"algorithm": "grpo"})
    alerts, _ = run_detectors(run, steps, None, None)
    reg = [a for a in alerts if a.kind == "reward_regression"]
    assert [a.evidence["check"] for a in reg] == ["eval"]
    assert reg[0].severity.value == "critical" and abs(reg[0].step - 104) <= 8


def test_thousands_of_noise_components_raise_no_fall_and_a_real_one_is_found() -> None:
    # a wide run: 2,000 reward functions of pure noise, then the same with one that collapses
    rng = np.random.default_rng(6)
    n = 60
    t = np.arange(1, n + 1)
    cols = {f"reward/r{i}": rng.random(n) for i in range(2000)}
    steps = pl.DataFrame({"step": t, **cols})
    run = RunData("x", steps, None, IngestReport(source_kind="logscan"), {"algorithm": "grpo"})
    alerts, _ = run_detectors(run, steps, None, None)
    assert not [a for a in alerts if a.kind == "reward_regression"]
    fell = np.where(t > 30, 0.02, 0.9) + 0.02 * rng.standard_normal(n)
    steps = steps.with_columns(pl.Series("reward/format", fell))
    run = RunData("x", steps, None, IngestReport(source_kind="logscan"), {"algorithm": "grpo"})
    alerts, _ = run_detectors(run, steps, None, None)
    reg = [a for a in alerts if a.kind == "reward_regression"]
    assert [a.evidence["signal"] for a in reg] == ["reward component 'format'"]
    ev = reg[0].evidence
    assert list(ev["components_fell"]) == ["format"] and ev["component_min_z"] > 4.5
    assert abs(reg[0].step - 31) <= 3
