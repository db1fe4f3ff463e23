"""wrap_reward_functions: log every completion TRL's GRPOTrainer scores, with all rewards at once.

TRL calls each reward function once per batch — ``f(prompts=…, completions=…,
completion_ids=…, **reward_kwargs)`` where ``reward_kwargs`` holds the dataset's other columns
(``answer``, …), ``trainer_state``, ``log_extra``, ``log_metric`` — and async functions
concurrently on its event-loop thread. Each wrapped function returns exactly what the original
returned (a generator is read once into a list, which TRL then gets) and also reports its values to a shared collector; when every wrapped function has
reported for the same batch (the same ``completions`` list object), the collector logs one
generation record per completion with all values and their total.

GRPO groups: TRL's sampler repeats each prompt ``num_generations`` times consecutively, and each
process gets a contiguous slice of that order, so completion ``i`` on process ``p`` belongs to group
``(p * len(batch) + i) // num_generations``. Without a trainer to ask, runs of identical
consecutive prompts form the groups.

Standard library only; nothing here imports torch or trl.
"""

from __future__ import annotations

import functools
import inspect
import math
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._encode import TagExtractor, nan_sum

if TYPE_CHECKING:
    from .logger import RunLogger

__all__ = ["completion_text", "prompt_text", "wrap_reward_functions"]

DEFAULT_ANSWER_COLUMNS = ("answer", "ground_truth", "solution")
DEFAULT_ID_COLUMNS = ("question_id", "id")


def _unwrap(func: Any) -> Any:
    """The function inside any layers of ``functools.partial``."""
    while isinstance(func, functools.partial):
        func = func.func
    return func


def _callable_name(func: Any) -> str:
    func = _unwrap(func)
    return getattr(func, "__name__", type(func).__name__)


def _is_async(func: Any) -> bool:
    func = _unwrap(func)
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004 - async callable class instances
    return call is not None and not inspect.isfunction(func) and inspect.iscoroutinefunction(call)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal parts: [{"type": "text", "text": …}, …]
        parts = []
        for part in content:
            if isinstance(part, Mapping):
                if part.get("type", "text") == "text" and "text" in part:
                    parts.append(str(part["text"]))
            else:
                parts.append(str(part))
        return "".join(parts)
    return str(content)


def prompt_text(prompt: Any) -> str:
    """The question of a prompt: the text itself, or a chat prompt's last user message."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(m, Mapping) for m in prompt):
        users = [m for m in prompt if m.get("role") == "user"]
        chosen = users[-1] if users else prompt[-1]
        return _content_text(chosen.get("content"))
    return str(prompt)


def completion_text(completion: Any) -> str:
    """A completion as text: the string itself, or a chat completion's message contents joined."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        return _content_text(completion.get("content"))
    if isinstance(completion, list) and all(isinstance(m, Mapping) for m in completion):
        return "\n".join(_content_text(m.get("content")) for m in completion)
    return str(completion)


def _float(v: Any) -> float:
    if v is None:
        return math.nan  # as TRL does: None means "this function does not score this sample"
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


class _Batch:
    __slots__ = ("completions", "key", "kwargs", "prompts", "values")

    def __init__(
        self, key: tuple[int, ...], prompts: Any, completions: Any, kwargs: dict[str, Any]
    ):
        self.key = key
        # holding the list keeps its id() from being reused while this batch is open
        self.prompts = prompts
        self.completions = completions
        self.kwargs = kwargs
        self.values: dict[str, list[Any]] = {}


