"""Loss of exploration: entropy_collapse, reward_std_collapse and mode_collapse (text level)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

from analyzer import columns as C
from analyzer.detectors import stats
from analyzer.detectors._common import (
    Excursion,
    excursion_alert,
    find_excursion,
    find_rise,
    per_step,
)
from analyzer.detectors.base import DetectorContext, Skip, register
from analyzer.detectors.headline import onset_period, pct, when
from analyzer.detectors.text import CORRECT, GROUP, NORM_TEXT, normalised_text
from analyzer.model import Alert

if TYPE_CHECKING:
    import polars as pl


# a zero-spread share read from reward_std == 0 (a 0/1 per step) must be above the threshold, and
# above its level before the onset, with at most this chance of coming from a share that was not
# (stats.share_above_p, stats.share_rose_p)
CHANCE_P = 0.05


def _beyond_chance(x: np.ndarray, y: np.ndarray, exc: Excursion | None, threshold: float) -> Excursion | None:
    """``exc`` of a 0/1 series if the steps from its onset on hold more 1s than a share at the
    threshold would give by chance, and more than the steps before it (when there are any). A
    rolling mean of 0s and 1s wanders far: a steady 44 % share read as a collapse on 9 of 20
    generated 48-step runs (a run of five 1s is a rolling mean of 1.0)."""
    if exc is None:
        return None
    before, after = y[x < exc.onset_step], y[x >= exc.onset_step]
    hits = int(after.sum())
    if stats.share_above_p(hits, after.size, threshold) > CHANCE_P:
        return None
    if before.size and stats.share_rose_p(hits, after.size, int(before.sum()), before.size) > CHANCE_P:
        return None
    return exc

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
    if source.startswith("reward_std == 0"):
        grown, extreme = (_beyond_chance(x, y, e, float(cfg["threshold"])) for e in (grown, extreme))
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


# text.shingles' defaults: the near-duplicate unit is the set of word 3-grams of the first 120 words
_SHINGLE_N = 3
_SHINGLE_WORDS = 120
_WORD = re.compile(r"\w+")
_KEY_LIMIT = 2**62  # 3-gram keys built from three word ids stay below it


def _dense_ids(values: pl.Series) -> np.ndarray:
    """An int64 id per value, equal exactly where the values are equal (a fresh categorical
    dictionary: faster than ranking strings and freed with it)."""
    import polars as pl

    categories = getattr(pl, "Categories", None)
    if categories is None:  # Polars before 1.32: no local dictionaries
        return values.rank("dense").to_numpy().astype(np.int64)
    return (
        values.cast(pl.Categorical(categories.random())).to_physical().to_numpy().astype(np.int64)
    )


def shingle_words(texts: pl.Series) -> pl.Series:
    """Per text, the words ``text.shingles`` reads: regex ``\\w+`` over its first
    ``_SHINGLE_WORDS * 12`` characters, lower-cased, at most ``_SHINGLE_WORDS`` of them.

    Polars' (Rust) ``\\w`` and Python's agree on ASCII only (beyond it they differ on marks and
    some numerals), so texts with a non-ASCII character take Python's ``re`` — the same words
    ``shingles`` finds either way."""
    import polars as pl

    texts = texts.cast(pl.Utf8).fill_null("")
    head = _SHINGLE_WORDS * 12
    words = (
        texts.str.slice(0, head)
        .str.to_lowercase()
        .str.extract_all(r"\w+")
        .list.head(_SHINGLE_WORDS)
    )
    wide = texts.str.len_bytes() != texts.str.len_chars()
    if wide.any():
        found: list[list[str] | None] = [None] * len(texts)
        for k in wide.arg_true().to_list():
            found[k] = _WORD.findall(texts[k][:head].lower())[:_SHINGLE_WORDS]
        python = pl.Series(found, dtype=pl.List(pl.Utf8))
        words = pl.select(pl.when(wide).then(python).otherwise(words)).to_series()
    return words.rename(texts.name)


def _dense_rank(values: np.ndarray) -> np.ndarray:
    """0, 1, 2 … by value, equal for equal values (a value sort and a binary search: numpy's
    ``unique(return_inverse=True)`` is many times slower on millions of integers)."""
    ordered = np.sort(values)
    distinct = (
        ordered[np.concatenate([[True], ordered[1:] != ordered[:-1]])] if values.size else ordered
    )
    return np.searchsorted(distinct, values).astype(np.int64)


def _shingle_keys(words: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(text index, shingle key) of every word 3-gram of every text, equal keys exactly for equal
    3-grams; a text of fewer than 3 words has one shingle, its words (as ``text.shingles``), keyed
    negative so that it never equals a 3-gram."""
    lens = words.list.len().to_numpy().astype(np.int64)
    flat = words.explode().drop_nulls()  # an empty list explodes to one null
    w = _dense_ids(flat) + 1 if flat.len() else np.zeros(0, dtype=np.int64)  # 0: no word
    base = int(w.max(initial=0)) + 1
    starts = np.cumsum(lens) - lens
    owner = np.repeat(np.arange(lens.size), lens)
    tail = _SHINGLE_N - 1  # a 3-gram starts at each word its text has 2 more words after
    k = np.flatnonzero(owner[: max(owner.size - tail, 0)] == owner[tail:])
    pair = w[:-1] * base + w[1:]  # at every word (contiguous slices: no gathers)
    if base**3 >= _KEY_LIMIT:  # a huge vocabulary: number the word pairs first (int64 keys)
        pair = _dense_rank(pair) + 1
    grams = (pair[:-1] * base + w[2:])[k] if k.size else k
    short = np.flatnonzero(lens < _SHINGLE_N)
    padded = np.concatenate([w, [0, 0]])
    first = np.where(lens[short] >= 1, padded[starts[short]], 0)
    second = np.where(lens[short] >= 2, padded[starts[short] + 1], 0)
    return np.concatenate([owner[k], short]), np.concatenate([grams, -(1 + first * base + second)])


