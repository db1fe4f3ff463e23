"""Loss of exploration: entropy_collapse, reward_std_collapse and mode_collapse (text level)."""

from __future__ import annotations

from typing import Any

import numpy as np

from analyzer import columns as C
from analyzer.detectors._common import excursion_alert, find_excursion, find_rise, per_step
from analyzer.detectors.base import DetectorContext, Skip, register
from analyzer.detectors.headline import onset_period, pct, when
from analyzer.detectors.text import CORRECT, GROUP, NORM_TEXT, jaccard, normalised_text, shingles
from analyzer.model import Alert


@register(
    "entropy_collapse",
    signals="`entropy` (mean token entropy of the policy): its rolling median falling below "
    "collapse_fraction × the warm-up median — the policy has stopped exploring, so GRPO groups stop "
    "differing and learning stalls.",
    defaults={"collapse_fraction": 0.25, "critical_fraction": 0.1},
    requires=("entropy",),
    severity="warning below collapse_fraction × baseline; critical below critical_fraction × baseline.",
)
def entropy_collapse(ctx: DetectorContext, cfg: dict[str, Any]) -> list[Alert]:
    """Policy entropy falling toward zero."""
    if not ctx.has(C.ENTROPY):
        raise Skip("entropy was not logged")
    ctx.skip_if_too_short()
    x, y = ctx.series(C.ENTROPY)
    ctx.require_length(y.size, "entropy")
    w = ctx.warmup_points(y.size)
    base = float(np.median(y[:w]))
    if base <= 0:
        raise Skip(f"entropy baseline is {base:g} (not positive): nothing to compare against")
    exc = find_excursion(ctx, x, y, above=False, threshold=float(cfg["collapse_fraction"]) * base)
    if exc is None:
        return []
    ids: list[int] = []
    if ctx.has_generations:
        ids = ctx.pick_samples(onset_period(ctx, ctx.train_samples(), exc))
    return [
        excursion_alert(
            "entropy_collapse",
            exc,
            f"entropy {when(exc, lambda v: f'{v:.4g}')} ({exc.extreme / base:.0%} of its warm-up "
            f"level {base:.4g})",
            critical=exc.extreme <= float(cfg["critical_fraction"]) * base,
            extreme_key="lowest_rolling_median",
            threshold=float(cfg["collapse_fraction"]) * base,
            sample_ids=ids,
        )
    ]


def _zero_spread_groups(ctx: DetectorContext) -> Any:
    """Per (step, group) of the train completions: size, reward spread, mean exact match."""
    import polars as pl

    s = ctx.train_samples()
    r = pl.col(C.TOTAL_REWARD).cast(pl.Float64, strict=False)
    return (
        s.filter(r.is_finite())
        .group_by(C.STEP, GROUP)
        .agg(
            pl.len().alias("n"),
            (r.max() - r.min()).alias("spread"),
            r.mean().alias("reward"),
            pl.col(CORRECT).mean().alias("acc"),
            pl.col(C.SAMPLE_ID).first(),
        )
        .filter(pl.col("n") >= 2)
    )


