"""PPO's critic: value_reward_mismatch (the value head stops explaining returns)."""

from __future__ import annotations

from typing import Any

import numpy as np

from analyzer import columns as C
from analyzer.detectors import stats
from analyzer.detectors._common import find_excursion
from analyzer.detectors.base import DetectorContext, Skip, alert, register
from analyzer.model import Alert, Severity


@register(
    "value_reward_mismatch",
    signals="PPO's `explained_variance` of the returns by the value head (verl critic/vf_explained_var, "
    "TRL val/var_explained): learned (≥ learned_level) and then lost (falls ≥ drop below its peak); "
    "without it, `value_loss` growing ≥ value_loss_growth × its warm-up level. Advantages computed "
    "from a value head that no longer tracks returns are noise.",
    defaults={"learned_level": 0.2, "drop": 0.3, "critical_level": 0.0, "value_loss_growth": 5.0},
    requires=("explained_variance or value_loss (PPO)",),
    severity="warning when explained variance falls ≥ drop below its peak (or value loss grows ≥ value_loss_growth×); "
    "critical when explained variance falls to ≤ critical_level (the critic explains nothing).",
)
def value_reward_mismatch(ctx: DetectorContext, cfg: dict[str, Any]) -> list[Alert]:
    """The value head stops explaining returns (PPO)."""
    if not (ctx.has(C.VALUE_EXPLAINED_VARIANCE) or ctx.has(C.VALUE_LOSS)):
        raise Skip("no explained_variance or value_loss logged (not a PPO run with a critic)")
    if (why := ctx.too_short()) is not None:
        raise Skip(why)
    if ctx.has(C.VALUE_EXPLAINED_VARIANCE):
        x, y = ctx.series(C.VALUE_EXPLAINED_VARIANCE)
        ctx.require_length(y.size, C.VALUE_EXPLAINED_VARIANCE)
        n = y.size
        w = ctx.warmup_points(n)
        smooth = stats.rolling_median(y, stats.window_for(n))
        peak = np.maximum.accumulate(smooth)
        cond = (peak >= float(cfg["learned_level"])) & (smooth <= peak - float(cfg["drop"]))
        idx = stats.first_sustained(cond, stats.window_for(n, 0.03, 3, 15), start=w)
        if idx is None:
            return []
        p_idx = int(np.argmax(smooth[: idx + 1]))
        onset = stats.onset_step(x, y, upto=idx, lo=max(0, p_idx - 2))
        low = float(smooth[idx:].min())
        return [
            alert(
                "value_reward_mismatch",
                Severity.CRITICAL if low <= float(cfg["critical_level"]) else Severity.WARNING,
                onset,
                f"the value head's explained variance fell from {peak[idx]:.2f} to {low:.2f} from step {onset}",
                signal=C.VALUE_EXPLAINED_VARIANCE,
                peak=float(peak[idx]),
                lowest_rolling_median=low,
                last=float(smooth[-1]),
                drop_threshold=float(cfg["drop"]),
                detected_at=int(x[idx]),
                sample_ids=[],
            )
        ]
    x, y = ctx.series(C.VALUE_LOSS)
    ctx.require_length(y.size, C.VALUE_LOSS)
    exc = find_excursion(ctx, x, y, above=True, rel_delta=float(cfg["value_loss_growth"]) - 1.0)
    if exc is None or not stats.trend(x, y).rising(0.01):
        return []
    return [
        alert(
            "value_reward_mismatch",
            Severity.WARNING,
            exc.onset_step,
            f"value loss grew {exc.extreme / max(exc.baseline, 1e-12):.1f}× its warm-up level from step {exc.onset_step}",
            signal=C.VALUE_LOSS,
            baseline=exc.baseline,
            peak_rolling_median=exc.extreme,
            last=exc.last,
            detected_at=exc.detect_step,
            sample_ids=[],
        )
    ]
