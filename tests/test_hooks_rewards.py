"""wrap_reward_functions: names, async-ness, gathering per batch, groups, steps, splits, totals."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import math
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from trainer_hooks import RunLogger, question_id_for, schema, wrap_reward_functions


def correctness(
    prompts: list[Any], completions: list[Any], answer: list[str], **kwargs: Any
) -> list[float]:
    texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    return [
        1.0 if f"<answer>{a}</answer>" in t else 0.0 for t, a in zip(texts, answer, strict=True)
    ]


def length_or_none(completions: list[Any], **kwargs: Any) -> list[float | None]:
    return [None if i % 3 == 2 else float(len(str(c))) for i, c in enumerate(completions)]


async def judge(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
    await asyncio.sleep(0)
    return [0.5 for _ in completions]


class AsyncScorer:
    async def __call__(self, completions: list[Any], **kwargs: Any) -> list[float]:
        return [0.25] * len(completions)


class FakeTrainer:
    """The attributes of TRL's GRPOTrainer that the wrapper reads (bound methods are passed in)."""

    def __init__(
        self,
        *,
        training: bool = True,
        process_index: int = 0,
        weights: list[float] | None = None,
        names: list[str] | None = None,
    ) -> None:
        self.model = SimpleNamespace(training=training)
        self.num_generations = 2
        self.num_generations_eval = 4
        self.accelerator = SimpleNamespace(process_index=process_index)
        self.reward_func_names = names or []
        self.reward_weights = weights or [1.0] * len(self.reward_func_names)
        self.args = SimpleNamespace(max_completion_length=4)
        self.metrics: list[tuple[str, float]] = []

    def _log_metric(self, name: str, value: float) -> None:
        self.metrics.append((name, value))

    def _log_completion_extra(self, column: str, values: list[Any]) -> None:
        pass


