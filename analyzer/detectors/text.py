"""Per-completion features the text-level detectors share (one Polars pass, cached per run).

Exact match, format and repeated-n-gram definitions are the ones ``analyzer.metrics`` uses for the
``gen_*`` columns, so an alert's numbers agree with the metrics table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from analyzer import columns as C

if TYPE_CHECKING:
    import polars as pl

    from analyzer.features import CompletionFeatures

# feature columns added to the generations frame
CORRECT = "_correct"  # 1.0 / 0.0 exact match, null without ground truth
FORMAT_OK = "_format_ok"
N_TOKENS = "_n_tokens"  # whitespace tokens
NGRAM_RATE = "_ngram_rate"
NORM_TEXT = "_norm_text"  # case-folded, whitespace-collapsed completion (see normalised_text)
GROUP = "_group"  # the GRPO group: group_id (analyzer.model.completion_keys), with step
HAS_ANSWER = "_has_answer"  # an answer could be read (the run's conventions, analyzer.features)
ANSWER = "_answer"  # that answer, in the ground truth's form


def sample_features(
    gens: pl.DataFrame,
    *,
    tags: Sequence[str] = ("reasoning", "answer"),
    features: CompletionFeatures | None = None,
    answer_pattern: str = "",
) -> pl.DataFrame:
    """``gens`` plus the feature columns above. Exact match, format, the answer's presence and word
    counts are the completion feature frame's (``analyzer.features``, the values behind
    ``gen_accuracy``, ``gen_format_ok``, ``gen_answer_coverage`` and ``gen_length_tokens_mean``,
    read with the run's own answer and format conventions): ``features``, the frame the pipeline
    built once, is used when it lines up with ``gens`` row for row, else it is computed here — the
    same definitions either way."""
    import polars as pl

    from analyzer import features as F

    def col(name: str, dtype: pl.DataType) -> pl.Expr:
        return (
            pl.col(name).cast(dtype, strict=False)
            if name in gens.columns
            else pl.lit(None, dtype=dtype)
        )

    out = gens.with_columns(
        col(C.STEP, pl.Int64()).alias(C.STEP),
        col(C.OUTPUT, pl.Utf8()).fill_null("").alias(C.OUTPUT),
    )
    if (
        features is not None
        and features.matches(gens, tags, answer_pattern)
        and bool((features.frame[C.SAMPLE_ID] == out[C.SAMPLE_ID]).all())
    ):
        shared = features.frame
    else:
        shared = F.completion_features(gens, tags=tags, answer_pattern=answer_pattern)
    return out.with_columns(
        shared[F.CORRECT].alias(CORRECT),
        shared[F.TOKENS].cast(pl.Float64).alias(N_TOKENS),
        shared[F.FORMAT_OK].alias(FORMAT_OK),
        shared[F.ANSWER].alias(ANSWER),
        pl.col(C.GROUP_ID).alias(GROUP),  # the GRPO group, with step (model.completion_keys)
        shared[F.HAS_ANSWER].alias(HAS_ANSWER),
    )


_WORD = re.compile(r"\w+")


def normalised_text(output: pl.Expr) -> pl.Expr:
    """Case-folded, whitespace-collapsed completion: the unit of "identical" in duplicate checks.
    Computed only where needed — on a million long completions it is not free."""
    return output.str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()


def with_ngram_rates(samples: pl.DataFrame, *, per_step: int = 32) -> pl.DataFrame:
    """``samples`` (at most ``per_step`` completions per step and split, lowest sample ids first)
    with the ``NGRAM_RATE`` column (``analyzer.metrics.repeated_ngram_rates``, the definition of
    ``gen_repeated_ngram_rate``): per completion, sampled to keep big runs fast."""
    import polars as pl

    from analyzer.features import repeated_ngram_rates

    sub = (
        samples.sort(C.SAMPLE_ID)
        .with_columns(pl.int_range(pl.len()).over(C.STEP, C.SPLIT).alias("_k"))
        .filter(pl.col("_k") < per_step)
        .drop("_k")
    )
    return sub.with_columns(repeated_ngram_rates(sub[C.OUTPUT]).alias(NGRAM_RATE))


def shingles(text: str, n: int = 3, max_words: int = 120) -> frozenset[tuple[str, ...]]:
    """Word n-gram set of a completion's first ``max_words`` words (the near-duplicate unit)."""
    words = _WORD.findall(text[: max_words * 12].lower())[:max_words]
    if len(words) < n:
        return frozenset([tuple(words)])
    return frozenset(zip(*(words[k:] for k in range(n)), strict=False))


def jaccard(a: frozenset[tuple[str, ...]], b: frozenset[tuple[str, ...]]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)
