"""Labelled synthetic runs for the detectors: one pathology per scenario, with a known onset.

Shared by ``tests/test_detectors_*.py`` and ``benchmarks/detection/run_suite.py``. Each scenario
is built directly as a ``RunData`` (steps frame + generations frame, seeded numpy noise), so the
detectors are tested on exactly the inputs the pipeline would give them, without files.

A healthy run learns: accuracy and format rise and saturate, KL grows and plateaus, entropy
declines gently, losses and grad norms are noisy but stable. A pathological run is the healthy
run plus one change starting at ``onset`` (a step): the kind named by the scenario.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from analyzer.model import DriftResult, IngestIssue, IngestReport, RunData, Severity

# kind -> (needs completions?, minimum expected severity)
KINDS: dict[str, tuple[bool, str]] = {
    "reward_hacking": (True, "warning"),
    "length_hacking": (True, "warning"),
    "kl_explosion": (False, "warning"),
    "entropy_collapse": (False, "warning"),
    "mode_collapse": (True, "warning"),
    "reward_std_collapse": (False, "warning"),
    "repetition": (True, "warning"),
    "format_regression": (True, "warning"),
    "truncation": (False, "warning"),
    "nan_values": (False, "critical"),
    "loss_spike": (False, "warning"),
    "value_reward_mismatch": (False, "warning"),
    "log_integrity": (False, "warning"),
    "catastrophic_forgetting": (False, "warning"),
    "semantic_drift": (False, "info"),
    "length_without_accuracy": (True, "warning"),
    "coherence_loss": (True, "warning"),
    "reward_regression": (False, "warning"),
}

# the alert kind a scenario kind must raise, where the two differ (a check inside another detector)
ALERT_KIND: dict[str, str] = {"length_without_accuracy": "length_hacking"}


def alert_kind(kind: str) -> str:
    """The alert kind that detects scenario ``kind``."""
    return ALERT_KIND.get(kind, kind)


_WORDS = (
    "first we add the numbers then carry over the tens so total becomes check each digit again "
    "because sum must match count apples oranges left right more less half double triple subtract "
    "multiply divide result value step next finally answer equals therefore hence thus note that "
    "given problem asks find how many each group has per box store sells buys gives away remains "
    "compute quickly verify carefully write down keep track units ones hundreds minus plus times"
).split()


@dataclass
class Scenario:
    name: str
    kind: str | None  # the pathology, None for a healthy control
    onset: int | None  # first step of the problem (None: not a per-step problem, or healthy)
    run: RunData
    drift: DriftResult | None
    min_severity: str  # the weakest severity the alert must have
    n_steps: int


def _ramp(t: np.ndarray, t0: int, width: float) -> np.ndarray:
    return np.clip((t - t0) / max(width, 1.0), 0.0, 1.0) * (t >= t0)


def make_scenario(
    kind: str | None,
    *,
    seed: int = 0,
    noise: float = 1.0,
    n_steps: int = 200,
    with_generations: bool | None = None,
    onset_fraction: float = 0.5,
    prompts_per_step: int = 4,
    group_size: int = 4,
    ppo: bool | None = None,
) -> Scenario:
    """One labelled run. ``kind=None`` is a healthy control. ``noise`` scales every noise term."""
    rng = np.random.default_rng(seed * 1009 + (zlib.crc32(kind.encode()) % 997 if kind else 0))
    if with_generations is None:
        with_generations = KINDS[kind][0] if kind else True
    n = n_steps
    t = np.arange(1, n + 1)
    t0 = round(n * onset_fraction) if kind else None
    k0 = t0 if t0 is not None else n + 10  # "never"
    if ppo is None:
        ppo = kind == "value_reward_mismatch"

    # --- latent healthy curves -------------------------------------------------------------
    acc = 0.25 + 0.45 * (1 - np.exp(-t / (0.3 * n)))
    fmt = np.minimum(0.97, 0.55 + 0.42 * (1 - np.exp(-t / (0.08 * n))))
    length = 60 + 15 * t / n
    hack = np.zeros(n)  # share of completions exploiting a lenient verifier
    dup = np.zeros(n)  # share of completions copying their group's first one
    rep = np.zeros(n)  # share of completions stuck in a loop
    cut = np.zeros(n) + 0.01  # share truncated at the cap
    saturate = np.zeros(n)  # push accuracy/format toward 1 (zero-spread groups)
    garble = np.zeros(n)  # share of completions losing coherence (scripts, gibberish, broken tags)

    if kind == "reward_hacking":
        hack = 0.85 * _ramp(t, k0, 0.08 * n)
    elif kind == "length_hacking":
        length = length + 140 * _ramp(t, k0, 0.15 * n)
        acc = np.where(t >= k0, acc[min(k0, n) - 1], acc)
    elif kind == "length_without_accuracy":
        # completions grow 3x, accuracy stalls and the reward with it: nothing pays for the length
        length = length + 150 * _ramp(t, k0, 0.15 * n)
        acc = np.where(t >= k0, acc[min(k0, n) - 1], acc)
    elif kind == "coherence_loss":
        garble = 0.8 * _ramp(t, k0, 0.05 * n)
    elif kind == "mode_collapse":
        dup = 0.97 * _ramp(t, k0, 0.05 * n)
    elif kind == "repetition":
        rep = 0.9 * _ramp(t, k0, 0.05 * n)
    elif kind == "format_regression":
        fmt = fmt - 0.8 * _ramp(t, k0, 0.04 * n)
    elif kind == "truncation":
        cut = cut + 0.9 * _ramp(t, k0, 0.04 * n)
    elif kind == "reward_regression":
        # the policy gets worse: accuracy (and with it the reward) falls back below its start
        acc = acc - 0.4 * _ramp(t, k0, 0.06 * n)
    elif kind == "reward_std_collapse":
        saturate = _ramp(t, k0, 0.04 * n)
    if kind in ("reward_std_collapse",):
        acc = acc + (0.999 - acc) * saturate
        fmt = fmt + (1.0 - fmt) * saturate

    # --- completions --------------------------------------------------------------------------
    gens = None
    per_step_reward = None
    frac_zero = None
    clipped = cut + noise * 0.01 * rng.standard_normal(n)
    if with_generations:
        gens, per_step_reward, frac_zero, clipped = _generations(
            rng,
            kind,
            n,
            t,
            acc,
            fmt,
            length,
            hack,
            dup,
            rep,
            cut,
            garble,
            prompts_per_step,
            group_size,
            noise,
            k0,
        )

    # --- logged scalars -----------------------------------------------------------------------
    kl = 0.04 * (1 - np.exp(-t / (0.15 * n))) + 0.002
    kl = kl * np.exp(0.15 * noise * rng.standard_normal(n))
    if kind == "kl_explosion":
        kl = kl + np.where(
            t >= k0, 0.02 * (np.exp(np.minimum(t - k0, 0.25 * n) / (0.035 * n)) - 1), 0.0
        )
    entropy = 0.9 - 0.25 * t / n + 0.03 * noise * rng.standard_normal(n)
    if kind == "entropy_collapse":
        entropy = np.where(
            t >= k0, 0.02 + (entropy - 0.02) * np.exp(-(t - k0) / (0.03 * n)), entropy
        )
    loss = 0.02 * noise * rng.standard_normal(n)
    grad_norm = 0.6 * np.exp(0.2 * noise * rng.standard_normal(n))
    if kind == "loss_spike":
        grad_norm[k0 - 1] *= 60
        loss[k0 - 1] += 3.0
        later = min(n - 1, k0 - 1 + int(0.2 * n))
        grad_norm[later] *= 40
    if kind == "nan_values":
        loss[k0 - 1 :] = np.nan
        grad_norm[k0 - 1 :] = np.nan
    if per_step_reward is None:
        reward_components = 2.0 * acc + 0.5 * fmt
        if kind == "truncation":
            reward_components = reward_components * (1 - cut)
        per_step_reward = reward_components + 0.08 * noise * rng.standard_normal(n)
    if frac_zero is None:
        frac_zero = np.clip(0.08 + 0.85 * saturate + 0.03 * noise * rng.standard_normal(n), 0, 1)
    data: dict[str, Any] = {
        "step": t.astype(np.int64),
        "reward": per_step_reward,
        "reward_std": np.abs(0.8 + 0.05 * noise * rng.standard_normal(n)) * (1 - 0.9 * saturate),
        "entropy": entropy,
        "loss": loss,
        "grad_norm": grad_norm,
        "learning_rate": np.full(n, 1e-6),
        "completion_length": length * np.exp(0.03 * noise * rng.standard_normal(n)),
        "clipped_ratio": np.clip(clipped, 0, 1),
        "frac_reward_zero_std": frac_zero,
    }
    if ppo:
        ev = 0.75 * (1 - np.exp(-t / (0.05 * n))) + 0.04 * noise * rng.standard_normal(n)
        ev = np.where(t >= k0, ev - 1.0 * _ramp(t, k0, 0.05 * n), ev)
        data["explained_variance"] = ev
        data["value_loss"] = (
            0.3 * np.exp(-t / (0.3 * n)) + 0.05 + 0.01 * noise * rng.standard_normal(n)
        )
        data["kl"] = kl * 80  # PPO logs a per-sequence KL
    else:
        data["kl"] = kl
    steps = pl.DataFrame(data)

    # eval every 10 steps (scalar): reward on held-out prompts follows train accuracy
    every = max(1, n // 40)
    ev_steps = t[every - 1 :: every]
    ev_acc = acc[ev_steps - 1] - 0.05
    if kind == "catastrophic_forgetting":
        ev_acc = ev_acc - 0.5 * _ramp(ev_steps, k0, 0.05 * n)
    ev_reward = 2.0 * ev_acc + 0.4 + 0.05 * noise * rng.standard_normal(ev_steps.size)
    steps = steps.join(
        pl.DataFrame({"step": ev_steps.astype(np.int64), "eval/reward": ev_reward}),
        on="step",
        how="left",
    )

    report = IngestReport(source_kind="logscan", records_read=n)
    info: dict[str, Any] = {
        "run_id": f"{kind or 'healthy'}-{seed}",
        "algorithm": "ppo" if ppo else "grpo",
        "reward_names": ["correctness", "format"]
        + (["quality"] if kind == "length_hacking" else []),
    }
    if kind == "log_integrity":
        for i in range(4):
            report.issues.append(
                IngestIssue("events.jsonl", 40 + 17 * i, "not valid JSON", "malformed")
            )
        report.records_skipped = 4
        report.resumes.append(
            {"file": "events.jsonl", "line": 120, "from_step": k0 + 10, "to_step": k0}
        )
        # what ingest reports for run.json's counters
        report.issues.append(
            IngestIssue(
                "run.json", None, "the writer reports 3 records dropped (queue full)", "dropped"
            )
        )

    drift = None
    if kind in ("semantic_drift",) or (kind is None and seed % 2 == 1):
        d_train = 0.04 + 0.06 * t / n + 0.01 * noise * rng.standard_normal(n)
        d_eval = 0.03 + 0.02 * t / n + 0.01 * noise * rng.standard_normal(n)
        if kind == "semantic_drift":
            d_train = d_train + 0.45 * _ramp(t, k0, 0.05 * n)
        drift = DriftResult(
            method="fake",
            model=None,
            per_step=pl.DataFrame(
                {"step": t.astype(np.int64), "drift_train_mean": d_train, "drift_eval_mean": d_eval}
            ),
        )
    run = RunData(
        path=f"<synthetic {kind or 'healthy'} seed={seed}>",
        steps=steps,
        generations=gens,
        report=report,
        info=info,
    )
    onset = None if kind in (None, "log_integrity") else t0
    name = f"{kind or 'healthy'}[seed={seed},noise={noise:g},{'gens' if with_generations else 'scalars'}{',ppo' if ppo else ''}]"
    return Scenario(name, kind, onset, run, drift, KINDS[kind][1] if kind else "none", n)


def _text(rng: np.random.Generator, n_words: int) -> str:
    return " ".join(rng.choice(_WORDS, size=max(3, n_words)).tolist())


_FOREIGN = ("所以我们需要计算", "этот ответ верный", "إذن الجواب", "따라서 답은", "それでは次に")
_JUNK = ("<;<;<;", "xkcdqrtz", "}{>|<&%@", "zxcvbnmqw", "#@&%<>;")


def _garbled(rng: np.random.Generator, reasoning: str) -> str:
    """A completion losing coherence (R1-Zero-style): its reasoning switches script mid-answer,
    fills with junk tokens, or breaks into stray nested tags (one of these, at random)."""
    words = reasoning.split()
    cut = max(1, len(words) // 2)
    kind = int(rng.integers(3))
    if kind == 0:
        tail = " ".join(rng.choice(_FOREIGN, size=3).tolist())
    elif kind == 1:
        tail = " ".join(rng.choice(_JUNK, size=4).tolist())
    else:
        tail = "<ref><correct><step>" + " ".join(words[cut:]) + "</step><answer><ref>"
    return " ".join(words[:cut]) + " " + tail


# columns of a completion that describe its prompt (shared by the group) / the completion itself
_PROMPT_COLUMNS = ("step", "split", "question_id", "group_id", "question", "ground_truth_answer")
_COMPLETION_COLUMNS = (
    "model_output",
    "reasoning",
    "model_answer",
    "total_reward",
    "reward/correctness",
    "reward/format",
    "reward/quality",
)


def _generations(
    rng: np.random.Generator,
    kind: str | None,
    n: int,
    t: np.ndarray,
    acc: np.ndarray,
    fmt: np.ndarray,
    length: np.ndarray,
    hack: np.ndarray,
    dup: np.ndarray,
    rep: np.ndarray,
    cut: np.ndarray,
    garble: np.ndarray,
    prompts: int,
    group: int,
    noise: float,
    k0: int,
) -> tuple[pl.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    rows: dict[str, list[Any]] = {k: [] for k in (*_PROMPT_COLUMNS, *_COMPLETION_COLUMNS)}
    cap = 320
    reward_mean = np.zeros(n)
    frac_zero = np.zeros(n)
    clipped = np.zeros(n)
    eval_every = max(1, n // 20)

    def emit(
        step: int, split: str, qid: int, gidx: int, p_acc: float, p_fmt: float, i: int
    ) -> tuple[float, bool]:
        a, b = divmod(qid * 7919 % 10007, 100)
        truth = str(a + b)
        question = f"What is {a} + {b}?"
        n_words = int(max(5, rng.normal(length[i], 0.15 * length[i] * noise)))
        is_trunc = rng.random() < cut[i]
        exploit = rng.random() < hack[i]
        correct = rng.random() < p_acc
        formatted = rng.random() < p_fmt
        if rng.random() < rep[i]:
            phrase = _text(rng, 5)
            reasoning = " ".join([phrase] * max(6, n_words // 5))
        else:
            reasoning = _text(rng, n_words)
        if rng.random() < garble[i]:
            reasoning = _garbled(rng, reasoning)
        answer = truth if correct else str(int(truth) + int(rng.integers(1, 9)))
        if exploit:
            answer = f"{int(truth) - 1} or {truth} or {int(truth) + 1}"
        if is_trunc:
            output = _text(rng, cap)
            reasoning_out, answer_out = None, None
        elif formatted:
            output = f"<reasoning>{reasoning}</reasoning>\n<answer>{answer}</answer>"
            reasoning_out, answer_out = reasoning, answer
        else:
            output = f"{reasoning} so the result is {answer}"
            reasoning_out, answer_out = None, None
        # a lenient verifier: full credit when the truth appears anywhere in the extracted answer
        r_corr = 2.0 if answer_out is not None and truth in answer_out.split(" or ") else 0.0
        r_fmt = 0.5 if answer_out is not None else 0.0
        r_quality = (
            0.012 * len(output.split()) + 0.1 * rng.standard_normal()
            if kind == "length_hacking"
            else 0.0
        )
        total = r_corr + r_fmt + r_quality
        rows["step"].append(step)
        rows["split"].append(split)
        rows["question_id"].append(f"q{qid}")
        rows["group_id"].append(f"{split}-{step}-{gidx}")
        rows["question"].append(question)
        rows["ground_truth_answer"].append(truth)
        rows["model_output"].append(output)
        rows["reasoning"].append(reasoning_out)
        rows["model_answer"].append(answer_out)
        rows["total_reward"].append(total)
        rows["reward/correctness"].append(r_corr)
        rows["reward/format"].append(r_fmt)
        rows["reward/quality"].append(r_quality)
        return total, is_trunc

    for i, step in enumerate(t.tolist()):
        rewards = []
        zero = 0
        trunc = 0
        for g in range(prompts):
            qid = int(rng.integers(0, 5000))
            start = len(rows["step"])
            group_rewards = []
            for _ in range(group):
                r, tr = emit(step, "train", qid, g, acc[i], fmt[i], i)
                group_rewards.append(r)
                trunc += tr
            # mode collapse: completions copy the group's first completion verbatim
            for j in range(1, group):
                if rng.random() < dup[i]:
                    for key in _COMPLETION_COLUMNS:
                        rows[key][start + j] = rows[key][start]
                    group_rewards[j] = group_rewards[0]
            rewards.extend(group_rewards)
            zero += float(max(group_rewards) - min(group_rewards)) <= 1e-9
        reward_mean[i] = float(np.mean(rewards))
        frac_zero[i] = zero / prompts
        clipped[i] = trunc / (prompts * group)
        if step % eval_every == 0:
            p_eval = acc[i] - 0.05
            if kind == "catastrophic_forgetting":
                p_eval -= 0.5 * float(_ramp(np.array([step]), k0, 0.05 * n)[0])
            for q in range(4):
                for _ in range(2):
                    emit(step, "eval", 90000 + q, q, max(p_eval, 0.0), fmt[i], i)
    frame = pl.DataFrame(rows, schema_overrides={"reasoning": pl.Utf8, "model_answer": pl.Utf8})
    frame = frame.with_row_index("sample_id").with_columns(
        pl.col("sample_id").cast(pl.Int64),
        pl.col("step").cast(pl.Int64),
        pl.lit(None, dtype=pl.Float64).alias("timestamp"),
        pl.lit(0, dtype=pl.Int64).alias("rank"),
    )
    if kind != "length_hacking":
        frame = frame.drop("reward/quality")
    return frame, reward_mean, frac_zero, clipped


def severity_rank(name: str) -> int:
    """``Severity.rank`` of a severity name; -1 for "none" (a healthy scenario expects no alert)."""
    return -1 if name == "none" else Severity(name).rank


def delay_tolerance(n_steps: int) -> int:
    """How far an alert's step may be from the labelled onset in the tests (5 % of the run, ≥ 5)."""
    return max(5, math.ceil(0.05 * n_steps))