def call_like_trl(
    funcs: list[Any],
    trainer: FakeTrainer | None,
    inputs: list[dict[str, Any]],
    completions: list[Any],
    ids: list[list[int]],
    global_step: int,
) -> list[list[float]]:
    """Mirror of trl 1.16 GRPOTrainer._calculate_rewards' calling convention for custom functions."""
    prompts = [x["prompt"] for x in inputs]
    keys = [k for k in inputs[0] if k not in ("prompt", "completion", "completion_ids")]
    reward_kwargs: dict[str, Any] = {k: [x[k] for x in inputs] for k in keys}
    reward_kwargs["trainer_state"] = SimpleNamespace(global_step=global_step)
    if trainer is not None:
        reward_kwargs["log_extra"] = trainer._log_completion_extra
        reward_kwargs["log_metric"] = trainer._log_metric
    results: list[list[float]] = [[] for _ in funcs]
    async_funcs = []
    for i, f in enumerate(funcs):
        if inspect.iscoroutinefunction(f) or inspect.iscoroutinefunction(
            getattr(f, "__call__", None)
        ):
            async_funcs.append((i, f))
        else:
            out = f(prompts=prompts, completions=completions, completion_ids=ids, **reward_kwargs)
            results[i] = [math.nan if r is None else r for r in out]
    if async_funcs:
        loop = asyncio.new_event_loop()
        t = threading.Thread(target=loop.run_forever, daemon=True)
        t.start()

        async def run_all() -> list[Any]:
            return await asyncio.gather(
                *(
                    f(prompts=prompts, completions=completions, completion_ids=ids, **reward_kwargs)
                    for _, f in async_funcs
                )
            )

        outs = asyncio.run_coroutine_threadsafe(run_all(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        t.join()
        for (i, _), out in zip(async_funcs, outs, strict=True):
            results[i] = [math.nan if r is None else r for r in out]
    return results


def read_gens(run: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (run / "generations.jsonl").read_text().split("\n") if x]


def _batch(
    n_prompts: int = 2, g: int = 2
) -> tuple[list[dict[str, Any]], list[str], list[list[int]]]:
    inputs, completions, ids = [], [], []
    for p in range(n_prompts):
        for k in range(g):
            inputs.append({"prompt": f"What is {p}+{p}?", "answer": str(2 * p), "id": f"q{p}"})
            ans = str(2 * p) if k == 0 else "?"
            completions.append(f"<reasoning>think {p}.{k}</reasoning><answer>{ans}</answer>")
            ids.append(list(range(3 + k)))
    return inputs, completions, ids


def test_names_and_async_preserved(tmp_path: Path) -> None:
    partial = functools.partial(correctness, answer=["x"])
    with RunLogger(tmp_path) as lg:
        wrapped = wrap_reward_functions([correctness, judge, AsyncScorer(), partial], lg)
    assert [f.__name__ for f in wrapped] == ["correctness", "judge", "AsyncScorer", "correctness"]
    assert not inspect.iscoroutinefunction(wrapped[0]) and not inspect.iscoroutinefunction(
        wrapped[3]
    )
    assert inspect.iscoroutinefunction(wrapped[1]) and inspect.iscoroutinefunction(wrapped[2])
    assert wrapped[0].__doc__ == correctness.__doc__ and wrapped[0].__wrapped__ is correctness
    assert asyncio.run(wrapped[1](prompts=["p"], completions=["c"])) == [0.5]


def test_one_record_per_completion_with_all_rewards(tmp_path: Path) -> None:
    names = ["correctness", "length_or_none", "judge"]
    trainer = FakeTrainer(names=names, weights=[2.0, 0.0, 1.0])
    with RunLogger(tmp_path) as lg:
        funcs = wrap_reward_functions([correctness, length_or_none, judge], lg)
        inputs, completions, ids = _batch()
        values = call_like_trl(funcs, trainer, inputs, completions, ids, global_step=6)
        assert values[0] == [1.0, 0.0, 1.0, 0.0]  # the wrapper returns what the function returned
        assert math.isnan(values[1][2])
    gens = read_gens(tmp_path)
    assert len(gens) == 4
    for i, g in enumerate(gens):
        assert g[schema.G_STEP] == 7  # TRL logs this batch's reward at global_step + 1
        assert g[schema.G_SPLIT] == "train"
        assert set(g[schema.G_REWARDS]) == set(names)
        assert g[schema.G_OUTPUT] == completions[i]
        assert g[schema.G_QUESTION] == inputs[i]["prompt"]
        assert g[schema.G_GROUND_TRUTH] == inputs[i]["answer"]
        assert g[schema.G_QUESTION_ID] == inputs[i]["id"]
        assert g[schema.G_REASONING] == f"think {i // 2}.{i % 2}"
        assert g[schema.G_EXTRA]["completion_tokens"] == 3 + i % 2
        assert g[schema.G_EXTRA]["truncated"] is (3 + i % 2 >= 4)
        # weighted like TRL (trainer.reward_weights): NaN rewards are skipped, as nansum does
        r = g[schema.G_REWARDS]
        length = schema.decode_float(r["length_or_none"])
        assert length is not None
        expect = (
            2.0 * r["correctness"]
            + (0.0 if math.isnan(length) else 0.0 * length)
            + 1.0 * r["judge"]
        )
        assert g[schema.G_TOTAL_REWARD] == expect
    assert gens[2][schema.G_REWARDS]["length_or_none"] == "NaN"
    assert [g[schema.G_GROUP_ID] for g in gens] == ["s7-b1-g0", "s7-b1-g0", "s7-b1-g1", "s7-b1-g1"]
    assert [g[schema.G_ANSWER] for g in gens] == ["0", "?", "2", "?"]


def test_groups_on_a_second_process_and_eval_split(tmp_path: Path) -> None:
    with RunLogger(tmp_path) as lg:
        funcs = wrap_reward_functions([correctness], lg)
        inputs, completions, ids = _batch(n_prompts=1, g=4)  # a 4-completion slice on process 1
        call_like_trl(funcs, FakeTrainer(process_index=1), inputs, completions, ids, global_step=3)
        inputs, completions, ids = _batch(n_prompts=1, g=4)
        call_like_trl(funcs, FakeTrainer(training=False), inputs, completions, ids, global_step=3)
    gens = read_gens(tmp_path)
    # process 1 holds global positions 4..7 of its batch: groups 2 and 3 of num_generations=2
    assert [g[schema.G_GROUP_ID] for g in gens[:4]] == [
        "s4-b1-g2",
        "s4-b1-g2",
        "s4-b1-g3",
        "s4-b1-g3",
    ]
    # evaluation: split eval, TRL logs eval_* at global_step itself, num_generations_eval=4
    assert {g[schema.G_SPLIT] for g in gens[4:]} == {"eval"}
    assert [g[schema.G_GROUP_ID] for g in gens[4:]] == ["s3-b2-g0"] * 4


def test_without_trainer_groups_follow_prompts_and_steps_count_batches(tmp_path: Path) -> None:
    with RunLogger(tmp_path) as lg:
        f1, f2 = wrap_reward_functions([correctness, length_or_none], lg, weights=[1.0, 0.5])
        for _ in range(2):
            prompts = ["a", "a", "a", "b", "b", "a"]
            completions = ["<answer>1</answer>", "x", "y", "z", "w", "v"]
            answer = ["1"] * 6
            f1(prompts, completions, answer=answer)  # positional, outside TRL
            f2(prompts=prompts, completions=completions)
    gens = read_gens(tmp_path)
    assert [g[schema.G_STEP] for g in gens] == [1] * 6 + [2] * 6
    assert [g[schema.G_GROUP_ID].rsplit("-", 1)[1] for g in gens[:6]] == [
        "g0",
        "g0",
        "g0",
        "g1",
        "g1",
        "g2",
    ]
    assert gens[0][schema.G_TOTAL_REWARD] == 1.0 + 0.5 * len("<answer>1</answer>")
    assert gens[2][schema.G_TOTAL_REWARD] == 0.0  # length is None → NaN → skipped
    assert gens[0][schema.G_QUESTION_ID] == question_id_for("a", "1")


def test_chat_prompts_and_completions(tmp_path: Path) -> None:
    with RunLogger(tmp_path) as lg:
        (f,) = wrap_reward_functions([correctness], lg, tags=("think", "answer"))
        prompts = [
            [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"}]
        ] * 2
        completions = [
            [{"role": "assistant", "content": "<think>easy</think><answer>4</answer>"}],
            [{"role": "assistant", "content": [{"type": "text", "text": "<answer>5</answer>"}]}],
        ]
        f(
            prompts=prompts,
            completions=completions,
            answer=["4", "4"],
            trainer_state=SimpleNamespace(global_step=0),
        )
    g1, g2 = read_gens(tmp_path)
    assert (
        g1[schema.G_QUESTION] == "2+2?"
        and g1[schema.G_OUTPUT] == "<think>easy</think><answer>4</answer>"
    )
    assert (
        g1[schema.G_REASONING] == "easy" and g1[schema.G_ANSWER] == "4" and g1[schema.G_STEP] == 1
    )
    assert g2[schema.G_OUTPUT] == "<answer>5</answer>" and g2[schema.G_ANSWER] == "5"
    assert g1[schema.G_REWARDS] == {"correctness": 1.0}


def test_a_batch_one_function_never_scored_is_logged_with_what_we_have(tmp_path: Path) -> None:
    def boom(completions: list[str], **kw: Any) -> list[float]:
        raise RuntimeError("judge down")

    with RunLogger(tmp_path) as lg:
        ok, bad = wrap_reward_functions([length_or_none, boom], lg)
        ok(prompts=["p"], completions=["abc"])
        with pytest.raises(RuntimeError):
            bad(prompts=["p"], completions=["abc"])  # the original's exception is not swallowed
        ok(
            prompts=["p"], completions=["abcd"]
        )  # next batch: the previous one is emitted as partial
        # the last batch is incomplete too: close() emits it
    gens = read_gens(tmp_path)
    assert [g[schema.G_REWARDS] for g in gens] == [{"length_or_none": 3.0}, {"length_or_none": 4.0}]
    assert all(g[schema.G_EXTRA]["missing_rewards"] == ["boom"] for g in gens)


def test_logging_failure_never_breaks_the_reward_function(tmp_path: Path) -> None:
    class Unindexable(list):  # iterable for the reward function, but the wrapper's indexing fails
        def __getitem__(self, i: Any) -> Any:
            raise KeyError(i)

    with RunLogger(tmp_path) as lg:
        (f,) = wrap_reward_functions([length_or_none], lg)
        with pytest.warns(RuntimeWarning, match="could not log"):
            assert f(prompts=["p", "p"], completions=Unindexable(["a", "bb"])) == [1.0, 2.0]


def test_reward_models_pass_through(tmp_path: Path) -> None:
    class FakeRewardModel:
        def forward(self, *a: Any) -> None: ...

        def __call__(self, *a: Any) -> None: ...

    rm = FakeRewardModel()
    with RunLogger(tmp_path) as lg:
        out = wrap_reward_functions(["org/reward-model", rm, correctness], lg)
    assert out[0] == "org/reward-model" and out[1] is rm and out[2].__name__ == "correctness"


def test_own_tags_win_over_the_loggers(tmp_path: Path) -> None:
    # the wrapper's tags decide, also when a completion lacks them (no fallback to the logger's)
    with RunLogger(tmp_path) as lg:
        (f,) = wrap_reward_functions([length_or_none], lg, tags=("think", "ans"))
        f(
            prompts=["p", "p"],
            completions=[
                "<reasoning>r</reasoning><answer>5</answer>",
                "<think>t</think><ans>6</ans>",
            ],
        )
    gens = read_gens(tmp_path)
    assert [(g[schema.G_REASONING], g[schema.G_ANSWER]) for g in gens] == [(None, None), ("t", "6")]
    assert gens[0][schema.G_QUESTION_ID] == question_id_for("p")


def test_a_reward_function_returning_a_generator_hands_trl_its_values(tmp_path: Path) -> None:
    """The wrapper used to consume a returned generator while logging it, so TRL iterated an
    exhausted one and got no rewards at all. A one-shot iterator is now read once and both TRL and
    the log get the same list; anything else is handed back as the very object returned."""

    def lazy(completions: list[str], **kw: Any) -> Any:
        return (float(len(c)) for c in completions)

    async def lazy_async(completions: list[str], **kw: Any) -> Any:
        return iter([0.5] * len(completions))

    same: list[float] = [2.0, 3.0]

    def eager(completions: list[str], **kw: Any) -> list[float]:
        return same

    with RunLogger(tmp_path) as lg:
        f, g, h = wrap_reward_functions([lazy, lazy_async, eager], lg)
        batch = {"prompts": ["p", "p"], "completions": ["ab", "abc"]}
        got = f(**batch)
        assert type(got) is list and got == [2.0, 3.0]
        assert asyncio.run(g(**batch)) == [0.5, 0.5]
        assert h(**batch) is same
    assert [gen[schema.G_REWARDS] for gen in read_gens(tmp_path)] == [
        {"lazy": 2.0, "lazy_async": 0.5, "eager": 2.0},
        {"lazy": 3.0, "lazy_async": 0.5, "eager": 3.0},
    ]
