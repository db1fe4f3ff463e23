"""What the completions look like: repetition, format_regression and truncation."""

from __future__ import annotations

from typing import Any

import numpy as np

from analyzer import columns as C
from analyzer.detectors._common import (
    _FORMAT_NAME,
    excursion_alert,
    find_drop_from_peak,
    find_excursion,
    find_rise,
    format_signal,
    named_reward_signals,
    per_step,
    reward_around,
)
from analyzer.detectors.base import DetectorContext, Skip, register
from analyzer.detectors.headline import onset_period, pct, when
from analyzer.detectors.text import FORMAT_OK, HAS_ANSWER, N_TOKENS, NGRAM_RATE, with_ngram_rates
from analyzer.model import Alert


@register(
    "repetition",
    signals="the repeated word-4-gram rate of each completion (1 − unique/total 4-grams, the metric "
    "gen_repeated_ngram_rate): degenerate loops make it rise toward 1.",
    defaults={
        "threshold": 0.3,
        "critical_threshold": 0.5,
        "min_increase": 0.15,
        "max_per_step": 32,
    },
    requires=("completions or gen_repeated_ngram_rate",),
    severity="warning when the rolling median rate stays ≥ threshold and ≥ min_increase above the warm-up; "
    "critical ≥ critical_threshold.",
)
def repetition(ctx: DetectorContext, cfg: dict[str, Any]) -> list[Alert]:
    """Degenerate loops / repeated n-grams rising in the completions."""
    ctx.skip_if_too_short()
    rated = None
    if ctx.has_generations:
        rated = with_ngram_rates(ctx.train_samples(), per_step=int(cfg["max_per_step"]))
        x, y = per_step(rated, NGRAM_RATE)
        source = "repeated 4-gram rate (completions)"
    elif ctx.has(C.GEN_REPEAT_NGRAM):
        x, y = ctx.series(C.GEN_REPEAT_NGRAM)
        source = C.GEN_REPEAT_NGRAM
    else:
        raise Skip("needs completions (repetition is read from their text)")
    ctx.require_length(y.size, source)
    exc = find_rise(ctx, x, y, cfg)
    if exc is None:
        return []
    ids: list[int] = []
    if rated is not None:
        ids = ctx.pick_samples(onset_period(ctx, rated, exc), order_by=NGRAM_RATE)
    return [
        excursion_alert(
            "repetition",
            exc,
            f"the share of repeated 4-grams in each completion {when(exc, pct)} (warm-up "
            f"{pct(exc.baseline)})",
            critical=exc.extreme >= float(cfg["critical_threshold"]),
            signal=source,
            threshold=float(cfg["threshold"]),
            sample_ids=ids,
        )
    ]


@register(
    "format_regression",
    signals="format compliance per step recomputed from the completions in the run's own format (its "
    "tags, learned from its prompts and completions, or general.tags; as gen_format_ok) and every logged "
    "reward component whose name contains 'format', scaled to [0, 1] by its range: after reaching "
    "learned_level it falls by ≥ drop.",
    defaults={"learned_level": 0.8, "drop": 0.3, "critical_drop": 0.5},
    requires=("completions, or a logged format reward",),
    severity="warning when the rolling median falls ≥ drop below its learned peak; critical when it falls "
    "≥ critical_drop.",
)
def format_regression(ctx: DetectorContext, cfg: dict[str, Any]) -> list[Alert]:
    """Format compliance falling after it was learned: the recomputed compliance and the run's own
    format reward are judged alike, and the first that fell is reported (the others as evidence)."""
    import polars as pl

    ctx.skip_if_too_short()
    signals: list[tuple[str, Any, Any, bool]] = []
    if (sig := format_signal(ctx)) is not None:
        signals.append((*sig, False))
    signals += [(col, x, y, True) for col, x, y in named_reward_signals(ctx, _FORMAT_NAME)]
    if not signals:
        raise Skip(
            "needs completions in a format (tags the run uses) or a logged reward component named *format*"
        )
    judged = [s for s in signals if s[2].size >= ctx.min_points()]
    if not judged:
        ctx.require_length(signals[0][2].size, signals[0][0])
    found = []
    for source, x, y, scalar in judged:
        exc = find_drop_from_peak(ctx, x, y, drop=float(cfg["drop"]), min_peak=float(cfg["learned_level"]))
        if exc is not None:
            found.append((source, exc, scalar))
    if not found:
        return []
    source, exc, scalar = min(found, key=lambda f: (f[1].onset_step, f[2]))
    drop = exc.baseline - exc.extreme
    ids: list[int] = []
    if ctx.has_generations:
        bad = pl.col(FORMAT_OK) < 1
        for col in (c for c in ctx.train_samples().columns if c.startswith(C.REWARD_PREFIX) and _FORMAT_NAME.search(c)):
            r = pl.col(col).cast(pl.Float64, strict=False)
            bad = bad.fill_null(False) | (r < r.max()).fill_null(False)
        ids = ctx.pick_samples(
            ctx.train_samples().filter((pl.col(C.STEP) >= exc.onset_step) & bad).sort(C.STEP)
        )
    also = {s: {"onset_step": e.onset_step, "peak": e.baseline, "lowest": e.extreme} for s, e, _ in found if s != source}
    return [
        excursion_alert(
            "format_regression",
            exc,
            f"format compliance {when(exc, pct)} (from its peak {pct(exc.baseline)})"
            + (f" (the run's format reward {source}, scaled to its range)" if scalar else ""),
            critical=drop >= float(cfg["critical_drop"]),
            extreme_key="lowest_rolling_median",
            baseline_key="learned_peak",
            signal=source,
            drop=drop,
            format=_format_described(ctx),
            also_fell=also,
            sample_ids=ids,
        )
    ]


