"""PPO's critic: value_reward_mismatch (the value head stops explaining returns)."""

from __future__ import annotations

from typing import Any

from analyzer import columns as C
from analyzer.detectors import stats
from analyzer.detectors._common import excursion_alert, find_drop_from_peak, find_excursion
from analyzer.detectors.base import DetectorContext, Skip, register
from analyzer.detectors.headline import when
from analyzer.model import Alert


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
    ctx.skip_if_too_short()
    if ctx.has(C.VALUE_EXPLAINED_VARIANCE):
        x, y = ctx.series(C.VALUE_EXPLAINED_VARIANCE)
        ctx.require_length(y.size, C.VALUE_EXPLAINED_VARIANCE)
        exc = find_drop_from_peak(
            ctx, x, y, drop=float(cfg["drop"]), min_peak=float(cfg["learned_level"])
        )
        if exc is None:
            return []
        return [
            excursion_alert(
                "value_reward_mismatch",
                exc,
                f"the value head's explained variance {when(exc, lambda v: f'{v:.2f}')} (from its "
                f"peak {exc.baseline:.2f})",
                critical=exc.extreme <= float(cfg["critical_level"]),
                extreme_key="lowest_rolling_median",
                baseline_key="peak",
                signal=C.VALUE_EXPLAINED_VARIANCE,
                drop_threshold=float(cfg["drop"]),
                sample_ids=[],
            )
        ]
    x, y = ctx.series(C.VALUE_LOSS)
    ctx.require_length(y.size, C.VALUE_LOSS)
    exc = find_excursion(ctx, x, y, above=True, rel_delta=float(cfg["value_loss_growth"]) - 1.0)
    if exc is None or not stats.trend(x, y).rising(0.01):
        return []
    return [
        excursion_alert(
            "value_reward_mismatch",
            exc,
            f"value loss {when(exc, lambda v: f'{v:.4g}')} "
            f"({exc.extreme / max(exc.baseline, 1e-12):.1f}× its warm-up level {exc.baseline:.4g})",
            critical=False,
            signal=C.VALUE_LOSS,
            sample_ids=[],
        )
    ]
