"""Preference-optimisation checks (analyzer/detectors/preference.py) on real DPO/ORPO logs
(../shared/realdata, skipped when absent) and on generated twins written the way TRL writes them
(tests/preference_scenarios.py), so CI always covers each behaviour."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from preference_scenarios import KINDS, WHOLE_RUN, make_preference_run

from analyzer import coverage as cov
from analyzer.detectors import run_detectors
from analyzer.detectors.base import DetectorContext, default_config
from analyzer.detectors.preference import preference_family
from analyzer.ingest import load_run
from analyzer.metrics import compute_metrics
from analyzer.model import Alert, DetectorStatus, RunData, Severity
from analyzer.verdict import verdict_for

DPO_REAL = "harryc295__soup-dpo-takehome/results__trainer_state.json"
ORPO_REAL = "chandlerzuo__rlhf_recsys/outputs__trainer_state.json"
LF_LOG_REAL = "chandlerzuo__rlhf_recsys/outputs__trainer_log.jsonl"
PREFERENCE_CHECKS = ("preference_not_learning", "likelihood_displacement", "preference_overoptimisation",
                     "preference_trivial_pairs")


class Result:
    def __init__(self, path: Path) -> None:
        self.run: RunData = load_run(path)
        metrics = compute_metrics(self.run)
        self.alerts, statuses = run_detectors(self.run, metrics, None, None)
        self.status: dict[str, DetectorStatus] = {s.name: s for s in statuses}
        self.coverage = cov.assess(self.run, metrics, statuses)
        self.verdict = verdict_for(self.alerts, metrics.height, min_steps=10, limited=self.coverage.limited)
        self.family = preference_family(DetectorContext(self.run, metrics, None, default_config()["general"]))

    def of(self, kind: str) -> list[Alert]:
        return [a for a in self.alerts if a.kind == kind]

    def warnings(self) -> list[Alert]:
        return [a for a in self.alerts if a.severity.rank >= Severity.WARNING.rank]


def analyse(path: Path) -> Result:
    if not path.exists():
        pytest.skip(f"{path} is not present")
    return Result(path)


def scenario(tmp_path: Path, kind: str | None, trainer: str = "dpo", **kw: Any) -> tuple[Any, Result]:
    sc = make_preference_run(kind, trainer, **kw)
    return sc, Result(sc.write(tmp_path / sc.name.replace("/", "_")))


def edited(folder: Path, state: dict[str, Any]) -> Result:
    """Analyse a scenario's trainer_state.json after a test changed it, written to ``folder``."""
    path = folder / "trainer_state.json"
    path.parent.mkdir()
    path.write_text(json.dumps(state), encoding="utf-8")
    return Result(path)


# --- real logs ----------------------------------------------------------------------------------


def test_real_dpo_run_learns_and_gets_every_preference_check(realdata: Path) -> None:
    """TRL DPO, 75 steps: rewards exactly 0 for the first 4 steps (LR warm-up from 0), accuracy
    0 → ~0.9, margins 0 → ~2.5, rewards/chosen dipping to about -0.7 mid-run and back above 0 at
    the end. A practitioner signs: learning; nothing preference-specific wrong; the NaN grad norms
    (4 steps, loss finite) are a warning."""
    r = analyse(realdata / DPO_REAL)
    assert r.family is not None and r.family.name == "reference"
    for name in PREFERENCE_CHECKS:
        assert r.status[name].ran, (name, r.status[name].reason)
    assert not any(r.of(k) for k in PREFERENCE_CHECKS), r.alerts
    chosen = [e["rewards/chosen"] for e in json.loads((realdata / DPO_REAL).read_text())["log_history"]]
    assert min(chosen) < -0.5 < chosen[-1]  # the dip a displacement rule must not call displacement
    assert [a.kind for a in r.warnings()] == ["nan_values"]
    assert r.of("nan_values")[0].severity is Severity.WARNING  # grad_norm only, loss finite
    assert r.verdict == "warnings" and not r.coverage.limited
    assert r.status["kl_explosion"].reason.startswith("does not apply: DPO logs no KL")


