"""Numerical health: non-finite values (nan_values) and sudden loss / grad-norm jumps (loss_spike)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

from analyzer import columns as C
from analyzer.detectors import stats
from analyzer.detectors._common import (
    SUSTAINED,
    pattern_severity,
    pattern_words,
    spike_events,
    spike_evidence,
    spike_pattern,
)
from analyzer.detectors.base import DetectorContext, Skip, alert, register
from analyzer.model import Alert, Severity

if TYPE_CHECKING:
    import polars as pl

# A non-finite value here means the optimisation itself is broken, not a logging quirk.
# The preference losses (DPO, KTO, ORPO, …) are computed from the implicit rewards and
# log-probabilities: a NaN there is a NaN loss.
_CORE = re.compile(
    r"^(loss|policy_loss|value_loss|reward|kl|entropy|advantage_mean|gen_reward_mean"
    r"|rewards/(chosen|rejected|margins)|logps/(chosen|rejected)|nll_loss|log_odds_(ratio|chosen))$"
)


def _maybe_non_finite(metrics: pl.DataFrame, cols: list[str]) -> list[bool]:
    """Per column, whether it may hold NaN/inf (a null counts too: the caller looks closer).

    One array over all columns: a run with 10,000 reward functions has ~50,000 metric columns,
    and even one Polars expression over all of them takes seconds to plan."""
    import polars as pl

    values = metrics.select(cols).to_numpy()
    if values.dtype.kind in "fiu":
        return (~np.isfinite(values.astype(float, copy=False))).any(axis=0).tolist()
    return list(
        metrics.select((~pl.col(cols).cast(pl.Float64, strict=False).is_finite()).any()).row(0)
    )


@register(
    "nan_values",
    signals="every numeric column of the metrics frame (logged scalars and rebuilt gen_* columns) and "
    "the rewards of the completions, for NaN / ±inf — a broken optimisation step poisons all later ones.",
    defaults={"critical_fraction": 0.1},
    requires=("logged scalars or completions",),
    severity="critical when loss/reward/kl/entropy is non-finite, when a column ends non-finite, or when "
    "≥ critical_fraction of a column's values are; otherwise warning (e.g. a few skipped fp16 steps with NaN grad_norm).",
)
def nan_values(ctx: DetectorContext, cfg: dict[str, Any]) -> list[Alert]:
    """NaN or infinite values in losses, rewards, gradients or any other logged scalar."""
    import polars as pl

    if ctx.n_steps == 0 and not ctx.has_generations:
        raise Skip("no logged scalars and no completions")
    per_col: dict[str, dict[str, Any]] = {}
    critical = False
    cols = ctx.numeric_columns()
    # one pass to find the columns holding any NaN/inf; only those are looked at closely
    flagged = _maybe_non_finite(ctx.metrics, cols) if cols and ctx.n_steps else []
    for col, has_bad in zip(cols, flagged, strict=False):
        if not has_bad:
            continue
        x, y = ctx.series(col, finite=False)
        bad = ~np.isfinite(y)
        if not bad.any():
            continue
        frac = float(bad.mean())
        per_col[col] = {
            "first_step": int(x[bad][0]),
            "count": int(bad.sum()),
            "of": int(y.size),
            "steps": [int(s) for s in x[bad][:10]],
            "last_value_non_finite": bool(bad[-1]),
        }
        base = col.split("/", 1)[1] if col.startswith(C.SPLIT_PREFIXES) else col
        if _CORE.match(base) or bad[-1] or frac >= float(cfg["critical_fraction"]):
            critical = True
    sample_ids: list[int] = []
    if ctx.has_generations:
        s = ctx.samples
        rcols = [c for c in s.columns if c == C.TOTAL_REWARD or c.startswith(C.REWARD_PREFIX)]
        if rcols:
            bad_rows = s.filter(
                pl.any_horizontal(
                    [~pl.col(c).cast(pl.Float64, strict=False).is_finite() for c in rcols]
                )
            )
            if bad_rows.height:
                critical = True
                sample_ids = ctx.pick_samples(bad_rows.sort(C.SAMPLE_ID), order_by=None)
                per_col["completions: rewards"] = {
                    "first_step": int(bad_rows[C.STEP].min()),  # type: ignore[arg-type]
                    "count": int(bad_rows.height),
                    "of": int(s.height),
                }
    if not per_col:
        return []
    first = min(v["first_step"] for v in per_col.values())
    names = ", ".join(sorted(per_col))
    sev = Severity.CRITICAL if critical else Severity.WARNING
    return [
        alert(
            "nan_values",
            sev,
            first,
            f"non-finite values (NaN/inf) in {names}, first at step {first}",
            columns=per_col,
            sample_ids=sample_ids,
        )
    ]


@register(
    "loss_spike",
    signals="loss, policy_loss, value_loss and grad_norm: each point against the robust median/MAD of the "
    "`window` points before it — on a log scale for columns that are never negative (a zero or a tiny "
    "value is floored at 1e-3 × the column's median, so one exact 0 does not change the scale) — a "
    "jump far outside the recent range (or, for a non-negative column, ≥ extreme_ratio × its rolling "
    "median whatever its noise) is a divergence or a bad batch.",
    defaults={
        "columns": ["loss", "policy_loss", "value_loss", "grad_norm"],
        "window": 20,
        "z_warning": 10.0,
        "min_ratio": 3.0,
        "extreme_ratio": 50.0,
    },
    requires=("loss or grad_norm",),
    severity="the shared spike policy: warning for transient jumps (robust z ≥ z_warning, upward and ≥ "
    "min_ratio × the rolling median for non-negative columns), critical when a jump is sustained "
    "(still elevated general.spike_recover_points later) or repeated (≥ general.spike_repeats jumps).",
)
def loss_spike(ctx: DetectorContext, cfg: dict[str, Any]) -> list[Alert]:
    """A loss or grad-norm jump far outside its recent robust range."""
    cols = [c for c in cfg["columns"] if ctx.has(c)]
    if not cols:
        raise Skip(f"none of {', '.join(cfg['columns'])} was logged")
    ctx.skip_if_too_short()
    window = int(cfg["window"])
    min_ratio = float(cfg["min_ratio"])
    recover = int(ctx.general["spike_recover_points"])
    out: list[Alert] = []
    for col in cols:
        x, y = ctx.series(col)
        if y.size < int(ctx.general["min_steps"]):
            continue
        t, positive = robust_scale_values(y)
        w = ctx.warmup_points(y.size)
        z = stats.robust_z(
            t, window, min_history=max(w, 8), floor=0.5 * stats.noise_scale(t), upward=positive
        )
        spread = float(np.percentile(y, 95) - np.percentile(y, 5))

        def elevated(
            v: np.ndarray, hist: np.ndarray, positive: bool = positive, spread: float = spread
        ) -> np.ndarray:
            med = float(np.median(hist))
            if positive:
                return v >= min_ratio * max(med, 0.0) + 1e-300
            return np.abs(v - med) >= 0.5 * spread

        hits: list[int] = []
        zz = np.nan_to_num(z, nan=0.0)
        for i in range(max(w, 8), y.size):
            hist = y[max(0, i - window) : i]
            # upward only for a non-negative column: a grad norm collapsing to ~0 (all groups
            # without spread) is not a spike; one ≥ extreme_ratio × its median is, however noisy
            extreme = positive and y[i] >= float(cfg["extreme_ratio"]) * float(np.median(hist)) > 0
            if (zz[i] >= float(cfg["z_warning"]) or extreme) and elevated(y[i : i + 1], hist)[0]:
                hits.append(int(i))
        if not hits:
            continue
        events = spike_events(
            y,
            hits,
            window=window,
            recover_points=recover,
            elevated=elevated,
            magnitude=np.nan_to_num(z, nan=0.0),
        )
        pattern = spike_pattern(events, int(ctx.general["spike_repeats"]))
        top = max(
            events,
            key=lambda e: (
                float(t[e.peak]) - float(np.median(t[max(0, e.start - window) : e.start]))
            ),
        )
        ip = top.peak
        ref = top.reference
        ratio = f"{y[ip] / ref:.3g}× " if positive and ref > 0 else ""
        others = [e for e in events if e is not top]
        listed = ", ".join(f"{y[e.peak]:.4g} at step {int(x[e.peak])}" for e in others[:5])
        more = f" and {len(others) - 5} more" if len(others) > 5 else ""
        first = int(x[events[0].start])
        message = (
            f"{col} jumped to {y[ip]:.4g} at step {int(x[ip])} ({ratio}its rolling median {ref:.4g}, "
            f"robust z {z[ip]:.1f})"
            + (
                f", the largest of {len(events)} jumps from step {first} (also {listed}{more})"
                if others
                else ""
            )
            + f"; {pattern_words(pattern, events, recover)}"
        )
        out.append(
            alert(
                "loss_spike",
                pattern_severity(pattern),
                first,
                message,
                column=col,
                **spike_evidence(x, y, z, events, top),
                max_robust_z=float(np.nanmax(z[hits])),
                jumps=len(events),
                jump_steps=[int(x[e.start]) for e in events[:10]],
                pattern=pattern,
                threshold_z=float(cfg["z_warning"]),
                level_shifted=pattern == SUSTAINED,
                scale="log" if positive else "linear",
                sample_ids=[],
            )
        )
    return out


def robust_scale_values(y: np.ndarray) -> tuple[np.ndarray, bool]:
    """(values on the scale spikes are judged on, whether it is the log scale).

    A column that is never negative (grad norm, KL, a positive loss) is judged on a log scale: its
    jumps are multiplicative. Values at or near zero are floored at 1e-3 × the median of its
    positive values, so one exact 0 (TRL logs grad_norm 0 when no group had a reward spread) and a
    0.001 give the same scale. A column with negative values stays linear.
    """
    if y.size == 0 or np.any(y < 0):
        return y, False
    pos = y[y > 0]
    if pos.size < max(3, y.size // 2):
        return y, False
    floor = 1e-3 * float(np.median(pos))
    return np.log(np.maximum(y, floor)), True
