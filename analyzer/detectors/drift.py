"""Drift of what the model says: catastrophic_forgetting and semantic_drift.

Both read the ``drift_*`` per-step columns of ``analyzer.drift`` (docs/drift.md) when present;
forgetting falls back on eval/probe metrics when drift was not scored.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from analyzer import columns as C
from analyzer.detectors import stats
from analyzer.detectors._common import (
    Excursion,
    eval_quality_columns,
    excursion_alert,
    find_drop_from_peak,
    find_excursion,
    find_rise,
    reward_around,
    reward_signal,
)
from analyzer.detectors.base import DetectorContext, Skip, alert, register
from analyzer.detectors.headline import when
from analyzer.detectors.text import CORRECT
from analyzer.model import Alert, Severity

EVAL_DRIFT = C.DRIFT_EVAL_MEAN  # eval and probe prompts together (analyzer.drift)
TRAIN_DRIFT = C.DRIFT_TRAIN_MEAN
# eval/probe metrics where higher is worse (lower-is-worse ones: _common.eval_quality_columns)
_EVAL_UP = ("loss",)


def _unless_train_fell(
    ctx: DetectorContext, exc: Excursion, message: str, *, critical: bool, **evidence: Any
) -> list[Alert]:
    """The forgetting alert — none when the train reward fell too (the whole run degraded). The
    headline says the train reward held only when there is one to compare (a DPO run has none)."""
    held: dict[str, Any] = {}
    context = (
        " (no train reward was logged to tell it from a run that degraded as a whole)"
        if reward_signal(ctx) is None
        else " (too few train reward points on either side of the onset to compare)"
    )
    if (around := reward_around(ctx, exc.onset_step)) is not None:
        b, a, fell = around
        if fell:
            return []
        held = {"train_reward_before": b, "train_reward_after": a}
        context = " while the train reward held"
    return [
        excursion_alert(
            "catastrophic_forgetting",
            exc,
            f"{message}{context}",
            critical=critical,
            **evidence,
            sample_ids=_eval_ids(ctx, exc.onset_step),
            **held,
        )
    ]


def _eval_ids(ctx: DetectorContext, onset: int) -> list[int]:
    """Eval/probe completions from the onset on (wrong ones first), else drift's outliers."""
    k = int(ctx.general["max_sample_ids"])
    if ctx.has_generations:
        import polars as pl

        s = ctx.samples.filter((pl.col(C.SPLIT) != "train") & (pl.col(C.STEP) >= onset))
        if s.height:
            wrong = s.filter(pl.col(CORRECT) == 0)
            return ctx.pick_samples((wrong if wrong.height else s).sort(C.STEP, descending=True))
    if ctx.drift is not None and ctx.drift.outliers:
        return [int(o["sample_id"]) for o in ctx.drift.outliers if o.get("step", onset) >= onset][
            :k
        ]
    return []