class _Collector:
    """Gathers the wrapped functions' values per batch and logs one record per completion."""

    def __init__(
        self,
        names: list[str],
        logger: RunLogger,
        *,
        tags: tuple[str, str],
        weights: Mapping[str, float] | None,
        answer_columns: Sequence[str],
        id_columns: Sequence[str],
        split: str | None,
        step_offset: int,
    ) -> None:
        self.names = names
        self.logger = logger
        # with the logger's own tags its writer thread extracts them, off the training thread
        self.extractors = (
            None if tuple(tags) == logger._tags else (TagExtractor(tags[0]), TagExtractor(tags[1]))
        )
        self.weights = dict(weights) if weights is not None else None
        self.answer_columns = tuple(answer_columns)
        self.id_columns = tuple(id_columns)
        self.split = split
        self.step_offset = step_offset
        self.lock = threading.Lock()
        self.current: _Batch | None = None
        self.batches = 0
        logger.add_close_hook(self.flush_pending)

    def report(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        try:
            self._report(name, args, kwargs, out)
        except Exception as exc:  # logging must never break a reward function
            self.logger._warn_once("rewards", f"logscan: could not log reward batch: {exc!r}")

    def _report(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        prompts = kwargs.get("prompts", args[0] if args else None)
        completions = kwargs.get("completions", args[1] if len(args) > 1 else None)
        if completions is None or out is None:
            return
        values = [_float(v) for v in out]
        key = (id(completions), len(completions), id(prompts))
        ready: list[_Batch] = []
        with self.lock:
            b = self.current
            if b is not None and (b.key != key or name in b.values):
                ready.append(b)  # a batch some wrapped function never scored: log what we have
                b = None
            if b is None:
                b = self.current = _Batch(key, prompts, completions, kwargs)
            b.values[name] = values
            if len(b.values) == len(self.names):
                self.current = None
                ready.append(b)
            for r in ready:
                self._emit(r)

    def flush_pending(self) -> None:
        """Log the batch some wrapped function has not scored yet (a close hook: bounded by the
        time close() has left, as a reward function may hold the lock in another thread)."""
        if not self.lock.acquire(timeout=self.logger._close_time_left()):
            self.logger._warn_once(
                "rewards-close", "logscan: a reward batch still being scored at close() is not logged"
            )
            return
        try:
            b, self.current = self.current, None
            if b is not None:
                self._emit(b)
        finally:
            self.lock.release()

    def _trainer(self, kwargs: Mapping[str, Any]) -> Any:
        # TRL passes bound methods of the trainer (log_metric, log_extra): the trainer itself is
        # how we learn the mode (train/eval), num_generations, the process index and the weights.
        for key in ("log_metric", "log_extra"):
            owner = getattr(kwargs.get(key), "__self__", None)
            if owner is not None:
                return owner
        return None

    def _weights(self, trainer: Any) -> dict[str, float]:
        if self.weights is not None:
            return self.weights
        try:
            names = list(trainer.reward_func_names)
            w = trainer.reward_weights
            w = w.tolist() if hasattr(w, "tolist") else list(w)
            return {n: float(x) for n, x in zip(names, w, strict=False)}
        except Exception:  # no trainer, or not TRL's: unweighted sum
            return {}

    def _emit(self, b: _Batch) -> None:
        """Log batch ``b`` (the next in sequence) one record per completion; under ``self.lock``."""
        self.batches += 1
        seq = self.batches
        kw = b.kwargs
        trainer = self._trainer(kw)
        n = len(b.completions)
        split = self.split
        model = getattr(trainer, "model", None)
        if split is None:
            training = getattr(model, "training", None)
            split = "eval" if training is False else "train"
        state = kw.get("trainer_state")
        gs = getattr(state, "global_step", None)
        # evaluation runs after the step it evaluates, and TRL logs it at global_step itself
        step = gs + (self.step_offset if split == "train" else 0) if isinstance(gs, int) else seq
        num_gen = None
        offset = 0
        if trainer is not None:
            num_gen = getattr(
                trainer, "num_generations" if split == "train" else "num_generations_eval", None
            )
            if num_gen is None:
                num_gen = getattr(trainer, "num_generations", None)
            acc = getattr(trainer, "accelerator", None)
            offset = int(getattr(acc, "process_index", 0) or 0) * n
        max_len = getattr(getattr(trainer, "args", None), "max_completion_length", None)

        prompts = b.prompts if b.prompts is not None else [""] * n
        questions = [prompt_text(p) for p in prompts]
        if isinstance(num_gen, int) and num_gen > 0:
            groups = [(offset + i) // num_gen for i in range(n)]
        else:
            groups = []
            g = -1
            for i, q in enumerate(questions):
                if i == 0 or q != questions[i - 1]:
                    g += 1
                groups.append(g)

        truth_col = next((c for c in self.answer_columns if c in kw), None)
        id_col = next((c for c in self.id_columns if c in kw), None)
        weights = self._weights(trainer)
        missing = [name for name in self.names if name not in b.values]
        ids = kw.get("completion_ids")
        log = self.logger.log_generation
        for i in range(n):
            text = completion_text(b.completions[i])
            rewards = {name: vals[i] for name, vals in b.values.items() if i < len(vals)}
            truth = kw[truth_col][i] if truth_col is not None else None
            truth = None if truth is None else str(truth)
            question = questions[i]
            qid = kw[id_col][i] if id_col is not None else None
            if qid is not None:  # else the writer thread hashes question_id_for(question, truth)
                qid = str(qid)
            total = nan_sum(v * weights.get(name, 1.0) for name, v in rewards.items())
            extra: dict[str, Any] = {}
            if ids is not None and i < len(ids):
                try:
                    extra["completion_tokens"] = len(ids[i])
                    if isinstance(max_len, int):
                        extra["truncated"] = len(ids[i]) >= max_len
                except TypeError:
                    pass
            if missing:
                extra["missing_rewards"] = missing
            if self.extractors is not None:
                extra["reasoning"] = self.extractors[0](text)
                extra["model_answer"] = self.extractors[1](text)
            log(
                step=step,
                question=question,
                model_output=text,
                rewards=rewards,
                ground_truth_answer=truth,
                question_id=qid,
                split=split,
                group_id=f"s{step}-b{seq}-g{groups[i]}",
                total_reward=total,
                **extra,
            )


def wrap_reward_functions(
    funcs: Sequence[Any] | Callable[..., Any],
    logger: RunLogger,
    *,
    tags: tuple[str, str] = ("reasoning", "answer"),
    weights: Sequence[float] | Mapping[str, float] | None = None,
    answer_columns: Sequence[str] = DEFAULT_ANSWER_COLUMNS,
    id_columns: Sequence[str] = DEFAULT_ID_COLUMNS,
    split: str | None = None,
    step_offset: int = 1,
) -> list[Any]:
    """Wrap TRL reward functions so every scored completion is logged with all its rewards.

    Returns a list of functions with the same ``__name__`` (TRL names the ``rewards/<name>``
    metrics after it) and the same sync/async nature, to pass as ``GRPOTrainer(reward_funcs=…)``.

    - ``tags``: the reasoning and answer tags extracted into ``reasoning`` / ``model_answer``.
    - ``weights``: for ``total_reward`` (per function, in order, or by name); by default the
      trainer's ``reward_weights`` when TRL passes the trainer, else 1.
    - ``answer_columns`` / ``id_columns``: dataset columns holding the ground truth / prompt id
      (first present wins); without an id, ``question_id_for(question, ground_truth)``.
    - ``split``: force ``train``/``eval``/``probe``; by default ``eval`` while TRL's model is in
      eval mode (TRL's own test), else ``train``.
    - ``step_offset``: training records get ``trainer_state.global_step + step_offset``. TRL
      scores a batch before the optimizer step it feeds and logs its ``reward`` metric after it,
      at ``global_step + 1``; the default 1 keeps completions and logged metrics on the same step.
      Evaluation records get ``global_step`` (the step TRL logs ``eval_*`` at). Without
      ``trainer_state`` the step is the batch counter (1, 2, …).

    Reward models (``nn.Module``) and model ids (``str``) are returned unchanged: TRL does not call
    them with completions, so they cannot be logged here.
    """
    if callable(funcs) and not isinstance(funcs, Sequence):
        funcs = [funcs]
    funcs = list(funcs)
    name_at: dict[int, str] = {}  # position in funcs → unique name, for the loggable ones
    for i, f in enumerate(funcs):
        if callable(f) and not isinstance(f, str) and not hasattr(f, "forward"):
            base = _callable_name(f)
            name, k = base, 2
            while name in name_at.values():
                name, k = f"{base}_{k}", k + 1
            name_at[i] = name
    weight_map: dict[str, float] | None
    if weights is None:
        weight_map = None
    elif isinstance(weights, Mapping):
        weight_map = {str(k): float(v) for k, v in weights.items()}
    else:
        ws = [float(w) for w in weights]
        if len(ws) != len(funcs):
            raise ValueError(f"weights has {len(ws)} values for {len(funcs)} reward functions")
        weight_map = {name: ws[i] for i, name in name_at.items()}
    collector = _Collector(
        list(name_at.values()),
        logger,
        tags=tags,
        weights=weight_map,
        answer_columns=answer_columns,
        id_columns=id_columns,
        split=split,
        step_offset=step_offset,
    )
    return [_wrap_one(f, name_at[i], collector) if i in name_at else f for i, f in enumerate(funcs)]


def _materialised(result: Any) -> Any:
    """A one-shot iterator (a generator) read into a list, once: logging it and then handing it to
    TRL would leave TRL an exhausted iterator. Anything else is returned as the very object."""
    if isinstance(result, Iterator):
        return list(result)
    return result


def _wrap_one(func: Callable[..., Any], name: str, collector: _Collector) -> Callable[..., Any]:
    if _is_async(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            result = _materialised(await func(*args, **kwargs))
            collector.report(name, args, kwargs, result)
            return result

        wrapper: Callable[..., Any] = async_wrapper
    else:

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            result = _materialised(func(*args, **kwargs))
            collector.report(name, args, kwargs, result)
            return result

        wrapper = sync_wrapper
    # the name TRL shows (rewards/<name>/mean); partials and callable objects have no __name__
    wrapper.__name__ = _callable_name(func)
    wrapper.__qualname__ = getattr(func, "__qualname__", wrapper.__name__)
    return wrapper
