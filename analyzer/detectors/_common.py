"""Helpers shared by the detector families: excursions of a smoothed curve, standard signals."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from analyzer import columns as C
from analyzer.detectors import stats
from analyzer.detectors.base import alert
from analyzer.detectors.text import CORRECT, FORMAT_OK, HAS_ANSWER, N_TOKENS
from analyzer.model import Alert, Severity

if TYPE_CHECKING:
    from collections.abc import Callable

    import polars as pl

    from analyzer.detectors.base import DetectorContext


@dataclass(frozen=True, slots=True)
class Excursion:
    """A sustained move of a smoothed curve past a threshold, after the warm-up."""

    detect_index: int  # first index of the sustained run of the smoothed curve
    detect_step: int
    onset_step: int  # change-point estimate of when it began (≤ detect_step)
    baseline: float  # median over the warm-up
    extreme: float  # most extreme smoothed value from the detection on
    last: float  # smoothed value at the end of the run
    warmup: int
    extreme_step: int = -1  # the step of ``extreme`` (-1: not known)

    def evidence(
        self, extreme_key: str = "peak_rolling_median", baseline_key: str = "baseline"
    ) -> dict[str, Any]:
        """What every excursion alert reports: baseline, extreme (named ``extreme_key``), last,
        and the three steps of an honest headline — onset, first evidence, the extreme's step."""
        return {
            baseline_key: self.baseline,
            extreme_key: self.extreme,
            "last": self.last,
            "detected_at": self.detect_step,
            "onset_step": self.onset_step,
            "first_evidence_step": self.detect_step,
            "peak_step": self.extreme_step if self.extreme_step >= 0 else None,
        }


def excursion_alert(
    kind: str,
    exc: Excursion,
    message: str,
    *,
    critical: bool,
    extreme_key: str = "peak_rolling_median",
    baseline_key: str = "baseline",
    **evidence: Any,
) -> Alert:
    """A warning (critical when ``critical``) dated at the excursion's onset, with its evidence."""
    return alert(
        kind,
        Severity.CRITICAL if critical else Severity.WARNING,
        exc.onset_step,
        message,
        **exc.evidence(extreme_key, baseline_key),
        **evidence,
    )


def smoothing_windows(ctx: DetectorContext, n: int) -> tuple[int, int]:
    """(smoothing window, points a condition must hold): 5 % / 3 % of the curve, or 2 and 2 for a
    sparse series (eval every N steps) that would otherwise be all window."""
    if n < 2 * int(ctx.general["warmup_min_points"]):
        return 2, 2
    return stats.window_for(n), stats.window_for(n, 0.03, 3, 15)


def find_excursion(
    ctx: DetectorContext,
    x: np.ndarray,
    y: np.ndarray,
    *,
    above: bool,
    threshold: float | None = None,
    min_delta: float | None = None,
    rel_delta: float | None = None,
    smooth_with: str = "median",
) -> Excursion | None:
    """First sustained run (after the warm-up) where the rolling median is past ``threshold`` and
    has moved at least ``min_delta`` (absolute) / ``rel_delta`` (× |baseline|) from the warm-up
    median, in the direction ``above``. The onset is dated by a change point, not by the detection.
    """
    n = y.size
    if n == 0:
        return None
    w = ctx.warmup_points(n)
    # a rolling mean suits shares of a few groups: their values are coarse (0, 1/4, 1/2, …) and a
    # median of them jumps a whole quantum on chance alone — the warm-up's level likewise (the
    # median of a warm-up of 0s and 1s is 0 however often it was 1)
    base = float(np.mean(y[: max(w, 1)]) if smooth_with == "mean" else np.median(y[: max(w, 1)]))
    win, sustain = smoothing_windows(ctx, n)
    smooth = stats.rolling_mean(y, win) if smooth_with == "mean" else stats.rolling_median(y, win)
    sign = 1.0 if above else -1.0
    cond = np.ones(n, dtype=bool)
    if threshold is not None:
        cond &= sign * (smooth - threshold) >= 0
    if min_delta is not None:
        cond &= sign * (smooth - base) >= min_delta
    if rel_delta is not None:
        cond &= sign * (smooth - base) >= rel_delta * max(abs(base), 1e-12)
    idx = stats.first_sustained(cond, sustain, start=w)
    if idx is None:
        return None
    block = idx
    while block > 0 and cond[block - 1]:
        block -= 1
    # held since the warm-up: the evidence held from the start of that block, nothing to date
    onset = int(x[block]) if block < w else stats.onset_step(x, y, upto=idx, lo=w)
    tail = smooth[idx:]
    j = int(np.argmax(tail) if above else np.argmin(tail))
    return Excursion(
        detect_index=idx,
        detect_step=int(x[idx]),
        onset_step=onset,
        baseline=base,
        extreme=float(tail[j]),
        last=float(smooth[-1]),
        warmup=w,
        extreme_step=int(x[idx + j]),
    )


