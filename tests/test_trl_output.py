"""One real TRL run, read two ways: TRL's own output folder and logscan's run folder agree.

examples/trl_grpo_tiny.py trains a tiny random Qwen2 with GRPOTrainer (log_completions=True,
save_state()), so its TRL output_dir holds trainer_state.json and completions/*.parquet, while
trainer_hooks writes the logscan run beside it.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from analyzer.columns import OUTPUT, REWARD_PREFIX, STEP, TOTAL_REWARD
from analyzer.ingest import load_run

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("trl")
    spec = importlib.util.spec_from_file_location("trl_grpo_tiny", REPO_ROOT / "examples" / "trl_grpo_tiny.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    run = tmp_path_factory.mktemp("trl_out") / "run"
    example.train(run, max_steps=3, num_generations=2, batch_size=4, max_completion_length=12)
    return run


def test_trl_output_folder_is_detected_with_its_completions(trained: Path) -> None:
    data = load_run(trained / "trl")
    assert data.report.source_kind == "hf_trainer_state+trl_completions"
    assert data.steps[STEP].to_list() == [1, 2, 3]
    assert data.generations is not None
    assert data.generations.height == 12  # 3 steps x 4 completions
    assert sorted(data.reward_names) == ["brevity_reward", "correctness_reward"]
    # TRL's logged per-step reward equals the mean of its own completion table
    for step in (1, 2, 3):
        logged = data.steps.filter(data.steps[STEP] == step)["reward"].item()
        rebuilt = data.generations.filter(data.generations[STEP] == step)[TOTAL_REWARD].mean()
        assert logged == pytest.approx(rebuilt, abs=1e-6)


def test_trl_and_logscan_views_of_the_same_run_agree(trained: Path) -> None:
    trl = load_run(trained / "trl").generations
    ours = load_run(trained).generations
    assert trl is not None and ours is not None
    ours = ours.filter(ours["split"] == "train")
    assert trl.height == ours.height
    for step in (1, 2, 3):
        a = trl.filter(trl[STEP] == step)
        b = ours.filter(ours[STEP] == step)
        # same completions (as text) and the same rewards, per function
        assert sorted(a[OUTPUT].to_list()) == sorted(b[OUTPUT].to_list())
        for name in ("correctness_reward", "brevity_reward"):
            col = REWARD_PREFIX + name
            xs, ys = sorted(a[col].to_list()), sorted(b[col].to_list())
            assert all(math.isclose(x, y, abs_tol=1e-9) for x, y in zip(xs, ys, strict=True))
