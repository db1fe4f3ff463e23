"""Spikes judged on a robust scale, and one severity policy for one event (loss_spike, kl_explosion)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from analyzer.detectors import run_detectors
from analyzer.model import IngestReport, RunData

SUNSHINE = "Sunshine535__nips-grpo-dynamics/results__gates_1_2__logs__gate2_rho0.70_seed43.log"


def _alerts(steps: pl.DataFrame, kind: str):
    run = RunData("x", steps, None, IngestReport(source_kind="logscan"), {"algorithm": "grpo"})
    alerts, _ = run_detectors(run, steps, None, None)
    return [a for a in alerts if a.kind == kind]


def _noisy_grad_norm(n: int = 200, seed: int = 0) -> np.ndarray:
    """A real-looking GRPO grad norm: ~0.2, with frequent dips toward 0 (steps where few groups had
    a reward spread) that make its log scale wide below the median."""
    rng = np.random.default_rng(seed)
    g = 0.2 * np.exp(0.25 * rng.standard_normal(n))
    dips = rng.random(n) < 0.15
    g[dips] = rng.uniform(0.005, 0.03, dips.sum())
    return g


@pytest.mark.parametrize("first", [0.0, 0.001, 0.2])
def test_a_huge_grad_norm_jump_is_found_whatever_the_first_value(first: float) -> None:
    # twin of the real run below: the jump is found with the first value 0, 0.001 or ordinary
    g = _noisy_grad_norm()
    g[0] = first
    g[40], g[70], g[100] = 60.0, 150.0, 0.5  # the last: 2.5× the median, ordinary noise
    steps = pl.DataFrame({"step": np.arange(1, 201), "grad_norm": g, "loss": np.full(200, 0.03)})
    spikes = _alerts(steps, "loss_spike")
    assert len(spikes) == 1, spikes
    a = spikes[0]
    assert a.evidence["peak"] == 150.0 and a.evidence["peak_step"] == 71
    assert "150 at step 71" in a.message.split(",")[0]  # the headline names the largest jump
    assert "the largest of 2 jumps from step 41 (also 60 at step 41)" in a.message  # others listed
    assert a.step == 41 and a.evidence["jumps"] == 2 and a.evidence["jump_steps"] == [41, 71]
    assert a.evidence["pattern"] == "transient" and a.severity.value == "warning"


def test_real_grad_norm_spike_does_not_rely_on_an_exact_zero(
    realdata: Path, tmp_path: Path
) -> None:
    from analyzer import ingest

    text = (realdata / SUNSHINE).read_text()
    assert "'grad_norm': '0'," in text
    for variant, body in (
        ("as-is", text),
        ("0.001", text.replace("'grad_norm': '0',", "'grad_norm': '0.001',", 1)),
    ):
        path = tmp_path / f"{variant}.log"
        path.write_text(body)
        run = ingest.load_run(path)
        alerts, _ = run_detectors(run, run.steps, None, None)
        grad = [a for a in alerts if a.kind == "loss_spike" and a.evidence["column"] == "grad_norm"]
        assert grad, (variant, [(a.kind, a.message) for a in alerts])
        a = grad[0]
        assert a.evidence["peak"] == pytest.approx(154.6) and a.evidence["peak_step"] == 71
        assert a.message.startswith("grad_norm jumped to 154.6 at step 71 (")
        assert a.severity.value == "warning"  # transient: back at the next step


def _kl_and_loss(n: int = 200, *, spike_len: int = 1, spikes: tuple[int, ...] = (100,)):
    rng = np.random.default_rng(1)
    kl = 0.02 * np.exp(0.1 * rng.standard_normal(n))
    loss = 0.5 * np.exp(0.05 * rng.standard_normal(n))
    for s in spikes:
        kl[s : s + spike_len] = 3.0  # far above 4 × the per-token budget: critical level
        loss[s : s + spike_len] = 20.0
    return pl.DataFrame({"step": np.arange(1, n + 1), "kl": kl, "loss": loss})


@pytest.mark.parametrize(
    ("spike_len", "spikes", "pattern", "severity"),
    [
        (1, (100,), "transient", "warning"),
        (40, (100,), "sustained", "critical"),
        (1, (40, 60, 80, 100, 120, 140), "repeated", "critical"),
    ],
)
def test_one_event_gets_one_severity_in_every_detector(
    spike_len: int, spikes: tuple[int, ...], pattern: str, severity: str
) -> None:
    steps = _kl_and_loss(spike_len=spike_len, spikes=spikes)
    run = RunData("x", steps, None, IngestReport(source_kind="logscan"), {"algorithm": "grpo"})
    alerts, _ = run_detectors(run, steps, None, None)
    loss = [a for a in alerts if a.kind == "loss_spike"]
    assert loss and loss[0].evidence["pattern"] == pattern, loss
    assert loss[0].severity.value == severity
    assert pattern in loss[0].message
    kl = [a for a in alerts if a.kind == "kl_explosion"]
    assert kl, alerts
    if pattern != "sustained":  # a sustained KL excess is the budget check's finding
        assert kl[0].evidence["pattern"] == pattern
    assert kl[0].severity.value == severity


def test_the_policy_is_configurable_in_one_place() -> None:
    steps = _kl_and_loss(spikes=(40, 80, 120))
    run = RunData("x", steps, None, IngestReport(source_kind="logscan"), {"algorithm": "grpo"})
    cfg = {"general": {"spike_repeats": 3}}
    alerts, _ = run_detectors(run, steps, None, cfg)
    by = {a.kind: a for a in alerts}
    assert by["loss_spike"].evidence["pattern"] == "repeated"
    assert by["kl_explosion"].evidence["pattern"] == "repeated"
    assert by["loss_spike"].severity.value == by["kl_explosion"].severity.value == "critical"


def test_real_one_step_event_gets_one_severity_in_kl_and_loss_spike(realdata: Path) -> None:
    # the same step-71 event of a real TRL GRPO run: KL 17.8 (128x its median) and grad_norm 154.6,
    # both back at the next step — transient, a warning in both detectors (KL was critical before)
    from analyzer import ingest

    run = ingest.load_run(realdata / SUNSHINE)
    alerts, _ = run_detectors(run, run.steps, None, None)
    kl = next(a for a in alerts if a.kind == "kl_explosion")
    grad = next(a for a in alerts if a.kind == "loss_spike" and a.evidence["column"] == "grad_norm")
    assert kl.evidence["peak_step"] == grad.evidence["peak_step"] == 71
    assert kl.evidence["pattern"] == grad.evidence["pattern"] == "transient"
    assert kl.severity.value == grad.severity.value == "warning"
    assert kl.evidence["above_critical_level"]  # far past 4 x the budget, and still transient
