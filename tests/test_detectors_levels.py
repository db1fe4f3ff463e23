"""extreme_values: levels are judged on a run of any length; only trend checks wait for min_steps."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from analyzer.detectors import run_detectors
from analyzer.model import IngestReport, RunData
from analyzer.verdict import verdict_for

TERMINAL = "JuncyLu__trl_DAPO/training_logs__20251022_181457__run_terminal.md"


def _run(steps: pl.DataFrame) -> RunData:
    return RunData("x", steps, None, IngestReport(source_kind="logscan"), {"algorithm": "grpo"})


def _levels(steps: pl.DataFrame, config=None):
    alerts, statuses = run_detectors(_run(steps), steps, None, config)
    by = {s.name: s for s in statuses}
    return [a for a in alerts if a.kind == "extreme_values"], alerts, by


def _check_three_step_console_log(alerts, by) -> None:
    assert "too short" in (by["entropy_collapse"].reason or "")  # the trend check still waits
    assert by["extreme_values"].ran
    checks = {a.evidence["check"]: a for a in alerts if a.kind == "extreme_values"}
    assert set(checks) == {"clipped", "entropy_near_zero", "zero_gradient", "format_zero"}
    clipped = checks["clipped"]
    assert clipped.severity.value == "critical"
    assert clipped.message.startswith(
        "99.5 % of completions were cut at the length limit at step 30"
    )
    assert clipped.evidence["onset_step"] == 20 and clipped.evidence["peak_step"] == 30
    assert checks["entropy_near_zero"].severity.value == "critical"  # 1.03 → 0.0085
    assert "down from 1.03 at step 10" in checks["entropy_near_zero"].message
    zero = checks["zero_gradient"]
    assert zero.evidence["zero_steps"] == [20, 30] and zero.evidence["loss_zero_steps"] == [30]
    assert checks["format_zero"].step == 30
    assert verdict_for(alerts, 3) == "critical"  # not "too short — no alerts"


def test_three_step_console_log_twin_gets_real_alerts() -> None:
    steps = pl.DataFrame(
        {
            "step": [10, 20, 30],
            "loss": [-0.0447, -0.0078, 0.0],
            "grad_norm": [0.3019, 0.0, 0.0],
            "clipped_ratio": [0.296875, 0.965625, 0.9953125],
            "entropy": [1.0277, 0.1127, 0.008489],
            "reward": [1.875, 0.49375, 0.925],
            "frac_reward_zero_std": [0.4, 0.58125, 0.58125],
            "reward/think_format_reward": [0.575, 0.0125, 0.0],
            "reward/mc_idx_reward": [0.575, 0.37, 0.48],
        }
    )
    _, alerts, by = _levels(steps)
    _check_three_step_console_log(alerts, by)


def test_real_three_step_console_log_is_not_too_short(real_run) -> None:
    run = real_run(TERMINAL)
    alerts, statuses = run_detectors(run, run.steps, None, None)
    _check_three_step_console_log(alerts, {s.name: s for s in statuses})


def test_a_short_healthy_run_is_still_too_short() -> None:
    steps = pl.DataFrame(
        {
            "step": [1, 2, 3],
            "loss": [0.0, 0.01, -0.02],  # a GRPO loss of 0 alone is normal
            "grad_norm": [0.4, 0.5, 0.45],
            "clipped_ratio": [0.02, 0.0, 0.05],
            "entropy": [0.9, 0.85, 0.8],
            "frac_reward_zero_std": [0.3, 0.2, 0.25],
            "reward/format": [0.2, 0.4, 0.5],
        }
    )
    levels, alerts, by = _levels(steps)
    assert by["extreme_values"].ran and not levels
    assert verdict_for(alerts, 3) == "too_short"


def test_one_logged_entry_with_nine_tenths_clipped_is_critical() -> None:
    # twin of a real TRL trainer_state.json holding a single log entry (clipped_ratio 0.9125)
    steps = pl.DataFrame(
        {"step": [10], "clipped_ratio": [0.9125], "loss": [0.0], "grad_norm": [0.57]}
    )
    levels, _, _ = _levels(steps)
    assert [(a.evidence["check"], a.severity.value) for a in levels] == [("clipped", "critical")]
    assert levels[0].message.startswith(
        "91 % of completions were cut at the length limit at step 10:"
    )


def test_every_group_without_spread_on_a_short_run_is_critical() -> None:
    steps = pl.DataFrame({"step": [1, 2, 3, 4], "frac_reward_zero_std": [0.5, 1.0, 1.0, 1.0]})
    levels, _, _ = _levels(steps)
    assert [(a.evidence["check"], a.severity.value, a.step) for a in levels] == [
        ("zero_spread", "critical", 2)
    ]


def test_a_format_reward_of_zero_throughout_is_a_warning() -> None:
    # twin of a real 4-entry TRL GRPO trainer_state.json whose think-format reward is 0 at every step
    steps = pl.DataFrame({"step": [5, 10, 15, 20], "reward/think_format_reward_func": [0.0] * 4})
    levels, _, _ = _levels(steps)
    assert [(a.evidence["check"], a.severity.value) for a in levels] == [("format_zero", "warning")]
    assert "0 at every logged step (5–20)" in levels[0].message


def test_long_runs_leave_trend_signals_to_the_trend_detectors() -> None:
    # a 100-step run that ends fully clipped: truncation's finding, not a duplicate here
    n = 100
    t = np.arange(1, n + 1)
    rng = np.random.default_rng(0)
    steps = pl.DataFrame(
        {
            "step": t,
            "clipped_ratio": np.clip(
                np.where(t > 50, 0.98, 0.05) + 0.01 * rng.standard_normal(n), 0, 1
            ),
            "grad_norm": 0.5 + 0.05 * rng.standard_normal(n),
            "loss": np.zeros(n),  # GRPO's loss of 0 with beta = 0: normal
        }
    )
    levels, alerts, _ = _levels(steps)
    assert not levels
    assert [a for a in alerts if a.kind == "truncation"]


def test_a_gradient_stuck_at_zero_in_a_long_run_is_found() -> None:
    n = 100
    t = np.arange(1, n + 1)
    rng = np.random.default_rng(1)
    grad = 0.5 + 0.05 * rng.standard_normal(n)
    grad[60:] = 0.0
    grad[20] = 0.0  # one zero step (all groups agreed): not an event
    steps = pl.DataFrame({"step": t, "grad_norm": grad, "loss": np.where(t > 60, 0.0, 0.01)})
    levels, _, _ = _levels(steps)
    assert [(a.evidence["check"], a.severity.value, a.step) for a in levels] == [
        ("zero_gradient", "critical", 61)
    ]
    assert "from step 61 to step 100 (the run's last logged step)" in levels[0].message


@pytest.mark.parametrize(
    "check", ["clipped", "entropy_near_zero", "zero_gradient", "zero_spread", "format_zero"]
)
@pytest.mark.parametrize("n_steps", [2, 5, 9])
def test_every_level_is_found_at_its_onset_on_short_runs(check: str, n_steps: int) -> None:
    # the labelled short runs of benchmarks/detection/run_short.py
    from detector_scenarios import make_short_run

    sc = make_short_run(check, seed=1, noise=2.0, n_steps=n_steps)
    alerts, _ = run_detectors(sc.run, sc.run.steps, None, None)
    mine = [a for a in alerts if a.kind == "extreme_values" and a.evidence["check"] == check]
    assert mine and mine[0].severity.rank >= 1, alerts
    assert mine[0].step == sc.onset
    healthy = make_short_run(None, seed=1, noise=2.0, n_steps=n_steps)
    loud = [
        a
        for a in run_detectors(healthy.run, healthy.run.steps, None, None)[0]
        if a.severity.rank >= 1
    ]
    assert not loud, loud