# --- short runs: fewer logged steps than general.min_steps --------------------------------------

# the level checks of extreme_values a short run is labelled with
SHORT_CHECKS = ("clipped", "entropy_near_zero", "zero_gradient", "zero_spread", "format_zero")


def make_short_run(
    check: str | None, *, seed: int = 0, n_steps: int = 3, noise: float = 1.0
) -> Scenario:
    """A run of ``n_steps`` < general.min_steps logged steps (a TRL console log of a few steps): the
    first steps of a healthy run (scalars only, plus a format reward), with one extreme level
    (``SHORT_CHECKS``) from its labelled onset to the end — the last half of the steps, at least
    two (the format reward: 0 at every step). ``check=None`` is a healthy short control."""
    base = make_scenario(None, seed=seed, noise=noise, n_steps=200, with_generations=False)
    rng = np.random.default_rng(
        seed * 7919 + n_steps + (zlib.crc32(check.encode()) if check else 0)
    )
    steps = base.run.steps.head(n_steps)
    n = steps.height
    fmt = np.clip(
        0.55 + 0.1 * np.arange(n) / max(n, 1) + 0.05 * noise * rng.standard_normal(n), 0.05, 1
    )
    cols: dict[str, Any] = {"reward/format": fmt}
    o = max(0, n - max(2, n // 2))  # index of the onset
    t = steps["step"].to_numpy()
    after = np.arange(n) >= o
    if check == "clipped":
        cols["clipped_ratio"] = np.where(after, 0.93 + 0.06 * rng.random(n), steps["clipped_ratio"])
    elif check == "entropy_near_zero":
        cols["entropy"] = np.where(after, 0.002 + 0.01 * rng.random(n), steps["entropy"])
    elif check == "zero_gradient":
        cols["grad_norm"] = np.where(after, 0.0, steps["grad_norm"])
    elif check == "zero_spread":
        cols["frac_reward_zero_std"] = np.where(after, 1.0, steps["frac_reward_zero_std"])
    elif check == "format_zero":
        cols["reward/format"] = np.zeros(n)
        o = 0
    steps = steps.with_columns(
        **{k: pl.Series(k, np.asarray(v, dtype=float)) for k, v in cols.items()}
    )
    run = RunData(
        path=f"<synthetic short {check or 'healthy'} seed={seed} n={n}>",
        steps=steps,
        generations=None,
        report=IngestReport(source_kind="logscan", records_read=n),
        info={
            "run_id": f"short-{check or 'healthy'}-{seed}",
            "algorithm": "grpo",
            "reward_names": ["format"],
        },
    )
    onset = int(t[o]) if check else None
    name = f"short-{check or 'healthy'}[seed={seed},noise={noise:g},steps={n}]"
    return Scenario(name, check, onset, run, None, "warning" if check else "none", n)