def test_real_orpo_run_is_healthy_and_displacement_does_not_apply(realdata: Path) -> None:
    """LLaMA-Factory ORPO: rewards = 0.1 × average log-prob (negative by nature), accuracy 0.46 → 0.75."""
    r = analyse(realdata / ORPO_REAL)
    assert r.family is not None and r.family.name == "reference_free"
    assert r.family.beta is not None and math.isclose(r.family.beta, 0.1, rel_tol=1e-3)
    assert r.status["likelihood_displacement"].reason.startswith("does not apply: ORPO has no reference model")
    assert "likelihood_displacement" in r.coverage.not_applicable
    assert r.alerts == [] and r.verdict == "healthy"


def test_real_llamafactory_log_is_a_preference_run_limited_to_its_accuracy(realdata: Path) -> None:
    r = analyse(realdata / LF_LOG_REAL)
    assert "rewards/accuracies" in r.run.steps.columns and "accuracy" not in r.run.steps.columns
    assert r.coverage.kind == "preference" and r.verdict == "limited"
    assert r.status["preference_not_learning"].ran and r.status["preference_trivial_pairs"].ran
    assert [n for n, _ in r.coverage.not_run] == ["likelihood_displacement", "preference_overoptimisation"]
    assert "trainer_state.json" in r.coverage.headline()


# --- generated twins: each behaviour ------------------------------------------------------------

CASES = [(kind, trainer) for kind, (_, _, trainers) in KINDS.items() for trainer in trainers]


@pytest.mark.parametrize(("kind", "trainer"), CASES, ids=[f"{t}-{k}" for k, t in CASES])
def test_each_scenario_is_found_on_time(tmp_path: Path, kind: str, trainer: str) -> None:
    expected, min_sev, _ = KINDS[kind]
    sc, r = scenario(tmp_path, kind, trainer, seed=1)
    found = [a for a in r.of(expected) if a.severity.rank >= Severity(min_sev).rank]
    assert found, (sc.name, r.alerts)
    if kind not in WHOLE_RUN:
        assert sc.onset is not None and abs(int(found[0].step or 0) - sc.onset) <= 10, (found[0].step, sc.onset)


@pytest.mark.parametrize(
    ("trainer", "kw"),
    [("dpo", {}), ("dpo", {"trl_version": "0.12"}), ("dpo", {"eval_every": 10}), ("dpo", {"batch": 4, "n_steps": 100}),
     ("orpo", {}), ("kto", {})],
)
def test_healthy_twins_raise_no_warning_and_are_healthy(tmp_path: Path, trainer: str, kw: dict[str, Any]) -> None:
    for noise in (0.5, 2.0):
        sc, r = scenario(tmp_path, None, trainer, seed=3, noise=noise, **kw)
        assert r.warnings() == [], (sc.name, r.alerts)
        assert r.verdict == "healthy", (sc.name, r.coverage.headline())


def test_frozen_policy_is_critical_and_names_the_zero_rewards(tmp_path: Path) -> None:
    _, r = scenario(tmp_path, "frozen")
    (a,) = r.of("preference_not_learning")
    assert a.severity is Severity.CRITICAL and a.step == 1
    assert "exactly 0" in a.message and a.evidence["loss_median"] == pytest.approx(math.log(2), abs=1e-6)


def test_warmup_zero_rewards_are_not_evidence(tmp_path: Path) -> None:
    # TRL's first step (before any update) and an LR warm-up from 0 log rewards of exactly 0
    sc, r = scenario(tmp_path, None, "dpo", seed=5)
    assert sc.state["log_history"][0]["rewards/chosen"] == 0.0
    assert r.of("preference_not_learning") == [] and r.of("preference_trivial_pairs") == []


