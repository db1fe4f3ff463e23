"""Real TRL: GRPOTrainer on a tiny random Qwen2 (examples/trl_grpo_tiny.py) logged by trainer_hooks.

The strongest check: TRL's own logged means (``rewards/<name>/mean``, ``reward``, ``eval_reward``)
at each step equal the means of the per-completion values the wrapper logged for that step.
"""

from __future__ import annotations

import importlib.util
import json
import math
import statistics
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from trainer_hooks import question_id_for, request_stop, schema

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "trl_grpo_tiny", REPO_ROOT / "examples" / "trl_grpo_tiny.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").split("\n") if x]


def _nanmean(values: list[Any]) -> float:
    xs = [schema.decode_float(v) for v in values]
    finite = [x for x in xs if x is not None and not math.isnan(x)]
    return statistics.fmean(finite) if finite else math.nan


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("trl")
    run = tmp_path_factory.mktemp("tiny") / "run"
    _example().train(
        run, max_steps=2, num_generations=2, batch_size=4, max_completion_length=12, eval_steps=2
    )
    return run


def test_every_completion_logged_with_both_rewards(tiny_run: Path) -> None:
    gens = _jsonl(tiny_run / "generations.jsonl")
    train = [g for g in gens if g[schema.G_SPLIT] == "train"]
    evals = [g for g in gens if g[schema.G_SPLIT] == "eval"]
    # 2 steps x 4 completions (batch 4 = 2 prompts x 2 generations); eval: 4 prompts x 2 at step 2
    assert [g[schema.G_STEP] for g in train] == [1] * 4 + [2] * 4
    assert len(evals) == 8 and {g[schema.G_STEP] for g in evals} == {2}
    for g in gens:
        assert set(g[schema.G_REWARDS]) == {"correctness_reward", "brevity_reward"}
        rewards = [schema.decode_float(v) for v in g[schema.G_REWARDS].values()]
        finite = [r for r in rewards if r is not None and not math.isnan(r)]
        assert schema.decode_float(g[schema.G_TOTAL_REWARD]) == pytest.approx(sum(finite))
        question, truth = g[schema.G_QUESTION], g[schema.G_GROUND_TRUTH]
        a, b = question.removeprefix("What is ").removesuffix("? ").split("+")
        assert truth == str(int(a) + int(b))
        assert g[schema.G_QUESTION_ID] == question_id_for(question, truth)
        assert 0 < g[schema.G_EXTRA]["completion_tokens"] <= 12
    # GRPO groups: consecutive pairs share the prompt and the group id, groups differ within a batch
    for batch in (train[:4], train[4:], evals[:4], evals[4:]):
        ids = [g[schema.G_GROUP_ID] for g in batch]
        assert ids[0] == ids[1] != ids[2] == ids[3]
        assert batch[0][schema.G_QUESTION] == batch[1][schema.G_QUESTION]


def test_logged_completions_match_trl_own_metrics(tiny_run: Path) -> None:
    gens = _jsonl(tiny_run / "generations.jsonl")
    events = _jsonl(tiny_run / "events.jsonl")
    train_metrics = {
        e[schema.E_STEP]: e[schema.E_METRICS] for e in events if e[schema.E_PHASE] == "metrics"
    }
    assert sorted(train_metrics) == [1, 2]
    for step, m in train_metrics.items():
        assert {
            "loss",
            "grad_norm",
            "learning_rate",
            "reward",
            "reward_std",
            "entropy",
            "completions/mean_length",
        } <= set(m)
        rows = [g for g in gens if g[schema.G_SPLIT] == "train" and g[schema.G_STEP] == step]
        for name in ("correctness_reward", "brevity_reward"):
            ours = _nanmean([r[schema.G_REWARDS][name] for r in rows])
            assert m[f"rewards/{name}/mean"] == pytest.approx(ours, abs=1e-5)
        assert m["reward"] == pytest.approx(
            _nanmean([r[schema.G_TOTAL_REWARD] for r in rows]), abs=1e-5
        )
        lengths = [r[schema.G_EXTRA]["completion_tokens"] for r in rows]
        assert m["completions/mean_length"] == pytest.approx(statistics.fmean(lengths))
    (ev,) = [e for e in events if e[schema.E_PHASE] == "evaluation"]
    assert ev[schema.E_SPLIT] == "eval" and ev[schema.E_STEP] == 2
    eval_rows = [g for g in gens if g[schema.G_SPLIT] == "eval"]
    assert ev[schema.E_METRICS]["eval_reward"] == pytest.approx(
        _nanmean([r[schema.G_TOTAL_REWARD] for r in eval_rows]), abs=1e-5
    )