@register(
    "catastrophic_forgetting",
    signals="answers to eval/probe prompts drifting from their baseline (drift_eval_mean: "
    "mean cosine distance from each prompt's first answers) — or, without drift, eval/probe accuracy or "
    "reward falling (eval loss rising) — while the train reward holds.",
    defaults={
        "drift_threshold": 0.25,
        "drift_increase": 0.15,
        "drift_critical": 0.5,
        "min_accuracy_drop": 0.15,
        "min_relative_drop": 0.1,
        "critical_accuracy_drop": 0.3,
        "loss_growth": 0.5,
    },
    requires=("drift_eval_mean, or eval/probe metrics",),
    severity="warning when eval drift stays ≥ drift_threshold (and ≥ drift_increase above the warm-up) or an eval "
    "metric falls by ≥ min_accuracy_drop (accuracy) / max(4 × its noise, min_relative_drop × its level); critical at drift ≥ drift_critical or "
    "accuracy drop ≥ critical_accuracy_drop. Not raised when the train reward fell too.",
)
def catastrophic_forgetting(ctx: DetectorContext, cfg: dict[str, Any]) -> list[Alert]:
    """Eval/probe answers drifting away, or eval scores falling, while training reward holds."""
    ctx.skip_if_too_short()
    out: list[Alert] = []
    has_drift = ctx.has(EVAL_DRIFT)
    exc = None
    if has_drift:
        x, y = ctx.series(EVAL_DRIFT)
        if y.size >= 4:
            exc = find_rise(ctx, x, y, cfg, threshold="drift_threshold", increase="drift_increase")
    if exc is not None:
        out += _unless_train_fell(
            ctx,
            exc,
            f"the drift of answers to eval/probe prompts from their baseline (cosine distance) "
            f"{when(exc, lambda v: f'{v:.2f}')}",
            critical=exc.extreme >= float(cfg["drift_critical"]),
            signal=EVAL_DRIFT,
            threshold=float(cfg["drift_threshold"]),
            top_drifting=(ctx.drift.top_drifting[:3] if ctx.drift else []),
        )
    if out:
        return out
    # (column, higher is worse, is an accuracy)
    present = [(c, False, acc) for c, acc in eval_quality_columns(ctx)] + [
        (f"{p}{m}", True, False) for p in C.SPLIT_PREFIXES for m in _EVAL_UP if ctx.has(f"{p}{m}")
    ]
    if not present and not has_drift:
        raise Skip("no eval/probe signal: neither drift_eval_mean nor eval/probe metrics")
    for col, up, is_acc in present:
        x, y = ctx.series(col)
        if y.size < 6:
            continue
        # point-to-point noise: the warm-up's spread would include the early learning trend
        noise = stats.noise_scale(y)
        if up:
            exc = find_excursion(
                ctx, x, y, above=True, rel_delta=float(cfg["loss_growth"]), min_delta=4 * noise
            )
        else:
            if is_acc:
                need = float(cfg["min_accuracy_drop"])
            else:  # a reward/score in its own units: beyond noise and a relative share of its level
                w = ctx.warmup_points(y.size)
                level = (
                    abs(float(np.median(y[max(w, 1) :])))
                    if y.size > w
                    else abs(float(np.median(y)))
                )
                need = max(4 * noise, float(cfg["min_relative_drop"]) * level, 1e-9)
            exc = find_drop_from_peak(ctx, x, y, drop=need)
        if exc is None:
            continue
        out = _unless_train_fell(
            ctx,
            exc,
            f"{col} {when(exc, lambda v: f'{v:.4g}', rising=up)} "
            f"({'warm-up level' if up else 'peak'} {exc.baseline:.4g})",
            critical=is_acc and exc.baseline - exc.extreme >= float(cfg["critical_accuracy_drop"]),
            extreme_key="extreme_rolling_median",
            signal=col,
        )
        if out:
            break  # one eval metric is enough evidence
    return out


@register(
    "semantic_drift",
    signals="drift_train_mean: mean cosine distance of train completions from each prompt's early answers "
    "(informational — a policy is meant to change; read it next to the reward).",
    defaults={"threshold": 0.3, "min_increase": 0.15},
    requires=("drift_train_mean (drift scoring)",),
    severity="info only.",
)
def semantic_drift(ctx: DetectorContext, cfg: dict[str, Any]) -> list[Alert]:
    """Completions drifting from their baseline (informational)."""
    if not ctx.has(TRAIN_DRIFT):
        raise Skip("no drift_train_mean (drift was not scored: no completions, or no prompt seen at two steps)")
    ctx.skip_if_too_short()
    x, y = ctx.series(TRAIN_DRIFT)
    ctx.require_length(y.size, TRAIN_DRIFT)
    exc = find_rise(ctx, x, y, cfg)
    if exc is None:
        return []
    top = ctx.drift.top_drifting[:3] if ctx.drift else []
    ids = [
        int(o["sample_id"]) for o in (ctx.drift.outliers if ctx.drift else []) if "sample_id" in o
    ]
    return [
        alert(
            "semantic_drift",
            Severity.INFO,
            exc.onset_step,
            f"the drift of train completions from their early answers (cosine distance) "
            f"{when(exc, lambda v: f'{v:.2f}')}",
            signal=TRAIN_DRIFT,
            **exc.evidence(),
            top_drifting=top,
            sample_ids=ids[: int(ctx.general["max_sample_ids"])],
        )
    ]
