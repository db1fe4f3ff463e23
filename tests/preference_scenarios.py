"""Labelled preference-optimisation runs (DPO, ORPO, KTO) written as TRL writes them.

Each scenario is a ``trainer_state.json`` whose ``log_history`` has the keys, meanings and quirks of
TRL's trainers (trl/trainer/dpo_trainer.py, trl/trainer/kto_trainer.py,
trl/experimental/orpo/orpo_trainer.py): per step, a batch of pairs is simulated and the logged
values are computed from it the way the trainer computes them —

* DPO: ``rewards/chosen`` = β·(log π − log π_ref) of the chosen answers (batch mean), ``margins``
  chosen − rejected, ``accuracies`` the share with chosen > rejected (strict), ``loss`` the mean
  of −log σ(margin); ``logps/*`` the summed log-probabilities. The first logged step is computed
  before any update: every reward exactly 0, accuracy 0.0, loss ln 2.
* ORPO: no reference model — ``rewards/*`` = β × the average log-probability (negative),
  ``log_odds_chosen`` the mean log odds ratio, ``log_odds_ratio`` the mean of log σ(it),
  ``nll_loss`` the SFT term, ``loss`` = nll − β·log σ(log odds).
* KTO: unpaired examples, ``kl`` the clamped batch estimate (≥ 0), no ``rewards/accuracies``.

Shared by ``tests/test_detectors_preference.py`` and ``benchmarks/detection/preference_suite.py``.
A run is read back through ``analyzer.ingest.load_run`` — the same path a real file takes.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BETA = 0.1
LN2_F32 = 0.6931471824645996  # ln 2 as TRL's float32 loss .item() writes it

# scenario -> (alert kind expected, weakest severity, trainers it applies to)
KINDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "frozen": ("preference_not_learning", "critical", ("dpo", "kto")),
    "noisy_pairs": ("preference_not_learning", "warning", ("dpo", "orpo")),
    "kl_stuck": ("preference_not_learning", "warning", ("kto",)),
    "displacement": ("likelihood_displacement", "warning", ("dpo", "kto")),
    "overoptimisation": ("preference_overoptimisation", "warning", ("dpo", "orpo")),
    "trivial_pairs": ("preference_trivial_pairs", "warning", ("dpo", "orpo")),
    "nan": ("nan_values", "critical", ("dpo", "orpo", "kto")),
}
# scenarios whose problem spans the whole run: no onset to measure a delay from
WHOLE_RUN = frozenset({"frozen", "noisy_pairs", "kl_stuck", "trivial_pairs"})


@dataclass
class PreferenceScenario:
    name: str
    trainer: str  # dpo | orpo | kto
    kind: str | None  # a key of KINDS, None for a healthy run
    onset: int | None
    state: dict[str, Any]  # the trainer_state.json content

    def write(self, folder: Path) -> Path:
        """Write ``trainer_state.json`` into ``folder`` (NaN as the literal ``NaN``, as transformers does)."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "trainer_state.json"
        path.write_text(json.dumps(self.state, indent=2, allow_nan=True), encoding="utf-8")
        return path


def _sat(t: np.ndarray | float, tau: float) -> Any:
    return 1.0 - np.exp(-np.asarray(t, dtype=float) / tau)


def _ramp(t: int, t0: int | None, width: float) -> float:
    if t0 is None or t < t0:
        return 0.0
    return min(1.0, (t - t0) / max(width, 1.0))


