"""Honest headlines: every alert states its onset, the first step its evidence held and the peak with
its step, in words that cannot be misread; its sample ids come from the onset period."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import polars as pl
import pytest
from detector_scenarios import ALERT_KIND, KINDS, make_scenario

from analyzer.detectors import run_detectors
from analyzer.features import build_features
from analyzer.metrics import compute_metrics

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "runs" / "sample-grpo"

# kinds whose alerts are single-step events or carry no step (their own wording, tested elsewhere)
EVENTS = {"nan_values", "loss_spike", "log_integrity"}
# the trend kinds held to the rule (detectors added later join this list with their tests)
TREND_KINDS = [
    "reward_hacking",
    "length_hacking",
    "kl_explosion",
    "entropy_collapse",
    "mode_collapse",
    "reward_std_collapse",
    "repetition",
    "format_regression",
    "truncation",
    "value_reward_mismatch",
    "catastrophic_forgetting",
    "semantic_drift",
    "reward_regression",
    "coherence_loss",
    "length_without_accuracy",
]


@cache
def _alerts(kind: str, gens: bool | None = None):
    sc = make_scenario(kind, seed=0, with_generations=gens)
    features = build_features(sc.run)
    metrics = compute_metrics(sc.run, features=features)
    alerts, _ = run_detectors(sc.run, metrics, sc.drift, None, features=features)
    return sc, alerts


def _assert_honest(a, gens: pl.DataFrame | None) -> None:
    ev = a.evidence
    onset, first = ev.get("onset_step"), ev.get("first_evidence_step")
    assert onset is not None and first is not None, (a.kind, ev)
    assert a.step == onset and onset <= first, (a.kind, a.step, onset, first)
    msg = a.message
    assert f"from step {onset}" in msg, msg
    if first != onset:  # the first step the evidence held is said when it differs from the onset
        assert re.search(rf"(held|sustained) from step {first}\b", msg), msg
    if ev.get("peak_step") is not None:
        assert f"step {ev['peak_step']}" in msg, msg
    # sample ids: completions of the onset period (from the onset to a few steps past the first
    # evidence), never the worst ones of the run's end
    ids = ev.get("sample_ids") or []
    if ids and gens is not None:
        steps = gens.filter(pl.col("sample_id").is_in(ids))["step"]
        assert steps.min() >= onset, (a.kind, steps.to_list(), onset)
        assert steps.max() <= first + 5, (a.kind, steps.to_list(), first)


def test_every_scenario_kind_is_held_to_the_rule_or_is_an_event() -> None:
    assert set(TREND_KINDS) | EVENTS <= set(KINDS)


@pytest.mark.parametrize("kind", TREND_KINDS)
def test_every_trend_alert_says_onset_first_evidence_and_peak(kind: str) -> None:
    sc, alerts = _alerts(kind)
    want = ALERT_KIND.get(kind, kind)  # a check raising its detector's kind (length_without_accuracy)
    mine = [
        a for a in alerts
        if a.kind == want and a.step is not None and (want == kind or a.evidence.get("check") == kind)
    ]
    assert mine
    for a in mine:
        _assert_honest(a, sc.run.generations)


def test_the_words_cannot_be_misread() -> None:
    _, alerts = _alerts("reward_hacking")
    a = next(a for a in alerts if a.evidence.get("check") == "verifier_disagreement")
    ev = a.evidence
    # "from step 100 (held from step 107), rising to 90 % by step 200": the peak is said with its
    # step, never as if it held from the onset
    assert re.search(
        rf"from step {ev['onset_step']} \(held from step {ev['first_evidence_step']}\), rising to "
        rf"\d+(\.\d)? % by step {ev['peak_step']}",
        a.message,
    ), a.message


def test_reward_std_collapse_shows_one_group_whose_rewards_are_all_equal() -> None:
    sc, alerts = _alerts("reward_std_collapse", True)
    a = next(a for a in alerts if a.kind == "reward_std_collapse")
    gens = sc.run.generations
    assert gens is not None
    rows = gens.filter(pl.col("sample_id").is_in(a.evidence["sample_ids"]))
    assert rows.height >= 2
    assert rows["group_id"].n_unique() == 1 and rows["step"].n_unique() == 1
    assert rows["total_reward"].n_unique() == 1  # equal rewards: what "no spread" looks like
    assert rows["step"][0] <= a.evidence["first_evidence_step"] + 5


def test_shipped_sample_run_headlines() -> None:
    from analyzer import ingest

    if not SAMPLE.is_dir():
        pytest.skip("examples/runs/sample-grpo is not present")
    run = ingest.load_run(SAMPLE)
    features = build_features(run)
    alerts, _ = run_detectors(
        run, compute_metrics(run, features=features), None, None, features=features
    )
    verifier = next(a for a in alerts if a.evidence.get("check") == "verifier_disagreement")
    ev = verifier.evidence
    # the example: the onset (28), the first step it held (after 28), and 97 % by a later step
    assert ev["onset_step"] == 28 and ev["first_evidence_step"] > 28
    assert f"rising to 97 % by step {ev['peak_step']}" in verifier.message
    for a in alerts:
        if a.kind not in EVENTS and a.step is not None:
            _assert_honest(a, run.generations)


def test_real_dapo_rollouts_headlines(realdata: Path) -> None:
    # the real run that gets worse: its regression, format and verifier alerts follow the rule
    from analyzer import ingest

    path = realdata / "JuncyLu__trl_DAPO/training_logs__20251022_181457__rollout_results.md"
    run = ingest.load_run(path)
    features = build_features(run)
    alerts, _ = run_detectors(
        run, compute_metrics(run, features=features), None, None, features=features
    )
    judged = [
        a
        for a in alerts
        if a.kind in ("reward_regression", "format_regression")
        or a.evidence.get("check") == "verifier_disagreement"
    ]
    assert {a.kind for a in judged} >= {"reward_regression", "format_regression"}
    for a in judged:
        _assert_honest(a, run.generations)


def test_length_in_step_with_the_reward_without_accuracy_is_an_honest_headline() -> None:
    """The info-level length_hacking of a run with neither completions nor an accuracy (the step
    curves alone) carries the onset, the first evidence and the peak like every trend alert."""
    import numpy as np

    from analyzer.model import IngestReport, RunData

    n = 200
    t = np.arange(1, n + 1)
    rng = np.random.default_rng(0)
    ramp = np.clip((t - 100) / 40, 0, 1)
    steps = pl.DataFrame({
        "step": t, "completion_length": 120 + 300 * ramp + 3 * rng.standard_normal(n),
        "reward": 0.3 + 0.6 * ramp + 0.02 * rng.standard_normal(n), "loss": 0.1 + 0.001 * rng.standard_normal(n),
    })
    run = RunData(path="x", steps=steps, generations=None, report=IngestReport("t"), info={"algorithm": "grpo"})
    alerts, _ = run_detectors(run, steps, None, None)
    (a,) = [a for a in alerts if a.kind == "length_hacking"]
    assert a.severity.value == "info" and a.evidence["step_level_corr"] > 0.99
    assert abs(a.evidence["onset_step"] - 100) <= 5
    _assert_honest(a, None)