@register(
    "reward_std_collapse",
    signals="`frac_reward_zero_std` (TRL) or the share of GRPO groups whose completions all got the same "
    "reward (rebuilt from completions): a group with zero spread has zero advantage, so it teaches "
    "nothing. Says whether the groups are all-correct (task too easy / saturated) or all-wrong (too hard).",
    defaults={
        "threshold": 0.6,
        "critical_threshold": 0.85,
        "min_increase": 0.3,
        "spread_epsilon": 1e-9,
    },
    requires=("frac_reward_zero_std or completions with groups",),
    severity="warning when the rolling mean share of zero-spread groups stays ≥ threshold and ≥ min_increase "
    "above the warm-up; critical when it stays ≥ critical_threshold (from the start, too).",
)
def reward_std_collapse(ctx: DetectorContext, cfg: dict[str, Any]) -> list[Alert]:
    """GRPO groups with zero reward spread dominate (no learning signal)."""
    import polars as pl

    ctx.skip_if_too_short()
    groups = None
    source = ctx.first_present([C.FRAC_REWARD_ZERO_STD, C.GEN_ZERO_SPREAD_GROUPS])
    if source is not None:
        x, y = ctx.series(source)
    elif ctx.has_generations:
        groups = _zero_spread_groups(ctx)
        if groups.height == 0:
            raise Skip(
                "completions have no groups of ≥ 2 completions (group_id / question_id per step)"
            )
        zs = groups.with_columns(
            (pl.col("spread") <= float(cfg["spread_epsilon"])).cast(pl.Float64).alias("z")
        )
        x, y = per_step(zs, "z")
        source = "zero-spread groups (completions)"
    elif ctx.has(C.REWARD_STD):
        # TRL's reward_std is the mean of the groups' stds (verl's the batch std): it is 0 exactly
        # when every group has zero spread — a step-level lower bound of the share (1 or 0)
        x, rs = ctx.series(C.REWARD_STD)
        y = (rs <= float(cfg["spread_epsilon"])).astype(float)
        source = "reward_std == 0 (every group without spread; a lower bound of the share)"
    else:
        raise Skip("needs frac_reward_zero_std, reward_std or completions grouped per prompt")
    ctx.require_length(y.size, source)
    # dominating and grown since the warm-up — or dominating so much that the cause does not
    # matter (a run without signal from its first step is the same failure). Small groups have
    # many zero-spread groups by chance (2 completions at 65 % accuracy: over half), hence the
    # required increase.
    grown = find_rise(ctx, x, y, cfg, smooth_with="mean")
    extreme = find_excursion(
        ctx, x, y, above=True, threshold=float(cfg["critical_threshold"]), smooth_with="mean"
    )
    found = [e for e in (grown, extreme) if e is not None]
    if not found:
        return []
    exc = min(found, key=lambda e: e.onset_step)
    cause = "unknown (no completions to tell all-correct from all-wrong groups)"
    ev: dict[str, Any] = {}
    ids: list[int] = []
    if ctx.has_generations:
        if groups is None:
            groups = _zero_spread_groups(ctx)
        late = groups.filter(
            (pl.col(C.STEP) >= exc.onset_step) & (pl.col("spread") <= float(cfg["spread_epsilon"]))
        )
        if late.height:
            rmin = float(groups["reward"].min())
            rmax = float(groups["reward"].max())
            mid = (rmin + rmax) / 2
            # "correct" is the reward's verdict (that is what has no spread): the group's reward
            # in the top half of the range the groups' rewards span over the run. A reward that
            # never varies has no range: one that is never positive rewarded nothing (all wrong);
            # a constant positive one is judged by the groups' exact match when there is a ground
            # truth (as metrics' all-correct / all-wrong shares are), else taken at its word
            if rmax > rmin:
                top = late.filter(pl.col("reward") > mid)
            elif rmax <= 0:
                top = late.clear()
            elif late["acc"].null_count() < late.height:
                top = late.filter(pl.col("acc") >= 0.5)
            else:
                top = late
            share_correct = top.height / late.height
            ev = {
                "zero_spread_groups": late.height,
                "all_correct_share": share_correct,
                "all_wrong_share": 1 - share_correct,
            }
            if share_correct >= 0.6:
                cause = "mostly all-correct groups: the prompts are too easy / the reward saturated"
                em = top["acc"].drop_nulls().to_numpy()
                if em.size and float(em.mean()) < 0.5:
                    ev["exact_match_of_rewarded"] = float(em.mean())
                    cause += (
                        f" — yet only {float(em.mean()):.0%} of them match the ground truth"
                        " (see reward_hacking)"
                    )
            elif share_correct <= 0.4:
                cause = "mostly all-wrong groups: the prompts are too hard or the reward is broken"
            else:
                cause = "a mix of all-correct and all-wrong groups"
            # the completions of one zero-spread group of the onset period — of the kind the
            # cause names — all with the same reward: what "no spread" looks like
            kind = top if share_correct >= 0.5 else late.join(top, on=[C.STEP, GROUP], how="anti")
            first = (kind if kind.height else late).sort(C.STEP, C.SAMPLE_ID).head(1)
            members = ctx.train_samples().join(first.select(C.STEP, GROUP), on=[C.STEP, GROUP])
            ids = ctx.pick_samples(members.sort(C.SAMPLE_ID))
    else:
        for c in (C.GEN_ZERO_SPREAD_ALL_CORRECT, C.GEN_ZERO_SPREAD_ALL_WRONG):
            if ctx.has(c):
                ev[c] = float(np.median(ctx.series(c)[1][-max(3, y.size // 4) :]))
    return [
        excursion_alert(
            "reward_std_collapse",
            exc,
            f"the share of GRPO groups with zero reward spread {when(exc, pct)} (warm-up "
            f"{pct(exc.baseline)}): no learning signal; {cause}",
            critical=exc.extreme >= float(cfg["critical_threshold"]),
            signal=source,
            threshold=float(cfg["threshold"]),
            cause=cause,
            sample_ids=ids,
            **ev,
        )
    ]


def _group_duplicates(texts: list[str], ids: list[int], thr: float) -> tuple[int, int, set[int]]:
    """(pairs, near-duplicate pairs, ids involved) of one group; shingles only when texts differ."""
    cache: dict[int, frozenset[tuple[str, ...]]] = {}

    def sh(i: int) -> frozenset[tuple[str, ...]]:
        if i not in cache:
            cache[i] = shingles(texts[i])
        return cache[i]

    pairs = dup = 0
    dup_ids: set[int] = set()
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            pairs += 1
            if texts[i] == texts[j] or jaccard(sh(i), sh(j)) >= thr:
                dup += 1
                dup_ids.update((ids[i], ids[j]))
    return pairs, dup, dup_ids


def _near_dup_rates(
    ctx: DetectorContext, cfg: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, dict[int, list[int]]]:
    """Per step: share of completion pairs within a group (else within the step) that are near-identical.

    Returns (steps, rates, {step: sample ids of the most duplicated group}).
    """
    import polars as pl

    s = ctx.train_samples().select(C.STEP, GROUP, C.SAMPLE_ID, C.OUTPUT)
    max_groups = int(cfg["max_groups_per_step"])
    max_size = int(cfg["max_group_size"])
    thr = float(cfg["near_duplicate_jaccard"])
    all_steps = s[C.STEP].unique().sort()
    if all_steps.len() > int(cfg["max_steps"]):
        # text comparison is the costly part: judge evenly spaced steps of very long runs
        keep = all_steps.gather(
            np.linspace(0, all_steps.len() - 1, int(cfg["max_steps"])).round().astype(int)
        )
        s = s.filter(pl.col(C.STEP).is_in(keep.implode()))
    sizes = s.group_by(C.STEP, GROUP).agg(pl.len().alias("n"))
    use_groups = sizes.height > 0 and float(sizes["n"].median()) >= 2  # type: ignore[arg-type]
    key = [C.STEP, GROUP] if use_groups else [C.STEP]
    parts = (
        s.with_columns(pl.int_range(pl.len()).over(key).alias("_i"))
        .filter(pl.col("_i") < max_size)
        .filter(
            pl.col(key[-1]).rank("dense").over(C.STEP) <= max_groups if use_groups else pl.lit(True)
        )
        .with_columns(normalised_text(pl.col(C.OUTPUT)).alias(NORM_TEXT))
        .group_by(key, maintain_order=True)
        .agg(pl.col(C.SAMPLE_ID), pl.col(NORM_TEXT))
        .sort(C.STEP)
    )
    rates: dict[int, list[float]] = {}
    worst: dict[int, tuple[float, list[int]]] = {}
    for row in parts.iter_rows(named=True):
        step = int(row[C.STEP])
        if len(rates.get(step, [])) >= max_groups:
            continue
        texts: list[str] = row[NORM_TEXT]
        ids: list[int] = row[C.SAMPLE_ID]
        if len(texts) < 2:
            continue
        pairs, dup, dup_ids = _group_duplicates(texts, ids, thr)
        rate = dup / pairs
        rates.setdefault(step, []).append(rate)
        if rate > worst.get(step, (-1.0, []))[0]:
            worst[step] = (rate, sorted(dup_ids))
    steps = np.array(sorted(rates), dtype=np.int64)
    vals = np.array([float(np.mean(rates[k])) for k in steps.tolist()])
    return steps, vals, {k: v[1] for k, v in worst.items()}


@register(
    "mode_collapse",
    signals="the completions' text: per step, the share of completion pairs of one GRPO group (or of the "
    "step, without groups) that are identical or near-identical (word-3-gram Jaccard ≥ "
    "near_duplicate_jaccard); the drift diversity columns are reported alongside when present.",
    defaults={
        "threshold": 0.5,
        "critical_threshold": 0.8,
        "min_increase": 0.3,
        "near_duplicate_jaccard": 0.8,
        "max_groups_per_step": 16,
        "max_group_size": 16,
        "max_steps": 400,
    },
    requires=("completions",),
    severity="warning when the rolling median near-duplicate pair share stays ≥ threshold and ≥ min_increase "
    "above the warm-up; critical ≥ critical_threshold.",
)
def mode_collapse(ctx: DetectorContext, cfg: dict[str, Any]) -> list[Alert]:
    """Completions of one prompt becoming (near-)identical."""
    ctx.require_generations("completions (mode collapse is read from their text)")
    ctx.skip_if_too_short()
    x, y, worst = _near_dup_rates(ctx, cfg)
    ctx.require_length(y.size, "steps with ≥ 2 completions")
    exc = find_rise(ctx, x, y, cfg)
    if exc is None:
        return []
    ev: dict[str, Any] = {}
    for c in (C.DRIFT_DIVERSITY_GROUP, C.DRIFT_DIVERSITY_STEP):
        if ctx.has(c):
            _, dv = ctx.series(c)
            w = ctx.warmup_points(dv.size)
            ev[c] = {
                "baseline": float(np.median(dv[:w])),
                "last": float(np.median(dv[-max(3, dv.size // 10) :])),
            }
    ids = worst.get(exc.detect_step) or next(
        (worst[int(s)] for s in x if int(s) >= exc.onset_step and worst.get(int(s))), []
    )
    return [
        excursion_alert(
            "mode_collapse",
            exc,
            f"the share of (near-)identical completion pairs within a group {when(exc, pct)} "
            f"(warm-up {pct(exc.baseline)})",
            critical=exc.extreme >= float(cfg["critical_threshold"]),
            extreme_key="near_duplicate_pair_share",
            threshold=float(cfg["threshold"]),
            jaccard_threshold=float(cfg["near_duplicate_jaccard"]),
            sample_ids=ids[: int(ctx.general["max_sample_ids"])],
            **ev,
        )
    ]
