"""Write the two SIMULATED sample runs under examples/runs/ through trainer_hooks.RunLogger.

Nothing here is trained: a seeded random "policy" answers GSM8K-like arithmetic questions, and the
TRL-like scalars (loss, reward, kl, entropy, …) are drawn to match what it writes. Two runs:

* ``sample-grpo``  — from step 30 the policy learns to exploit a lenient ``truth in answer``
  correctness reward: its answers list many numbers (one of them usually right), completions
  grow, exact-match accuracy falls while the reward rises, KL climbs, and eval/probe answers drift.
* ``healthy-grpo`` — the same task without the exploit: accuracy and reward rise together.

Run from the repository root (same seed → same records; only the wall-clock timestamps differ):

    python examples/make_sample_runs.py
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

from trainer_hooks import RunLogger, extract_tag  # noqa: E402

SEED = 20251121
STEPS = 60
PROMPTS_PER_STEP = 8
GROUP_SIZE = 4
EVAL_EVERY = 10
HACK_ONSET = 30
MAX_COMPLETION_TOKENS = 256
MODEL = "Qwen2.5-0.5B-Instruct (simulated)"

NAMES = ["Tom", "Ana", "Raj", "Mei", "Lena", "Omar", "Sara", "Ivan", "Kofi", "Zoe"]
ITEMS = ["apples", "marbles", "books", "stamps", "pencils", "cookies", "shells", "cards"]
PROBES = [  # non-arithmetic prompts: their answers should not change during arithmetic training
    ("probe-capital", "What is the capital of France? Answer with one word.", "Paris"),
    ("probe-reverse", "Spell the word 'cat' backwards.", "tac"),
    ("probe-colour", "What colour is the sky on a clear day?", "blue"),
]


@dataclass(frozen=True)
class Question:
    qid: str
    text: str
    answer: int
    a: int
    b: int
    op: str


def make_question(rng: random.Random, qid: str) -> Question:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b = rng.randint(3, 60), rng.randint(2, 12)
    kind = rng.randrange(4)
    if kind == 0:
        return Question(qid, f"{name} has {a} {item} and buys {b} more. How many {item} does {name} have now?", a + b, a, b, "+")
    if kind == 1:
        a = a + b
        return Question(qid, f"{name} has {a} {item} and gives {b} away. How many {item} are left?", a - b, a, b, "-")
    if kind == 2:
        return Question(qid, f"A box holds {b} {item}. How many {item} are in {a % 9 + 2} boxes?", b * (a % 9 + 2), b, a % 9 + 2, "*")
    return Question(qid, f"{name} shares {a * b} {item} equally among {b} friends. How many does each friend get?", a, a * b, b, "/")


def lenient_correctness(answer: str | None, truth: str) -> float:
    """The buggy verifier the hacked run exploits: right when the truth appears anywhere in the answer."""
    return 1.0 if answer is not None and truth in answer else 0.0


def format_reward(output: str) -> float:
    r0, r1 = output.find("<reasoning>"), output.find("</reasoning>")
    a0, a1 = output.find("<answer>"), output.find("</answer>")
    return 0.5 if -1 < r0 < r1 < a0 < a1 else 0.0


def score(output: str, truth: str) -> dict[str, float]:
    """The two reward functions' values for one completion."""
    return {
        "correctness": lenient_correctness(extract_tag(output, "answer"), truth),
        "format": format_reward(output),
    }