def _format_described(ctx: DetectorContext) -> str | None:
    conv = ctx.features.conventions if ctx.features is not None else None
    return conv.describe() if conv is not None else None


def _cap_from_info(ctx: DetectorContext) -> tuple[float | None, str | None]:
    """The generation length limit and where it was read: the run's config, else the longest
    completion the trainer logged (TRL ``completions/max_length``, verl ``response_length/max``) —
    at a step where completions were clipped that *is* the limit; otherwise a lower bound."""
    cfg = ctx.run.info.get("config") or {}
    if isinstance(cfg, dict):
        for k in (
            "max_completion_length",
            "max_new_tokens",
            "response_length",
            "max_response_length",
        ):
            v = cfg.get(k)
            if isinstance(v, int | float) and v > 0:
                return float(v), f"config {k}"
    for col in ("completions/max_length", "response_length/max"):
        if not ctx.has(col):
            continue
        x, y = ctx.series(col)
        if ctx.has(C.CLIPPED_RATIO):
            cx, cy = ctx.series(C.CLIPPED_RATIO)
            at = y[np.isin(x, cx[cy > 0])]
            if at.size:
                return float(at.max()), f"{col} at the steps with clipped completions"
        return float(y.max()), f"{col} (the longest completion logged: the limit is at least this)"
    return None, None


@register(
    "truncation",
    signals="`clipped_ratio` (TRL completions/clipped_ratio: share of completions cut at max length), else "
    "the share of completions with no extracted answer whose length is ≥ cap_fraction × the longest "
    "completion of the run — cut before the answer, they earn nothing (a known silent TRL failure).",
    defaults={"threshold": 0.5, "critical_threshold": 0.9, "cap_fraction": 0.9},
    requires=("clipped_ratio or completions",),
    severity="warning when the rolling median share stays ≥ threshold; critical ≥ critical_threshold or "
    "when the reward falls while it holds.",
)
def truncation(ctx: DetectorContext, cfg: dict[str, Any]) -> list[Alert]:
    """Completions hitting the generation length limit, cut before the answer."""
    import polars as pl

    ctx.skip_if_too_short()
    # the logged share first, unless too sparse to judge while the completions can say it
    if ctx.has(C.CLIPPED_RATIO) and (ctx.judgeable(C.CLIPPED_RATIO) or not ctx.has_generations):
        x, y = ctx.series(C.CLIPPED_RATIO)
        source = C.CLIPPED_RATIO
    elif ctx.has_generations:
        s = ctx.train_samples()
        longest = float(s[N_TOKENS].max() or 0)  # type: ignore[arg-type]
        if longest <= 0:
            raise Skip("completions are empty")
        trunc = s.with_columns(
            ((pl.col(N_TOKENS) >= float(cfg["cap_fraction"]) * longest) & ~pl.col(HAS_ANSWER))
            .cast(pl.Float64)
            .alias("_cut")
        )
        x, y = per_step(trunc, "_cut")
        source = f"completions without an answer at ≥ {cfg['cap_fraction']:g} × the longest ({longest:.0f} words)"
    else:
        raise Skip("needs clipped_ratio or completions")
    ctx.require_length(y.size, source)
    exc = find_excursion(ctx, x, y, above=True, threshold=float(cfg["threshold"]))
    if exc is None:
        return []
    ev: dict[str, Any] = {}
    reward_falls = False
    if (around := reward_around(ctx, exc.onset_step)) is not None:
        b, a, reward_falls = around
        ev = {"reward_before": b, "reward_after": a, "reward_falls": reward_falls}
    cap, cap_from = _cap_from_info(ctx)
    ids: list[int] = []
    if ctx.has_generations:
        cand = onset_period(ctx, ctx.train_samples(), exc).filter(~pl.col(HAS_ANSWER))
        ids = ctx.pick_samples(cand, order_by=N_TOKENS)
    return [
        excursion_alert(
            "truncation",
            exc,
            f"the share of completions cut at the length limit {when(exc, pct)} (rolling median; "
            f"warning at {pct(float(cfg['threshold']))})"
            + (" while the reward fell" if reward_falls else ""),
            critical=exc.extreme >= float(cfg["critical_threshold"]) or reward_falls,
            signal=source,
            threshold=float(cfg["threshold"]),
            max_completion_length=cap,
            max_completion_length_from=cap_from,
            sample_ids=ids,
            **ev,
        )
    ]
