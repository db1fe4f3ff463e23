"""KL to the reference policy: budget, super-linear growth and spikes (kl_explosion).

Units matter: TRL's GRPO logs ``kl`` as a mean *per token* (typically 1e-4 … 0.1), while TRL's
PPO/RLOO log ``objective/kl`` summed *per sequence* (typically 1 … 20). Ingest maps both to
``kl``; the budget is chosen from ``run.info`` (``kl_unit`` if ingest set it, else the algorithm).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from analyzer import columns as C
from analyzer.detectors import stats
from analyzer.detectors._common import (
    pattern_severity,
    pattern_words,
    smoothing_windows,
    spike_events,
    spike_evidence,
    spike_pattern,
)
from analyzer.detectors.base import DetectorContext, Skip, alert, register
from analyzer.detectors.preference import KTO, preference_family
from analyzer.model import Alert, RunData, Severity
from analyzer.values import kl_unit

# Why kl_explosion does not judge a preference run's KL (analyzer.detectors.preference families).
_PREFERENCE_KL = {
    "reference": "does not apply: DPO logs no KL to the reference (its rewards/margins are the implicit "
    "KL-regularised reward, judged by the preference checks)",
    "kto": "does not apply: KTO's kl is the loss's reference point (a clamped batch estimate), judged by "
    "preference_not_learning",
    "reference_free": "does not apply: ORPO/CPO/SimPO have no reference model, so there is no KL to one",
    "unknown": "does not apply: a preference-optimisation run logs no KL to a reference",
}


def missing_kl_reason(run: RunData) -> str:
    """Why ``kl`` is absent, said for the run's trainer (TRL GRPO's beta = 0 is not verl's switch)."""
    algo = str(run.info.get("algorithm") or "").lower()
    source = (run.report.source_kind or "").lower()
    if source.startswith("verl"):
        return (
            "kl was not logged (verl logs actor/kl_loss only with actor_rollout_ref.actor.use_kl_loss=True, "
            "and actor/reward_kl_penalty only with algorithm.use_kl_in_reward=True)"
        )
    if algo == "grpo":
        return "kl was not logged (TRL GRPO logs no kl when beta = 0, its default since TRL 0.19)"
    if algo == "rloo":
        return "kl was not logged (TRL RLOO logs no kl when beta = 0)"
    if algo == "ppo":
        return "kl was not logged (TRL PPO logs objective/kl at every step: check the logger kept it)"
    return "kl was not logged"


def kl_limits(run: RunData, cfg: Mapping[str, Any]) -> tuple[str, float, float]:
    """``(unit, budget, critical level)`` this detector judges ``run``'s KL against, from its
    config section: published so the KL plot draws the detector's own limits, never a copy."""
    unit = kl_unit(run, str(cfg.get("unit") or "auto"))
    budget = float(cfg["budget_per_token"] if unit == "token" else cfg["budget_per_sequence"])
    return unit, budget, budget * float(cfg["critical_factor"])


