"""Robust statistics for noisy RL curves (numpy only).

Real reward / KL / entropy curves are noisy, autocorrelated and spiky, so detectors never act on
a single step: they smooth with rolling medians, scale with the MAD, test trends with
Mann–Kendall on binned medians (binning tames the autocorrelation that makes raw-point p-values
overconfident), measure slopes with Theil–Sen, and date the onset of a problem with a change
point fitted on the curve — not the step at which a test first became significant.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

MAD_SCALE = 1.4826  # MAD × this estimates the standard deviation of normal noise


def mad(y: np.ndarray) -> float:
    """Median absolute deviation, scaled to estimate a standard deviation (0.0 for < 2 points)."""
    y = np.asarray(y, dtype=float)
    if y.size < 2:
        return 0.0
    return float(MAD_SCALE * np.median(np.abs(y - np.median(y))))


def robust_scale(y: np.ndarray, *, floor: float = 1e-12) -> float:
    """A noise scale that is never zero: MAD, else mean absolute deviation, else ``floor``."""
    y = np.asarray(y, dtype=float)
    s = mad(y)
    if s <= floor and y.size:
        s = float(np.mean(np.abs(y - np.median(y))))
    return max(s, floor)


def rolling_median(y: np.ndarray, window: int, *, center: bool = False) -> np.ndarray:
    """Rolling median; the first points use the shorter windows available (no NaN padding)."""
    y = np.asarray(y, dtype=float)
    n = y.size
    window = max(1, min(int(window), n)) if n else 1
    if n == 0 or window == 1:
        return y.copy()
    out = np.empty(n)
    from numpy.lib.stride_tricks import sliding_window_view

    if center:
        half = window // 2
        edges: range | list[int] = range(n)
        if n >= 2 * half + 1:  # the whole windows at once, the shorter ones at the ends one by one
            out[half : n - half] = np.median(sliding_window_view(y, 2 * half + 1), axis=1)
            edges = [*range(half), *range(n - half, n)]
        for i in edges:
            out[i] = np.median(y[max(0, i - half) : min(n, i + half + 1)])
        return out
    out[window - 1 :] = np.median(sliding_window_view(y, window), axis=1)
    for i in range(window - 1):
        out[i] = np.median(y[: i + 1])
    return out


def rolling_mean(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing rolling mean, shorter windows at the start (same alignment as ``rolling_median``)."""
    y = np.asarray(y, dtype=float)
    n = y.size
    if n == 0:
        return y.copy()
    window = max(1, min(int(window), n))
    c = np.cumsum(np.r_[0.0, y])
    idx = np.arange(1, n + 1)
    start = np.maximum(0, idx - window)
    return (c[idx] - c[start]) / (idx - start)


def window_for(n: int, fraction: float = 0.05, lo: int = 3, hi: int = 25) -> int:
    """A smoothing window that scales with the run's length."""
    return int(min(hi, max(lo, round(n * fraction))))


