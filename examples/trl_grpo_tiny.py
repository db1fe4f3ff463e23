"""Real GRPO training with TRL on CPU in seconds, logged with logscan's trainer_hooks.

    python examples/trl_grpo_tiny.py --output runs/tiny
    logscan analyze runs/tiny

The policy is a tiny randomly initialised Qwen2 model (hidden size 32, 2 layers) over a
character-level tokenizer built here, so nothing is downloaded. It will not learn arithmetic in two
steps, but everything else is the real thing: TRL's GRPOTrainer samples groups of completions,
calls the reward functions (one sync, one async) and updates the model, and logscan records every
completion with both rewards plus TRL's logged metrics and lifecycle events.

The two lines a real training script adds are marked ``# logscan``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import string
import sys
from pathlib import Path
from typing import Any

from trainer_hooks import LogscanCallback, RunLogger, wrap_reward_functions

SPECIAL_TOKENS = ("<pad>", "<eos>", "<unk>")
QUESTIONS = [(f"What is {a}+{b}? ", str(a + b)) for a in range(1, 5) for b in range(1, 5)]


def build_tokenizer() -> Any:
    """A character-level fast tokenizer (printable ASCII + newline), built in memory."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set(string.printable))
    vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *chars])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # every character is its own token; Fuse joins them back without spaces
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="<eos>",
        unk_token="<unk>",
        padding_side="left",
    )


def build_model(tokenizer: Any, *, seed: int = 0) -> Any:
    """A randomly initialised two-layer Qwen2 causal LM sized for the tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    return Qwen2ForCausalLM(config)


def build_dataset(n: int = 16) -> Any:
    """Plain-text prompts with an ``answer`` column (TRL passes it to the reward functions)."""
    from datasets import Dataset

    rows = [QUESTIONS[i % len(QUESTIONS)] for i in range(n)]
    return Dataset.from_dict({"prompt": [q for q, _ in rows], "answer": [a for _, a in rows]})


_DIGITS = re.compile(r"\d+")


def correctness_reward(completions: list[str], answer: list[str], **kwargs: Any) -> list[float]:
    """1.0 when the first number in the completion is the answer."""
    out = []
    for completion, truth in zip(completions, answer, strict=True):
        m = _DIGITS.search(completion)
        out.append(1.0 if m and m.group() == truth else 0.0)
    return out


async def brevity_reward(completions: list[str], **kwargs: Any) -> list[float | None]:
    """An async reward (like an LLM judge would be): shorter is better; None for empty output."""
    await asyncio.sleep(0)
    return [None if not c else 1.0 - min(len(c), 64) / 64 for c in completions]


def train(
    output: str | Path,
    *,
    max_steps: int = 2,
    num_generations: int = 2,
    batch_size: int = 4,
    max_completion_length: int = 16,
    eval_steps: int | None = None,
    seed: int = 0,
) -> Path:
    """Run tiny GRPO into ``output`` (the TRL output_dir; the logscan run folder is the same)."""
    from trl import GRPOConfig, GRPOTrainer

    run_dir = Path(output)
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, seed=seed)
    args = GRPOConfig(
        output_dir=str(run_dir / "trl"),
        use_cpu=True,
        bf16=False,
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        num_generations=num_generations,
        max_completion_length=max_completion_length,
        learning_rate=1e-3,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        # TRL's own records, so the same run can also be read as a TRL output folder:
        # completions/completions_*.parquet here, trainer_state.json by save_state() below.
        log_completions=True,
        eval_strategy="steps" if eval_steps else "no",
        eval_steps=eval_steps,
        seed=seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    with RunLogger(run_dir, algorithm="grpo", model="tiny-qwen2-random") as logger:  # logscan
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=wrap_reward_functions(
                [correctness_reward, brevity_reward], logger
            ),  # logscan
            args=args,
            train_dataset=build_dataset(),
            eval_dataset=build_dataset(batch_size) if eval_steps else None,
            processing_class=tokenizer,
            callbacks=[LogscanCallback(logger)],
        )
        trainer.train()
        trainer.save_state()
    return run_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output", default="runs/tiny", help="run folder to write (default: runs/tiny)"
    )
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--num-generations", type=int, default=2)
    parser.add_argument("--eval-steps", type=int, default=None, help="evaluate every N steps")
    ns = parser.parse_args(argv)
    run_dir = train(
        ns.output,
        max_steps=ns.max_steps,
        num_generations=ns.num_generations,
        eval_steps=ns.eval_steps,
    )
    print(f"logscan run written to {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
