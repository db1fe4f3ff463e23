"""Detectors on real logs from public runs (../shared/realdata; skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.detectors import run_detectors
from analyzer.errors import InputError
from analyzer.metrics import compute_metrics

CASES = [
    "harryc295__soup-dpo-takehome/results__trainer_state.json",
    "Rusheel86__Chaos-Economy/trainer_state.json",
    "Rusheel86__Chaos-Economy/training_logs.json",
    "5ivatej__meta-hackathon/results__trainer_state.json",
    "Ray-Cheng-11__Tau-Bench-Model-Training/trainer_state.json",
    "Sunshine535__nips-grpo-dynamics/results__gates_1_2__logs__gate2_rho0.70_seed43.log",
    "Sunshine535__nips-grpo-dynamics/results__gates_1_2__logs__gate2_rho1.00_seed42.log",
    "Bihan__dstack-configs/verl_demo.log",
    "chandlerzuo__rlhf_recsys/outputs__trainer_state.json",
    "chandlerzuo__rlhf_recsys/outputs__trainer_log.jsonl",
    "JuncyLu__trl_DAPO/training_logs__20251022_181457__run_terminal.md",
]


def analyse(path: Path):
    ingest = pytest.importorskip("analyzer.ingest")
    if not path.exists():
        pytest.skip(f"{path} is not present")
    try:
        run = ingest.load_run(path)
    except InputError as exc:  # ingest's call, not ours: nothing for the detectors to judge
        pytest.skip(f"ingest cannot read {path.name}: {exc}")
    alerts, statuses = run_detectors(run, compute_metrics(run), None, None)
    broken = [s for s in statuses if s.reason and s.reason.startswith("internal error")]
    assert not broken, broken
    assert all(s.ran or s.reason for s in statuses)
    return run, alerts, statuses


@pytest.mark.parametrize("rel", CASES)
def test_real_logs_do_not_crash(realdata: Path, rel: str) -> None:
    _, alerts, _ = analyse(realdata / rel)
    for a in alerts:
        assert a.message and isinstance(a.evidence, dict)


def test_dpo_nan_grad_norm_is_reported(realdata: Path) -> None:
    _, alerts, _ = analyse(realdata / CASES[0])
    nan = [a for a in alerts if a.kind == "nan_values"]
    assert nan, alerts
    assert "grad_norm" in nan[0].evidence["columns"]
    assert nan[0].step == nan[0].evidence["columns"]["grad_norm"]["first_step"]


def test_grpo_without_kl_skips_kl_explosion(realdata: Path) -> None:
    # 5ivatej: TRL GRPO logging no kl (beta = 0): skipped with a reason, not "healthy"
    _, _, statuses = analyse(realdata / CASES[3])
    kl = next(s for s in statuses if s.name == "kl_explosion")
    assert not kl.ran and kl.reason


def test_chaos_economy_truncation_is_found(realdata: Path) -> None:
    # completions/clipped_ratio is 0.5-1.0 over the whole run (512-token cap): a real truncation
    _, alerts, _ = analyse(realdata / CASES[1])
    trunc = [a for a in alerts if a.kind == "truncation"]
    assert trunc and trunc[0].evidence["signal"] == "clipped_ratio"


def test_verl_resume_is_reported(realdata: Path) -> None:
    _, alerts, _ = analyse(realdata / CASES[7])
    assert any(a.kind == "log_integrity" and "resumed" in a.message for a in alerts)