def find_rise(
    ctx: DetectorContext,
    x: np.ndarray,
    y: np.ndarray,
    cfg: dict[str, Any],
    *,
    threshold: str = "threshold",
    increase: str = "min_increase",
    smooth_with: str = "median",
) -> Excursion | None:
    """``find_excursion`` upward with the detector's ``cfg[threshold]`` and ``cfg[increase]``: the
    rolling median stays at or above the threshold and that far above the warm-up."""
    return find_excursion(
        ctx,
        x,
        y,
        above=True,
        threshold=float(cfg[threshold]),
        min_delta=float(cfg[increase]),
        smooth_with=smooth_with,
    )


def per_step(
    frame: pl.DataFrame, column: str, *, agg: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """(steps, per-step mean/median of ``column``) of a sample-level frame, nulls ignored."""
    import polars as pl

    if frame.height == 0 or column not in frame.columns:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    e = pl.col(column).cast(pl.Float64)
    e = e.mean() if agg == "mean" else e.median()
    g = frame.group_by(C.STEP).agg(e.alias("v")).drop_nulls().sort(C.STEP)
    y = g["v"].to_numpy().astype(float)
    x = g[C.STEP].to_numpy().astype(np.int64)
    keep = np.isfinite(y)
    return x[keep], y[keep]


Signal = tuple[str, np.ndarray, np.ndarray]  # (what it was read from, steps, values)


def _logged(ctx: DetectorContext, columns: list[str]) -> Signal | None:
    col = ctx.first_present(columns)
    if col is None:
        return None
    x, y = ctx.series(col)
    return col, x, y


def _rebuilt(ctx: DetectorContext, feature: str, name: str) -> Signal | None:
    if not ctx.has_generations:
        return None
    x, y = per_step(ctx.train_samples(), feature)
    return (name, x, y) if x.size else None


def _best(ctx: DetectorContext, *sources: Callable[[], Signal | None]) -> Signal | None:
    """The first signal, in preference order, with enough points to judge, else the first there is.

    A folder merges sources: a trainer log every few steps must not hide the completions' signal
    at every step. Sources are read lazily: a judgeable first one costs no rebuild."""
    first: Signal | None = None
    for source in sources:
        sig = source()
        if sig is None:
            continue
        if sig[1].size >= ctx.min_points():
            return sig
        first = first or sig
    return first


def reward_signal(ctx: DetectorContext) -> Signal | None:
    """The training reward per step: logged ``reward``, else rebuilt ``gen_reward_mean``/completions."""
    return _best(
        ctx,
        lambda: _logged(ctx, [C.REWARD, C.GEN_REWARD_MEAN]),
        lambda: _rebuilt(ctx, C.TOTAL_REWARD, "total_reward (completions)"),
    )


def length_signal(ctx: DetectorContext) -> Signal | None:
    """Completion length per step: logged tokens, else whitespace tokens of the completions."""
    return _best(
        ctx,
        lambda: _logged(ctx, [C.COMPLETION_LENGTH, C.GEN_LEN_TOKENS]),
        lambda: _rebuilt(ctx, N_TOKENS, "completion tokens (completions)"),
    )


# Below this share of completions (with a ground truth) whose answer can be read, the recomputed
# accuracy measures the extraction rather than the run: it is not used as a truth signal.
MIN_ANSWER_COVERAGE = 0.5


def answer_coverage(ctx: DetectorContext) -> float | None:
    """Share of the train completions with a ground truth whose answer could be read (the run's
    conventions, ``analyzer.features``) over the warm-up steps — the coverage of the recomputed
    accuracy where the run's own format was meant to hold; None without completions or truth."""
    import polars as pl

    if not ctx.has_generations:
        return None
    s = ctx.train_samples().filter(pl.col(CORRECT).is_not_null())
    if s.height == 0:
        return None
    steps = s.get_column(C.STEP).unique().sort()
    early = steps.head(max(ctx.warmup_points(steps.len()), 1))
    v = s.filter(pl.col(C.STEP).is_in(early.implode())).get_column(HAS_ANSWER).mean()
    return None if v is None else float(v)  # type: ignore[arg-type]


def accuracy_signal(ctx: DetectorContext) -> Signal | None:
    """Exact-match accuracy per step recomputed from the completions (train split), else logged —
    not when answers could be read from fewer than ``MIN_ANSWER_COVERAGE`` of the early completions
    (the accuracy would then measure the extraction, not the run)."""
    cov = answer_coverage(ctx)
    if cov is not None and cov < MIN_ANSWER_COVERAGE:
        return None
    return _best(
        ctx,
        lambda: _rebuilt(ctx, CORRECT, "exact-match accuracy"),
        lambda: _logged(ctx, [C.GEN_ACCURACY]),
    )


_CORRECTNESS_NAME = re.compile(r"correct|accura|answer|exact|match", re.I)
_FORMAT_NAME = re.compile(r"format", re.I)


def named_reward_signals(ctx: DetectorContext, pattern: re.Pattern[str]) -> list[Signal]:
    """Logged reward components whose function name matches ``pattern`` (e.g. an accuracy or a
    format reward), each scaled to [0, 1] by its range over the run: ``(column, steps, values)``.
    A component that never varies says nothing and is left out."""
    out: list[Signal] = []
    for name, col in reward_functions(ctx).items():
        if not pattern.search(name):
            continue
        x, y = ctx.series(col)
        if y.size == 0:
            continue
        lo, hi = float(np.min(y)), float(np.max(y))
        if hi <= lo or hi <= 0:
            continue
        # a reward in [0, top] reads as a share of top; one with penalties below 0, by its range
        out.append((col, x, y / hi if lo >= 0 else (y - lo) / (hi - lo)))
    return out


def format_signal(ctx: DetectorContext) -> Signal | None:
    """Format compliance per step recomputed from the completions (train split), else logged."""
    return _best(
        ctx,
        lambda: _rebuilt(ctx, FORMAT_OK, "format compliance"),
        lambda: _logged(ctx, [C.GEN_FORMAT_OK]),
    )


_COMPONENT_RE = re.compile(r"^(?:gen_)?rewards?/(?P<name>.+?)(?:/mean|_mean)?$")
# Not reward functions: the total under another name (TRL's console logs ``rewards/total_reward``
# beside ``reward``), and the implicit rewards of a preference pair (DPO/ORPO/KTO's
# ``rewards/chosen|rejected|margins|accuracies``: a falling rejected reward is what DPO is for).
NOT_COMPONENTS = re.compile(
    r"^(total|total_rewards?|rewards?_total|sum|overall|chosen|rejected|margins|accuracies)$", re.I
)


def reward_around(ctx: DetectorContext, onset: int) -> tuple[float, float, bool] | None:
    """(level before, median from ``onset`` on, fell) of the train reward; None without a reward
    or with fewer than 3 points on either side.

    The level before is the highest rolling median (10 % of the run, 5 to 30 points) before the
    onset — a reward that climbed and then fell back has fallen even when the median of all its
    earlier points (the climb included) is no higher than after — and "fell" means the median
    after is more than 2 × the curve's point-to-point noise below it."""
    rs = reward_signal(ctx)
    if rs is None:
        return None
    _, x, y = rs
    before, after = y[x < onset], y[x >= onset]
    if before.size < 3 or after.size < 3:
        return None
    k = stats.window_for(y.size, 0.1, 5, 30)
    b = (
        float(np.max(stats.rolling_median(before, k)))
        if before.size >= k
        else float(np.median(before))
    )
    a = float(np.median(after))
    return b, a, a < b - 2 * (stats.noise_scale(y) or stats.robust_scale(before))


def component_columns(ctx: DetectorContext) -> dict[str, str]:
    """Per-reward-function mean columns in the metrics frame: {function name: column}.

    Logged (``rewards/<fn>/mean`` kept by ingest, or ``reward/<fn>``) win over rebuilt
    ``gen_reward/<fn>_mean``; std / min / max columns are ignored. Found once per context.
    """
    if "component_columns" in ctx.memo:
        return dict(ctx.memo["component_columns"])
    found: dict[str, str] = {}
    named: list[tuple[str, re.Match[str]]] = []
    for col in ctx.metrics.columns:
        if col.startswith(C.SPLIT_PREFIXES) or col in (C.REWARD, C.REWARD_STD):
            continue
        if re.search(r"(/|_)(std|min|max|p\d+)$", col):
            continue
        m = _COMPONENT_RE.match(col)
        if m:
            named.append((col, m))
    ctx.prefetch(col for col, _ in named)
    for col, m in named:
        if not ctx.has(col):
            continue
        name = m.group("name")
        if (col.startswith("gen_") and name in found) or NOT_COMPONENTS.match(name):
            continue
        found[name] = col
    ctx.memo["component_columns"] = found
    return dict(found)


def reward_functions(ctx: DetectorContext) -> dict[str, str]:
    """``component_columns`` without one named ``reward`` (``rewards/reward``): the total under its
    own name, judged as the reward, not as a part of it (the other names of the total and a
    preference pair's implicit rewards are already left out there, ``NOT_COMPONENTS``)."""
    return {k: v for k, v in component_columns(ctx).items() if k.lower() != "reward"}


def find_drop_from_peak(
    ctx: DetectorContext,
    x: np.ndarray,
    y: np.ndarray,
    *,
    drop: float,
    min_peak: float | None = None,
    min_z: float = 3.0,
) -> Excursion | None:
    """First sustained stretch (after the warm-up) where the rolling median sits ≥ ``drop`` below
    its running peak (a level that was reached, then lost), optionally only once the peak reached
    ``min_peak``. The onset is dated by a ramp fit from the peak on. ``baseline`` is the peak.

    A running peak of a noisy curve is biased upward, so the drop must also be significant: the
    raw points from around the peak up to the detection (at least 6 when there are) against every
    point from the detection on (Mann–Whitney, exact for small samples:
    ``stats.mann_whitney_strength`` ≥ ``min_z``).
    """
    n = y.size
    if n == 0:
        return None
    w = ctx.warmup_points(n)
    win, sustain = smoothing_windows(ctx, n)
    smooth = stats.rolling_median(y, win)
    peak = np.maximum.accumulate(smooth)
    cond = smooth <= peak - drop
    if min_peak is not None:
        cond &= peak >= min_peak
    idx = stats.first_sustained(cond, sustain, start=w)
    if idx is None:
        return None
    p_idx = int(np.argmax(smooth[: idx + 1]))
    h = stats.window_for(n)
    # the points around the peak and on to the detection (the level that was lost), at least 6
    # when the curve has them: a sparse eval curve (logged every few steps) has few points per
    # window, and the exact test needs a handful to reach min_z
    before = y[max(0, min(p_idx - 2 * h, p_idx - 5)) : max(p_idx + 1, idx)]
    if stats.mann_whitney_strength(before, y[idx:]) < min_z:
        return None
    onset = stats.onset_step(x, y, upto=idx, lo=max(0, p_idx - 2))
    j = int(np.argmin(smooth[idx:]))
    return Excursion(
        detect_index=idx,
        detect_step=int(x[idx]),
        onset_step=onset,
        baseline=float(peak[idx]),
        extreme=float(smooth[idx + j]),
        last=float(smooth[-1]),
        warmup=w,
        extreme_step=int(x[idx + j]),
    )


_EVAL_GOOD = re.compile(r"acc|reward|score|correct|pass", re.I)
_EVAL_SKIP = re.compile(
    r"(^|/|_)(std|min|max|n|count|len|length)(@\d+)?$|loss|kl|entropy|time"
    # a preference pair's implicit rewards (the preference checks judge them: a falling rejected
    # reward is the point of DPO) and log-probabilities
    r"|^rewards/(chosen|rejected|margins|accuracies)$|^(logps|logits)/",
    re.I,
)


def eval_quality_columns(ctx: DetectorContext) -> list[tuple[str, bool]]:
    """Eval/probe columns where higher is better, canonical ones first: [(column, is_accuracy)].

    Besides ``eval/gen_accuracy``, ``eval/gen_reward_mean`` and ``eval/reward`` (and ``probe/``),
    any other ``eval/…`` column naming an accuracy, reward, score or pass rate — e.g. verl's
    ``eval/openai/gsm8k/reward/mean@1`` — but not its std/min/max.
    """
    out: list[tuple[str, bool]] = []
    for prefix in C.SPLIT_PREFIXES:
        for m in ("gen_accuracy", "gen_reward_mean", "reward"):
            col = f"{prefix}{m}"
            if ctx.has(col):
                out.append((col, m.endswith("accuracy")))
    seen = {c for c, _ in out}
    for col in ctx.metrics.columns:
        if col in seen or not col.startswith(C.SPLIT_PREFIXES):
            continue
        rest = col.split("/", 1)[1]
        if rest.startswith("gen_") or not _EVAL_GOOD.search(rest) or _EVAL_SKIP.search(rest):
            continue
        if ctx.has(col):
            out.append((col, "acc" in rest.lower() and "reward" not in rest.lower()))
    return out


# --------------------------------------------------------------------------------------------
# One severity policy for one event (docs/detectors.md, "Transient, sustained, repeated")
# --------------------------------------------------------------------------------------------

TRANSIENT = "transient"
SUSTAINED = "sustained"
REPEATED = "repeated"


@dataclass(frozen=True, slots=True)
class SpikeEvent:
    """One spike: consecutive hits (gaps of ≤ 2 points merged), judged against the history before it."""

    start: int  # index of its first hit
    peak: int  # index of its largest point (on the judging scale)
    reference: float  # median of the history before it (original scale)
    elevated_points: int  # points in a row from ``start`` still elevated against that history
    sustained: bool  # still elevated after ``recover_points``: a level shift, not a spike


def spike_events(
    y: np.ndarray,
    hits: list[int],
    *,
    window: int,
    recover_points: int,
    elevated: Callable[[np.ndarray, np.ndarray], np.ndarray],
    magnitude: np.ndarray | None = None,
) -> list[SpikeEvent]:
    """Group ``hits`` (indices of points that spiked) into events and tell each transient from sustained.

    ``elevated(values, history)`` says which of ``values`` are still past the spike level against
    ``history`` (the ``window`` points before the event): a detector's own criterion. An event is
    **sustained** when the values are still elevated ``recover_points`` points after its start, or
    when the median of the ``window`` points after it is; otherwise it is **transient** (recovered
    within ``recover_points`` steps). ``magnitude`` ranks the points of an event for its peak
    (default ``y``).
    """
    mag = y if magnitude is None else magnitude
    groups: list[list[int]] = []
    for i in sorted(hits):
        if groups and i - groups[-1][-1] <= 2:
            groups[-1].append(i)
        else:
            groups.append([i])
    out: list[SpikeEvent] = []
    n = y.size
    for g in groups:
        s = g[0]
        hist = y[max(0, s - window) : s]
        if hist.size == 0:
            continue
        follow = y[s : min(n, s + recover_points + 1)]
        el = elevated(follow, hist)
        run = int(np.argmin(el)) if not el.all() else int(el.size)
        after = y[s + 1 : s + 1 + window]
        shifted = after.size >= 3 and bool(elevated(np.array([np.median(after)]), hist)[0])
        sustained = (run > recover_points) or shifted
        peak = max(g, key=lambda i: float(mag[i]))
        out.append(
            SpikeEvent(
                start=s,
                peak=int(peak),
                reference=float(np.median(hist)),
                elevated_points=run,
                sustained=sustained,
            )
        )
    return out


def spike_pattern(events: list[SpikeEvent], repeats: int) -> str:
    """``sustained`` when any event did not recover, ``repeated`` when ≥ ``repeats`` events did,
    else ``transient``."""
    if any(e.sustained for e in events):
        return SUSTAINED
    return REPEATED if len(events) >= repeats else TRANSIENT


def pattern_severity(pattern: str) -> Severity:
    """The one rule: a transient event is a warning; a sustained or repeated one is critical."""
    return Severity.WARNING if pattern == TRANSIENT else Severity.CRITICAL


def pattern_words(pattern: str, events: list[SpikeEvent], recover_points: int) -> str:
    """How the headline says the pattern, e.g. "transient: back within 3 steps"."""
    if pattern == SUSTAINED:
        return f"sustained: still elevated {recover_points} steps later"
    if pattern == REPEATED:
        return f"repeated: {len(events)} separate spikes, each back within {recover_points} steps"
    return f"transient: back within {recover_points} steps"


def spike_evidence(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, events: list[SpikeEvent], top: SpikeEvent
) -> dict[str, Any]:
    """The evidence a spike alert gives of its events: onset at the first event, the ``top`` one's
    peak (value, step, rolling median before it, robust z)."""
    first = int(x[events[0].start])
    ip = top.peak
    return {
        "onset_step": first,
        "first_evidence_step": first,
        "peak": float(y[ip]),
        "peak_step": int(x[ip]),
        "value": float(y[ip]),
        "rolling_median": top.reference,
        "robust_z": float(z[ip]),
    }