def _logsigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def _lr(t: int, n: int, peak: float = 5e-6) -> float:
    warm = max(1, n // 10)
    if t <= warm:
        return peak * (t - 1) / warm
    return peak * 0.5 * (1 + math.cos(math.pi * (t - warm) / max(1, n - warm)))


def make_preference_run(
    kind: str | None,
    trainer: str = "dpo",
    *,
    seed: int = 0,
    noise: float = 1.0,
    n_steps: int = 200,
    onset_fraction: float = 0.5,
    batch: int = 8,
    trl_version: str = "0.29",
    eval_every: int | None = None,
) -> PreferenceScenario:
    """One labelled run; ``kind=None`` is a healthy control. ``noise`` scales the per-pair spread.
    A kind outside ``KINDS[kind][2]`` for the trainer is a negative control (e.g. ORPO whose chosen
    log-probabilities fall while its margins grow: no reference model, so no displacement)."""
    rng = np.random.default_rng(seed * 7919 + zlib.crc32(f"{trainer}/{kind}".encode()) % 7907)
    n = n_steps
    t0 = None if kind is None or kind in WHOLE_RUN else max(10, round(onset_fraction * n))
    if kind is None and eval_every is None and trainer == "kto":
        eval_every = 10  # KTO logs no accuracies: its over-optimisation check reads an eval set
    tau = 0.2 * n
    history: list[dict[str, Any]] = []
    tokens = 0
    # LR warm-up from 0: TRL's first logged step is before any update, a few more at LR ≈ 0
    frozen_steps = int(rng.integers(1, 4))
    sim = {"dpo": _dpo_step, "orpo": _orpo_step, "kto": _kto_step}[trainer]
    for t in range(1, n + 1):
        entry: dict[str, Any] = {"step": t, "epoch": round(2.0 * t / n, 4), "learning_rate": _lr(t, n)}
        metrics = sim(rng, t, n, tau, t0, kind, noise, batch, frozen=t <= frozen_steps)
        entry.update(metrics)
        entry["grad_norm"] = float(12.0 * math.exp(0.35 * rng.standard_normal()) * (1.0 - 0.4 * _sat(t, tau)))
        if trl_version >= "0.29":
            tokens += int(rng.integers(3500, 6500))
            entry["entropy"] = float(1.3 + 0.15 * rng.standard_normal())
            entry["mean_token_accuracy"] = float(0.63 + 0.04 * rng.standard_normal())
            entry["num_tokens"] = float(tokens)
        if kind == "nan" and t0 is not None and t >= t0:
            for k in list(entry):
                if k not in ("step", "epoch", "learning_rate", "num_tokens"):
                    entry[k] = float("nan")
        history.append(entry)
        if eval_every and t % eval_every == 0:
            history.append(_eval_entry(rng, t, n, tau, t0, kind, trainer))
    history.append({"epoch": 2.0, "step": n, "total_flos": 1.0e15, "train_loss": 0.4, "train_runtime": 812.5,
                    "train_samples_per_second": 3.9, "train_steps_per_second": 0.25})
    state = {
        "best_metric": None, "best_model_checkpoint": None, "epoch": 2.0, "eval_steps": eval_every or 500,
        "global_step": n, "is_hyper_param_search": False, "is_local_process_zero": True,
        "is_world_process_zero": True, "log_history": history, "logging_steps": 1, "max_steps": n,
        "num_train_epochs": 2, "save_steps": 500, "total_flos": 1.0e15, "train_batch_size": batch,
    }
    name = f"{trainer}/{kind or 'healthy'}/seed{seed}/noise{noise:g}"
    return PreferenceScenario(name, trainer, kind, t0, state)


def _dpo_step(rng: np.random.Generator, t: int, n: int, tau: float, t0: int | None, kind: str | None,
              noise: float, batch: int, *, frozen: bool) -> dict[str, float]:
    sat = float(_sat(t, tau))
    spread = 0.75 + 0.25 * noise
    mu_c, mu_m = -0.25 * sat, 2.0 * sat
    s_m, s_c = (0.4 + 1.6 * sat) * spread, (0.2 + 0.6 * sat) * spread
    if kind == "displacement":
        r = _ramp(t, t0, 0.25 * n)
        mu_c -= (1.5 + 1.5 * (t0 or 0) % 2) * r  # the chosen side falls below the reference …
        mu_m += 2.5 * r  # … while the margin keeps growing
    elif kind == "overoptimisation":
        mu_m += 10.0 * _ramp(t, t0, n - (t0 or 0))
    elif kind == "noisy_pairs":
        mu_c, mu_m, s_m, s_c = -0.05 * sat, 0.02 * sat, (0.05 + 0.15 * sat) * spread, (0.05 + 0.1 * sat) * spread
    elif kind == "trivial_pairs":
        mu_m, s_m = 6.0 * float(_sat(t, 0.02 * n)), 0.5 * spread
    zero = frozen or kind == "frozen"
    if zero:
        m = np.zeros(batch)
        c = np.zeros(batch)
    else:
        m = rng.normal(mu_m, s_m, batch)
        c = rng.normal(mu_c, s_c, batch)
    rej = c - m
    ref_c, ref_r = -rng.uniform(80, 400, batch), -rng.uniform(80, 400, batch)
    loss = float(np.mean(-_logsigmoid(m))) if not zero else LN2_F32
    return {
        "loss": loss,
        "logits/chosen": float(-2.3 + 0.3 * rng.standard_normal()),
        "logits/rejected": float(-2.3 + 0.3 * rng.standard_normal()),
        "logps/chosen": float(np.mean(ref_c + c / BETA)),
        "logps/rejected": float(np.mean(ref_r + rej / BETA)),
        "rewards/accuracies": float(np.mean(c > rej)),
        "rewards/chosen": float(np.mean(c)),
        "rewards/margins": float(np.mean(m)),
        "rewards/rejected": float(np.mean(rej)),
    }


def _log1mexp(x: np.ndarray) -> np.ndarray:
    return np.log(-np.expm1(x))


def _orpo_step(rng: np.random.Generator, t: int, n: int, tau: float, t0: int | None, kind: str | None,
               noise: float, batch: int, *, frozen: bool) -> dict[str, float]:
    sat = float(_sat(t, tau))
    spread = 0.75 + 0.25 * noise
    nll = 1.2 - 0.6 * sat  # the SFT term: the chosen answers' average NLL per token falls
    gap, s_gap = 0.3 * sat, (0.05 + 0.45 * sat) * spread
    if kind == "noisy_pairs":
        gap, s_gap = 0.0, 0.1 * spread
    elif kind == "overoptimisation":  # the margin (∝ e^gap − 1) grows linearly from the onset on
        r = _ramp(t, t0, n - (t0 or 0))
        gap, s_gap = math.log(math.exp(gap) + 15.0 * r), s_gap / (1.0 + 3.0 * r)
    elif kind == "trivial_pairs":
        gap, s_gap = 1.0 * float(_sat(t, 0.02 * n)) + 0.5, 0.1 * spread
    elif kind == "displacement":  # not a rule for ORPO: the chosen log-prob falls, the gap grows
        nll += 0.8 * _ramp(t, t0, 0.25 * n)
        gap += 0.8 * _ramp(t, t0, 0.25 * n)
    lc = -np.abs(rng.normal(nll, 0.15 * spread, batch)) - 1e-3
    # the rejected answer's NLL per token is the chosen one's times e^gap: > 1 once it is less likely
    lr = lc * np.exp(rng.normal(gap, s_gap, batch))
    log_odds = (lc - lr) - (_log1mexp(lc) - _log1mexp(lr))
    ratio = _logsigmoid(log_odds)
    nll_loss = float(np.mean(-lc))
    return {
        "loss": float(nll_loss - BETA * np.mean(ratio)),
        "logits/chosen": float(-2.0 + 0.05 * rng.standard_normal()),
        "logits/rejected": float(-2.0 + 0.05 * rng.standard_normal()),
        "logps/chosen": float(np.mean(lc)),
        "logps/rejected": float(np.mean(lr)),
        "rewards/accuracies": float(np.mean(BETA * lc > BETA * lr)),
        "rewards/chosen": float(np.mean(BETA * lc)),
        "rewards/margins": float(np.mean(BETA * (lc - lr))),
        "rewards/rejected": float(np.mean(BETA * lr)),
        "nll_loss": nll_loss,
        "log_odds_ratio": float(np.mean(ratio)),
        "log_odds_chosen": float(np.mean(log_odds)),
    }


def _kto_step(rng: np.random.Generator, t: int, n: int, tau: float, t0: int | None, kind: str | None,
              noise: float, batch: int, *, frozen: bool) -> dict[str, float]:
    sat = float(_sat(t, tau))
    spread = 0.75 + 0.25 * noise
    mu_c, mu_r, s = 0.6 * sat, -1.0 * sat, (0.3 + 0.7 * sat) * spread
    kl_mean = 1.5 * sat
    if kind == "displacement":
        r = _ramp(t, t0, 0.25 * n)
        mu_c -= 2.5 * r
        mu_r -= 5.0 * r
    zero = frozen or kind == "frozen"
    half = batch // 2
    if zero:
        c, r_ = np.zeros(half), np.zeros(batch - half)
        kl = 0.0
    else:
        c, r_ = rng.normal(mu_c, s, half), rng.normal(mu_r, s, batch - half)
        kl = 0.0 if kind == "kl_stuck" else max(0.0, float(rng.normal(kl_mean, 0.3 * sat * spread + 1e-3)))
    losses = np.concatenate([1 - 1 / (1 + np.exp(-(c - BETA * kl))), 1 - 1 / (1 + np.exp(-(BETA * kl - r_)))])
    return {
        "kl": kl,
        "loss": float(np.mean(losses)),
        "logits/chosen": float(-2.2 + 0.3 * rng.standard_normal()),
        "logits/rejected": float(-2.2 + 0.3 * rng.standard_normal()),
        "logps/chosen": float(np.mean(-rng.uniform(80, 400, half) + c / BETA)),
        "logps/rejected": float(np.mean(-rng.uniform(80, 400, batch - half) + r_ / BETA)),
        "rewards/chosen": float(np.mean(c)),
        "rewards/rejected": float(np.mean(r_)),
        "rewards/margins": float(np.mean(c) - np.mean(r_)),
    }


def _eval_entry(rng: np.random.Generator, t: int, n: int, tau: float, t0: int | None, kind: str | None,
                trainer: str) -> dict[str, Any]:
    """An eval entry on a held-out set of 200 pairs: it improves, then holds — unless the run
    over-optimises, when held-out margins spread out and the loss turns up."""
    sat = float(_sat(t, tau))
    mu, s = 1.6 * sat, 0.6 + 1.4 * sat
    if kind == "overoptimisation":
        r = _ramp(t, t0, n - (t0 or 0))
        mu -= 0.6 * r
        s *= 1.0 + 2.5 * r
    m = rng.normal(mu, s, 200)
    c = rng.normal(-0.2 * sat, 0.5, 200)
    entry: dict[str, Any] = {"epoch": round(2.0 * t / n, 4), "step": t, "eval_loss": float(np.mean(-_logsigmoid(m)))}
    entry["eval_rewards/chosen"] = float(np.mean(c))
    entry["eval_rewards/rejected"] = float(np.mean(c - m))
    entry["eval_rewards/margins"] = float(np.mean(m))
    if trainer != "kto":
        entry["eval_rewards/accuracies"] = float(np.mean(m > 0))
    entry.update({"eval_runtime": 41.2, "eval_samples_per_second": 4.85, "eval_steps_per_second": 0.61})
    return entry