def test_lifecycle_events_and_manifest(tiny_run: Path) -> None:
    events = _jsonl(tiny_run / "events.jsonl")
    phases = [e[schema.E_PHASE] for e in events]
    assert phases[0] == "run_start" and phases[-1] == "run_end"
    assert phases.index("train_start") < phases.index("epoch_start") < phases.index("metrics")
    assert phases.index("evaluation") < phases.index("train_end") < phases.index("run_end")
    start = events[phases.index("train_start")]
    assert start[schema.E_META]["args"]["num_generations"] == 2
    assert start[schema.E_META]["args"]["max_completion_length"] == 12
    end = events[phases.index("train_end")]
    assert "train_runtime" in end[schema.E_METRICS] and end[schema.E_STEP] == 2
    m = json.loads((tiny_run / "run.json").read_text())
    assert m[schema.M_STATUS] == "finished" and m[schema.M_ALGORITHM] == "grpo"
    assert m[schema.M_REWARD_NAMES] == ["correctness_reward", "brevity_reward"]
    assert m[schema.M_CONFIG]["num_generations"] == 2
    assert (
        m[schema.M_COUNTERS]["records_dropped"] == 0 and m[schema.M_COUNTERS]["records_failed"] == 0
    )
    assert m[schema.M_COUNTERS]["records_written"] == len(events) + 16


def test_wrapped_functions_are_what_trl_expects(tmp_path: Path) -> None:
    from trl.trainer.utils import get_callable_name, is_async_callable

    from trainer_hooks import RunLogger, wrap_reward_functions

    ex = _example()
    with RunLogger(tmp_path) as lg:
        sync_f, async_f = wrap_reward_functions([ex.correctness_reward, ex.brevity_reward], lg)
    assert (get_callable_name(sync_f), get_callable_name(async_f)) == (
        "correctness_reward",
        "brevity_reward",
    )
    assert not is_async_callable(sync_f) and is_async_callable(async_f)


def test_stop_file_stops_training_early(tmp_path: Path) -> None:
    run = tmp_path / "run"
    request_stop(run, "stopped by test")
    _example().train(run, max_steps=5, num_generations=2, batch_size=2, max_completion_length=8)
    events = _jsonl(run / "events.jsonl")
    (stop,) = [e for e in events if e[schema.E_PHASE] == "early_stop"]
    assert stop[schema.E_META]["reason"] == "stopped by test" and stop[schema.E_STEP] == 1
    assert max(e[schema.E_STEP] for e in events if e[schema.E_PHASE] == "metrics") == 1
    assert json.loads((run / "run.json").read_text())[schema.M_STATUS] == "finished"


def test_example_script_cli(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "cli-run"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "examples" / "trl_grpo_tiny.py"),
            "--output",
            str(out),
            "--max-steps",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"logscan run written to {out}" in proc.stdout
    assert len(_jsonl(out / "generations.jsonl")) == 4


