"""Is the reward measuring what we want? reward_hacking and length_hacking."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from analyzer import columns as C
from analyzer.detectors import stats
from analyzer.detectors._common import (
    _CORRECTNESS_NAME,
    Excursion,
    Signal,
    accuracy_signal,
    component_columns,
    eval_quality_columns,
    excursion_alert,
    find_excursion,
    find_rise,
    length_signal,
    named_reward_signals,
    per_step,
    reward_signal,
)
from analyzer.detectors.base import DetectorContext, Skip, alert, register
from analyzer.detectors.headline import onset_period, pct, when
from analyzer.detectors.text import CORRECT, HAS_ANSWER, N_TOKENS
from analyzer.model import Alert, Severity

_CORRECTNESS = re.compile(r"correct|accuracy|answer|exact|match", re.I)


def _truth_signals(
    ctx: DetectorContext, cfg: dict[str, Any]
) -> list[tuple[str, np.ndarray, np.ndarray, bool]]:
    """Truer signals than the proxy: (name, steps, values, is_accuracy_in_0_1)."""
    out: list[tuple[str, np.ndarray, np.ndarray, bool]] = []
    for col in cfg["gold_columns"]:
        if ctx.has(col):
            x, y = ctx.series(col)
            out.append((col, x, y, False))
    acc = accuracy_signal(ctx)
    if acc is not None:
        out.append((acc[0], acc[1], acc[2], True))
    # the run's own accuracy reward (scaled to [0, 1]), when the reward has other parts to rise
    if len(component_columns(ctx)) >= 2:
        for col, x, y in named_reward_signals(ctx, _CORRECTNESS_NAME):
            out.append((col, x, y, True))
    # eval signals only when the train completions carry no truth: with a train accuracy at hand, an
    # eval-only fall is forgetting (catastrophic_forgetting), not the train reward being gamed
    if acc is None:
        for col, is_acc in eval_quality_columns(ctx):
            x, y = ctx.series(col)
            out.append((col, x, y, is_acc))
    return out


def _proxy_vs_truth(
    ctx: DetectorContext,
    cfg: dict[str, Any],
    proxy: Signal,
    truths: list[tuple[str, np.ndarray, np.ndarray, bool]],
) -> list[Alert]:
    rname, rx, ry = proxy
    out: list[Alert] = []
    for tname, tx, ty, is_acc in truths:
        n = ty.size
        if n < max(8, int(ctx.general["min_steps"]) // 2):
            continue
        w = ctx.warmup_points(n)
        smooth = stats.rolling_median(ty, stats.window_for(n), center=True)
        p = w + int(np.argmax(smooth[w:])) if n - w > 3 else w
        if n - p < 6:
            continue
        # the late level: the last fifth — at least 6 points after the peak when a sparse curve
        # has them, for the exact test below to be able to show significance
        tail = max(3, n // 5, min(6, n - p - 1))
        late = float(np.median(ty[-tail:]))
        drop = float(smooth[p]) - late
        noise = (
            stats.robust_scale(ty[: p + 1] - smooth[: p + 1]) if p > 3 else stats.robust_scale(ty)
        )
        min_drop = (
            float(cfg["min_accuracy_drop"])
            if is_acc
            else max(4 * noise, float(cfg["min_relative_drop"]) * abs(float(smooth[p])))
        )
        h = max(3, stats.window_for(n))
        z_fall = stats.mann_whitney_strength(ty[max(0, min(p - 2 * h, p - 5)) : p + 1], ty[-tail:])
        if drop < min_drop or z_fall < float(cfg["min_z"]):
            continue
        # the proxy must hold or rise over the same stretch
        sel = rx >= tx[p]
        if sel.sum() < 4:
            continue
        rtr = stats.trend(rx[sel], ry[sel])
        r_at_peak = float(np.median(ry[sel][: max(3, int(sel.sum()) // 5)]))
        r_late = float(np.median(ry[-max(3, ry.size // 5) :]))
        r_noise = stats.robust_scale(ry[: max(ctx.warmup_points(ry.size), 3)])
        if rtr.z < 0 or r_late < r_at_peak - r_noise:
            continue
        onset = stats.onset_step(tx, ty, lo=max(0, p - 2))
        # the first step the evidence held: the smoothed truth at least min_drop below its peak
        below = np.nonzero(smooth[p:] <= smooth[p] - min_drop)[0]
        first = int(tx[p + int(below[0])]) if below.size else int(tx[-tail])
        first = max(first, onset)
        ids: list[int] = []
        if ctx.has_generations:
            import polars as pl

            ids = ctx.pick_samples(
                ctx.train_samples()
                .filter(
                    (pl.col(C.STEP) >= onset) & (pl.col(C.STEP) <= first) & (pl.col(CORRECT) == 0)
                )
                .sort(C.TOTAL_REWARD, descending=True)
            )
        crit = is_acc and drop >= float(cfg["critical_accuracy_drop"])
        out.append(
            alert(
                "reward_hacking",
                Severity.CRITICAL if crit else Severity.WARNING,
                onset,
                f"{rname} held or rose ({r_at_peak:.4g} → {r_late:.4g}) while {tname} fell from "
                f"step {onset} (held from step {first}): from its peak {smooth[p]:.4g} at step "
                f"{int(tx[p])} to {late:.4g} over the last {tail} points",
                check="proxy_up_truth_down",
                proxy=rname,
                truth=tname,
                truth_peak=float(smooth[p]),
                onset_step=onset,
                first_evidence_step=first,
                peak_step=int(tx[p]),
                truth_late=late,
                truth_drop=drop,
                truth_fall_z=z_fall,
                proxy_at_truth_peak=r_at_peak,
                proxy_late=r_late,
                proxy_trend_z=rtr.z,
                min_drop=min_drop,
                sample_ids=ids,
            )
        )
        break  # one truth signal is enough evidence
    return out


def _verifier_disagreement(ctx: DetectorContext, cfg: dict[str, Any]) -> list[Alert]:
    import polars as pl

    if not ctx.has_generations:
        return []
    # only completions whose answer could be read: "no answer found" is not "wrong"
    s = ctx.train_samples().filter(pl.col(CORRECT).is_not_null() & pl.col(HAS_ANSWER))
    if s.height == 0:
        return []
    names = list(cfg["correctness_rewards"]) or [
        n for n in ctx.run.reward_names if _CORRECTNESS.search(n)
    ]
    out: list[Alert] = []
    for name in names:
        col = f"{C.REWARD_PREFIX}{name}"
        if col not in s.columns:
            continue
        r = pl.col(col).cast(pl.Float64, strict=False)
        top = s.select(r.filter(r.is_finite()).max()).item()
        if top is None or top <= 0:
            continue
        flagged = s.with_columns(
            ((r >= float(cfg["correct_fraction"]) * top) & (pl.col(CORRECT) == 0))
            .cast(pl.Float64)
            .alias("_dis")
        )
        x, y = per_step(flagged, "_dis")
        if y.size < int(ctx.general["min_steps"]):
            continue
        exc = find_rise(
            ctx, x, y, cfg, threshold="disagreement_threshold", increase="disagreement_increase"
        )
        if exc is None:
            continue
        ids = ctx.pick_samples(
            onset_period(ctx, flagged.filter(pl.col("_dis") == 1), exc).sort(C.STEP)
        )
        out.append(
            excursion_alert(
                "reward_hacking",
                exc,
                f"the share of completions the verifier '{name}' calls correct that are wrong by exact "
                f"match {when(exc, pct)} (warm-up {pct(exc.baseline)}): a lenient check is being exploited",
                critical=exc.extreme >= float(cfg["disagreement_critical"]),
                extreme_key="disagreement_rate",
                check="verifier_disagreement",
                reward=name,
                correct_at_or_above=float(cfg["correct_fraction"]) * top,
                threshold=float(cfg["disagreement_threshold"]),
                sample_ids=ids,
            )
        )
    return out


def _component_dominance(
    ctx: DetectorContext, cfg: dict[str, Any], columns: dict[str, str]
) -> list[Alert]:
    comps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, col in columns.items():
        comps[name] = ctx.series(col)
    if len(comps) < 2 and ctx.has_generations:
        s = ctx.train_samples()
        for col in s.columns:
            if col.startswith(C.REWARD_PREFIX):
                comps[col[len(C.REWARD_PREFIX) :]] = per_step(s, col)
    comps = {k: v for k, v in comps.items() if v[1].size >= int(ctx.general["min_steps"])}
    if len(comps) < 2:
        return []
    gains: dict[str, float] = {}
    zs: dict[str, float] = {}
    # components logged at the same steps are judged together (thousands of reward functions)
    same_steps: dict[bytes, list[str]] = {}
    for name, (x, _y) in comps.items():
        same_steps.setdefault(x.tobytes(), []).append(name)
    for names in same_steps.values():
        ys = np.column_stack([comps[k][1] for k in names])
        n = ys.shape[0]
        w = ctx.warmup_points(n)
        tail = ys[-max(3, n // 4) :]
        gain = np.median(tail, axis=0) - np.median(ys[:w], axis=0)
        z = stats.mann_whitney_z_columns(tail, ys[:w])  # is the gain more than noise?
        for j, k in enumerate(names):
            gains[k], zs[k] = float(gain[j]), float(z[j])
    gains = {k: gains[k] for k in comps}  # the components' own order, for the message
    positive = {k: g for k, g in gains.items() if g > 0 and zs[k] >= 3.0}
    total = sum(positive.values())
    if total <= 0:
        return []
    top = max(positive, key=lambda k: positive[k])
    share = positive[top] / total
    stalled = [k for k in gains if k != top and zs[k] < 2.0]
    if (
        share < float(cfg["dominance_share"])
        or len(stalled) < len(gains) - 1
        or _CORRECTNESS.search(top)
    ):
        return []  # the correctness reward driving the gain is what training is for
    falling_correctness = [k for k in stalled if _CORRECTNESS.search(k) and zs[k] <= -3.0]
    sev = Severity.WARNING if falling_correctness else Severity.INFO
    x, y = comps[top]
    exc_onset = stats.onset_step(x, y)
    return [
        alert(
            "reward_hacking",
            sev,
            exc_onset,
            f"reward component '{top}' explains {share:.0%} of the reward gain while {', '.join(stalled)} stalled"
            + (f" ({', '.join(falling_correctness)} fell)" if falling_correctness else ""),
            check="single_component",
            component=top,
            share_of_gain=share,
            gains=gains,
            stalled=stalled,
            sample_ids=[],
        )
    ]


@register(
    "reward_hacking",
    signals="(1) the proxy reward holding or rising while a truer signal — exact-match accuracy recomputed "
    "from model_answer vs ground_truth_answer, eval accuracy, or configured gold_columns — falls after "
    "its peak; (2) verifier disagreement: a correctness-style reward (name matching "
    "correct/accuracy/answer, or correctness_rewards) giving full credit where exact match says wrong, "
    "rising; (3) one reward component explaining most of the reward gain while the others stall.",
    defaults={
        "gold_columns": [],
        "correctness_rewards": [],
        "correct_fraction": 0.99,
        "min_accuracy_drop": 0.15,
        "min_relative_drop": 0.1,
        "min_z": 3.0,
        "critical_accuracy_drop": 0.3,
        "disagreement_threshold": 0.1,
        "disagreement_increase": 0.1,
        "disagreement_critical": 0.3,
        "dominance_share": 0.8,
    },
    requires=("reward + (completions with ground truth, eval accuracy or gold_columns)",),
    severity="(1) warning, critical when accuracy fell ≥ critical_accuracy_drop; (2) warning when the rolling "
    "disagreement rate stays ≥ disagreement_threshold, critical ≥ disagreement_critical; (3) info, warning "
    "when a correctness component fell meanwhile.",
)
def reward_hacking(ctx: DetectorContext, cfg: dict[str, Any]) -> list[Alert]:
    """The proxy reward rising while a truer signal falls, or the verifier disagreeing with the answer."""
    ctx.skip_if_too_short()
    truths = _truth_signals(ctx, cfg)
    components = component_columns(ctx)
    have_components = len(components) >= 2 or (
        ctx.has_generations and sum(c.startswith(C.REWARD_PREFIX) for c in ctx.samples.columns) >= 2
    )
    proxy = reward_signal(ctx)
    if proxy is None or not (truths or have_components):
        raise Skip(
            "needs a reward and a truer signal (completions with ground_truth_answer, eval accuracy or "
            "reward_hacking.gold_columns) or ≥ 2 reward components"
        )
    return (
        _proxy_vs_truth(ctx, cfg, proxy, truths)
        + _verifier_disagreement(ctx, cfg)
        + _component_dominance(ctx, cfg, components)
    )


def _bucket_explained(
    ctx: DetectorContext, early_start: int, early_end: int, late_start: int, buckets: int
) -> dict[str, float] | None:
    """Share of the early→late reward gain that disappears within length buckets (pooled quantiles)."""
    import polars as pl

    s = (
        ctx.train_samples()
        .select(C.STEP, N_TOKENS, pl.col(C.TOTAL_REWARD).cast(pl.Float64, strict=False))
        .drop_nulls()
    )
    s = s.filter(pl.col(C.TOTAL_REWARD).is_finite())
    early = s.filter((pl.col(C.STEP) >= early_start) & (pl.col(C.STEP) <= early_end))
    late = s.filter(pl.col(C.STEP) >= late_start)
    if early.height < 10 or late.height < 10:
        return None
    total = float(late[C.TOTAL_REWARD].mean()) - float(early[C.TOTAL_REWARD].mean())  # type: ignore[arg-type]
    lengths = np.concatenate([early[N_TOKENS].to_numpy(), late[N_TOKENS].to_numpy()])
    edges = np.unique(np.quantile(lengths, np.linspace(0, 1, buckets + 1)))
    if edges.size < 3:
        return None
    eb = np.clip(
        np.searchsorted(edges, early[N_TOKENS].to_numpy(), side="right") - 1, 0, edges.size - 2
    )
    lb = np.clip(
        np.searchsorted(edges, late[N_TOKENS].to_numpy(), side="right") - 1, 0, edges.size - 2
    )
    er, lr = early[C.TOTAL_REWARD].to_numpy(), late[C.TOTAL_REWARD].to_numpy()
    num = den = 0.0
    for b in range(edges.size - 1):
        ne, nl = int((eb == b).sum()), int((lb == b).sum())
        if ne >= 3 and nl >= 3:
            wgt = min(ne, nl)
            num += wgt * (float(lr[lb == b].mean()) - float(er[eb == b].mean()))
            den += wgt
    if den == 0 or total <= 0:
        return None
    within = num / den
    return {
        "total_gain": total,
        "within_bucket_gain": within,
        "explained_by_length": float(np.clip(1 - within / total, 0, 1)),
    }


@register(
    "length_hacking",
    signals="completion length vs reward: length growing ≥ (1 + min_growth) × its warm-up level while the "
    "reward rises and exact-match accuracy does not; the within-step reward–length correlation; and the "
    "share of the reward gain that vanishes inside length buckets (Singhal et al. 2023). With completions: "
    "length growing ≥ length_ratio × its warm-up level while the recomputed accuracy gains ≤ "
    "max_accuracy_gain, whatever the reward did (check length_without_accuracy).",
    defaults={
        "min_growth": 0.5,
        "max_accuracy_gain": 0.05,
        "correlation_threshold": 0.4,
        "explained_threshold": 0.6,
        "buckets": 5,
        "min_z": 3.0,
        "length_ratio": 2.0,
    },
    requires=("completion length and reward",),
    severity="warning when length grew and the reward rose while accuracy stayed flat, or (without ground "
    "truth) the gain is explained by length (bucket share ≥ explained_threshold or correlation ≥ "
    "correlation_threshold); critical when both hold; info on scalar-only runs (no accuracy to tell); "
    "warning for length_without_accuracy.",
)
def length_hacking(ctx: DetectorContext, cfg: dict[str, Any]) -> list[Alert]:
    """Reward gains explained by growing completion length; length growing without accuracy."""
    ctx.skip_if_too_short()
    ls_ = length_signal(ctx)
    rs = reward_signal(ctx)
    if ls_ is None or rs is None:
        raise Skip("needs completion length and reward")
    lname, lx, ly = ls_
    ctx.require_length(ly.size, lname)
    exc = find_excursion(ctx, lx, ly, above=True, rel_delta=float(cfg["min_growth"]))
    if exc is None or exc.baseline <= 0:
        return []
    found = _length_and_reward(ctx, cfg, exc, ls_, rs)
    return found or _length_without_accuracy(ctx, cfg, ls_, rs)


def _length_without_accuracy(
    ctx: DetectorContext, cfg: dict[str, Any], length: Signal, reward: Signal
) -> list[Alert]:
    """Completions growing ≥ ``length_ratio`` × their warm-up length while logscan's own accuracy
    (mean of the points around the take-off vs the last quarter) gains no more than
    ``max_accuracy_gain``, or no more than noise (Mann–Whitney z < 2.5) — whatever the reward did: the compute goes into
    length that buys nothing (when the reward rose with it, ``_length_and_reward`` has said so)."""
    if not ctx.has_generations:
        return []
    acc = accuracy_signal(ctx)
    if acc is None or acc[2].size < ctx.min_points():
        return []
    lname, lx, ly = length
    exc = find_excursion(ctx, lx, ly, above=True, rel_delta=float(cfg["length_ratio"]) - 1.0)
    if exc is None or exc.baseline <= 0:
        return []
    aname, ax, ay = acc
    k = stats.window_for(ay.size, 0.1, 5, 30)
    # the accuracy where the length took off (the points around the onset) vs the last quarter:
    # what the growth bought, not what the run learned before it
    i0 = int(np.searchsorted(ax, exc.onset_step))
    a_pre = ay[max(0, i0 - k // 2) : i0 + k - k // 2]
    if a_pre.size < 3:
        return []
    a_post = ay[-max(3, ay.size // 4) :]
    a_base, a_late = float(np.mean(a_pre)), float(np.mean(a_post))
    gain = a_late - a_base
    # "gained" as in the main check: beyond max_accuracy_gain and more than noise
    if gain > float(cfg["max_accuracy_gain"]) and stats.mann_whitney_z(a_post, a_pre) >= 2.5:
        return []
    rname, rx, ry = reward
    r_pre = ry[rx < exc.onset_step][-k:]
    r_base = float(np.median(r_pre)) if r_pre.size else float("nan")
    r_late = float(np.median(ry[-max(3, ry.size // 4) :]))
    growth = exc.extreme / exc.baseline

    # completions of the onset period (docs/detectors.md, "Honest headlines"), the longest first
    ids = ctx.pick_samples(onset_period(ctx, ctx.train_samples(), exc), order_by=N_TOKENS)
    held = f"held from step {exc.detect_step}; " if exc.detect_step != exc.onset_step else ""
    longest = f" by step {exc.extreme_step}" if exc.extreme_step >= 0 else ""
    return [
        alert(
            "length_hacking",
            Severity.WARNING,
            exc.onset_step,
            f"completion length grew {growth:.1f}× from step {exc.onset_step} ({held}{exc.baseline:.0f} → "
            f"{exc.extreme:.0f} at the longest{longest}) while logscan's accuracy "
            f"{'gained' if gain >= 0 else 'fell'} {abs(gain):.2f} ({a_base:.2f} → {a_late:.2f}); the reward moved {r_base:.3g} → {r_late:.3g}: the extra "
            "length buys nothing",
            check="length_without_accuracy",
            **exc.evidence("length_peak", "length_baseline"),
            length_signal=lname,
            growth=growth,
            accuracy_signal=aname,
            accuracy_baseline=a_base,
            accuracy_late=a_late,
            accuracy_gain=gain,
            reward_signal=rname,
            reward_baseline=r_base,
            reward_late=r_late,
            sample_ids=ids,
        )
    ]


def _length_and_reward(
    ctx: DetectorContext, cfg: dict[str, Any], exc: Excursion, length: Signal, reward: Signal
) -> list[Alert]:
    """Length up, reward up (significant), accuracy flat or length explaining the gain."""
    import polars as pl

    lname, lx, ly = length
    rname, rx, ry = reward

    # compare the stretch just before the length took off with the end of the run
    def before_after(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = stats.window_for(y.size, 0.1, 5, 30)
        pre = y[x < exc.onset_step][-k:]
        return pre, y[-max(3, y.size // 4) :]

    r_pre, r_post = before_after(rx, ry)
    if r_pre.size < 3:
        return []
    r_base, r_late = float(np.median(r_pre)), float(np.median(r_post))
    if stats.mann_whitney_z(r_post, r_pre) < float(cfg["min_z"]):
        return []
    ev: dict[str, Any] = {
        **exc.evidence("length_peak", "length_baseline"),
        "length_signal": lname,
        "growth": exc.extreme / exc.baseline,
        "reward_signal": rname,
        "reward_baseline": r_base,
        "reward_late": r_late,
    }
    acc = accuracy_signal(ctx)
    acc_flat = None
    if acc is not None and acc[2].size >= 6:
        _, ax, ay = acc
        a_pre, a_post = before_after(ax, ay)
        a_base = (
            float(np.median(a_pre))
            if a_pre.size
            else float(np.median(ay[: ctx.warmup_points(ay.size)]))
        )
        a_late = float(np.median(a_post))
        # "more accurate" needs a gain beyond max_accuracy_gain that is also more than noise
        acc_up = (
            a_late - a_base > float(cfg["max_accuracy_gain"])
            and stats.mann_whitney_z(a_post, a_pre) >= 2.5
        )
        acc_flat = not acc_up
        ev.update(accuracy_baseline=a_base, accuracy_late=a_late)
        if not acc_flat:
            return []  # longer and more accurate: reasoning grew, not a hack
    explained = None
    corr_late = None
    ids: list[int] = []
    if ctx.has_generations:
        s = ctx.train_samples()
        # early: the stretch just before the length took off; late: the last quarter
        early_end = exc.onset_step - 1
        late_start = int(lx[-max(3, lx.size // 4)])
        early_start = int(
            lx[max(0, int(np.searchsorted(lx, exc.onset_step)) - max(5, lx.size // 10))]
        )
        b = _bucket_explained(ctx, early_start, early_end, late_start, int(cfg["buckets"]))
        if b is not None:
            explained = b["explained_by_length"]
            ev.update(b)
        r = pl.col(C.TOTAL_REWARD).cast(pl.Float64, strict=False)
        corr = (
            s.filter(r.is_finite() & (pl.col(C.STEP) >= late_start))
            .group_by(C.STEP)
            .agg(pl.corr(r, pl.col(N_TOKENS)).alias("c"))
            .drop_nulls()
        )
        cvals = corr["c"].to_numpy()
        cvals = cvals[np.isfinite(cvals)]
        if cvals.size:
            corr_late = float(np.median(cvals))
            ev["within_step_corr_late"] = corr_late
        ids = ctx.pick_samples(
            onset_period(ctx, s, exc).sort(C.TOTAL_REWARD, descending=True).head(50),
            order_by=N_TOKENS,
        )
    elif ctx.has(C.GEN_REWARD_LENGTH_CORR):
        _, cv = ctx.series(C.GEN_REWARD_LENGTH_CORR)
        corr_late = float(np.median(cv[-max(3, cv.size // 4) :]))
        ev["within_step_corr_late"] = corr_late
    by_length = (explained is not None and explained >= float(cfg["explained_threshold"])) or (
        corr_late is not None and corr_late >= float(cfg["correlation_threshold"])
    )
    if acc_flat is None and not ctx.has_generations:
        # scalar-only: length and reward grew together; nothing tells a hack from longer reasoning
        step_corr = stats.pearson(*stats.align(lx, ly, rx, ry)[1:])
        if step_corr < 0.8:
            return []
        ev["step_level_corr"] = step_corr
        return [
            alert(
                "length_hacking",
                Severity.INFO,
                exc.onset_step,
                f"completion length grew {ev['growth']:.1f}× from step {exc.onset_step} ("
                + (f"held from step {exc.detect_step}; " if exc.detect_step != exc.onset_step else "")
                + f"longest {exc.extreme:.0f} by step {exc.extreme_step}) in step with the reward (corr "
                f"{step_corr:.2f}); no accuracy or completions to tell a length hack from longer reasoning",
                sample_ids=[],
                **ev,
            )
        ]
    # longer, more rewarded, not more accurate: the textbook pattern. Without ground truth, the
    # reward must be visibly explained by length (buckets / within-step correlation).
    if not (acc_flat is True or by_length):
        return []
    crit = acc_flat is True and by_length
    return [
        alert(
            "length_hacking",
            Severity.CRITICAL if crit else Severity.WARNING,
            exc.onset_step,
            f"completion length grew {ev['growth']:.1f}× from step {exc.onset_step} ("
            + (f"held from step {exc.detect_step}; " if exc.detect_step != exc.onset_step else "")
            + f"longest {exc.extreme:.0f} by step {exc.extreme_step}) while the reward rose "
            f"({r_base:.3g} → {r_late:.3g})"
            + (" and accuracy did not" if acc_flat else "")
            + (f"; length explains {explained:.0%} of the gain" if explained is not None else "")
            + (
                f"; within-step reward–length correlation {corr_late:.2f}"
                if corr_late is not None
                else ""
            ),
            sample_ids=ids,
            **ev,
        )
    ]


