"""Numerical health: non-finite values (nan_values) and sudden loss / grad-norm jumps (loss_spike)."""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from analyzer import columns as C
from analyzer.detectors import stats
from analyzer.detectors.base import DetectorContext, Skip, alert, register
from analyzer.model import Alert, Severity

if TYPE_CHECKING:
    import polars as pl

# A non-finite value here means the optimisation itself is broken, not a logging quirk.
_CORE = re.compile(
    r"^(loss|policy_loss|value_loss|reward|kl|entropy|advantage_mean|gen_reward_mean)$"
)


def _maybe_non_finite(metrics: pl.DataFrame, cols: list[str]) -> list[bool]:
    """Per column, whether it may hold NaN/inf (a null counts too: the caller looks closer).

    One array over all columns: a run with 10,000 reward functions has ~50,000 metric columns,
    and even one Polars expression over all of them takes seconds to plan."""
    import polars as pl

    values = metrics.select(cols).to_numpy()
    if values.dtype.kind in "fiu":
        return (~np.isfinite(values.astype(float, copy=False))).any(axis=0).tolist()
    return list(metrics.select((~pl.col(cols).cast(pl.Float64, strict=False).is_finite()).any()).row(0))


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
    "`window` points before it (log scale for positive columns) — a jump far outside the recent range "
    "is a divergence or a bad batch.",
    defaults={
        "columns": ["loss", "policy_loss", "value_loss", "grad_norm"],
        "window": 20,
        "z_warning": 10.0,
        "min_ratio": 3.0,
        "critical_count": 5,
    },
    requires=("loss or grad_norm",),
    severity="warning for a jump with robust z ≥ z_warning (upward and ≥ min_ratio × the rolling median for "
    "positive columns); critical when the level stays shifted after the jump or after ≥ critical_count separate jumps.",
)
def loss_spike(ctx: DetectorContext, cfg: dict[str, Any]) -> list[Alert]:
    """A loss or grad-norm jump far outside its recent robust range."""
    cols = [c for c in cfg["columns"] if ctx.has(c)]
    if not cols:
        raise Skip(f"none of {', '.join(cfg['columns'])} was logged")
    ctx.skip_if_too_short()
    out: list[Alert] = []
    for col in cols:
        x, y = ctx.series(col)
        if y.size < int(ctx.general["min_steps"]):
            continue
        positive = bool(np.all(y > 0))
        t = np.log(y) if positive else y
        w = ctx.warmup_points(y.size)
        z = stats.robust_z(
            t, int(cfg["window"]), min_history=max(w, 8), floor=0.5 * stats.noise_scale(t)
        )
        spread = float(np.percentile(y, 95) - np.percentile(y, 5))
        hits: list[int] = []
        for i in np.where(np.nan_to_num(z, nan=0.0) >= float(cfg["z_warning"]))[0]:
            hist = y[max(0, i - int(cfg["window"])) : i]
            med = float(np.median(hist))
            if positive:
                # upward only: a grad norm collapsing to ~0 (all groups without spread) is not a spike
                if y[i] < float(cfg["min_ratio"]) * med:
                    continue
            elif abs(y[i] - med) < 0.5 * spread:
                continue
            hits.append(int(i))
        if not hits:
            continue
        events = [hits[0]] + [b for a, b in itertools.pairwise(hits) if b - a > 2]
        zmax = float(np.nanmax(z[hits]))
        i0 = hits[0]
        hist = y[max(0, i0 - int(cfg["window"])) : i0]
        # a jump the run recovers from is a warning; one that shifts the level for good (the
        # rolling median after it stays ≥ min_ratio × before, or far off for signed losses),
        # or one of many, is critical
        after = y[i0 + 1 : i0 + 1 + int(cfg["window"])]
        med0 = float(np.median(hist))
        if after.size >= 3:
            ma = float(np.median(after))
            shifted = (
                (ma >= float(cfg["min_ratio"]) * med0)
                if positive
                else abs(ma - med0) >= 0.5 * spread
                and (abs(ma - med0) >= float(cfg["z_warning"]) * stats.robust_scale(hist))
            )
        else:
            shifted = False
        sev = (
            Severity.CRITICAL
            if shifted or len(events) >= int(cfg["critical_count"])
            else Severity.WARNING
        )
        out.append(
            alert(
                "loss_spike",
                sev,
                int(x[i0]),
                f"{col} jumped to {y[i0]:.4g} at step {int(x[i0])} (rolling median {np.median(hist):.4g}, "
                f"robust z {z[i0]:.1f}); {len(events)} jump(s) in total",
                column=col,
                value=float(y[i0]),
                rolling_median=float(np.median(hist)),
                robust_z=float(z[i0]),
                max_robust_z=zmax,
                jumps=len(events),
                jump_steps=[int(x[i]) for i in events[:10]],
                threshold_z=float(cfg["z_warning"]),
                level_shifted=bool(shifted),
                scale="log" if positive else "linear",
                sample_ids=[],
            )
        )
    return out
