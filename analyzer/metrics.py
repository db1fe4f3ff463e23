"""Per-step metrics rebuilt from the completions, joined with the scalars the trainer logged.

``compute_metrics`` is the one place that turns ``RunData.generations`` (one row per completion)
into ``gen_*`` columns (one row per step). Everything is a Polars expression over
``group_by(step, split)`` — no Python code runs per completion — so a million completions take
seconds, not minutes.

Column names come from ``analyzer.columns``; docs/metrics.md documents each one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from analyzer import columns as C
from analyzer import features as F
from analyzer.columns import split_prefix
from analyzer.features import (  # noqa: F401  (the rules live with the feature frame; importable here too)
    DEFAULT_TAGS,
    NGRAM_N,
    answer_as_number,
    exact_match,
    format_ok,
    normalise_answer,
    repeated_ngram_rates,
    whitespace_token_counts,
    with_exact_match,
)

if TYPE_CHECKING:
    import polars as pl

    from analyzer.model import RunData

# Repeated-n-gram rates are exact per completion, but computed on at most this many completions
# per (step, split) — the lowest sample_ids — because exploding every completion into word
# n-grams would cost gigabytes on a million-completion run.
NGRAM_SAMPLE_PER_STEP = 64

# the per-completion columns of the feature frame (analyzer.features) the aggregations read
_R, _LEN, _TOK, _ACC, _FMT, _GKEY = F.REWARD, F.LEN_CHARS, F.TOKENS, F.CORRECT, F.FORMAT_OK, F.GROUP_KEY
_NG = "__ngram_rate"


def compute_metrics(
    run: RunData,
    *,
    tags: Sequence[str] = DEFAULT_TAGS,
    ngram_sample: int = NGRAM_SAMPLE_PER_STEP,
    features: F.CompletionFeatures | None = None,
    answer_pattern: str = "",
) -> pl.DataFrame:
    """One row per step: the logged scalars (``run.steps``) full-outer-joined on ``step`` with the
    ``gen_*`` columns rebuilt from the completions (train split) and ``eval/gen_*``,
    ``probe/gen_*`` (other splits). Sorted by step. ``features``: the run's completion-feature
    frame (``analyzer.features.build_features``) when the caller built it; else built here, reading
    answers with ``answer_pattern`` (``general.answer_pattern``) when given."""
    import polars as pl

    gens = run.generations
    if gens is None or gens.height == 0 or C.STEP not in gens.columns:
        return joined_with_steps(run, None)
    if features is not None and features.matches(gens, tags, answer_pattern):
        rows = features.frame.filter(pl.col(C.STEP).is_not_null())
    else:
        rows = F.completion_features(gens, tags=tags, all_rows=False, answer_pattern=answer_pattern)
    rebuilt = generation_metrics(gens, tags=tags, ngram_sample=ngram_sample, rows=rows)
    return joined_with_steps(run, rebuilt)


def joined_with_steps(run: RunData, rebuilt: pl.DataFrame | None) -> pl.DataFrame:
    """``run.steps`` (the logged scalars; none: a ``step`` column alone) full-outer-joined on
    ``step`` with the ``gen_*`` columns ``rebuilt`` (``generation_metrics``), sorted by step."""
    import polars as pl

    from analyzer.ingest._common import empty_steps

    steps = run.steps
    if steps is None or C.STEP not in steps.columns:
        steps = empty_steps()
    steps = steps.with_columns(pl.col(C.STEP).cast(pl.Int64))
    if rebuilt is None:
        return steps.sort(C.STEP)
    return steps.join(rebuilt, on=C.STEP, how="full", coalesce=True).sort(C.STEP)


def generation_metrics(
    gens: pl.DataFrame,
    *,
    tags: Sequence[str] = DEFAULT_TAGS,
    ngram_sample: int = NGRAM_SAMPLE_PER_STEP,
    rows: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The ``gen_*`` columns alone: ``step`` + one prefixed block per split. ``rows``: the
    completion features of ``gens`` without its step-less rows, when the caller already has them
    (``analyzer.features.completion_features``)."""
    import polars as pl

    if rows is None:
        rows = F.completion_features(gens, tags=tags, all_rows=False)
    keys = [C.STEP, C.SPLIT]
    reward_cols = [c for c in gens.columns if c.startswith(C.REWARD_PREFIX)]

    finite = pl.col(_R).filter(pl.col(_R).is_finite())
    aggs: list[pl.Expr] = [
        pl.len().cast(pl.Int64).alias(C.GEN_COUNT),
        finite.mean().alias(C.GEN_REWARD_MEAN),
        finite.std().alias(C.GEN_REWARD_STD),
        finite.min().alias(C.GEN_REWARD_MIN),
        finite.max().alias(C.GEN_REWARD_MAX),
        finite.quantile(0.1, interpolation="linear").alias(C.GEN_REWARD_P10),
        finite.quantile(0.5, interpolation="linear").alias(C.GEN_REWARD_P50),
        finite.quantile(0.9, interpolation="linear").alias(C.GEN_REWARD_P90),
        (pl.col(_R).is_not_null() & ~pl.col(_R).is_finite()).mean().alias(C.GEN_REWARD_NONFINITE),
        pl.col(_LEN).mean().alias(C.GEN_LEN_CHARS),
        pl.col(_TOK).mean().alias(C.GEN_LEN_TOKENS),
        pl.col(_ACC).mean().alias(C.GEN_ACCURACY),
        pl.col(F.HAS_ANSWER).filter(pl.col(_ACC).is_not_null()).cast(pl.Float64).mean().alias(C.GEN_ANSWER_COVERAGE),
        pl.col(_FMT).mean().alias(C.GEN_FORMAT_OK),
        pl.corr(pl.when(pl.col(_R).is_finite()).then(pl.col(_R)), pl.col(_LEN).cast(pl.Float64))
        .fill_nan(None)
        .alias(C.GEN_REWARD_LENGTH_CORR),
    ]
    for col in reward_cols:
        name = col[len(C.REWARD_PREFIX) :]
        v = pl.col(col)  # Float64 already (completion_features)
        fv = v.filter(v.is_finite())
        base = f"gen_reward/{name}"
        aggs += [
            fv.mean().alias(f"{base}_mean"),
            fv.std().alias(f"{base}_std"),
            fv.min().alias(f"{base}_min"),
            fv.max().alias(f"{base}_max"),
            fv.quantile(0.5, interpolation="linear").alias(f"{base}_p50"),
        ]
    per_split = rows.group_by(keys).agg(aggs)
    per_split = per_split.join(_zero_spread(rows), on=keys, how="left")
    per_split = per_split.join(_ngram(rows, ngram_sample), on=keys, how="left")

    blocks: list[pl.DataFrame] = []
    for split in sorted(per_split[C.SPLIT].unique().to_list(), key=lambda s: (s != "train", s)):
        prefix = split_prefix(split)
        block = per_split.filter(pl.col(C.SPLIT) == split).drop(C.SPLIT)
        blocks.append(block.rename({c: f"{prefix}{c}" for c in block.columns if c != C.STEP}))
    out = blocks[0]
    for block in blocks[1:]:
        out = out.join(block, on=C.STEP, how="full", coalesce=True)
    return out.sort(C.STEP)


