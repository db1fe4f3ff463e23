"""The run gets worse: a sustained fall of the reward, a reward component or an eval score from its
peak (reward_regression).

Distinct from ``reward_hacking``, which needs the proxy reward to hold or rise while a truer signal
falls: here what the run optimises (or one of its parts, or its eval score) is itself lost. Every
fall is judged on the curve's own scale: a rolling median sitting a robust margin below its running
peak, for a sustained stretch, with the peak's level and the later level told apart by a rank test
(``find_drop_from_peak``) — never on one noisy point.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from analyzer import columns as C
from analyzer.detectors import stats
from analyzer.detectors._common import (
    Excursion,
    eval_quality_columns,
    find_drop_from_peak,
    reward_functions,
    reward_signal,
    smoothing_windows,
)
from analyzer.detectors.base import DetectorContext, Skip, alert, register
from analyzer.detectors.headline import onset_rows
from analyzer.model import Alert, Severity


def _fall(
    ctx: DetectorContext,
    cfg: dict[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    *,
    accuracy: bool,
    min_z: float | None = None,
) -> dict[str, Any] | None:
    """The sustained fall of one curve from its peak, with its numbers, or None."""
    n = y.size
    if n < ctx.min_points() or not np.ptp(y) > 0:
        return None
    noise = stats.noise_scale(y) or stats.robust_scale(y)
    # the peak as find_drop_from_peak smooths the curve (2 points for a sparse eval curve)
    peak_level = float(np.max(stats.rolling_median(y, smoothing_windows(ctx, n)[0])))
    if accuracy:
        drop = float(cfg["min_accuracy_drop"])
    else:
        drop = max(
            float(cfg["noise_multiple"]) * noise,
            float(cfg["min_relative_drop"]) * max(abs(peak_level), float(np.ptp(y)) / 2),
        )
    exc = find_drop_from_peak(
        ctx, x, y, drop=drop, min_z=float(cfg["min_z"]) if min_z is None else min_z
    )
    if exc is None:
        return None
    return _describe(ctx, x, y, exc, drop=drop, noise=noise)


def _candidates(
    ctx: DetectorContext, cfg: dict[str, Any], series: dict[str, tuple[np.ndarray, np.ndarray]]
) -> list[str]:
    """The reward components whose smoothed curve sits the required margin below its running peak
    for a sustained stretch — ``_fall``'s first condition, tested for all components logged at the
    same steps in one pass (a run may log thousands); only these get the rank test."""
    from numpy.lib.stride_tricks import sliding_window_view

    out: list[tuple[float, str]] = []
    same: dict[bytes, list[str]] = {}
    for name, (x, y) in series.items():  # components logged at the same steps are judged together
        if y.size >= ctx.min_points():
            same.setdefault(x.tobytes(), []).append(name)
    for names in same.values():
        ys = np.column_stack([series[k][1] for k in names])
        n = ys.shape[0]
        w = ctx.warmup_points(n)
        win, sustain = smoothing_windows(ctx, n)
        win = max(1, min(win, n))
        smooth = _rolling_cols(ys, win)
        d = np.diff(ys, axis=0)
        noise = stats.MAD_SCALE * np.median(np.abs(d - np.median(d, axis=0)), axis=0) / np.sqrt(2)
        # where the MAD of the steps is 0, _fall falls back to a wider scale: keep those columns
        noise = np.where(noise > 0, noise, 0.0)
        peak_level = np.max(smooth, axis=0)  # as _fall's: the same smoothing
        drop = np.maximum(
            float(cfg["noise_multiple"]) * noise,
            float(cfg["min_relative_drop"])
            * np.maximum(np.abs(peak_level), np.ptp(ys, axis=0) / 2),
        )
        cond = smooth <= np.maximum.accumulate(smooth, axis=0) - drop
        cond[:w] = False
        hit = np.zeros(len(names), dtype=bool)
        if n - w >= sustain:
            hit |= sliding_window_view(cond[w:], sustain, axis=0).all(axis=-1).any(axis=0)
        trailing = np.argmin(np.vstack([cond[::-1], np.zeros((1, len(names)), bool)]), axis=0)
        hit |= np.minimum(trailing, n - w) >= max(2, (sustain + 1) // 2)
        hit &= np.ptp(ys, axis=0) > 0
        # how far each fell, in its own margins: the largest falls are judged first
        late = np.median(ys[-max(3, n // 5) :], axis=0)
        depth = (peak_level - late) / np.maximum(drop, 1e-12)
        out += [(float(depth[j]), names[j]) for j in np.nonzero(hit)[0]]
    out.sort(key=lambda t: -t[0])
    return [name for _, name in out]


def _rolling_cols(ys: np.ndarray, window: int) -> np.ndarray:
    """``stats.rolling_median`` of each column of ``ys`` (n × k), all at once."""
    from numpy.lib.stride_tricks import sliding_window_view

    n = ys.shape[0]
    window = max(1, min(int(window), n))
    if window == 1:
        return ys.copy()
    out = np.empty_like(ys)
    out[window - 1 :] = np.median(sliding_window_view(ys, window, axis=0), axis=-1)
    for i in range(window - 1):
        out[i] = np.median(ys[: i + 1], axis=0)
    return out


def _describe(
    ctx: DetectorContext,
    x: np.ndarray,
    y: np.ndarray,
    exc: Excursion,
    *,
    drop: float,
    noise: float,
) -> dict[str, Any]:
    n = y.size
    smooth = stats.rolling_median(y, smoothing_windows(ctx, n)[0])  # as the detection smoothed it
    i_peak = int(np.argmax(smooth[: exc.detect_index + 1]))
    tail = smooth[exc.detect_index :]
    i_low = exc.detect_index + int(np.argmin(tail))
    warm = float(np.median(y[: ctx.warmup_points(n)]))
    k = max(3, n // 5)
    late = float(np.median(y[-k:]))
    peak = float(smooth[i_peak])
    span = max(abs(peak), abs(peak - warm), 1e-12)
    return {
        "onset_step": exc.onset_step,
        "first_evidence_step": exc.detect_step,
        "peak": peak,
        "peak_step": int(x[i_peak]),
        "lowest": float(smooth[i_low]),
        "lowest_step": int(x[i_low]),
        "late": late,
        "late_points": k,
        "warmup_level": warm,
        "fall": peak - late,
        "relative_fall": (peak - late) / span,
        "below_warmup": late < warm - max(noise, 1e-12),
        "min_drop": drop,
    }


def _sentence(name: str, f: dict[str, Any]) -> str:
    """An unmistakable account of one fall: onset, first evidence, peak and low with their steps."""
    return (
        f"{name} fell from step {f['onset_step']} (sustained from step {f['first_evidence_step']}): "
        f"from its peak {f['peak']:.3g} at step {f['peak_step']} down to {f['lowest']:.3g} by step "
        f"{f['lowest_step']} (median of the last {f['late_points']} steps {f['late']:.3g})"
        + (f", below its warm-up level {f['warmup_level']:.3g}" if f["below_warmup"] else "")
    )


def _family_z(min_z: float, k: int) -> float:
    """The z a rank test must reach so that ``k`` of them together keep the one-test level of
    ``min_z`` (Bonferroni): ``min_z`` for one curve, 3.4 for 3, 5.1 for 10,000."""
    from statistics import NormalDist

    if k <= 1:
        return min_z
    p = 1.0 - NormalDist().cdf(min_z)
    return NormalDist().inv_cdf(1.0 - p / k)


def _is_critical(cfg: dict[str, Any], f: dict[str, Any], accuracy: bool) -> bool:
    if accuracy:
        return f["fall"] >= float(cfg["critical_accuracy_drop"]) or bool(f["below_warmup"])
    return f["relative_fall"] >= float(cfg["critical_relative_fall"]) or bool(f["below_warmup"])


def _sample_ids(ctx: DetectorContext, f: dict[str, Any], column: str | None) -> list[int]:
    """Completions of the onset period (onset up to a little past the first evidence) that show
    the fall: the lowest ``column`` (a reward function's value, else the total reward) first."""
    if not ctx.has_generations:
        return []
    import polars as pl

    s = ctx.train_samples()
    col = column if column in s.columns else C.TOTAL_REWARD
    if col not in s.columns:
        return []
    period = onset_rows(s, int(f["onset_step"]), int(f["first_evidence_step"])).with_columns(
        pl.col(col).cast(pl.Float64, strict=False).alias("_v")
    )
    low = period.filter(pl.col("_v") < f["peak"]).sort(["_v", C.STEP])
    return ctx.pick_samples(low)


@register(
    "reward_regression",
    signals="the training reward (logged `reward`, else the completions' mean reward), each reward "
    "component (`reward/<fn>`) and, when the train reward fell too or there is none, each eval/probe "
    "reward, score or accuracy: a rolling median that falls a robust margin below its running peak "
    "and stays there, with the peak's level and the later level told apart by a rank test — the run "
    "got worse. Distinct from reward_hacking (there the proxy holds while the truth falls).",
    defaults={
        "noise_multiple": 2.0,
        "min_relative_drop": 0.2,
        "min_accuracy_drop": 0.15,
        "min_z": 3.0,
        "critical_relative_fall": 0.5,
        "critical_accuracy_drop": 0.3,
        "max_components": 100,
    },
    requires=("reward, a reward component or an eval score",),
    severity="warning; critical when the level fell ≥ critical_relative_fall of its peak (an eval "
    "accuracy: ≥ critical_accuracy_drop) or ended below its warm-up level.",
)
def reward_regression(ctx: DetectorContext, cfg: dict[str, Any]) -> list[Alert]:
    """The reward, a reward component or an eval score falling from its peak and staying down."""
    ctx.skip_if_too_short()
    rs = reward_signal(ctx)
    comps = reward_functions(ctx)
    evals = eval_quality_columns(ctx)
    if rs is None and not comps and not evals:
        raise Skip("needs a reward, a reward component or an eval score")
    out: list[Alert] = []

    # --- train: the reward, then its parts -------------------------------------------------------
    falls: dict[str, dict[str, Any]] = {}
    total = None
    if rs is not None:
        name, x, y = rs
        total = _fall(ctx, cfg, x, y, accuracy=False)
        if total is not None:
            falls[name] = total
    comp_falls: dict[str, dict[str, Any]] = {}
    series = {comp: ctx.series(col) for comp, col in comps.items()}
    # many components, many chances: the rank test's level is held for the family of them
    # (Bonferroni), or 10,000 reward functions of noise would show a dozen "falls"
    z_family = _family_z(float(cfg["min_z"]), len(series))
    candidates = _candidates(ctx, cfg, series)
    for comp in candidates[: int(cfg["max_components"])]:
        x, y = series[comp]
        f = _fall(ctx, cfg, x, y, accuracy=False, min_z=z_family)
        if f is not None:
            comp_falls[comp] = f
    if total is not None or comp_falls:
        if total is not None:
            assert rs is not None
            head_name, head, head_col = rs[0], total, C.TOTAL_REWARD
        else:
            comp = max(comp_falls, key=lambda k: comp_falls[k]["relative_fall"])
            head_name, head = f"reward component '{comp}'", comp_falls[comp]
            head_col = f"{C.REWARD_PREFIX}{comp}"
        also = [
            f"'{k}' {v['peak']:.3g} → {v['late']:.3g} from step {v['onset_step']}"
            for k, v in comp_falls.items()
            if f"reward component '{k}'" != head_name
        ]
        crit = _is_critical(cfg, head, False) or any(
            _is_critical(cfg, v, False) for v in comp_falls.values()
        )
        out.append(
            alert(
                "reward_regression",
                Severity.CRITICAL if crit else Severity.WARNING,
                head["onset_step"],
                _sentence(head_name, head) + (f"; also fell: {'; '.join(also)}" if also else ""),
                check="train",
                signal=head_name,
                **head,
                components_fell={
                    k: {kk: v[kk] for kk in ("onset_step", "peak", "peak_step", "late")}
                    for k, v in comp_falls.items()
                },
                components_judged=min(len(candidates), int(cfg["max_components"])),
                components_with_a_drop=len(candidates),
                component_min_z=z_family,
                sample_ids=_sample_ids(ctx, head, head_col),
            )
        )

    # --- eval: a fall the train reward shares (one it does not is catastrophic_forgetting's) ---
    train_fell = total is not None
    if evals and (train_fell or rs is None):
        for col, is_acc in evals:
            x, y = ctx.series(col)
            f = _fall(ctx, cfg, x, y, accuracy=is_acc)
            if f is None:
                continue
            out.append(
                alert(
                    "reward_regression",
                    Severity.CRITICAL if _is_critical(cfg, f, is_acc) else Severity.WARNING,
                    f["onset_step"],
                    _sentence(col, f) + ("; the train reward fell too" if train_fell else ""),
                    check="eval",
                    signal=col,
                    **f,
                    sample_ids=[],
                )
            )
            break  # one eval score tells it
    return out
