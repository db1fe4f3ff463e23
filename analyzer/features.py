"""The completion-feature frame: one row per completion with the per-completion values every
stage derives from the completions — split, sample id, GRPO group key, total reward, lengths in
characters and whitespace words, the extracted answer's exact match, format compliance — and the
rules behind them (exact match, format, whitespace words, repeated n-grams).

``build_features`` computes it once per analysis, right after ingest; the pipeline hands it to
``analyzer.metrics.compute_metrics`` (the ``gen_*`` columns aggregate it per step) and to the
detectors (``analyzer.detectors.text.sample_features`` reads its exact match and word counts), so
the numbers of an alert and of the metrics table come from the same values, computed once.
It sits below metrics, detectors and drift and imports only ``analyzer.columns``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from analyzer import columns as C

if TYPE_CHECKING:
    import polars as pl

    from analyzer.model import RunData

DEFAULT_TAGS: tuple[str, str] = ("reasoning", "answer")
NGRAM_N = 4

# A whole-string number: optional sign, digits with an optional fraction, optional exponent.
_NUMBER_RE = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
# "1,000" / "12,345,678.5": thousands separators, removed before comparing as numbers.
_THOUSANDS_RE = r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$"

# The feature columns (besides step, split, sample_id, model_output and the reward/<name> columns,
# cast to Float64). Internal names: no stage writes them into an output.
REWARD = "__reward"  # total_reward, or the sum of the reward/<name> columns when it is absent
LEN_CHARS = "__len_chars"  # characters of the completion
TOKENS = "__len_tokens"  # whitespace-separated words (UInt32), null for a null completion
CORRECT = "__correct"  # exact match 1.0 / 0.0, null without ground truth (gen_accuracy's rule)
FORMAT_OK = "__format_ok"  # 1.0 / 0.0 both tags well-ordered; null when the run never writes the tags
GROUP_KEY = "__group_key"  # group_id (analyzer.model.completion_keys): with step, the GRPO group
_R, _LEN, _TOK, _ACC, _FMT, _GKEY = REWARD, LEN_CHARS, TOKENS, CORRECT, FORMAT_OK, GROUP_KEY

# Whitespace (regex ``\s``) other than the space itself, for repeated_ngram_rates' word split.
_OTHER_SPACE = "[\t\n\x0b\x0c\r\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
# whitespace_token_counts: texts per numpy slice (≈ 10 MB of text at typical completion lengths)
_TOKEN_SLICE = 1 << 15


def normalise_answer(expr: pl.Expr) -> pl.Expr:
    """Strip, case-fold and drop trailing full stops: ``" Paris. "`` → ``"paris"``."""
    import polars as pl

    return expr.cast(pl.Utf8).str.strip_chars().str.to_lowercase().str.strip_chars_end(".").str.strip_chars()


def answer_as_number(normalised: pl.Expr) -> pl.Expr:
    """The normalised answer as a float when the whole string is a number, else null.

    ``"1,000"``, ``"1000"``, ``"1000.0"``, ``"$1000"`` and ``"1e3"`` all become 1000.0; ``"nan"``
    and ``"inf"`` stay text (they are not answers anyone means as numbers).
    """
    import polars as pl

    s = normalised.str.strip_chars_start("$").str.strip_chars()
    s = pl.when(s.str.contains(_THOUSANDS_RE)).then(s.str.replace_all(",", "", literal=True)).otherwise(s)
    return pl.when(s.str.contains(_NUMBER_RE)).then(s.cast(pl.Float64, strict=False)).otherwise(None)


def exact_match(answer: pl.Expr, truth: pl.Expr) -> pl.Expr:
    """1.0 / 0.0 per completion, null where there is no ground truth; a missing answer is wrong.

    Numbers compare as numbers (relative tolerance 1e-9), everything else as normalised text.
    One expression for ad-hoc use; ``compute_metrics`` evaluates the same rule in stages
    (``_exact_match_from``) so each normalisation runs once instead of once per use.
    """
    a = normalise_answer(answer)
    t = normalise_answer(truth)
    return _exact_match_from(a, t, answer_as_number(a), answer_as_number(t))


def with_exact_match(frame: pl.LazyFrame, answer: pl.Expr, truth: pl.Expr, name: str) -> pl.LazyFrame:
    """``frame`` plus a column ``name`` = ``exact_match(answer, truth)``, computed in stages
    (normalised text, then its numeric reading, then the comparison): the single expression
    re-evaluates each stage at every use, 6× the work — 1.6 CPU-seconds on a million rows."""
    import polars as pl

    a, t, an, tn = (pl.col(f"__em_{k}") for k in ("a", "t", "an", "tn"))
    return (
        frame.with_columns(normalise_answer(answer).alias("__em_a"), normalise_answer(truth).alias("__em_t"))
        .with_columns(answer_as_number(a).alias("__em_an"), answer_as_number(t).alias("__em_tn"))
        .with_columns(_exact_match_from(a, t, an, tn).alias(name))
        .drop("__em_a", "__em_t", "__em_an", "__em_tn")
    )


def _exact_match_from(a: pl.Expr, t: pl.Expr, an: pl.Expr, tn: pl.Expr) -> pl.Expr:
    """``exact_match`` from the normalised answer/truth and their numeric readings."""
    import polars as pl

    tol = pl.max_horizontal(pl.lit(1.0), tn.abs()) * 1e-9
    # the numeric comparison is null unless both sides are numbers: then the text comparison decides
    return (
        pl.when(t.is_null() | (t == ""))
        .then(None)
        .when(a.is_null())
        .then(0.0)
        .otherwise(pl.coalesce((an - tn).abs() <= tol, a == t).cast(pl.Float64))
    )


def format_ok(output: pl.Expr, tags: Sequence[str] = DEFAULT_TAGS) -> pl.Expr:
    """1.0 when both tag pairs are present and the first closes before the second opens."""
    import polars as pl

    first, second = (re.escape(t) for t in tags)
    pattern = f"(?s)<{first}>.*?</{first}>.*?<{second}>.*?</{second}>"
    return output.cast(pl.Utf8).str.contains(pattern).cast(pl.Float64)


def repeated_ngram_rates(texts: pl.Series, n: int = NGRAM_N) -> pl.Series:
    """Per text: share of its word n-grams that repeat an earlier one, ``1 - unique / total``.

    Words are whitespace-separated; null when a text has fewer than ``n`` words. Vectorised: the
    words are exploded into one long column, each n-gram is the hash of ``n`` consecutive word
    hashes (a 64-bit hash: collisions are negligible at these counts), and unique n-grams are
    counted per text with one group_by — an order of magnitude faster than per-list evaluation.
    """
    import polars as pl

    rows = pl.DataFrame({"__t": texts.cast(pl.Utf8)}).lazy().with_row_index("__r")
    # Words: every whitespace character becomes a space, the text is split on spaces and the
    # empty pieces dropped (a regex collapsing whitespace runs pays per run: 3× slower).
    words = (
        rows.select("__r", pl.col("__t").str.replace_all(_OTHER_SPACE, " ").str.split(" ").alias("__w"))
        .explode("__w")
        .filter(pl.col("__w") != "")
        .with_columns(pl.col("__w").hash().alias("__h"))
    )
    same_text = pl.col("__r").shift(-(n - 1)) == pl.col("__r")
    gram = pl.when(same_text & pl.col("__w").shift(-(n - 1)).is_not_null()).then(
        pl.struct([pl.col("__h").shift(-k).alias(f"__h{k}") for k in range(n)]).hash()
    )
    per_text = (
        words.with_columns(gram.alias("__g"))
        .group_by("__r")
        .agg(pl.col("__g").drop_nulls().n_unique().alias("u"), pl.col("__g").drop_nulls().len().alias("c"))
    )
    counts = (
        rows.select("__r")
        .join(per_text, on="__r", how="left", maintain_order="left")  # texts without words: null
        .select(pl.when(pl.col("c") > 0).then(1.0 - pl.col("u") / pl.col("c")).alias("rate"))
        .collect()
    )
    return counts.get_column("rate").rename(texts.name)


def whitespace_token_counts(texts: pl.Series) -> pl.Series:
    """Per text: its number of whitespace-separated words — exactly what
    ``str.count_matches(r"\\S+")`` counts (Unicode whitespace included) — UInt32; null for null.

    A regex walks every word (~20 ns each: 1.5 CPU-seconds for a million completions); this counts
    word starts with numpy over the texts' UTF-8 bytes instead, in slices to bound memory.
    """
    import numpy as np
    import polars as pl

    s = texts.cast(pl.Utf8)
    out = np.zeros(len(s), dtype=np.uint32)

    def count(off: int) -> None:
        arr = s.slice(off, _TOKEN_SLICE).to_arrow(compat_level=pl.CompatLevel.oldest())  # large_string
        _, obuf, dbuf = arr.buffers()
        offs = np.frombuffer(obuf, dtype=np.int64, count=len(arr) + 1, offset=arr.offset * 8)
        size = int(offs[-1] - offs[0])
        if dbuf is None or size == 0:
            return
        data = np.frombuffer(dbuf, dtype=np.uint8, count=size, offset=int(offs[0]))
        offs = offs - offs[0]
        ws = _whitespace_bytes(data)
        start = ~ws  # a word starts at a non-space byte after a space or at its text's first byte
        start[1:] &= ws[:-1]
        firsts = offs[:-1][offs[:-1] < size]
        start[firsts] = ~ws[firsts]
        out[off : off + len(arr)] = np.diff(np.searchsorted(np.flatnonzero(start), offs))

    slices = range(0, len(s), _TOKEN_SLICE)
    if len(slices) > 1:
        from concurrent.futures import ThreadPoolExecutor

        # numpy releases the GIL in these loops: slices run on every core Polars uses
        with ThreadPoolExecutor(min(len(slices), pl.thread_pool_size())) as pool:
            list(pool.map(count, slices))
    else:
        for off in slices:
            count(off)
    counts = pl.Series(texts.name, out)
    if s.null_count():
        counts = pl.select(pl.when(s.is_null()).then(None).otherwise(counts)).to_series().rename(texts.name)
    return counts


def _whitespace_bytes(data: Any) -> Any:
    """Mask of the UTF-8 bytes that belong to a whitespace character (regex ``\\s``: ASCII
    ``\\t\\n\\v\\f\\r`` and space, and U+0085, U+00A0, U+1680, U+2000–U+200A, U+2028, U+2029,
    U+202F, U+205F, U+3000). Bytes of other multi-byte characters are never ASCII whitespace."""
    import numpy as np

    ws = (data == 32) | (np.subtract(data, 9, dtype=np.uint8) <= 4)
    # lead bytes of the non-ASCII spaces: C2 (2 bytes), E1/E2/E3 (3 bytes); rare, checked exactly
    lead = np.flatnonzero((data == 0xC2) | (np.subtract(data, 0xE1, dtype=np.uint8) <= 2))
    if lead.size:
        last = data.size - 1  # valid UTF-8 keeps a character's bytes inside its text: no overrun
        b0, b1, b2 = data[lead], data[np.minimum(lead + 1, last)], data[np.minimum(lead + 2, last)]
        two = (b0 == 0xC2) & ((b1 == 0x85) | (b1 == 0xA0))
        three = (
            ((b0 == 0xE1) & (b1 == 0x9A) & (b2 == 0x80))
            | ((b0 == 0xE2) & (b1 == 0x80) & ((b2 <= 0x8A) | (b2 == 0xA8) | (b2 == 0xA9) | (b2 == 0xAF)))
            | ((b0 == 0xE2) & (b1 == 0x81) & (b2 == 0x9F))
            | ((b0 == 0xE3) & (b1 == 0x80) & (b2 == 0x80))
        )
        for width, hit in ((2, lead[two]), (3, lead[three])):
            for k in range(width):
                ws[hit + k] = True
    return ws


def completion_features(
    gens: pl.DataFrame, *, tags: Sequence[str] = DEFAULT_TAGS, all_rows: bool = True
) -> pl.DataFrame:
    """The feature columns of ``gens``; tolerant of missing optional columns. Row for row with
    ``gens``, or without the rows that have no step when not ``all_rows``.

    One lazy pass over the completions (the accuracy in stages: ``with_exact_match``); the word
    counts with numpy (``whitespace_token_counts``).
    """
    import polars as pl

    cols = set(gens.columns)

    def col_or_null(name: str, dtype: Any) -> pl.Expr:
        return pl.col(name).cast(dtype) if name in cols else pl.lit(None, dtype=dtype)

    output = col_or_null(C.OUTPUT, pl.Utf8)
    answer = col_or_null(C.ANSWER, pl.Utf8)
    # Inputs without an extracted answer (TRL completion files, verl dumps) still get an accuracy
    # when their completions use the answer tag.
    if C.ANSWER not in cols or gens[C.ANSWER].null_count() == gens.height:
        answer = output.str.extract(f"(?s)<{re.escape(tags[1])}>(.*?)</{re.escape(tags[1])}>", 1)

    # A run that never writes the tags has no format to comply with: null, not 0 (decided over
    # every row). The first completions usually settle it: scanning a gigabyte of text for the
    # tags costs ~0.25 s when the first thousand rows already have them.
    def has_tag(frame: pl.DataFrame) -> bool:
        found = output.str.contains(f"<{tags[0]}>", literal=True) | output.str.contains(f"<{tags[1]}>", literal=True)
        return bool(frame.select(found.any()).item())

    tagged = C.OUTPUT in cols and (has_tag(gens.head(1024)) or has_tag(gens))
    reward = col_or_null(C.TOTAL_REWARD, pl.Float64)
    if C.TOTAL_REWARD not in cols:
        reward_cols = [c for c in gens.columns if c.startswith(C.REWARD_PREFIX)]
        if reward_cols:
            reward = pl.sum_horizontal([pl.col(c).cast(pl.Float64) for c in reward_cols])
    lazy_rows = (
        gens.lazy()
        .select(
            pl.col(C.STEP).cast(pl.Int64),
            pl.col(C.SPLIT),  # split, sample id and group are complete: analyzer.model.completion_keys
            pl.col(C.SAMPLE_ID),
            output.alias(C.OUTPUT),
            reward.alias(_R),
            output.str.len_chars().alias(_LEN),
            answer.alias("__answer"),
            col_or_null(C.GROUND_TRUTH, pl.Utf8).alias("__truth"),
            (format_ok(output, tags) if tagged else pl.lit(None, dtype=pl.Float64)).alias(_FMT),
            pl.col(C.GROUP_ID).alias(_GKEY),  # the GRPO group, with step
            *[pl.col(c).cast(pl.Float64) for c in gens.columns if c.startswith(C.REWARD_PREFIX)],
        )
        .filter(pl.lit(True) if all_rows else pl.col(C.STEP).is_not_null())
    )
    rows = (
        with_exact_match(lazy_rows, pl.col("__answer"), pl.col("__truth"), _ACC)
        .drop("__answer", "__truth")
        .collect()
    )
    tokens = whitespace_token_counts(rows.get_column(C.OUTPUT)).alias(_TOK)
    return rows.insert_column(rows.get_column_index(_LEN) + 1, tokens)


@dataclass(frozen=True, slots=True)
class CompletionFeatures:
    """``frame``: ``completion_features`` of a run's completions, built with ``tags``, row for
    row with ``RunData.generations``."""

    tags: tuple[str, ...]
    frame: pl.DataFrame

    def matches(self, gens: pl.DataFrame, tags: Sequence[str]) -> bool:
        """Whether the frame was built from ``gens`` (same height) with these tags."""
        return self.tags == tuple(tags) and self.frame.height == gens.height


def build_features(run: RunData, *, tags: Sequence[str] = DEFAULT_TAGS) -> CompletionFeatures | None:
    """The run's completion-feature frame, or None when it has no completions with a step."""
    gens = run.generations
    if gens is None or gens.height == 0 or C.STEP not in gens.columns:
        return None
    return CompletionFeatures(tuple(tags), completion_features(gens, tags=tags))