@register(
    "kl_explosion",
    signals="`kl` (policy vs reference): sustained rolling median above the budget for its unit, "
    "super-linear growth (a hinge after which the slope is ≥ superlinear_ratio × the slope before), "
    "and spikes far above the rolling median — the policy is running away from the reference.",
    defaults={
        "unit": "auto",
        "budget_per_token": 0.5,
        "budget_per_sequence": 20.0,
        "critical_factor": 4.0,
        "superlinear_ratio": 3.0,
        "min_rise_fraction": 0.25,
        "spike_z": 10.0,
        "spike_ratio": 10.0,
        "window": 20,
    },
    requires=("kl",),
    severity="warning for a sustained budget excess or super-linear growth (rise ≥ min_rise_fraction × "
    "budget); critical when KL exceeds critical_factor × budget, or exceeds the budget while growing "
    "super-linearly. Spikes follow the shared spike policy: transient warning, sustained or repeated critical.",
)
def kl_explosion(ctx: DetectorContext, cfg: dict[str, Any]) -> list[Alert]:
    """KL leaving its budget, growing super-linearly, or spiking."""
    family = preference_family(ctx)
    if family is not None and (family.name == KTO or not ctx.has(C.KL)):
        raise Skip(_PREFERENCE_KL[family.name])
    if not ctx.has(C.KL):
        raise Skip(missing_kl_reason(ctx.run))
    ctx.skip_if_too_short()
    x, y = ctx.series(C.KL)
    ctx.require_length(y.size, "kl")
    unit, budget, crit_level = kl_limits(ctx.run, cfg)
    n = y.size
    w = ctx.warmup_points(n)
    window, sustain = smoothing_windows(ctx, n)
    smooth = stats.rolling_median(y, window)
    out: list[Alert] = []

    # 1) budget
    over = stats.first_sustained(smooth > budget, sustain, start=w)
    # 2) super-linear growth: a hinge on the post-warm-up curve with a much steeper slope after it
    superlinear: dict[str, Any] | None = None
    xp, yp = x[w:], y[w:]
    if yp.size >= 8:
        cp = stats.change_point(xp, yp)
        k = cp.index
        if cp.model == "hinge" and 3 <= k <= yp.size - 3:
            s1, _ = stats.theil_sen(xp[:k], yp[:k])
            s2, _ = stats.theil_sen(xp[k:], yp[k:])
            rise = s2 * float(xp[-1] - xp[k])
            tr = stats.trend(xp[k:], yp[k:])
            noise = stats.robust_scale(yp[:k] - (s1 * xp[:k]))
            if (
                s2 > 0
                and s2 >= float(cfg["superlinear_ratio"]) * max(s1, 0.0)
                and rise >= max(float(cfg["min_rise_fraction"]) * budget, 5 * noise)
                and tr.rising(0.01)
            ):
                superlinear = {
                    "onset_step": int(xp[k]),
                    "slope_before": s1,
                    "slope_after": s2,
                    "rise_after_onset": rise,
                }
    if over is not None or superlinear is not None:
        peak = float(smooth[w:].max())
        peak_step = int(x[w + int(np.argmax(smooth[w:]))])
        severe = peak >= crit_level or (over is not None and superlinear is not None)
        if over is not None:
            # KL grows multiplicatively: date the take-off on the log scale, where it is a ramp
            onset = stats.onset_step(x, np.log(np.maximum(y, 1e-12)), upto=over, lo=min(w, over))
        else:
            assert superlinear is not None
            onset = int(superlinear["onset_step"])
        parts = []
        if over is not None:
            parts.append(f"above its budget {budget:g} per {unit} (held from step {int(x[over])})")
        if superlinear is not None:
            parts.append(
                f"growing super-linearly from step {superlinear['onset_step']} "
                f"(slope ×{superlinear['slope_after'] / max(superlinear['slope_before'], 1e-12):.3g})"
                if superlinear["slope_before"] > 0
                else f"growing super-linearly from step {superlinear['onset_step']} after a flat start"
            )
        out.append(
            alert(
                "kl_explosion",
                Severity.CRITICAL if severe else Severity.WARNING,
                onset,
                f"KL from step {onset}: {' and '.join(parts)}; rising to a rolling median of "
                f"{peak:.4g} by step {peak_step}",
                unit=unit,
                budget=budget,
                critical_level=crit_level,
                baseline=float(np.median(y[:w])),
                peak_rolling_median=peak,
                onset_step=onset,
                first_evidence_step=int(x[over]) if over is not None else onset,
                peak_step=peak_step,
                last=float(smooth[-1]),
                exceeded_budget_at=None if over is None else int(x[over]),
                superlinear=superlinear,
                sample_ids=[],
            )
        )

    # 3) spikes relative to the rolling median (log scale: KL is positive and multiplicative)
    ly = np.log(np.maximum(y, 1e-12))
    z = np.nan_to_num(
        stats.robust_z(
            ly, int(cfg["window"]), min_history=max(w, 8), floor=0.5 * stats.noise_scale(ly)
        ),
        nan=0.0,
    )
    window = int(cfg["window"])
    ratio = float(cfg["spike_ratio"])
    spikes = []
    for i in np.where(z >= float(cfg["spike_z"]))[0]:
        med = float(np.median(y[max(0, i - window) : i]))
        if y[i] >= ratio * max(med, 1e-12) and y[i] >= 0.5 * budget:
            spikes.append(int(i))
    if spikes and not out:
        recover = int(ctx.general["spike_recover_points"])

        def elevated(v: np.ndarray, hist: np.ndarray) -> np.ndarray:
            return (v >= ratio * max(float(np.median(hist)), 1e-12)) & (v >= 0.5 * budget)

        events = spike_events(y, spikes, window=window, recover_points=recover, elevated=elevated)
        pattern = spike_pattern(events, int(ctx.general["spike_repeats"]))
        top = max(events, key=lambda e: float(y[e.peak]) / max(e.reference, 1e-12))
        ip, med = top.peak, top.reference
        others = [e for e in events if e is not top]
        listed = ", ".join(f"{y[e.peak]:.4g} at step {int(x[e.peak])}" for e in others[:5])
        first = int(x[events[0].start])
        out.append(
            alert(
                "kl_explosion",
                pattern_severity(pattern),
                first,
                f"KL spiked to {y[ip]:.4g} at step {int(x[ip])} ({y[ip] / max(med, 1e-12):.3g}× its rolling "
                f"median {med:.4g})"
                + (
                    f", the largest of {len(events)} spikes from step {first} (also {listed})"
                    if others
                    else ""
                )
                + f"; {pattern_words(pattern, events, recover)}",
                unit=unit,
                budget=budget,
                **spike_evidence(x, y, z, events, top),
                pattern=pattern,
                above_critical_level=bool(float(y[spikes].max()) >= crit_level),
                spike_steps=[int(x[e.start]) for e in events[:10]],
                sample_ids=[],
            )
        )
    return out