def test_noisy_pairs_at_ln2(tmp_path: Path) -> None:
    _, r = scenario(tmp_path, "noisy_pairs")
    (a,) = r.of("preference_not_learning")
    assert a.severity is Severity.WARNING and a.evidence["loss_at_ln2"] is True
    assert abs(a.evidence["accuracy_median"] - 0.5) <= 0.1


def test_orpo_log_odds_not_rising_is_named(tmp_path: Path) -> None:
    _, r = scenario(tmp_path, "noisy_pairs", "orpo")
    (a,) = r.of("preference_not_learning")
    assert "log_odds_chosen" in a.message and "log_odds_chosen" in a.evidence["signals"]
    assert "loss_at_ln2" not in json.dumps(a.evidence)  # ORPO's loss carries an NLL: no ln 2 rule


def test_kto_kl_stuck_at_zero_and_kl_explosion_leaves_kto_alone(tmp_path: Path) -> None:
    _, r = scenario(tmp_path, "kl_stuck", "kto")
    (a,) = r.of("preference_not_learning")
    assert a.evidence["signal"] == "kl" and "KTO's kl is exactly 0" in a.message
    assert r.run.info["algorithm"] == "kto"
    assert r.status["kl_explosion"].reason.startswith("does not apply: KTO's kl")
    # KTO logs no accuracies: trivial pairs does not apply
    assert r.status["preference_trivial_pairs"].reason.startswith("does not apply")


def test_displacement_severity_follows_the_chosen_share(tmp_path: Path) -> None:
    for seed in range(4):
        sc, r = scenario(tmp_path, "displacement", seed=seed)
        (a,) = r.of("likelihood_displacement")
        ratio = a.evidence["fall_to_growth"]
        assert a.evidence["chosen_last"] < 0 < a.evidence["margin_growth"]
        assert (a.severity is Severity.CRITICAL) == (ratio >= 1.0), (sc.name, ratio)


