"""Every real log in ../shared/realdata/ either ingests with sensible values or fails with a
one-line InputError; the concrete numbers below were read off the files by hand."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from analyzer.errors import InputError
from analyzer.ingest import load_run
from tests.conftest import REALDATA

ALL_FILES = sorted(p for p in REALDATA.rglob("*") if p.is_file() and p.name != "README.md") if REALDATA.is_dir() else []


def _row(run, step: int) -> dict:
    rows = run.steps.filter(pl.col("step") == step).to_dicts()
    assert len(rows) == 1, f"step {step} not found once"
    return rows[0]


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_real_file_ingests_or_fails_cleanly(path: Path) -> None:
    try:
        run = load_run(path)
    except InputError as exc:
        message = str(exc)
        assert "\n" not in message and message
        return
    assert run.steps.height > 0 or (run.generations is not None and run.generations.height > 0)
    assert run.steps["step"].dtype == pl.Int64
    assert run.steps["step"].is_sorted() and run.steps["step"].n_unique() == run.steps.height
    assert all(dt == pl.Float64 for name, dt in run.steps.schema.items() if name != "step")
    assert run.report.records_read > 0
    assert {"run_id", "algorithm", "model", "config", "status", "reward_names", "world_size", "source_kind"} <= run.info.keys()


def test_trl_grpo_trainer_state(realdata: Path) -> None:
    run = load_run(realdata / "Rusheel86__Chaos-Economy" / "trainer_state.json")
    assert run.report.source_kind == "hf_trainer_state"
    assert run.steps["step"].to_list() == list(range(5, 201, 5))
    last = _row(run, 200)
    assert last["reward"] == pytest.approx(-0.48682005107402804)
    assert last["kl"] == pytest.approx(0.047279800102114675)
    assert last["completion_length"] == 512.0  # completions/mean_length (new) wins over completion_length (old)
    assert last["clipped_ratio"] == 1.0
    assert last["reward/pnl_reward_fn"] == pytest.approx(-0.8968200325965882)
    assert last["reward/pnl_reward_fn/std"] == pytest.approx(0.5849192023277283)
    assert run.info["algorithm"] == "grpo"
    assert run.info["reward_names"] == ["diversity_reward_fn", "format_reward_fn", "oversight_reward_fn", "pnl_reward_fn", "risk_reward_fn"]
    assert run.report.unknown_keys == []
    later = load_run(realdata / "Rusheel86__Chaos-Economy" / "training_logs.json")
    assert later.steps.height == 50 and later.steps["step"].max() == 250


def test_grpo_without_kl(realdata: Path) -> None:
    run = load_run(realdata / "5ivatej__meta-hackathon" / "results__trainer_state.json")
    assert run.steps["step"].to_list() == [5, 10, 15, 20]
    assert "kl" not in run.steps.columns  # beta = 0: TRL logs no kl
    assert _row(run, 5)["entropy"] == pytest.approx(0.9396193832159042)
    assert _row(run, 5)["frac_reward_zero_std"] == pytest.approx(0.7)


def test_single_entry_state(realdata: Path) -> None:
    run = load_run(realdata / "Ray-Cheng-11__Tau-Bench-Model-Training" / "trainer_state.json")
    assert run.steps.height == 1
    assert _row(run, 10)["reward"] == pytest.approx(0.365625)
    assert run.info["reward_names"] == ["reward_function_wrapper"]


def test_dpo_state_keeps_nan_and_dpo_keys(realdata: Path) -> None:
    run = load_run(realdata / "harryc295__soup-dpo-takehome" / "results__trainer_state.json")
    assert run.steps.height == 75
    assert math.isnan(_row(run, 1)["grad_norm"])  # the literal NaN Python's json wrote
    assert not math.isnan(_row(run, 3)["grad_norm"])
    assert "rewards/chosen" in run.steps.columns and "reward/chosen" not in run.steps.columns
    assert run.info["algorithm"] == "dpo"


def test_orpo_state_and_llamafactory_log(realdata: Path) -> None:
    state = load_run(realdata / "chandlerzuo__rlhf_recsys" / "outputs__trainer_state.json")
    assert state.steps.height == 33 and state.steps["step"].max() == 330  # the summary entry (336) is not a step
    assert state.info["algorithm"] == "orpo"
    assert state.info["train_summary"]["train_runtime"] == pytest.approx(789.838)
    assert _row(state, 10)["odds_ratio_loss"] == pytest.approx(10.130699157714844)
    log = load_run(realdata / "chandlerzuo__rlhf_recsys" / "outputs__trainer_log.jsonl")
    assert log.report.source_kind == "llamafactory"
    assert log.steps.height == 33
    assert _row(log, 10)["loss"] == pytest.approx(1.0495)
    # LLaMA-Factory writes the entry's rewards/accuracies as "accuracy": read under its real name
    assert _row(log, 10)["rewards/accuracies"] == pytest.approx(0.4625000059604645)
    assert "accuracy" not in log.steps.columns


def test_verl_console_log(realdata: Path) -> None:
    run = load_run(realdata / "Bihan__dstack-configs" / "verl_demo.log")
    assert run.report.source_kind == "verl_console"
    assert run.steps["step"].to_list() == list(range(101, 436))
    first = _row(run, 101)
    assert first["reward"] == pytest.approx(0.941)  # critic/score/mean
    assert first["clip_fraction"] == pytest.approx(0.002)  # actor/pg_clipfrac
    assert first["value_loss"] == pytest.approx(0.053)
    assert first["explained_variance"] == pytest.approx(0.240)
    assert _row(run, 435)["eval/openai/gsm8k/reward/mean@1"] == pytest.approx(0.867)
    assert run.report.resumes == [{"file": "verl_demo.log", "line": 368, "from_step": None, "to_step": 100}]
    assert run.steps.width >= 60


def test_trl_console_with_string_values(realdata: Path) -> None:
    run = load_run(realdata / "Sunshine535__nips-grpo-dynamics" / "results__gates_1_2__logs__gate2_rho0.70_seed43.log")
    assert run.report.source_kind == "trl_console"
    assert run.steps["step"].to_list() == list(range(1, 201))
    assert _row(run, 1)["reward"] == 0.5  # '0.5' in the log
    assert _row(run, 200)["kl"] == pytest.approx(0.07517)
    assert run.info["train_summary"]["train_runtime"] == "6269"
    assert any("steps numbered 1..200" in n for n in run.report.notes)


def test_trl_console_steps_from_progress_bar(realdata: Path) -> None:
    run = load_run(next((realdata / "JuncyLu__trl_DAPO").glob("*run_terminal.md")))
    assert run.steps["step"].to_list() == [10, 20, 30]
    assert _row(run, 10)["reward"] == pytest.approx(1.875)
    assert _row(run, 30)["clipped_ratio"] == pytest.approx(0.9953125)
    assert "attention/early/mdi" in run.report.unknown_keys  # kept, and listed as unknown
    assert "attention/early/mdi" in run.steps.columns


def test_markdown_rollout_dump(realdata: Path) -> None:
    run = load_run(next((realdata / "JuncyLu__trl_DAPO").glob("*rollout_results.md")))
    assert run.report.source_kind == "rollout_markdown" and run.report.issues == []
    g = run.generations
    assert g is not None and g.height == 592  # 37 steps x 16 samples
    assert g["step"].unique().sort().to_list() == list(range(37))
    first = g.row(0, named=True)
    assert first["question"].startswith("system\nYou are a precise assistant.") and first["question"].endswith("assistant")
    assert first["model_output"].endswith("Answer: B. pond")
    assert first["ground_truth_answer"] == "B"
    assert (first["reward/accuracy"], first["reward/format"], first["reward/mdi"], first["total_reward"]) == (1.0, 0.0, -1.0, 3.0)
    assert run.info["reward_names"] == ["accuracy", "format", "mdi"]