def _zero_spread(rows: pl.DataFrame) -> pl.DataFrame:
    """Per (step, split): share of GRPO groups (≥ 2 completions) whose total rewards are all equal,
    and the shares of those that are all correct / all wrong.

    All-correct / all-wrong use exact-match accuracy when every member has a ground truth, else the
    reward itself: a constant reward equal to the split's highest (lowest) reward seen in the run
    (neither when the split's rewards never vary).
    """
    import polars as pl

    keys = [C.STEP, C.SPLIT]
    finite_r = pl.when(pl.col(_R).is_finite()).then(pl.col(_R))
    groups = (
        rows.lazy()
        .filter(pl.col(_GKEY).is_not_null())
        .with_columns(
            finite_r.max().over(C.SPLIT).alias("__split_max"),
            finite_r.min().over(C.SPLIT).alias("__split_min"),
        )
        .group_by([*keys, _GKEY])
        .agg(
            pl.len().alias("n"),
            finite_r.min().alias("rmin"),
            finite_r.max().alias("rmax"),
            pl.col(_R).is_finite().sum().alias("n_finite"),
            pl.col(_ACC).min().alias("amin"),
            pl.col(_ACC).max().alias("amax"),
            pl.col(_ACC).is_not_null().sum().alias("n_acc"),
            pl.col("__split_max").first(),
            pl.col("__split_min").first(),
        )
        .filter(pl.col("n") >= 2)
        .with_columns(zero=(pl.col("n_finite") == pl.col("n")) & (pl.col("rmin") == pl.col("rmax")))
        .with_columns(
            all_correct=pl.col("zero")
            & pl.when(pl.col("n_acc") == pl.col("n"))
            .then(pl.col("amin") == 1.0)
            .otherwise(
                (pl.col("rmax") >= pl.col("__split_max")) & (pl.col("__split_max") > pl.col("__split_min"))
            ),
            all_wrong=pl.col("zero")
            & pl.when(pl.col("n_acc") == pl.col("n"))
            .then(pl.col("amax") == 0.0)
            .otherwise(
                (pl.col("rmin") <= pl.col("__split_min")) & (pl.col("__split_max") > pl.col("__split_min"))
            ),
        )
    )
    return (
        groups.group_by(keys)
        .agg(
            pl.col("zero").cast(pl.Float64).mean().alias(C.GEN_ZERO_SPREAD_GROUPS),
            pl.col("all_correct").cast(pl.Float64).mean().alias(C.GEN_ZERO_SPREAD_ALL_CORRECT),
            pl.col("all_wrong").cast(pl.Float64).mean().alias(C.GEN_ZERO_SPREAD_ALL_WRONG),
        )
        .collect()
    )


def _ngram(rows: pl.DataFrame, sample: int) -> pl.DataFrame:
    import polars as pl

    keys = [C.STEP, C.SPLIT]
    picked = rows.filter(pl.col(C.SAMPLE_ID).rank("ordinal").over(keys) <= sample).select(*keys, C.OUTPUT)
    return (
        picked.with_columns(repeated_ngram_rates(picked.get_column(C.OUTPUT)).alias(_NG))
        .group_by(keys)
        .agg(pl.col(_NG).mean().alias(C.GEN_REPEAT_NGRAM))
    )