def test_callback_events_without_a_trainer(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from trainer_hooks import LogscanCallback, RunLogger

    args: Any = SimpleNamespace(output_dir="out", world_size=1, num_generations=4, max_steps=3)
    state: Any = SimpleNamespace(global_step=3, max_steps=3, epoch=1.0)
    control: Any = SimpleNamespace(should_training_stop=False)
    with RunLogger(tmp_path) as lg:
        cb = LogscanCallback(lg)
        cb.on_log(args, state, control, logs={"loss": 0.5, "kl": float("nan"), "note": "hello"})
        cb.on_log(args, state, control, logs={"eval_reward": 0.25, "epoch": 1.0})
        cb.on_save(args, state, control)
        cb.on_log(args, state, control, logs={"train_runtime": 1.5, "train_loss": 0.4})
        cb.on_train_end(args, state, control)
        assert cb.on_step_end(args, state, control).should_training_stop is False
        request_stop(tmp_path, "enough")
        assert cb.on_step_end(args, state, control).should_training_stop is True
    evs = _jsonl(tmp_path / "events.jsonl")
    by_phase = {e[schema.E_PHASE]: e for e in evs}
    assert [
        e[schema.E_METRICS] for e in evs if e[schema.E_PHASE] == "metrics" and e[schema.E_METRICS]
    ] == [{"loss": 0.5, "kl": "NaN"}]
    assert [e[schema.E_META] for e in evs if e[schema.E_META].get("non_numeric")] == [
        {"non_numeric": {"note": "hello"}}
    ]
    assert by_phase["evaluation"][schema.E_SPLIT] == "eval"
    assert by_phase["evaluation"][schema.E_METRICS] == {"eval_reward": 0.25, "epoch": 1.0}
    assert by_phase["checkpoint"][schema.E_META] == {
        "checkpoint": "checkpoint-3",
        "output_dir": "out",
    }
    assert by_phase["train_end"][schema.E_METRICS] == {"train_runtime": 1.5, "train_loss": 0.4}
    assert by_phase["early_stop"][schema.E_META] == {"reason": "enough"}


def _rank_main(rank: int, world: int, port: int, base: str, stop_on_rank0: bool, out: Any) -> None:
    """One rank of a 2-process CPU (gloo) group: a LogscanCallback with its own run folder (as on
    nodes that share no file system), one training step's on_step_end."""
    import os
    from types import SimpleNamespace

    import torch.distributed as dist

    from trainer_hooks import LogscanCallback, RunLogger

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        run = Path(base) / f"rank{rank}"
        with RunLogger(run, rank=rank, world_size=world) as lg:
            cb = LogscanCallback(lg)
            args = SimpleNamespace(output_dir=str(run), world_size=world, device="cpu")
            state = SimpleNamespace(global_step=1, max_steps=10, epoch=0.1)
            if stop_on_rank0 and rank == 0:
                request_stop(run, "rank 0 saw it")
            control = cb.on_step_end(args, state, SimpleNamespace(should_training_stop=False))
            out.put((rank, control.should_training_stop, cb._agreed_stop_reason(args)))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("stop", [True, False], ids=["stop-on-rank-0", "no-stop"])
def test_stop_request_is_agreed_across_real_ranks(tmp_path: Path, stop: bool) -> None:
    """Real torch.distributed (gloo, 2 processes): a STOP seen by rank 0 only stops both ranks (the
    all-reduce), so neither is left waiting in the next collective; without one, neither stops."""
    pytest.importorskip("transformers")
    torch_mp = pytest.importorskip("torch.multiprocessing")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = torch_mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_rank_main, args=(r, 2, port, str(tmp_path), stop, out)) for r in range(2)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(timeout=120)
    finally:
        for p in procs:  # a rank stuck in a collective must not outlive the test
            if p.is_alive():
                p.kill()
                p.join(timeout=10)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    results = sorted(out.get(timeout=10) for _ in range(2))
    if stop:
        assert results == [(0, True, "rank 0 saw it"), (1, True, "stop requested on another rank")]
        events = _jsonl(tmp_path / "rank1" / "events.rank1.jsonl")
        assert any(e[schema.E_PHASE] == "early_stop" for e in events)
    else:
        assert results == [(0, False, None), (1, False, None)]