def near_duplicate_pairs(
    texts: pl.Series, groups: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair ``(i, j)``, ``i < j``, of rows of one group (``groups``: a label per row, the rows
    of a group contiguous) and whether the pair is a near-duplicate: the same text, or shingle
    sets (``text.shingles``) with Jaccard ≥ ``threshold``.

    Exactly ``text.jaccard(text.shingles(a), text.shingles(b))``, vectorised: the 3-grams are
    numbered, sorted so that the texts of a group sharing one are adjacent, and the shared counts
    of all pairs come from one sparse product (incidence × its transpose, block-diagonal by group).
    """
    from scipy import sparse

    n = len(texts)
    groups = np.asarray(groups)
    starts = (
        np.flatnonzero(np.concatenate([[True], groups[1:] != groups[:-1]]))
        if n
        else np.zeros(0, int)
    )
    sizes = np.diff(np.concatenate([starts, [n]]))
    gid = np.repeat(np.arange(starts.size), sizes)
    left, right = [], []
    for m in np.unique(sizes[sizes >= 2]):
        a, b = np.triu_indices(int(m), 1)
        first = starts[sizes == m][:, None]
        left.append((first + a).ravel())
        right.append((first + b).ravel())
    if not left:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=bool)
    i, j = np.concatenate(left), np.concatenate(right)
    order = np.lexsort((j, i))
    i, j = i[order], j[order]

    owner, key = _shingle_keys(shingle_words(texts))
    # (shingle, text) as one integer, sorted by value (several times faster than an argsort): the
    # texts sharing a shingle become adjacent, in row order, so those of one group form a run
    key = key - int(key.min(initial=0))
    if (int(key.max(initial=0)) + 1) * n >= _KEY_LIMIT:
        key = _dense_rank(key)
    both = np.sort(key * n + owner)
    if both.size:
        both = both[np.concatenate([[True], both[1:] != both[:-1]])]  # a text's repeats: once
    owner, key = both % n, both // n
    counts = np.bincount(owner, minlength=n)  # |shingles| per text
    same_key = np.concatenate([[False], key[1:] == key[:-1]])
    run = np.cumsum(~(same_key & np.concatenate([[False], gid[owner[1:]] == gid[owner[:-1]]]))) - 1
    shared = np.bincount(run)[run] >= 2
    runs = run[shared]  # non-decreasing: numbered 0, 1, 2 … as they come
    cols = np.cumsum(np.concatenate([[True], runs[1:] != runs[:-1]])) - 1 if runs.size else runs
    incidence = sparse.csr_matrix(
        (np.ones(cols.size, dtype=np.int32), (owner[shared], cols)),
        shape=(n, int(cols.max(initial=-1)) + 1),
    )
    common = (incidence @ incidence.T).tocsr()
    common.sort_indices()
    # the shared counts of the wanted pairs, looked up among the product's entries (row-major)
    found = np.repeat(np.arange(n, dtype=np.int64), np.diff(common.indptr)) * n + common.indices
    wanted = i.astype(np.int64) * n + j
    inter = np.zeros(i.size, dtype=np.int64)
    if found.size:
        at = np.minimum(np.searchsorted(found, wanted), found.size - 1)
        hit = found[at] == wanted
        inter[hit] = common.data[at[hit]]
    jac = inter / (counts[i] + counts[j] - inter)
    same = _dense_ids(texts.fill_null(""))
    return i, j, (same[i] == same[j]) | (jac >= threshold)


def _near_dup_rates(
    ctx: DetectorContext, cfg: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, dict[int, list[int]]]:
    """Per step: share of completion pairs within a group (else within the step) that are near-identical.

    Returns (steps, rates, {step: sample ids of the most duplicated group}).

    A step's result depends on its own completions only, so each is kept for the next analysis of
    the run (``ctx.keep``) with a fingerprint of the step's rows; a step whose rows hash the same
    then is not compared again (a grown run compares its new steps' completions only).
    """
    import polars as pl

    from analyzer.incremental import growth_stable_grid

    s = ctx.train_samples().select(C.STEP, GROUP, C.SAMPLE_ID, C.OUTPUT).filter(pl.col(C.STEP).is_not_null())
    max_groups = int(cfg["max_groups_per_step"])
    max_size = int(cfg["max_group_size"])
    thr = float(cfg["near_duplicate_jaccard"])
    all_steps = s[C.STEP].unique().sort()
    if all_steps.len() > int(cfg["max_steps"]):
        # text comparison is the costly part: judge at most max_steps evenly spaced steps of very
        # long runs, chosen so that a grown run keeps the steps judged before (growth_stable_grid)
        keep = growth_stable_grid(all_steps, int(cfg["max_steps"]))
        s = s.filter(pl.col(C.STEP).is_in(keep.implode()))
    sizes = s.group_by(C.STEP, GROUP).agg(pl.len().alias("n"))
    use_groups = sizes.height > 0 and float(sizes["n"].median()) >= 2  # type: ignore[arg-type]
    key = [C.STEP, GROUP] if use_groups else [C.STEP]

    # what the previous analysis found, per step, for these settings
    settings = [max_groups, max_size, thr, use_groups, _SHINGLE_N, _SHINGLE_WORDS, pl.__version__]
    before = ctx.carried_over("mode_collapse")
    known: dict[str, list[Any]] = {}
    if isinstance(before, dict) and before.get("settings") == settings and isinstance(before.get("steps"), dict):
        known = {
            st: v
            for st, v in before["steps"].items()
            if isinstance(v, list) and len(v) == 3 and isinstance(v[0], int)
            and (v[1] is None or isinstance(v[1], float)) and isinstance(v[2], list)
            and all(isinstance(k, int) for k in v[2])
        }
    if ctx.carry is not None:  # kept for the next analysis: the fingerprint of each step's rows
        prints = (
            s.select(C.STEP, s.select(GROUP, C.SAMPLE_ID, C.OUTPUT).hash_rows(seed=11).alias("_h"))
            .group_by(C.STEP, maintain_order=True)
            .agg(pl.col("_h"))
            .select(C.STEP, pl.col("_h").hash(seed=13))
        )
        fingerprint = {str(st): int(h) for st, h in prints.iter_rows()}
    else:
        fingerprint = {str(st): 0 for st in s.get_column(C.STEP).unique().to_list()}
        known = {}
    reuse = {st for st, h in fingerprint.items() if st in known and known[st][0] == h}
    reused = pl.Series([int(st) for st in reuse], dtype=s.schema[C.STEP])
    todo = s.filter(~pl.col(C.STEP).is_in(reused.implode()))
    found = _step_rates(todo, key, max_groups=max_groups, max_size=max_size, thr=thr) if todo.height else {}
    results: dict[int, tuple[float | None, list[int]]] = {
        int(st): (known[st][1], known[st][2]) for st in reuse
    }
    for st in fingerprint:  # a step with no group of two completions is kept too: as None
        results.setdefault(int(st), found.get(int(st), (None, [])))
    ctx.keep(
        "mode_collapse",
        {"settings": settings, "steps": {st: [h, *results[int(st)]] for st, h in fingerprint.items()}},
    )
    judged = sorted(st for st, (rate, _) in results.items() if rate is not None)
    steps = np.array(judged, dtype=np.int64)
    vals = np.array([results[st][0] for st in judged], dtype=np.float64)
    worst = {st: results[st][1] for st in judged}
    return steps, vals, worst


def _step_rates(
    s: pl.DataFrame, key: list[str], *, max_groups: int, max_size: int, thr: float
) -> dict[int, tuple[float | None, list[int]]]:
    """Per step of ``s`` with a group of ≥ 2 completions: (share of near-identical pairs, averaged
    over its groups; sample ids of the most duplicated group's near-identical pairs)."""
    import polars as pl

    parts = (
        s.with_columns(pl.int_range(pl.len()).over(key).alias("_i"))
        .filter(pl.col("_i") < max_size)
        .filter(
            pl.col(key[-1]).rank("dense").over(C.STEP) <= max_groups if len(key) > 1 else pl.lit(True)
        )
        .with_columns(normalised_text(pl.col(C.OUTPUT)).alias(NORM_TEXT))
        .group_by(key, maintain_order=True)
        .agg(pl.col(C.SAMPLE_ID), pl.col(NORM_TEXT))
        .sort(C.STEP, maintain_order=True)
    )
    # the groups judged: ≥ 2 completions, at most max_groups per step (the first ones)
    parts = parts.filter(pl.col(NORM_TEXT).list.len() >= 2).filter(
        pl.int_range(pl.len()).over(C.STEP) < max_groups
    )
    if parts.height == 0:  # no group of two completions or more: nothing to compare
        return {}
    rows = parts.with_row_index("_g").explode(C.SAMPLE_ID, NORM_TEXT)
    group = rows["_g"].to_numpy()
    i, j, dup = near_duplicate_pairs(rows[NORM_TEXT], group, thr)
    n_groups = parts.height
    rate = np.bincount(group[i][dup], minlength=n_groups) / np.bincount(
        group[i], minlength=n_groups
    )
    ids = rows[C.SAMPLE_ID].to_numpy()
    group_step = parts[C.STEP].to_numpy()
    steps, first = np.unique(group_step, return_index=True)
    ends = np.append(first[1:], n_groups)
    # the pairs are sorted by their first row, and a group's rows are contiguous: each group's
    # pairs are one contiguous range of them
    pair_group = group[i]
    out: dict[int, tuple[float | None, list[int]]] = {}
    for step, lo, hi in zip(steps.tolist(), first, ends, strict=True):
        g = lo + int(np.argmax(rate[lo:hi]))  # the first of the most duplicated groups
        a, b = np.searchsorted(pair_group, [g, g + 1])
        hits = dup[a:b]
        ids_g = np.unique(np.concatenate([ids[i[a:b][hits]], ids[j[a:b][hits]]])).tolist()
        out[int(step)] = (float(np.mean(rate[lo:hi])), ids_g)
    return out


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