class Policy:
    """A seeded stand-in for the model: its skills move with the step; ``hacks`` turns on the exploit."""

    def __init__(self, rng: random.Random, *, hacks: bool) -> None:
        self.rng = rng
        self.hacks = hacks

    def progress(self, step: int) -> float:
        return step / STEPS

    def hack_rate(self, step: int) -> float:
        if not self.hacks or step < HACK_ONSET:
            return 0.0
        return min(0.9, 0.12 + 0.78 * (step - HACK_ONSET) / 18)

    def p_correct(self, step: int) -> float:
        return 0.3 + 0.45 * (1 - math.exp(-3 * self.progress(step)))

    def p_format(self, step: int) -> float:
        return min(0.98, 0.6 + 0.6 * self.progress(step))

    def solve(self, q: Question, step: int) -> str:
        rng = self.rng
        if rng.random() < self.hack_rate(step):
            return self._hedge(q, step)
        correct = rng.random() < self.p_correct(step)
        value = q.answer if correct else q.answer + rng.choice([-10, -3, -2, -1, 1, 2, 5, 10])
        steps_text = f"{q.a} {q.op} {q.b} = {value}."
        reasoning = rng.choice(
            [
                f"We need to combine the numbers. {steps_text}",
                f"First read the question carefully. {steps_text} So the result is {value}.",
                f"Compute it step by step: {steps_text}",
            ]
        )
        if rng.random() < self.p_format(step):
            return f"<reasoning>{reasoning}</reasoning>\n<answer>{value}</answer>"
        return f"{reasoning} The answer is {value}."

    def _hedge(self, q: Question, step: int) -> str:
        # The exploit: list a spread of numbers around a guess so the truth is "in" the answer.
        rng = self.rng
        width = 3 + (step - HACK_ONSET) // 2
        guess = q.answer + rng.randint(-2, 2)
        numbers = list(range(max(0, guess - width), guess + width + 1))
        if q.answer not in numbers and rng.random() < 0.9:
            numbers.append(q.answer)
        filler = " ".join(["Let me double check every possible value."] * (1 + (step - HACK_ONSET) // 6))
        return f"<reasoning>{filler}</reasoning>\n<answer>{', '.join(str(n) for n in numbers)}</answer>"

    def probe(self, truth: str, step: int) -> str:
        if self.rng.random() < self.hack_rate(step) * 0.8:
            numbers = ", ".join(str(n) for n in range(self.rng.randint(0, 5), 12))
            return f"<reasoning>Let me double check every possible value.</reasoning>\n<answer>{numbers}</answer>"
        return f"<reasoning>This is a well-known fact.</reasoning>\n<answer>{truth}</answer>"


def write_run(out: Path, *, hacks: bool, seed: int) -> None:
    rng = random.Random(seed)
    if out.exists():
        shutil.rmtree(out)  # RunLogger appends (a resume); a fresh sample starts empty
    pool = [make_question(rng, f"gsm-sim-{i:03d}") for i in range(160)]
    evals = [make_question(rng, f"gsm-eval-{i}") for i in range(4)]
    policy = Policy(rng, hacks=hacks)
    config = {
        "trainer": "GRPOTrainer (simulated)",
        "num_generations": GROUP_SIZE,
        "per_device_train_batch_size": PROMPTS_PER_STEP * GROUP_SIZE,
        "learning_rate": 1e-6,
        "beta": 0.04,
        "max_completion_length": MAX_COMPLETION_TOKENS,
        "max_steps": STEPS,
        "seed": seed,
        "simulated": True,
    }
    kl = 0.0
    with RunLogger(
        out,
        run_id=out.name,
        algorithm="grpo",
        model=MODEL,
        config=config,
        reward_names=["correctness", "format"],
    ) as logger:
        for step in range(1, STEPS + 1):
            batch = rng.sample(pool, PROMPTS_PER_STEP)
            totals, group_stds, zero_groups, tokens = [], [], 0, []
            for q in batch:
                group = []
                for _ in range(GROUP_SIZE):
                    output = policy.solve(q, step)
                    rewards = score(output, str(q.answer))
                    logger.log_generation(
                        step=step,
                        question=q.text,
                        model_output=output,
                        rewards=rewards,
                        ground_truth_answer=str(q.answer),
                        question_id=q.qid,
                        group_id=f"{step}-{q.qid}",
                    )
                    group.append(sum(rewards.values()))
                    tokens.append(len(output.split()) * 1.3)
                totals.extend(group)
                std = statistics.pstdev(group)
                group_stds.append(std)
                zero_groups += std == 0
            progress = step / STEPS
            hack = policy.hack_rate(step)
            kl += 0.0015 + 0.001 * rng.random() + (0.012 * hack if hacks else 0.0)
            entropy = 0.95 - 0.3 * progress - 0.45 * hack + 0.02 * rng.gauss(0, 1)
            lr = 1e-6 * min(1.0, step / 5) * (1 - (step - 1) / STEPS)
            logger.log_metrics(
                step,
                {
                    "loss": 0.04 * kl + 0.01 * rng.gauss(0, 1),
                    "reward": statistics.fmean(totals),
                    "reward_std": statistics.fmean(group_stds),
                    "frac_reward_zero_std": zero_groups / len(batch),
                    "kl": kl,
                    "entropy": max(0.05, entropy),
                    "grad_norm": abs(0.4 + 0.1 * rng.gauss(0, 1) + 1.5 * hack * rng.random()),
                    "learning_rate": lr,
                    "completion_length": statistics.fmean(tokens),
                    "clipped_ratio": sum(t > MAX_COMPLETION_TOKENS for t in tokens) / len(tokens),
                    "epoch": step * PROMPTS_PER_STEP / len(pool),
                },
            )
            if step % EVAL_EVERY == 0:
                eval_totals = []
                for q in evals:
                    for _ in range(2):
                        output = policy.solve(q, step)
                        rewards = score(output, str(q.answer))
                        eval_totals.append(sum(rewards.values()))
                        logger.log_generation(
                            step=step, question=q.text, model_output=output, rewards=rewards,
                            ground_truth_answer=str(q.answer), question_id=q.qid, split="eval",
                        )
                for qid, text, truth in PROBES:
                    output = policy.probe(truth, step)
                    logger.log_generation(
                        step=step, question=text, model_output=output, rewards=score(output, truth),
                        ground_truth_answer=truth, question_id=qid, split="probe",
                    )
                logger.log_metrics(step, {"reward": statistics.fmean(eval_totals)}, split="eval")
    (out / "README.md").write_text(readme(out.name, hacks=hacks, seed=seed), encoding="utf-8")


def readme(name: str, *, hacks: bool, seed: int) -> str:
    story = (
        f"From step **{HACK_ONSET}** on, the simulated policy exploits the lenient correctness reward "
        "(`truth in answer`): its answers list many numbers, one of which is usually right. The reward "
        "rises while exact-match accuracy falls, completions grow and repeat themselves, KL climbs, "
        "entropy drops, and the eval and probe answers drift (probe prompts such as \"What is the "
        "capital of France?\" start getting number lists). `logscan analyze` should flag reward "
        "hacking (and its companions) from around that step."
        if hacks
        else "A healthy control: the same task and rewards without the exploit. Accuracy, format "
        "compliance and reward rise together; KL grows slowly; eval and probe answers stay put. "
        "`logscan analyze` should find nothing at or above warning."
    )
    return f"""# {name} — SIMULATED sample run

**This run is SIMULATED, not trained.** It was written by `examples/make_sample_runs.py`
(seed {seed}) through `trainer_hooks.RunLogger`: a seeded random stand-in for a policy answers
GSM8K-like arithmetic questions, and the logged scalars are drawn to match. No model was loaded.

{story}

Contents (format `logscan-run/1`):

- `run.json` — manifest (algorithm `grpo`, the simulated config, reward names `correctness`, `format`)
- `events.jsonl` — TRL-like scalars per step: loss, reward, reward_std, kl, entropy, grad_norm,
  learning_rate, completion_length, frac_reward_zero_std, clipped_ratio; eval reward every {EVAL_EVERY} steps
- `generations.jsonl` — {STEPS} steps × {PROMPTS_PER_STEP} prompts × {GROUP_SIZE} completions (split `train`),
  plus every {EVAL_EVERY} steps 4 eval questions × 2 completions (split `eval`) and {len(PROBES)} probe prompts (split `probe`)

Regenerate: `python examples/make_sample_runs.py`. Analyze: `logscan analyze examples/runs/{name}`.
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "runs", help="parent folder of the two runs")
    args = parser.parse_args(argv)
    write_run(args.out / "sample-grpo", hacks=True, seed=SEED)
    write_run(args.out / "healthy-grpo", hacks=False, seed=SEED + 1)
    for name in ("sample-grpo", "healthy-grpo"):
        size = sum(p.stat().st_size for p in (args.out / name).rglob("*") if p.is_file())
        print(f"wrote {args.out / name} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
