"""LogscanCallback: a transformers ``TrainerCallback`` that writes a TRL run's metrics and events.

Importing this module does not import transformers: the class is built on first access of
``LogscanCallback`` (module ``__getattr__``), so ``import trainer_hooks`` stays standard-library only.

What it logs (into the RunLogger you give it):

- ``on_log``: every numeric value under TRL's own key names (``loss``, ``reward``, ``kl``,
  ``entropy``, ``rewards/<name>/mean``, ``completions/mean_length``, …) as a ``metrics`` record
  at ``state.global_step``; evaluation logs (``eval_*`` keys) with ``phase=evaluation``,
  ``split=eval``. The end-of-training summary (``train_runtime``, ``train_loss``, …) goes into the
  ``train_end`` event instead, so it does not pollute the last step.
- ``train_start`` (with the training arguments), ``train_end``, ``epoch_start``/``epoch_end``,
  ``checkpoint`` (``on_save``) and ``early_stop`` events.
- After every step it checks the run folder's ``STOP`` file (``request_stop``); when present it
  sets ``control.should_training_stop`` (agreed across ranks with an all-reduce when
  ``torch.distributed`` is initialised, so no rank is left waiting in a collective).
"""

from __future__ import annotations

import numbers
import sys
from typing import TYPE_CHECKING, Any

from .schema import TrainingPhase

if TYPE_CHECKING:
    from .logger import RunLogger

__all__ = ["LogscanCallback", "make_callback_class"]

_ARG_KEYS = (
    "max_steps",
    "num_train_epochs",
    "learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_generations",
    "num_generations_eval",
    "generation_batch_size",
    "steps_per_generation",
    "max_completion_length",
    "max_prompt_length",
    "beta",
    "epsilon",
    "loss_type",
    "scale_rewards",
    "reward_weights",
    "temperature",
    "num_iterations",
    "seed",
    "logging_steps",
    "eval_steps",
    "save_steps",
    "output_dir",
)

_cls: type | None = None


def _split_logs(logs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    metrics: dict[str, Any] = {}
    other: dict[str, Any] = {}
    for k, v in logs.items():
        if isinstance(v, numbers.Number) and not isinstance(v, bool):
            metrics[k] = v
        elif hasattr(v, "item"):  # a 0-d tensor / numpy scalar
            try:
                metrics[k] = v.item()
            except (TypeError, ValueError):
                other[k] = str(v)
        else:
            other[k] = v
    return metrics, other


def _algorithm_from_args(args: Any) -> str | None:
    name = type(args).__name__
    if name.endswith("Config") and name != "TrainingArguments":
        return name[: -len("Config")].lower()
    return None


def make_callback_class() -> type:
    """Build (once) the ``TrainerCallback`` subclass; imports transformers."""
    global _cls
    if _cls is not None:
        return _cls
    from transformers import TrainerCallback

    class LogscanCallback(TrainerCallback):
        """Log a transformers/TRL Trainer's metrics and lifecycle into a logscan ``RunLogger``.

        ``trainer = GRPOTrainer(…, callbacks=[LogscanCallback(logger)])``
        """

        def __init__(self, logger: RunLogger, *, flush_on_train_end: bool = True) -> None:
            self.logger = logger
            self.flush_on_train_end = flush_on_train_end
            self._summary: dict[str, Any] = {}
            self._stopped = False

        # -- lifecycle --
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            arg_dict = {k: getattr(args, k) for k in _ARG_KEYS if hasattr(args, k)}
            model = kwargs.get("model")
            name = getattr(getattr(model, "config", None), "_name_or_path", None) or None
            algorithm = _algorithm_from_args(args)
            self.logger.update_manifest(
                algorithm=algorithm, model=name, config=arg_dict, only_missing=True
            )
            self.logger.log_event(
                TrainingPhase.TRAIN_START,
                state.global_step,
                meta={
                    "args": arg_dict,
                    "trainer_args_class": type(args).__name__,
                    "model": name,
                    "world_size": getattr(args, "world_size", 1),
                },
            )

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.logger.log_event(
                TrainingPhase.TRAIN_END,
                state.global_step,
                metrics=self._summary,
                meta={"max_steps": state.max_steps, "epoch": state.epoch},
            )
            if self.flush_on_train_end:
                self.logger.flush(timeout=30.0)

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.logger.log_event(
                TrainingPhase.EPOCH_START, state.global_step, meta={"epoch": state.epoch}
            )

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.logger.log_event(
                TrainingPhase.EPOCH_END, state.global_step, meta={"epoch": state.epoch}
            )

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.logger.log_event(
                TrainingPhase.CHECKPOINT,
                state.global_step,
                meta={
                    "checkpoint": f"checkpoint-{state.global_step}",
                    "output_dir": str(args.output_dir),
                },
            )

        # -- metrics --
        def on_log(
            self,
            args: Any,
            state: Any,
            control: Any,
            logs: dict[str, Any] | None = None,
            **kwargs: Any,
        ) -> None:
            if not logs:
                return
            metrics, other = _split_logs(logs)
            # Trainer's end-of-training summary: train_runtime, train_samples_per_second,
            # train_steps_per_second, total_flos, train_loss
            if "train_runtime" in metrics:
                self._summary.update(metrics)
                return
            if any(k.startswith("eval_") for k in metrics):
                self.logger.log_metrics(
                    state.global_step, metrics, phase=TrainingPhase.EVALUATION, split="eval"
                )
            else:
                self.logger.log_metrics(state.global_step, metrics)
            if other:
                self.logger.log_event(
                    TrainingPhase.METRICS, state.global_step, meta={"non_numeric": other}
                )

        # -- stop requests --
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            reason = self._agreed_stop_reason(args)
            if reason is not None:
                control.should_training_stop = True
                if not self._stopped:
                    self._stopped = True
                    self.logger.log_event(
                        TrainingPhase.EARLY_STOP, state.global_step, meta={"reason": reason}
                    )
            return control

        def _agreed_stop_reason(self, args: Any) -> str | None:
            reason = self.logger.stop_requested()
            if getattr(args, "world_size", 1) <= 1:
                return reason
            # A process group exists only if the training process already loaded torch.distributed,
            # so take it from sys.modules: trainer_hooks itself never imports torch.
            torch = sys.modules.get("torch")
            dist = sys.modules.get("torch.distributed")
            if torch is None or dist is None:
                return reason
            try:
                if not (dist.is_available() and dist.is_initialized()):
                    return reason
                flag = torch.tensor([1 if reason is not None else 0], device=args.device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                if int(flag.item()) and reason is None:
                    return "stop requested on another rank"
            except Exception:  # the local answer is better than a crash
                return reason
            return reason

    _cls = LogscanCallback
    return _cls


if TYPE_CHECKING:
    from transformers import TrainerCallback

    class LogscanCallback(TrainerCallback):
        def __init__(self, logger: RunLogger, *, flush_on_train_end: bool = True) -> None: ...


def __getattr__(name: str) -> Any:
    if name == "LogscanCallback":
        return make_callback_class()
    raise AttributeError(f"module 'trainer_hooks.trl' has no attribute {name!r}")
