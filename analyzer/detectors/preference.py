"""Preference optimisation (DPO, IPO, KTO, ORPO, CPO, SimPO): the checks practitioners run on the
implicit rewards these trainers log — not learning, likelihood displacement, over-optimisation and
trivial pairs (docs/detectors.md, "Preference optimisation").

The same key means different things in different trainers, so every rule first asks which family
the run belongs to (``preference_family``):

* **reference** — DPO and its losses (IPO, hinge, …) and BCO: ``rewards/*`` = β·(log π − log π_ref)
  summed over the completion, 0 while the policy equals the reference;
* **kto** — KTO: the same rewards on unpaired examples, plus ``kl`` (the clamped batch estimate the
  loss uses as its reference point), and no ``rewards/accuracies``;
* **reference_free** — ORPO, CPO, SimPO: no reference model, ``rewards/*`` = β × the *average*
  log-probability, negative by nature; a rule about "the chosen reward falling below the
  reference" does not apply to them;
* **unknown** — only ``rewards/accuracies`` was logged (LLaMA-Factory's ``trainer_log.jsonl``).

A rule that does not apply to the run's family skips with a reason starting ``does not apply``;
the coverage table then counts it as not applicable rather than as a check that could not run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from analyzer import columns as C
from analyzer.detectors import stats
from analyzer.detectors._common import find_drop_from_peak, find_excursion
from analyzer.detectors.base import DetectorContext, Skip, alert, register
from analyzer.detectors.headline import pct, when
from analyzer.model import Alert, Severity

CHOSEN = "rewards/chosen"
REJECTED = "rewards/rejected"
MARGINS = "rewards/margins"
ACCURACIES = "rewards/accuracies"
LOGPS_CHOSEN = "logps/chosen"
LOGPS_REJECTED = "logps/rejected"
LOG_ODDS_CHOSEN = "log_odds_chosen"
LOG_ODDS_RATIO = "log_odds_ratio"
NLL_LOSS = "nll_loss"
ODDS_RATIO_LOSS = "odds_ratio_loss"  # LLaMA-Factory's ORPO
PREFERENCE_COLUMNS = (CHOSEN, REJECTED, MARGINS, ACCURACIES, LOGPS_CHOSEN, LOGPS_REJECTED,
                      LOG_ODDS_CHOSEN, LOG_ODDS_RATIO, ODDS_RATIO_LOSS)
LN2 = math.log(2.0)
# |x| at or below this is "exactly 0" (float32 values written as JSON)
_ZERO = 1e-9
_REFERENCE_FREE_ALGOS = {"orpo": "ORPO", "cpo": "CPO", "simpo": "SimPO"}
_REFERENCE_ALGOS = {"dpo": "DPO", "ipo": "IPO", "bco": "BCO", "nca": "NCA", "kto": "KTO"}

REFERENCE = "reference"
KTO = "kto"
REFERENCE_FREE = "reference_free"
UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Family:
    """Which preference trainer family a run belongs to, and how that was decided."""

    name: str  # REFERENCE | KTO | REFERENCE_FREE | UNKNOWN
    label: str  # e.g. "DPO (rewards = β·log π/π_ref)"
    why: str
    beta: float | None = None  # β read from rewards / logps (reference-free trainers)

    @property
    def has_reference(self) -> bool:
        return self.name in (REFERENCE, KTO)


def is_offline_preference(ctx: DetectorContext) -> bool:
    """True for a pairwise / unpaired preference run on a fixed dataset (DPO, KTO, ORPO, …): its
    preference keys are logged and no sampled ``reward`` is (TRL's Online DPO logs one)."""
    return any(ctx.has(c) for c in PREFERENCE_COLUMNS) and not ctx.has(C.REWARD)


def _aligned(ctx: DetectorContext, a: str, b: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, a, b) at the steps where both columns hold a finite value."""
    return stats.align(*ctx.series(a), *ctx.series(b))


def _constant_ratio(ctx: DetectorContext, rewards: str, logps: str) -> float | None:
    """β when ``rewards`` = β × ``logps`` at every step (a reference-free trainer), else None."""
    if not (ctx.has(rewards) and ctx.has(logps)):
        return None
    _, r, lp = _aligned(ctx, rewards, logps)
    keep = np.abs(lp) > 1e-12
    if keep.sum() < 3:
        return None
    ratio = r[keep] / lp[keep]
    beta = float(np.median(ratio))
    if beta <= 0 or not np.all(np.abs(ratio - beta) <= 1e-3 * beta):
        return None
    return beta


def preference_family(ctx: DetectorContext) -> Family | None:
    """The run's preference family (see the module docstring); None when it is not an offline
    preference run."""
    if not is_offline_preference(ctx):
        return None
    algo = str(ctx.run.info.get("algorithm") or "").lower()
    name = _REFERENCE_FREE_ALGOS.get(algo) or _REFERENCE_ALGOS.get(algo)
    if ctx.has(LOG_ODDS_CHOSEN) or ctx.has(LOG_ODDS_RATIO) or ctx.has(ODDS_RATIO_LOSS):
        key = next(k for k in (LOG_ODDS_CHOSEN, LOG_ODDS_RATIO, ODDS_RATIO_LOSS) if ctx.has(k))
        return Family(REFERENCE_FREE, "ORPO (no reference model: rewards = β × average log-probability)",
                      f"{key} logged", _constant_ratio(ctx, CHOSEN, LOGPS_CHOSEN))
    beta = _constant_ratio(ctx, CHOSEN, LOGPS_CHOSEN)
    if beta is not None and _constant_ratio(ctx, REJECTED, LOGPS_REJECTED) is not None:
        what = name if algo in _REFERENCE_FREE_ALGOS else "ORPO/CPO/SimPO"
        return Family(REFERENCE_FREE, f"{what} (no reference model: rewards = β × log-probability)",
                      f"rewards/chosen = {beta:.4g} × logps/chosen at every step", beta)
    if algo in _REFERENCE_FREE_ALGOS:
        return Family(REFERENCE_FREE, f"{name} (no reference model: rewards = β × log-probability)",
                      f"algorithm {algo} (run info)")
    if algo == "kto" or (ctx.has(C.KL) and ctx.has(CHOSEN) and not ctx.has(ACCURACIES)):
        return Family(KTO, "KTO (rewards = β·log π/π_ref; kl = the loss's reference point)",
                      "algorithm kto" if algo == "kto" else "kl and rewards/chosen logged without rewards/accuracies")
    if ctx.has(CHOSEN) or ctx.has(MARGINS):
        label = name if algo in _REFERENCE_ALGOS else "DPO"
        return Family(REFERENCE, f"{label} (rewards = β·log π/π_ref)",
                      "rewards/chosen logged, not proportional to logps/chosen")
    return Family(UNKNOWN, "pairwise preference run (trainer not identified)",
                  "only rewards/accuracies logged")


def _family_or_skip(ctx: DetectorContext) -> Family:
    fam = preference_family(ctx)
    if fam is None:
        if ctx.has(C.REWARD) and any(ctx.has(c) for c in PREFERENCE_COLUMNS):
            raise Skip("does not apply: the run logs a sampled reward (online preference training is judged as RL)")
        raise Skip("does not apply: no preference keys (rewards/chosen, rewards/accuracies, …) logged")
    return fam


def _last_part(y: np.ndarray, w: int, fraction: float = 0.25) -> np.ndarray:
    """The last ``fraction`` of the points after the warm-up (at least 3 when there are)."""
    rest = y[w:]
    k = max(3, round(rest.size * fraction))
    return rest[-k:] if rest.size else y[-k:]


def _rising(x: np.ndarray, y: np.ndarray) -> bool:
    return x.size >= 6 and stats.trend(x, y).rising(0.01)


def _falling(x: np.ndarray, y: np.ndarray) -> bool:
    return x.size >= 6 and stats.trend(x, y).falling(0.01)


def _eval_worse(ctx: DetectorContext, cfg: dict[str, Any]) -> dict[str, Any] | None:
    """Eval getting worse: eval accuracy (``eval/rewards/accuracies``) fell from its peak, or
    ``eval/loss`` rose from its lowest level by ≥ ``eval_loss_growth`` (relative) — each sustained
    and significant (Mann–Whitney z ≥ 3). None when neither, or no eval was logged."""
    col = "eval/" + ACCURACIES
    if ctx.has(col):
        x, y = ctx.series(col)
        exc = find_drop_from_peak(ctx, x, y, drop=float(cfg["eval_accuracy_drop"]))
        if exc is not None:
            return {"eval_signal": col, "eval_onset": exc.onset_step, "eval_peak": exc.baseline,
                    "eval_lowest": exc.extreme}
    col = "eval/" + C.LOSS
    if ctx.has(col):
        x, y = ctx.series(col)
        if y.size >= 4 and np.min(y) > 0:
            # a rise from the trough: the drop-from-peak test on the negated loss, in relative units
            neg = -np.log(y)
            exc = find_drop_from_peak(ctx, x, neg, drop=math.log1p(float(cfg["eval_loss_growth"])))
            if exc is not None:
                return {"eval_signal": col, "eval_onset": exc.onset_step,
                        "eval_lowest_loss": math.exp(-exc.baseline), "eval_loss_after": math.exp(-exc.extreme)}
    return None


# ---------------------------------------------------------------------------------------------
# not learning
# ---------------------------------------------------------------------------------------------


@register(
    "preference_not_learning",
    signals="rewards/chosen and rewards/rejected exactly 0 after the warm-up (the policy equals the reference; "
    "DPO/KTO), rewards/accuracies pinned near 0.5 with margins not rising and the loss at ln 2 or not falling "
    "(weak or noisy pairs), KTO's kl stuck at 0, ORPO's log_odds_chosen not rising.",
    defaults={"pinned_band": 0.1, "ln2_tolerance": 0.02},
    requires=("rewards/accuracies, rewards/chosen + rewards/rejected, KTO's kl or ORPO's log_odds_chosen",),
    severity="critical when the rewards are exactly 0 at every step after the warm-up (nothing is trained); "
    "warning for accuracy pinned at 0.5, KTO's kl stuck at 0, or ORPO's log_odds_chosen not rising.",
    core_for=("preference",),
)
def preference_not_learning(ctx: DetectorContext, cfg: dict[str, Any]) -> list[Alert]:
    """Preference optimisation that learns nothing: policy = reference, accuracy pinned at 0.5."""
    fam = _family_or_skip(ctx)
    usable = (ctx.has(CHOSEN) and ctx.has(REJECTED)) or ctx.has(ACCURACIES) or ctx.has(LOG_ODDS_CHOSEN) or (
        fam.name == KTO and ctx.has(C.KL)
    )
    if not usable:
        raise Skip("needs rewards/accuracies, rewards/chosen and rewards/rejected, KTO's kl or ORPO's log_odds_chosen")
    ctx.skip_if_too_short()
    common: dict[str, Any] = {"family": fam.name, "trainer": fam.label, "sample_ids": []}

    # (a) the policy equals the reference: every reward exactly 0 (TRL issue 1311)
    if fam.has_reference and ctx.has(CHOSEN) and ctx.has(REJECTED):
        x, c, r = _aligned(ctx, CHOSEN, REJECTED)
        w = ctx.warmup_points(x.size)
        zero = (np.abs(c) <= _ZERO) & (np.abs(r) <= _ZERO)
        if x.size > w and zero[w:].all():
            start = w
            while start > 0 and zero[start - 1]:
                start -= 1
            loss_note = ""
            if ctx.has(C.LOSS):
                lx, ly = ctx.series(C.LOSS)
                lm = float(np.median(ly[lx >= x[start]])) if (lx >= x[start]).any() else float("nan")
                loss_note = f", loss {lm:.4g} (ln 2 = {LN2:.4g})"
                common["loss_median"] = lm
            return [
                alert(
                    "preference_not_learning",
                    Severity.CRITICAL,
                    int(x[start]),
                    f"the policy equals the reference: rewards/chosen and rewards/rejected are exactly 0 at every "
                    f"step from step {int(x[start])} to the end ({x.size - start} logged steps{loss_note}) — nothing "
                    "is trained (learning rate 0, frozen or detached adapter, or the reference is the policy)",
                    signal="rewards exactly 0",
                    zero_steps=int(x.size - start),
                    **common,
                )
            ]

    out: list[Alert] = []
    # (b) accuracy pinned near 0.5 (weak or noisy preference data)
    if ctx.has(ACCURACIES):
        x, a = ctx.series(ACCURACIES)
        ctx.require_length(a.size, ACCURACIES)
        w = ctx.warmup_points(a.size)
        # a mean, not a median: a batch's accuracy is a share of a few pairs (0, 1/8, …, 1)
        half = a[max(w, a.size // 2):]
        acc = float(np.mean(half))
        pinned = abs(acc - 0.5) <= float(cfg["pinned_band"]) and not _rising(x[w:], a[w:])
        margins_rise = False
        if ctx.has(MARGINS):
            mx, m = ctx.series(MARGINS)
            mw = ctx.warmup_points(m.size)
            margins_rise = _rising(mx[mw:], m[mw:])
        loss_ev: dict[str, Any] = {}
        loss_ok = True
        # only DPO's sigmoid loss starts at ln 2; ORPO/CPO/KTO's losses carry other terms (an NLL)
        if fam.name == REFERENCE and ctx.has(C.LOSS):
            lx, ly = ctx.series(C.LOSS)
            lw = ctx.warmup_points(ly.size)
            lmed = float(np.median(ly[max(lw, ly.size // 2):]))
            at_ln2 = abs(lmed - LN2) <= float(cfg["ln2_tolerance"])
            loss_ok = at_ln2 or not _falling(lx[lw:], ly[lw:])
            loss_ev = {"loss_median": lmed, "loss_at_ln2": at_ln2}
        if pinned and not margins_rise and loss_ok:
            at = " with the loss at ln 2" if loss_ev.get("loss_at_ln2") else ""
            out.append(
                alert(
                    "preference_not_learning",
                    Severity.WARNING,
                    int(x[w]),
                    f"not learning: rewards/accuracies stays at {acc:.0%} (chance is 50 %) from step {int(x[w])} to "
                    f"the end{at}, and the margins do not rise — the pairs are too noisy or too alike to learn from, "
                    "or the learning rate / β is off",
                    signal=ACCURACIES,
                    accuracy_median=acc,
                    margins_rising=margins_rise,
                    **loss_ev,
                    **common,
                )
            )

    # (c) KTO: kl stuck at 0
    if fam.name == KTO and ctx.has(C.KL):
        x, k = ctx.series(C.KL)
        w = ctx.warmup_points(k.size)
        if k.size > w and (np.abs(k[w:]) <= _ZERO).all():
            out.append(
                alert(
                    "preference_not_learning",
                    Severity.WARNING,
                    int(x[w]),
                    f"KTO's kl is exactly 0 at every step from step {int(x[w])}: the KL reference point of the loss "
                    "does nothing — the policy has not moved from the reference on mismatched pairs (with "
                    "loss_type='apo_zero_unpaired' TRL computes no KL at all, and 0 is expected)",
                    signal=C.KL,
                    **common,
                )
            )

    # (d) ORPO: log_odds_chosen should be positive and rising
    if ctx.has(LOG_ODDS_CHOSEN):
        x, lo = ctx.series(LOG_ODDS_CHOSEN)
        w = ctx.warmup_points(lo.size)
        late = float(np.median(_last_part(lo, w)))
        if x.size > w + 3 and late <= 0 and not _rising(x[w:], lo[w:]):
            out.append(
                alert(
                    "preference_not_learning",
                    Severity.WARNING,
                    int(x[w]),
                    f"ORPO's log_odds_chosen is not rising and ends at {late:.3g} (≤ 0): the chosen answers are not "
                    "becoming more likely than the rejected ones",
                    signal=LOG_ODDS_CHOSEN,
                    log_odds_chosen_last=late,
                    **common,
                )
            )
    if len(out) <= 1:
        return out
    # one alert for one finding: several signals saying "not learning" are listed together
    return [
        alert(
            "preference_not_learning",
            Severity.WARNING,
            min(int(a.step or 0) for a in out),
            "; ".join(a.message for a in out),
            signals=[a.evidence.get("signal") for a in out],
            findings=[a.evidence for a in out],
            **common,
        )
    ]


# ---------------------------------------------------------------------------------------------
# likelihood displacement
# ---------------------------------------------------------------------------------------------


@register(
    "likelihood_displacement",
    signals="DPO/KTO's rewards/chosen (β·log π/π_ref of the chosen answers) falling below 0 while "
    "rewards/margins rise: the margin is bought by making the chosen answers less likely than under the "
    "reference (Razin et al. 2024; Pal et al. 2024). Not for ORPO/CPO/SimPO, which have no reference.",
    defaults={"min_fall_fraction": 0.25, "critical_ratio": 1.0, "eval_accuracy_drop": 0.1, "eval_loss_growth": 0.1},
    requires=("rewards/chosen and rewards/margins (or rewards/rejected)",),
    severity="warning when the chosen reward fell below 0 by ≥ min_fall_fraction × the margin gain; critical when "
    "it fell by ≥ critical_ratio × the margin gain, or an eval metric got worse meanwhile.",
    core_for=("preference",),
)
def likelihood_displacement(ctx: DetectorContext, cfg: dict[str, Any]) -> list[Alert]:
    """The chosen answers become less likely than under the reference while the margins grow."""
    fam = _family_or_skip(ctx)
    if fam.name == REFERENCE_FREE:
        raise Skip(f"does not apply: {fam.label.split(' (')[0]} has no reference model — its rewards are β × "
                   "log-probabilities, negative by nature")
    if not ctx.has(CHOSEN) or not (ctx.has(MARGINS) or ctx.has(REJECTED)):
        raise Skip("needs rewards/chosen and rewards/margins (TRL's DPO and KTO log them; LLaMA-Factory writes "
                   "them to trainer_state.json, not trainer_log.jsonl)")
    ctx.skip_if_too_short()
    if ctx.has(MARGINS):
        x, c, m = _aligned(ctx, CHOSEN, MARGINS)
    else:
        x, c, r = _aligned(ctx, CHOSEN, REJECTED)
        m = c - r
    ctx.require_length(c.size, CHOSEN)
    w = ctx.warmup_points(c.size)
    base_c, base_m = float(np.median(c[:w])), float(np.median(m[:w]))
    late_c, late_m = _last_part(c, w), _last_part(m, w)
    end_c, end_m = float(np.median(late_c)), float(np.median(late_m))
    fall, growth = base_c - end_c, end_m - base_m
    if not (end_c < 0 and fall > 0 and growth > 0):
        return []
    if fall < float(cfg["min_fall_fraction"]) * growth:
        return []
    # both moves real, not noise: early points above the late ones (chosen), below them (margins)
    early = slice(0, max(w, c.size // 4))
    if stats.mann_whitney_strength(c[early], late_c) < 3 or stats.mann_whitney_strength(late_m, m[early]) < 3:
        return []
    # falling from the chosen reward's peak on (a late onset follows a rise: a trend over the whole
    # run would average them), while the margins rise over the same stretch
    p = int(np.argmax(stats.rolling_median(c, stats.window_for(c.size))[: max(w, c.size - 6)]))
    if not any(_falling(x[i:], c[i:]) and _rising(x[i:], m[i:]) for i in (w, p)):
        return []
    exc = find_excursion(ctx, x, c, above=False, threshold=0.0,
                         min_delta=0.5 * fall)
    onset = exc.onset_step if exc is not None else stats.onset_step(x, c, lo=w)
    # the honest account: onset, first step the evidence held, lowest point with its step
    account = when(exc, lambda v: f"{v:.3g}", rising=False) if exc is not None else f"from step {onset}"
    ratio = fall / growth
    worse = _eval_worse(ctx, cfg)
    critical = ratio >= float(cfg["critical_ratio"]) or worse is not None
    ev: dict[str, Any] = {}
    if ctx.has(LOGPS_CHOSEN):
        _, lp = ctx.series(LOGPS_CHOSEN)
        lw = ctx.warmup_points(lp.size)
        ev = {"logps_chosen_baseline": float(np.median(lp[:lw])), "logps_chosen_last": float(np.median(_last_part(lp, lw)))}
    why = []
    if ratio >= float(cfg["critical_ratio"]):
        why.append(f"the chosen reward fell by {ratio:.1f}× the margin gain: the margin comes from pushing both "
                   "answers down, the rejected one faster")
    if worse is not None:
        why.append(f"{worse['eval_signal']} got worse from step {worse['eval_onset']}")
    return [
        alert(
            "likelihood_displacement",
            Severity.CRITICAL if critical else Severity.WARNING,
            onset,
            f"likelihood displacement: rewards/chosen {account} (warm-up {base_c:.3g}, last steps {end_c:.3g}): "
            f"the chosen answers are now less likely than under the reference, while the margins rose from "
            f"{base_m:.3g} to {end_m:.3g}" + (f"; {'; '.join(why)}" if why else "")
            + " — usual fixes: an SFT term (rpo_alpha), DPOP, filtering near-identical pairs",
            family=fam.name,
            trainer=fam.label,
            chosen_baseline=base_c,
            chosen_last=end_c,
            margins_baseline=base_m,
            margins_last=end_m,
            chosen_fall=fall,
            margin_growth=growth,
            fall_to_growth=ratio,
            critical_ratio=float(cfg["critical_ratio"]),
            **(worse or {}),
            **ev,
            sample_ids=[],
        )
    ]


# ---------------------------------------------------------------------------------------------
# over-optimisation
# ---------------------------------------------------------------------------------------------


@register(
    "preference_overoptimisation",
    signals="rewards/margins still growing at an undiminished rate after rewards/accuracies saturated (the DPO "
    "loss keeps pushing separated pairs apart: Azar et al. 2023; Rafailov et al. 2024), and eval loss rising / "
    "eval accuracy falling from its best while training goes on.",
    defaults={"saturated_accuracy": 0.95, "min_margin_growth": 0.5, "eval_accuracy_drop": 0.1, "eval_loss_growth": 0.1},
    requires=("rewards/accuracies and rewards/margins, or eval_loss / eval_rewards/accuracies",),
    severity="warning for margins growing without bound or eval getting worse; critical when both.",
    core_for=("preference",),
)
def preference_overoptimisation(ctx: DetectorContext, cfg: dict[str, Any]) -> list[Alert]:
    """Margins growing without bound after the pairs are separated; eval getting worse."""
    fam = _family_or_skip(ctx)
    has_train = ctx.has(ACCURACIES) and ctx.has(MARGINS)
    has_eval = ctx.has("eval/" + C.LOSS) or ctx.has("eval/" + ACCURACIES)
    if not (has_train or has_eval):
        missing = "rewards/accuracies (KTO logs none)" if fam.name == KTO else "rewards/accuracies and rewards/margins"
        raise Skip(f"needs {missing}, or an eval set (eval_loss, eval_rewards/accuracies)")
    ctx.skip_if_too_short()
    unbounded: dict[str, Any] | None = None
    onset: int | None = None
    if has_train:
        x, a, m = _aligned(ctx, ACCURACIES, MARGINS)
        ctx.require_length(a.size, ACCURACIES)
        # saturated through the end of the run: the trailing stretch where the rolling *mean* (a
        # batch's accuracy is a coarse share of a few pairs) stays at saturated_accuracy
        w = ctx.warmup_points(a.size)
        win = stats.window_for(a.size)
        smooth = stats.rolling_mean(a, win)
        cond = smooth >= float(cfg["saturated_accuracy"])
        i = a.size
        while i > w and cond[i - 1]:
            i -= 1
        xs, ms = x[i:], m[i:]
        if xs.size >= max(9, stats.window_for(a.size, 0.03, 3, 15)) and _rising(xs, ms):
            third = xs.size // 3
            s_early, _ = stats.theil_sen(xs[:third], ms[:third])
            s_late, _ = stats.theil_sen(xs[-third:], ms[-third:])
            m_at = float(np.median(ms[: max(3, third // 2)]))
            m_end = float(np.median(ms[-max(3, third // 2):]))
            grew = m_end - m_at >= float(cfg["min_margin_growth"]) * max(abs(m_at), 1e-12)
            # still rising in the second half of the stretch, at ≥ a quarter of the early pace (a
            # margin that levels off — the healthy shape — has a late slope near 0)
            half = xs.size // 2
            still = _rising(xs[half:], ms[half:])
            if s_late > 0 and s_late >= 0.25 * max(s_early, 0.0) and still and grew:
                # the margins' take-off (a ramp fit over the run), not the later saturation
                onset = stats.onset_step(x, m, lo=w)
                unbounded = {"saturated_from": int(xs[0]), "accuracy_level": float(np.mean(a[i:])),
                             "margins_at_saturation": m_at, "margins_last": m_end,
                             "margin_slope_early": s_early, "margin_slope_late": s_late}
    worse = _eval_worse(ctx, cfg) if has_eval else None
    if unbounded is None and worse is None:
        return []
    parts = []
    if unbounded is not None:
        parts.append(
            f"from step {onset} (held from step {unbounded['saturated_from']}) rewards/margins keep growing "
            f"({unbounded['margins_at_saturation']:.3g} when rewards/accuracies had saturated at "
            f"{pct(unbounded['accuracy_level'])} → {unbounded['margins_last']:.3g} over the last steps, still "
            "rising): the loss now only pushes separated pairs further apart"
        )
    if worse is not None:
        what = ("eval accuracy fell from its best" if "eval_peak" in worse
                else f"eval loss rose from {worse['eval_lowest_loss']:.3g} to {worse['eval_loss_after']:.3g}")
        parts.append(f"{what} from step {worse['eval_onset']}")
        onset = worse["eval_onset"] if onset is None else min(onset, int(worse["eval_onset"]))
    assert onset is not None
    return [
        alert(
            "preference_overoptimisation",
            Severity.CRITICAL if (unbounded is not None and worse is not None) else Severity.WARNING,
            onset,
            "over-optimisation: " + "; ".join(parts) + " — stop earlier, raise β, or use a bounded loss (IPO)",
            family=fam.name,
            trainer=fam.label,
            unbounded_margins=unbounded,
            eval=worse,
            sample_ids=[],
        )
    ]


# ---------------------------------------------------------------------------------------------
# trivial pairs
# ---------------------------------------------------------------------------------------------


@register(
    "preference_trivial_pairs",
    signals="rewards/accuracies reaching ~1.0 within the first steps and staying there: the chosen and rejected "
    "answers are trivially told apart (leakage, or the rejected answers are broken) — nothing is learned about "
    "preference (TRL issue 1236).",
    defaults={"accuracy": 0.99, "first_fraction": 0.1, "hold_accuracy": 0.95},
    requires=("rewards/accuracies",),
    severity="warning.",
    core_for=("preference",),
)
def preference_trivial_pairs(ctx: DetectorContext, cfg: dict[str, Any]) -> list[Alert]:
    """Preference accuracy at 1.0 from the first steps (trivial pairs / leakage)."""
    fam = _family_or_skip(ctx)
    if not ctx.has(ACCURACIES):
        what = "KTO logs no rewards/accuracies (unpaired data)" if fam.name == KTO else "rewards/accuracies not logged"
        if fam.name == KTO:
            raise Skip(f"does not apply: {what}")
        raise Skip(f"needs rewards/accuracies ({what})")
    ctx.skip_if_too_short()
    x, a = ctx.series(ACCURACIES)
    ctx.require_length(a.size, ACCURACIES)
    # TRL logs the first step before any update: rewards exactly 0, accuracy 0 (strict >). Skip those.
    start = 0
    if ctx.has(CHOSEN) and ctx.has(REJECTED):
        cx, c, r = _aligned(ctx, CHOSEN, REJECTED)
        frozen = set(cx[(np.abs(c) <= _ZERO) & (np.abs(r) <= _ZERO)].tolist())
        while start < x.size and int(x[start]) in frozen:
            start += 1
    xs, ys = x[start:], a[start:]
    if xs.size < 6:
        return []
    k = max(3, round(float(cfg["first_fraction"]) * xs.size))
    first = ys[:k]
    # means, not medians: a batch's accuracy is a share of a few pairs, and a median of 2-pair
    # batches reads 100 % at 71 % accuracy
    level = float(np.mean(first))
    rest = float(np.mean(ys[k:])) if ys.size > k else level
    if level < float(cfg["accuracy"]) or rest < float(cfg["hold_accuracy"]):
        return []
    hit = int(np.argmax(stats.rolling_mean(first, 3) >= float(cfg["accuracy"])))
    loss_ev: dict[str, Any] = {}
    if ctx.has(C.LOSS):
        lx, ly = ctx.series(C.LOSS)
        sel = ly[(lx >= xs[0]) & (lx <= xs[k - 1])]
        if sel.size:
            loss_ev = {"loss_first_steps": float(np.median(sel))}
    return [
        alert(
            "preference_trivial_pairs",
            Severity.WARNING,
            int(xs[hit]),
            f"trivial pairs: rewards/accuracies is {level:.0%} over the first {k} logged steps (from step {int(xs[0])}) "
            f"and {rest:.0%} after — the chosen and rejected answers are told apart from the start (leakage, a "
            "formatting tell, or broken rejected answers), so the run learns little about preference",
            family=fam.name,
            trainer=fam.label,
            accuracy_first_steps=level,
            accuracy_after=rest,
            first_steps=k,
            **loss_ev,
            sample_ids=[],
        )
    ]