def _subsample(x: np.ndarray, y: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    if x.size <= limit:
        return x, y
    idx = np.linspace(0, x.size - 1, limit).round().astype(int)
    return x[idx], y[idx]


def theil_sen(x: np.ndarray, y: np.ndarray, *, limit: int = 400) -> tuple[float, float]:
    """Theil–Sen (slope, intercept): the median of pairwise slopes; robust to 29 % outliers."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.size < 2:
        return 0.0, float(np.median(y)) if y.size else 0.0
    x, y = _subsample(x, y, limit)
    i, j = np.triu_indices(x.size, k=1)
    dx = x[j] - x[i]
    ok = dx != 0
    if not ok.any():
        return 0.0, float(np.median(y))
    slope = float(np.median((y[j] - y[i])[ok] / dx[ok]))
    intercept = float(np.median(y - slope * x))
    return slope, intercept


@dataclass(frozen=True, slots=True)
class Trend:
    """Mann–Kendall on binned medians: ``z`` > 0 rising; ``p`` two-sided; ``slope`` per step."""

    z: float
    p: float
    slope: float
    n: int

    def rising(self, alpha: float = 0.01) -> bool:
        return self.z > 0 and self.p < alpha

    def falling(self, alpha: float = 0.01) -> bool:
        return self.z < 0 and self.p < alpha


def binned_medians(x: np.ndarray, y: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Medians of ``bins`` consecutive equal-count chunks (x: the chunk's median step)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.size <= bins:
        return x, y
    chunks = np.array_split(np.arange(x.size), bins)
    return (
        np.array([np.median(x[c]) for c in chunks]),
        np.array([np.median(y[c]) for c in chunks]),
    )


def mann_kendall(y: np.ndarray) -> tuple[float, float]:
    """Mann–Kendall trend test: (z, two-sided p) with the tie-corrected variance."""
    y = np.asarray(y, dtype=float)
    n = y.size
    if n < 3:
        return 0.0, 1.0
    i, j = np.triu_indices(n, k=1)
    s = float(np.sign(y[j] - y[i]).sum())
    _, counts = np.unique(y, return_counts=True)
    var = (
        n * (n - 1) * (2 * n + 5) - float(np.sum(counts * (counts - 1) * (2 * counts + 5)))
    ) / 18.0
    if var <= 0:
        return 0.0, 1.0
    z = (s - np.sign(s)) / math.sqrt(var)
    p = math.erfc(abs(z) / math.sqrt(2.0))
    return float(z), float(p)


def trend(x: np.ndarray, y: np.ndarray, *, bins: int = 20) -> Trend:
    """Mann–Kendall + Theil–Sen on ``bins`` binned medians of the curve."""
    bx, by = binned_medians(x, y, bins)
    z, p = mann_kendall(by)
    slope, _ = theil_sen(bx, by)
    return Trend(z=z, p=p, slope=slope, n=int(by.size))


def _clip_outliers(y: np.ndarray, k: float = 5.0) -> np.ndarray:
    """Isolated spikes pulled back to a local (centered, 5-point) rolling median ± k × the curve's
    point-to-point noise; level changes and ramps are left intact, single outliers are not."""
    if y.size < 5:
        return y
    local = rolling_median(y, 5, center=True)
    s = noise_scale(y) or robust_scale(y)
    return np.clip(y, local - k * s, local + k * s)


@dataclass(frozen=True, slots=True)
class ChangePoint:
    """Where a curve changes regime: ``index`` into the series, ``model`` shift | hinge."""

    index: int
    model: str
    before: float  # level before the change
    after: float  # level (shift) or slope per step (hinge) after it
    gain: float  # relative SSE reduction vs no change (0..1)


def change_point(
    x: np.ndarray, y: np.ndarray, *, min_seg: int = 2, candidates: int = 300
) -> ChangePoint:
    """The single best change point of ``y`` over ``x``, as a mean shift or as a hinge.

    Mean shift: ``y = a`` before, ``a + c`` from the change on (a step in the level). Hinge:
    ``y = a`` before, ``a + b·(x - x_k)`` after (the start of a ramp). Both are least squares on
    outlier-clipped values; the model with the lower error wins. A ramp's hinge dates the start
    of the ramp, where a mean-shift split would land in its middle.
    """
    x = np.asarray(x, dtype=float)
    y = _clip_outliers(np.asarray(y, dtype=float))
    n = y.size
    if n < 2 * min_seg + 1:
        return ChangePoint(
            index=0, model="none", before=float(np.median(y)) if n else 0.0, after=0.0, gain=0.0
        )
    sse0 = float(np.sum((y - y.mean()) ** 2)) or 1e-300

    # mean shift via cumulative sums, O(n)
    cs = np.cumsum(y)
    cs2 = np.cumsum(y * y)
    ks = np.arange(min_seg, n - min_seg + 1)
    n1 = ks.astype(float)
    n2 = n - n1
    s1 = cs[ks - 1]
    s2 = cs[-1] - s1
    q1 = cs2[ks - 1]
    q2 = cs2[-1] - q1
    sse_shift = (q1 - s1 * s1 / n1) + (q2 - s2 * s2 / n2)
    k_shift = int(ks[int(np.argmin(sse_shift))])
    best_shift = float(np.min(sse_shift))

    # hinge: y = a + b * max(0, x - x_k); closed-form 2-parameter regression per candidate
    cand = (
        ks
        if ks.size <= candidates
        else np.unique(np.linspace(ks[0], ks[-1], candidates).round().astype(int))
    )
    best_hinge, k_hinge, b_hinge, a_hinge = math.inf, int(cand[0]), 0.0, float(y.mean())
    for k in cand:
        h = np.maximum(0.0, x - x[k - 1]) if k > 0 else x - x[0]
        hm = h.mean()
        hv = float(np.sum((h - hm) ** 2))
        if hv <= 0:
            continue
        b = float(np.sum((h - hm) * (y - y.mean())) / hv)
        a = float(y.mean() - b * hm)
        sse = float(np.sum((y - a - b * h) ** 2))
        if sse < best_hinge:
            best_hinge, k_hinge, b_hinge, a_hinge = sse, int(k), b, a
    if best_hinge < best_shift:
        # the hinge's first changed point is k_hinge (h > 0 from index k_hinge on)
        return ChangePoint(
            index=k_hinge,
            model="hinge",
            before=a_hinge,
            after=b_hinge,
            gain=max(0.0, 1.0 - best_hinge / sse0),
        )
    return ChangePoint(
        index=k_shift,
        model="shift",
        before=float(y[:k_shift].mean()),
        after=float(y[k_shift:].mean()),
        gain=max(0.0, 1.0 - best_shift / sse0),
    )


def ramp_fit(
    x: np.ndarray, y: np.ndarray, *, candidates: int = 50, limit: int = 240
) -> ChangePoint:
    """Least-squares fit of a ramp: level ``a`` up to ``x[k1]``, a straight line to level ``a + c``
    at ``x[k2]``, flat after. A step (``k2 = k1``) and a hinge (``k2`` = the end) are special
    cases, so one fit dates the start of a jump, of a ramp, and of a ramp that levels off —
    where a mean-shift split would land in the middle of the move. ``index`` is ``k1``, the first
    point that has moved.
    """
    x = np.asarray(x, dtype=float)
    y = _clip_outliers(np.asarray(y, dtype=float))
    n0 = x.size
    if n0 < 5:
        return ChangePoint(
            index=0, model="none", before=float(np.median(y)) if n0 else 0.0, after=0.0, gain=0.0
        )
    idx = np.arange(n0)
    if n0 > limit:
        idx = np.unique(np.linspace(0, n0 - 1, limit).round().astype(int))
    xs, ys = x[idx], y[idx]
    m = xs.size
    ym = ys.mean()
    sse0 = float(np.sum((ys - ym) ** 2)) or 1e-300
    cand = np.unique(np.linspace(1, m - 1, min(candidates, m - 1)).round().astype(int))
    best = (math.inf, 1, m - 1, ym, 0.0)
    for k1 in cand:
        k2s = cand[cand >= k1]
        if k2s.size == 0:
            continue
        x0 = xs[k1 - 1]
        span = np.maximum(xs[k2s] - x0, 1e-12)[:, None]
        h = np.clip((xs[None, :] - x0) / span, 0.0, 1.0)
        hm = h.mean(axis=1, keepdims=True)
        hc = h - hm
        hv = np.sum(hc * hc, axis=1)
        ok = hv > 0
        c = np.where(ok, np.sum(hc * (ys - ym), axis=1) / np.where(ok, hv, 1.0), 0.0)
        a = ym - c * hm[:, 0]
        sse = np.sum((ys[None, :] - a[:, None] - c[:, None] * h) ** 2, axis=1)
        j = int(np.argmin(sse))
        if sse[j] < best[0]:
            best = (float(sse[j]), int(k1), int(k2s[j]), float(a[j]), float(c[j]))
    best_sse, best_k1, _k2, best_a, best_c = best
    return ChangePoint(
        index=int(idx[best_k1]),
        model="ramp",
        before=best_a,
        after=best_a + best_c,
        gain=max(0.0, 1.0 - best_sse / sse0),
    )


def onset_step(x: np.ndarray, y: np.ndarray, *, upto: int | None = None, lo: int = 0) -> int:
    """The step at which a change that was detected at index ``upto`` began.

    A ramp (see ``ramp_fit``) is fitted on ``y[lo:]`` up to a little past ``upto`` (a curve that
    keeps moving sharpens the estimate); the onset is its first moved point, clamped to
    ``[lo, upto]``: never after the point where the evidence was already conclusive.
    """
    x = np.asarray(x)
    n = x.size
    if n == 0:
        return 0
    hi = n - 1 if upto is None else min(n - 1, upto)
    end = n if upto is None else min(n, hi + 1 + max(5, (hi - lo) // 2))
    seg_x = x[lo:end]
    seg_y = np.asarray(y, dtype=float)[lo:end]
    if seg_x.size < 5:
        return int(x[min(hi, max(lo, 0))])
    cp = ramp_fit(seg_x, seg_y)
    i = min(max(lo + cp.index, lo), hi)
    return int(x[i])


def true_runs(mask: np.ndarray) -> Iterator[tuple[int, int]]:
    """(start index, length) of each stretch of consecutive True values, in order."""
    mask = np.asarray(mask, dtype=bool)
    n = mask.size
    i = 0
    while i < n:
        if not mask[i]:
            i += 1
            continue
        j = i
        while j < n and mask[j]:
            j += 1
        yield i, j - i
        i = j


def longest_run(mask: np.ndarray) -> tuple[int, int]:
    """(start index, length) of the first longest stretch of True values ((0, 0) when none)."""
    return max(true_runs(mask), key=lambda run: run[1], default=(0, 0))


def first_sustained(mask: np.ndarray, min_len: int, *, start: int = 0) -> int | None:
    """Index of the first run of ≥ ``min_len`` consecutive True values at or after ``start``.

    A run that reaches the end of the series counts once it holds ``min_len`` points, or when it is
    at least half that long and the series ended (the run stopped while the problem held).
    """
    mask = np.asarray(mask, dtype=bool)[start:]
    n = mask.size
    for i, length in true_runs(mask):
        if length >= min_len or (i + length == n and length >= max(2, (min_len + 1) // 2)):
            return start + i
    return None


def noise_scale(y: np.ndarray) -> float:
    """The point-to-point noise of a whole curve: MAD of its first differences / √2 (trend-free)."""
    y = np.asarray(y, dtype=float)
    if y.size < 3:
        return 0.0
    return mad(np.diff(y)) / math.sqrt(2.0)


def robust_z(
    y: np.ndarray, window: int, *, min_history: int = 5, floor: float = 0.0, upward: bool = False
) -> np.ndarray:
    """For each point, |y - median| / scale of the ``window`` points before it (NaN without history).

    ``floor`` bounds the scale from below: a short history can have a tiny MAD by chance, which
    would turn ordinary noise into a "spike" (pass e.g. a fraction of ``noise_scale(y)``).

    ``upward``: a signed z of upward moves, scaled by the *upper* half of the history only (the
    median deviation of the points above its median, × 1.4826 — the MAD for symmetric noise). A
    grad norm that often dips toward 0 (steps where few groups had a reward spread) has a wide
    spread below its median on a log scale; those dips say nothing about how far up a normal
    step goes, and would hide a jump of 800× the median.
    """
    y = np.asarray(y, dtype=float)
    n = y.size
    z = np.full(n, np.nan)
    with np.errstate(over="ignore", invalid="ignore"):  # values near the float maximum: inf/NaN z
        _fill_robust_z(y, z, window, min_history, floor, upward)
    return z


def _fill_robust_z(
    y: np.ndarray, z: np.ndarray, window: int, min_history: int, floor: float, upward: bool
) -> None:
    n = y.size
    full = max(min_history, window)  # from here on every history is a whole window
    if window >= 2 and n > full and bool(np.isfinite(y).all()):
        _fill_robust_z_windows(y, z, window, full, floor, upward)
        n = full
    for i in range(min_history, n):
        hist = y[max(0, i - window) : i]
        med = float(np.median(hist))
        tiny = 1e-12 + 1e-6 * abs(med)
        if upward:
            up = hist[hist >= med] - med
            s = MAD_SCALE * float(np.median(up)) if up.size >= 2 else 0.0
            if s <= tiny:
                s = robust_scale(hist, floor=tiny)
            z[i] = (y[i] - med) / max(s, floor)
        else:
            s = max(robust_scale(hist, floor=tiny), floor)
            z[i] = abs(y[i] - med) / s


def _fill_robust_z_windows(
    y: np.ndarray, z: np.ndarray, window: int, start: int, floor: float, upward: bool
) -> None:
    """``_fill_robust_z`` for the points from ``start`` on (each with a whole window of finite
    history), all windows at once: the same medians, scales and z, value for value. The rare
    windows whose first scale is below its ``tiny`` bound take the per-window fallback."""
    from numpy.lib.stride_tricks import sliding_window_view

    hist = sliding_window_view(y, window)[start - window : y.size - window]
    med = np.median(hist, axis=1)
    tiny = 1e-12 + 1e-6 * np.abs(med)
    if upward:
        # the median of the deviations above the median: a suffix of each sorted window
        ordered = np.sort(hist, axis=1)
        above = (hist >= med[:, None]).sum(axis=1)
        lo = window - above + (above - 1) // 2
        hi = window - above + above // 2
        rows = np.arange(med.size)
        a = ordered[rows, np.minimum(lo, window - 1)] - med
        b = ordered[rows, np.minimum(hi, window - 1)] - med
        s = np.where(above >= 2, MAD_SCALE * np.where(lo == hi, a, (a + b) / 2), 0.0)
    else:
        s = MAD_SCALE * np.median(np.abs(hist - med[:, None]), axis=1)  # robust_scale's MAD
    for k in np.flatnonzero(s <= tiny):  # the fallbacks, window by window
        s[k] = robust_scale(hist[k], floor=float(tiny[k]))
    s = np.where(floor > s, floor, s)  # max(s, floor), NaN as Python's max treats it
    dev = y[start:] - med
    z[start:] = dev / s if upward else np.abs(dev) / s


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation, 0.0 when either side is constant or too short."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.size < 3:
        return 0.0
    sa, sb = a.std(), b.std()
    if sa == 0 or sb == 0:
        return 0.0
    return float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb))


def share_rose_p(hits_after: int, n_after: int, hits_before: int, n_before: int) -> float:
    """One-sided Fisher exact test for a share of 0/1 outcomes: the chance that ``n_after`` draws
    from the pooled outcomes hold ``hits_after`` hits or more, i.e. of a rise at least this large
    if nothing changed. 1.0 when either side is empty."""
    if n_after <= 0 or n_before <= 0:
        return 1.0
    total, hits = n_after + n_before, hits_after + hits_before

    def log_comb(n: int, k: int) -> float:
        return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)

    denom = log_comb(total, n_after)
    top = min(hits, n_after)
    p = sum(
        math.exp(log_comb(hits, k) + log_comb(total - hits, n_after - k) - denom)
        for k in range(hits_after, top + 1)
        if 0 <= n_after - k <= total - hits
    )
    return min(1.0, p)


def share_above_p(hits: int, n: int, share: float) -> float:
    """One-sided binomial test: the chance of ``hits`` or more in ``n`` 0/1 outcomes whose true
    share is ``share`` — of seeing a share this high if it were only ``share``. 1.0 for ``n`` = 0."""
    if n <= 0:
        return 1.0
    if share <= 0.0:
        return 1.0 if hits <= 0 else 0.0
    if share >= 1.0:
        return 1.0
    log_p, log_q = math.log(share), math.log1p(-share)
    p = sum(
        math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_p + (n - k) * log_q)
        for k in range(max(0, hits), n + 1)
    )
    return min(1.0, p)


def mann_whitney_z(a: np.ndarray, b: np.ndarray) -> float:
    """Mann–Whitney U as a z-score (normal approximation, tie-averaged ranks): > 0 when ``a`` tends
    to exceed ``b``. A robust test that a level changed between two stretches of a curve."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    n1, n2 = a.size, b.size
    if n1 < 2 or n2 < 2:
        return 0.0
    allv = np.concatenate([a, b])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(allv.size)
    ranks[order] = np.arange(1, allv.size + 1)
    # average the ranks of ties
    _, inv, counts = np.unique(allv, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    ranks = (sums / counts)[inv]
    u = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2)
    mu = n1 * n2 / 2
    tie = float(np.sum(counts**3 - counts)) / ((n1 + n2) * (n1 + n2 - 1))
    var = n1 * n2 / 12 * ((n1 + n2 + 1) - tie)
    if var <= 0:
        return 0.0
    return (u - mu) / math.sqrt(var)


def mann_whitney_z_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``mann_whitney_z`` of each column of ``a`` (n1 × k) against the same column of ``b``
    (n2 × k), all at once: a run logging thousands of reward functions tests them in one pass."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    n1, n2 = a.shape[0], b.shape[0]
    k = a.shape[1] if a.ndim == 2 else 0
    if n1 < 2 or n2 < 2 or k == 0:
        return np.zeros(k)
    allv = np.concatenate([a, b])
    n = n1 + n2
    order = np.argsort(allv, axis=0, kind="mergesort")
    s = np.take_along_axis(allv, order, axis=0)
    # tie-averaged ranks: each run of equal sorted values gets the mean of its positions
    new_run = np.ones_like(s, dtype=bool)
    new_run[1:] = s[1:] != s[:-1]
    run_id = np.cumsum(new_run, axis=0) - 1  # per column, 0-based
    cols = np.broadcast_to(np.arange(k), s.shape)
    flat = (run_id + cols * n).ravel()
    pos = np.broadcast_to(np.arange(1, n + 1)[:, None], s.shape).ravel()
    sums = np.bincount(flat, weights=pos, minlength=n * k)
    counts = np.bincount(flat, minlength=n * k).astype(float)
    avg = sums[flat] / counts[flat]
    ranks = np.empty_like(s)
    np.put_along_axis(ranks, order, avg.reshape(s.shape), axis=0)
    u = ranks[:n1].sum(axis=0) - n1 * (n1 + 1) / 2
    mu = n1 * n2 / 2
    tie = (counts**3 - counts).reshape(k, n).sum(axis=1) / (n * (n - 1))
    var = n1 * n2 / 12 * ((n + 1) - tie)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(var > 0, (u - mu) / np.sqrt(np.where(var > 0, var, 1.0)), 0.0)
    return z


# Up to this many pairs, mann_whitney_strength uses the exact distribution of U (sparse curves:
# an eval logged every few steps has a handful of points, where the normal approximation caps z
# below the usual thresholds even at perfect separation).
_EXACT_PAIRS = 900


def mann_whitney_strength(a: np.ndarray, b: np.ndarray) -> float:
    """Like ``mann_whitney_z`` (> 0 when ``a`` tends to exceed ``b``), but for small samples
    without ties the z-score that the *exact* one-sided p-value of U corresponds to, so a
    threshold like z ≥ 3 means the same significance (p ≤ 0.00135) for 5 points as for 500 —
    e.g. five evaluations all above seven later ones (p = 1/792) pass it, which the normal
    approximation (z = 2.8) would not."""
    from statistics import NormalDist

    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    n1, n2 = a.size, b.size
    if n1 < 1 or n2 < 1:
        return 0.0
    if n1 * n2 > _EXACT_PAIRS or np.unique(np.concatenate([a, b])).size < n1 + n2:
        return mann_whitney_z(a, b)
    u = int((a[:, None] > b[None, :]).sum())
    counts = _u_counts(n1, n2)
    p = float(sum(counts[u:])) / float(sum(counts))  # P(U >= u) when a and b are exchangeable
    if p >= 1.0:
        return -math.inf
    # the z of the upper tail p, computed from p itself: 1 - p rounds to 1.0 below p ≈ 1e-16
    # (perfect separation of 8 points from 30: p = 1 / C(38, 8) ≈ 2e-8 is fine, 20 from 40 is not)
    return -NormalDist().inv_cdf(p)


@functools.cache
def _u_counts(n1: int, n2: int) -> tuple[int, ...]:
    """How many of the C(n1+n2, n1) orderings give each value of U (0 … n1·n2).

    Cached: it depends on the sizes alone, and a run with thousands of reward columns of one
    length asks for the same few sizes thousands of times (~4 ms each at 30 points)."""
    # f[i][j][u]: orderings of i a's and j b's with U = u (the last element is an a or a b)
    table: list[list[list[int]]] = [[[1] for _ in range(n2 + 1)] for _ in range(n1 + 1)]
    for i in range(1, n1 + 1):
        for j in range(1, n2 + 1):
            out = [0] * (i * j + 1)
            for u, c in enumerate(table[i - 1][j]):  # the largest is an a: it beats all j b's
                out[u + j] += c
            for u, c in enumerate(table[i][j - 1]):  # the largest is a b
                out[u] += c
            table[i][j] = out
    return tuple(table[n1][n2])


def align(
    x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, y1, y2) at the steps both series have (a series' steps are unique and sorted)."""
    common, i1, i2 = np.intersect1d(x1, x2, assume_unique=True, return_indices=True)
    return common, y1[i1], y2[i2]