def test_displacement_is_not_judged_on_orpo(tmp_path: Path) -> None:
    # the ORPO twin's chosen log-probs fall while its margins grow: no reference model, so the
    # displacement rule does not apply (its rewards are β × log-probabilities, negative by nature)
    sc, r = scenario(tmp_path, "displacement", "orpo")
    rewards = [e["rewards/chosen"] for e in sc.state["log_history"] if "rewards/chosen" in e]
    assert max(rewards) < 0 and rewards[-1] < rewards[len(rewards) // 2]
    assert r.status["likelihood_displacement"].reason.startswith("does not apply: ORPO")
    assert r.of("likelihood_displacement") == []


def test_cpo_or_simpo_keys_are_told_reference_free_from_the_data(tmp_path: Path) -> None:
    """TRL's CPO (and LLaMA-Factory's SimPO) log DPO's keys without log_odds_*: their rewards are
    β × log-probabilities all the same — read from rewards/chosen = β × logps/chosen."""
    state = make_preference_run("displacement", "orpo", seed=3).state
    for e in state["log_history"]:
        for key in ("log_odds_ratio", "log_odds_chosen"):
            e.pop(key, None)
    r = edited(tmp_path / "cpo", state)
    assert r.run.info["algorithm"] == "dpo"  # what the keys alone suggest …
    assert r.family is not None and r.family.name == "reference_free"  # … and what the values say
    assert r.family.beta == pytest.approx(0.1, rel=1e-6)
    assert r.status["likelihood_displacement"].reason.startswith("does not apply")
    assert r.of("likelihood_displacement") == []


def test_recovered_dip_of_the_chosen_reward_is_not_displacement(tmp_path: Path) -> None:
    """The real DPO run's shape: rewards/chosen dips well below 0 mid-run and recovers."""
    state = make_preference_run(None, "dpo", seed=4).state
    hist = [e for e in state["log_history"] if "rewards/chosen" in e]
    n = len(hist)
    for i, e in enumerate(hist):
        dip = -1.2 * math.sin(math.pi * (i - n * 0.2) / (n * 0.5)) if n * 0.2 <= i <= n * 0.7 else 0.0
        e["rewards/chosen"] += dip
        e["rewards/rejected"] += dip
    r = edited(tmp_path / "dip", state)
    assert r.status["likelihood_displacement"].ran and r.of("likelihood_displacement") == []


def test_overoptimisation_with_eval_getting_worse_is_critical(tmp_path: Path) -> None:
    _, r = scenario(tmp_path, "overoptimisation", eval_every=10)
    (a,) = r.of("preference_overoptimisation")
    assert a.severity is Severity.CRITICAL
    assert a.evidence["unbounded_margins"] and a.evidence["eval"]["eval_signal"] in ("eval/loss", "eval/rewards/accuracies")
    # eval/rewards/* are a pair's implicit rewards, not eval quality scores: nothing reads them as a
    # falling eval reward (the rising eval loss may also be reported as forgetting: its companion)
    assert all(x.kind in ("preference_overoptimisation", "catastrophic_forgetting", "loss_spike")
               for x in r.warnings()), r.alerts
    assert not any("eval/rewards/" in json.dumps(x.evidence) for x in r.alerts if x.kind != "preference_overoptimisation")


def test_saturated_accuracy_with_levelling_margins_is_not_overoptimisation(tmp_path: Path) -> None:
    """Easy pairs: the accuracy saturates early, the margins rise and level off — healthy."""
    state = make_preference_run(None, "dpo", seed=6).state
    for e in state["log_history"]:
        if "rewards/accuracies" in e and e["step"] > 40:
            e["rewards/accuracies"] = 1.0
    r = edited(tmp_path / "easy", state)
    assert r.status["preference_overoptimisation"].ran and r.of("preference_overoptimisation") == []


def test_trivial_pairs(tmp_path: Path) -> None:
    _, r = scenario(tmp_path, "trivial_pairs")
    (a,) = r.of("preference_trivial_pairs")
    assert a.evidence["accuracy_first_steps"] >= 0.99 and a.step is not None and a.step <= 5


def test_nan_in_the_implicit_rewards_is_critical(tmp_path: Path) -> None:
    sc, r = scenario(tmp_path, "nan")
    (a,) = r.of("nan_values")
    assert a.severity is Severity.CRITICAL and a.step == sc.onset
    assert "rewards/margins" in a.evidence["columns"]


def test_llamafactory_trainer_log_twin_reads_accuracy_as_the_preference_accuracy(tmp_path: Path) -> None:
    lines = []
    for i in range(1, 34):
        acc = 0.46 + 0.3 * (1 - math.exp(-i / 8))
        lines.append(json.dumps({
            "current_steps": 10 * i, "total_steps": 336, "loss": round(1.0 * math.exp(-i / 5) + 0.1, 4),
            "accuracy": acc, "learning_rate": 5e-6, "epoch": i / 11, "percentage": round(100 * i / 33.6, 2),
            "elapsed_time": "0:00:26", "remaining_time": "0:14:35",
        }))
    path = tmp_path / "lf" / "trainer_log.jsonl"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    r = Result(path)
    assert "rewards/accuracies" in r.run.steps.columns
    assert r.coverage.kind == "preference" and r.family is not None and r.family.name == "unknown"
    assert r.alerts == [] and r.verdict == "limited"
    assert r.status["likelihood_displacement"].reason.startswith("needs rewards/chosen")


def test_online_dpo_with_a_sampled_reward_is_left_to_the_rl_checks(tmp_path: Path) -> None:
    state = make_preference_run(None, "dpo", seed=1).state
    for e in state["log_history"]:
        if "rewards/chosen" in e:
            e["objective/rlhf_reward"] = 0.5
    r = edited(tmp_path / "online", state)
    assert r.family is None and r.coverage.kind != "preference"
    assert all((r.status[n].reason or "").startswith("does not apply") for n in PREFERENCE_CHECKS)
