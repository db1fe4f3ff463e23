"""One real TRL GRPO run whose folder holds every log a real run folder holds, read as one run.

examples/trl_grpo_tiny.py's tiny random Qwen2 trains with GRPOTrainer on CPU, with ``output_dir``
the run folder itself: TRL writes ``trainer_state.json``, ``checkpoint-2/`` and ``checkpoint-4/``
and ``completions/*.parquet`` there, trainer_hooks writes ``run.json``, ``events.jsonl`` and
``generations.jsonl`` there, and a reward function logs its completions the way the seed's CSV
logger does (``generations.csv``, ``global_step`` as the reward function sees it).
"""

from __future__ import annotations

import csv
import importlib.util
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from analyzer.ingest import load_run
from analyzer.pipeline import AnalyzeOptions, analyze

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent
SEED_HEADER = ["timestamp", "global_step", "question_id", "question", "ground_truth_answer", "model_output",
               "reasoning", "model_answer", "total_reward", "brevity_reward"]


def _example() -> Any:
    spec = importlib.util.spec_from_file_location("trl_grpo_tiny", REPO_ROOT / "examples" / "trl_grpo_tiny.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def seed_logged_brevity(path: Path) -> Any:
    """A reward function that writes its completions like the seed's CSV logger."""

    def brevity(completions: list[str], prompts: list[str], answer: list[str], trainer_state: Any = None, **kw: Any) -> list[float]:
        rewards = [1.0 - min(len(c), 64) / 64 for c in completions]
        new = not path.exists()
        with path.open("a", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            if new:
                w.writerow(SEED_HEADER)
            for p, c, a, r in zip(prompts, completions, answer, rewards, strict=True):
                w.writerow([time.time(), trainer_state.global_step, "", p, a, c, "", "", r, r])
        return rewards

    brevity.__name__ = "brevity"
    return brevity


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("trl")
    from trl import GRPOConfig, GRPOTrainer

    from trainer_hooks import LogscanCallback, RunLogger, wrap_reward_functions

    ex = _example()
    run = tmp_path_factory.mktemp("trl_multi") / "run"
    tokenizer = ex.build_tokenizer()
    args = GRPOConfig(
        output_dir=str(run), use_cpu=True, bf16=False, max_steps=4, per_device_train_batch_size=4,
        num_generations=2, max_completion_length=12, learning_rate=1e-3, logging_steps=1, report_to=[],
        save_strategy="steps", save_steps=2, log_completions=True, seed=0, dataloader_num_workers=0,
        disable_tqdm=True,
    )
    with RunLogger(run, algorithm="grpo", model="tiny-qwen2-random") as logger:
        trainer = GRPOTrainer(
            model=ex.build_model(tokenizer),
            reward_funcs=wrap_reward_functions([seed_logged_brevity(run / "generations.csv")], logger),
            args=args, train_dataset=ex.build_dataset(), processing_class=tokenizer,
            callbacks=[LogscanCallback(logger)],
        )
        trainer.train()
        trainer.save_state()
    return run


def test_every_source_of_a_real_trl_run_folder_is_read_as_one_run(run_folder: Path, tmp_path: Path) -> None:
    run = load_run(run_folder)
    kinds = [s.kind for s in run.sources]
    assert sorted(kinds) == ["hf_trainer_state", "logscan", "seed_csv", "trl_completions"]
    assert run.data_kinds == {"scalars", "completions"}
    # the folder's own trainer_state.json (written last) ties checkpoint-4 and is used
    not_read = {n.file: n.reason for n in run.report.not_read}
    assert "trainer_state.json" in run.report.files_read
    assert not_read["checkpoint-2/trainer_state.json"].startswith("older checkpoint: global_step 2")
    assert "same global_step (4)" in not_read["checkpoint-4/trainer_state.json"]
    assert any(f.startswith("checkpoint-4/") and "checkpoint file" in r for f, r in not_read.items())
    # the seed's CSV is one step behind TRL, and the data confirms it
    seed = next(s for s in run.sources if s.kind == "seed_csv")
    assert seed.step_shift == 1 and "checked" in seed.alignment
    # each completion once (4 steps x 4), though three logs hold it
    g = run.generations
    assert g is not None and g.height == 16
    assert g["step"].unique().sort().to_list() == [1, 2, 3, 4]
    # hooks' events and TRL's log_history agree: no conflict
    assert not [i for i in run.report.issues if i.kind == "conflict"]
    for step in (1, 2, 3, 4):
        logged = run.steps.filter(pl.col("step") == step)["reward"].item()
        assert g.filter(pl.col("step") == step)["total_reward"].mean() == pytest.approx(logged, abs=1e-6)


def test_metrics_parquet_has_the_trainer_scalars_and_the_completion_metrics(run_folder: Path, tmp_path: Path) -> None:
    analyze(run_folder, AnalyzeOptions(output_dir=tmp_path / "out", no_embeddings=True, no_plots=True, no_html=True))
    metrics = pl.read_parquet(tmp_path / "out" / "metrics.parquet")
    assert metrics["step"].to_list() == [1, 2, 3, 4]
    assert {"loss", "grad_norm", "learning_rate", "reward"} <= set(metrics.columns)
    gen = [c for c in metrics.columns if c.startswith("gen_")]
    assert gen and metrics.select(gen).null_count().sum_horizontal().item() < metrics.height * len(gen)
