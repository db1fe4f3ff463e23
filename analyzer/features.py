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
    import numpy as np
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
FORMAT_OK = "__format_ok"  # 1.0 / 0.0 the run's format (see Conventions.format_rule); null without one
GROUP_KEY = "__group_key"  # group_id (analyzer.model.completion_keys): with step, the GRPO group
ANSWER = "__answer"  # the answer the accuracy compares (logged, or extracted by the run's conventions)
HAS_ANSWER = "__has_answer"  # Boolean: an answer could be read from the completion
_R, _LEN, _TOK, _ACC, _FMT, _GKEY = REWARD, LEN_CHARS, TOKENS, CORRECT, FORMAT_OK, GROUP_KEY
TRUTH_NORM = "__truth_norm"  # the ground truth normalised (normalise_answer): with_truth_readings
TRUTH_NUM = "__truth_num"  # and its numeric reading (answer_as_number)

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


def with_exact_match(
    frame: pl.LazyFrame, answer: pl.Expr, truth: pl.Expr, name: str, *, truth_readings: bool = False
) -> pl.LazyFrame:
    """``frame`` plus a column ``name`` = ``exact_match(answer, truth)``, computed in stages
    (normalised text, then its numeric reading, then the comparison): the single expression
    re-evaluates each stage at every use, 6× the work — 1.6 CPU-seconds on a million rows.
    ``truth_readings``: ``frame`` has the truth's readings already (``with_truth_readings``)."""
    import polars as pl

    a, an = pl.col("__em_a"), pl.col("__em_an")
    if truth_readings:
        t, tn = pl.col(TRUTH_NORM), pl.col(TRUTH_NUM)
        frame = frame.with_columns(normalise_answer(answer).alias("__em_a"))
        temp = ["__em_a", "__em_an"]
    else:
        t, tn = pl.col("__em_t"), pl.col("__em_tn")
        frame = frame.with_columns(
            normalise_answer(answer).alias("__em_a"), normalise_answer(truth).alias("__em_t")
        ).with_columns(answer_as_number(t).alias("__em_tn"))
        temp = ["__em_a", "__em_an", "__em_t", "__em_tn"]
    return (
        frame.with_columns(answer_as_number(a).alias("__em_an"))
        .with_columns(_exact_match_from(a, t, an, tn).alias(name))
        .drop(temp)
    )


def with_truth_readings(frame: pl.LazyFrame, truths: pl.Series, truth: str) -> pl.LazyFrame:
    """``frame`` plus ``TRUTH_NORM`` (``normalise_answer`` of its column ``truth``) and ``TRUTH_NUM``
    (that one's ``answer_as_number``), computed once per distinct value of ``truths`` (the values
    of that column) and joined back: a run has far fewer distinct ground truths than completions,
    and the numeric reading costs ~0.4 CPU-seconds per million rows."""
    import polars as pl

    readings = (
        pl.DataFrame({truth: truths.cast(pl.Utf8).unique()})
        .lazy()
        .with_columns(normalise_answer(pl.col(truth)).alias(TRUTH_NORM))
        .with_columns(answer_as_number(pl.col(TRUTH_NORM)).alias(TRUTH_NUM))
    )
    # a null truth has no readings (null, as normalise_answer gives it): the join leaves it so
    return frame.join(readings, on=truth, how="left", maintain_order="left")


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


# ---- the run's own answer and format conventions --------------------------------------------------

# Tags a run may use for its reasoning and for its answer (besides the configured general.tags).
REASONING_TAGS: tuple[str, ...] = (
    "think", "thinking", "reasoning", "reason", "thought", "thoughts", "analysis", "rationale", "scratchpad",
)
ANSWER_TAGS: tuple[str, ...] = ("answer", "final_answer", "final", "solution", "result", "output")
# Where an answer is read from, in priority order: the first that finds one in a completion wins.
ANSWER_CONVENTIONS: tuple[str, ...] = (
    "tag",  # the last innermost <answer>…</answer> (the run's answer tag)
    "boxed",  # the last \boxed{…}
    "hashes",  # the last "#### …" (GSM8K)
    "answer_line",  # the last "Answer: …" / "Final answer: …" (the rest of its line, or the next line)
    "answer_is",  # the last "the (final) answer is …"
    "after_reasoning",  # the first line after the last closing reasoning tag (R1 style: <think>…</think> B)
    "choice",  # the last line that starts with a choice letter: "B. pond", "(C)" (letter ground truths)
    "last_number",  # the last number of the completion (numeric ground truths)
)
LEARN_SAMPLE = 4096  # completions (and prompts) the conventions are learned from: the first and a spread
MIN_TAG_SHARE = 0.1  # a tag is the run's when this share of the sampled completions open and close it
MIN_MARKER_SHARE = 0.05  # an answer marker is the run's when this share of the sampled completions use it
MIN_PROMPT_SHARE = 0.5  # the prompts state the format when this share of them name a tag or marker

_MARKER_RE: dict[str, str] = {
    "boxed": r"\\boxed\{",
    "hashes": r"(?m)^[ \t]*####",
    "answer_line": r"(?i)\b(?:final )?answer\**[ \t]*[:：]",
    "answer_is": r"(?i)\bthe (?:final )?answer is\b",
}
_NUM_RE = r"-?\d+(?:,\d{3})*(?:\.\d+)?"


@dataclass(frozen=True, slots=True)
class Conventions:
    """How a run writes its completions, learned from them and their prompts (``learn_conventions``).

    ``answer_from``: where the answer of each completion is read from, in order — ``("logged",)``
    when the trainer logged its own extracted answer, ``("pattern",)`` for ``general.answer_pattern``,
    else names of ``ANSWER_CONVENTIONS``. ``source``: what the tags and markers were learned from
    (``"config"``, ``"prompts"`` or ``"completions"``)."""

    reasoning_tag: str | None
    answer_tag: str | None
    answer_from: tuple[str, ...]
    source: str = "config"
    pattern: str | None = None
    letter_truths: bool = False  # ground truths that are choice letters: answers reduced to one
    number_truths: bool = False  # numeric ground truths: answers with one number reduced to it

    @property
    def tags(self) -> tuple[str | None, str | None]:
        return (self.reasoning_tag, self.answer_tag)

    def describe(self) -> str:
        """One line for reports: ``"tags <think>; answers from 'Answer:' lines, text after </think>"``."""
        tags = [f"<{t}>" for t in self.tags if t]
        words = {
            "logged": "the logged model_answer",
            "pattern": f"general.answer_pattern {self.pattern!r}",
            "tag": f"<{self.answer_tag}>…</{self.answer_tag}>",
            "boxed": "\\boxed{…}",
            "hashes": "'#### …'",
            "answer_line": "'Answer: …' lines",
            "answer_is": "'the answer is …'",
            "after_reasoning": f"the text after </{self.reasoning_tag}>",
            "choice": "a line starting with a choice letter",
            "last_number": "the last number",
        }
        found = ", ".join(words[a] for a in self.answer_from) or "nowhere (no convention found)"
        return f"tags {' '.join(tags) or 'none'} (from the {self.source}); answers from {found}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "reasoning_tag": self.reasoning_tag,
            "answer_tag": self.answer_tag,
            "answer_from": list(self.answer_from),
            "source": self.source,
            "pattern": self.pattern,
            "described": self.describe(),
        }


def learning_sample(frame: pl.DataFrame, size: int = LEARN_SAMPLE) -> pl.DataFrame:
    """The first ``size // 4`` rows and ``3 * size // 4`` rows spread evenly over the rest."""
    import polars as pl

    if frame.height <= size:
        return frame
    head = size // 4
    rest = size - head
    idx = pl.Series(
        [*range(head), *(head + (frame.height - head - 1) * k // max(rest - 1, 1) for k in range(rest))]
    ).unique(maintain_order=True)
    return frame[idx]


def _mean(flags: pl.Series) -> float:
    """Share of True in a Boolean series (nulls count as False); 0 when empty."""
    return int(flags.fill_null(False).sum()) / flags.len() if flags.len() else 0.0


def _share(texts: pl.Series, pattern: str, *, literal: bool = False) -> float:
    return _mean(texts.str.contains(pattern, literal=literal))


def _pair_share(texts: pl.Series, tag: str) -> float:
    return _mean(texts.str.contains(f"<{tag}>", literal=True) & texts.str.contains(f"</{tag}>", literal=True))


def learn_conventions(
    gens: pl.DataFrame, *, tags: Sequence[str] = DEFAULT_TAGS, answer_pattern: str = ""
) -> Conventions:
    """The run's tags and answer conventions (documented in docs/metrics.md, "Answers and format").

    Tags, per slot (reasoning, answer): when the prompts state a format (≥ ``MIN_PROMPT_SHARE`` of
    them name a known tag such as ``<think>`` or a marker such as ``Answer:``), the prompts decide;
    else the configured tag when the completions use it at all (as before), else the known tag most
    completions of the sample open and close (≥ ``MIN_TAG_SHARE``). Answers: the trainer's own
    ``model_answer`` when it logged one (not one ingest filled from ``<answer>`` tags), else
    ``answer_pattern`` when configured, else the conventions the run uses, in priority order, with
    the last number / a choice letter only when the run states no explicit marker."""
    import polars as pl

    cols = set(gens.columns)
    configured = (str(tags[0]), str(tags[1]))
    if C.OUTPUT not in cols or gens.height == 0:
        return Conventions(None, None, (), "config", answer_pattern or None)
    sample = learning_sample(gens)
    outs = sample[C.OUTPUT].cast(pl.Utf8).drop_nulls()
    prompts = sample[C.QUESTION].cast(pl.Utf8).drop_nulls() if C.QUESTION in cols else pl.Series([], dtype=pl.Utf8)

    # the prompts: which tags and markers do they name?
    slots: list[tuple[str, ...]] = [
        (configured[0], *(t for t in REASONING_TAGS if t != configured[0])),
        (configured[1], *(t for t in ANSWER_TAGS if t != configured[1])),
    ]
    prompt_tags = [
        max(((t, _share(prompts, f"<{t}>", literal=True)) for t in cands), key=lambda kv: kv[1]) for cands in slots
    ]
    prompt_markers = {m: _share(prompts, rx) for m, rx in _MARKER_RE.items()}
    stated = any(v >= MIN_PROMPT_SHARE for _, v in prompt_tags) or any(
        v >= MIN_PROMPT_SHARE for v in prompt_markers.values()
    )
    chosen: list[str | None] = []
    if stated:
        source = "prompts"
        chosen = [t if v >= MIN_PROMPT_SHARE else None for t, v in prompt_tags]
        markers = [m for m, v in prompt_markers.items() if v >= MIN_PROMPT_SHARE]
    else:
        source = "completions"
        for k, cands in enumerate(slots):
            own = configured[k]
            if _share(outs, f"<{own}>", literal=True) > 0 or (
                C.OUTPUT in cols
                and bool(gens.select(pl.col(C.OUTPUT).cast(pl.Utf8).str.contains(f"<{own}>", literal=True).any()).item())
            ):
                chosen.append(own)
                continue
            best, share = max(((t, _pair_share(outs, t)) for t in cands[1:]), key=lambda kv: kv[1])
            chosen.append(best if share >= MIN_TAG_SHARE else None)
        markers = [m for m, rx in _MARKER_RE.items() if _share(outs, rx) >= MIN_MARKER_SHARE]
        if tuple(chosen) == configured:
            source = "config"
    reasoning, answer_tag = chosen
    truths = (
        sample[C.GROUND_TRUTH].cast(pl.Utf8).drop_nulls().str.strip_chars()
        if C.GROUND_TRUTH in cols
        else pl.Series([], dtype=pl.Utf8)
    )
    letters = _share(truths, r"^\(?[A-Za-z]\)?\.?$")
    numbers = _share(truths.str.replace_all(",", "", literal=True), r"^[+-]?\$?(\d+\.?\d*|\.\d+)$")
    kinds = {"letter_truths": letters > 0, "number_truths": numbers > 0}

    if answer_pattern:
        return Conventions(reasoning, answer_tag, ("pattern",), source, answer_pattern, **kinds)
    if C.ANSWER in cols and _answer_logged_by_trainer(sample):
        return Conventions(reasoning, answer_tag, ("logged",), source, None, **kinds)
    order: list[str] = ["tag"] if answer_tag else []
    order += [m for m in ANSWER_CONVENTIONS if m in markers]
    if reasoning and not answer_tag:
        order.append("after_reasoning")
    # choice letters are a safe last resort for letter ground truths; any number is not: only
    # when the run states no marker at all
    if letters >= 0.9:
        order.append("choice")
    elif not order and numbers >= 0.9:
        order.append("last_number")
    return Conventions(reasoning, answer_tag, tuple(order), source, None, **kinds)


def _answer_logged_by_trainer(sample: pl.DataFrame) -> bool:
    """Whether ``model_answer`` holds the trainer's own extracted answers — not only what ingest
    filled in from the first ``<answer>…</answer>`` of each completion (``ingest._common``)."""
    import polars as pl

    logged = sample[C.ANSWER].cast(pl.Utf8)
    if logged.null_count() == logged.len():
        return False
    filled = sample[C.OUTPUT].cast(pl.Utf8).str.extract(r"(?s)<answer>(.*?)</answer>", 1).str.strip_chars()
    differs = logged.is_not_null() & (filled.is_null() | (logged.str.strip_chars() != filled))
    return bool(differs.fill_null(False).any())


def _last(output: pl.Expr, pattern: str) -> pl.Expr:
    """The last match of ``pattern`` (``extract_all(…).list.last()``: a leading ``.*`` with a
    capture group runs the slow regex engine, ~6× slower on long completions)."""
    return output.str.extract_all(pattern).list.last()


def _convention(output: pl.Expr, name: str, conv: Conventions) -> pl.Expr:
    """The raw answer text one convention finds in each completion (null where it finds none)."""
    import polars as pl

    if name == "tag" and conv.answer_tag and not set("</") & set(conv.answer_tag):
        return _last_tag_pair(output, conv.answer_tag)
    if name == "tag" and conv.answer_tag:
        a = re.escape(conv.answer_tag)
        # the innermost of the last pair: "<answer>\n<answer>B</answer>\n</answer>" reads B
        return _last(output, f"(?s)<{a}>.*?</{a}>").str.replace(f"(?s)^.*<{a}>", "").str.strip_suffix(
            f"</{conv.answer_tag}>"
        )
    if name == "boxed":
        return _last(output, r"\\boxed\{(?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*\}").str.strip_prefix("\\boxed{").str.strip_suffix("}")
    if name == "hashes":
        return _last(output, r"####[^\n]*").str.strip_prefix("####")
    if name == "answer_line":
        line = _last(output, r"(?i)\b(?:final )?answer\**[ \t]*[:：]\**[ \t]*(?:\n[ \t]*)?[^\n]*")
        return line.str.replace(r"(?i)^(?:final )?answer\**[ \t]*[:：]\**\s*", "")
    if name == "answer_is":
        line = _last(output, r"(?i)\bthe (?:final )?answer is\b[:：]?[^\n]*")
        rest = line.str.replace(r"(?i)^the (?:final )?answer is[:：]?\s*", "")
        # up to the end of its sentence: "18 because 3 times 6 is 18." reads 18
        return rest.str.replace(r"(?i)(?:[.;,!?](?:\s|$)|\s+(?:because|since|as|so)\b).*$", "")
    if name == "after_reasoning" and conv.reasoning_tag:
        close = f"</{conv.reasoning_tag}>"
        return pl.when(output.str.contains(close, literal=True)).then(output.str.split(close).list.last())
    if name == "choice":
        return _last(output, r"(?m)^[ \t*(\[]*[A-Za-z](?:[).:\]*]|[ \t]*$)[^\n]*")
    if name == "last_number":
        return _last(output, _NUM_RE)
    return pl.lit(None, dtype=pl.Utf8)


def _last_tag_pair(output: pl.Expr, tag: str) -> pl.Expr:
    """The innermost of the last ``<tag>…</tag>`` pair, as ``_convention("tag")`` reads it for any
    tag (a tag without ``<`` or ``/``: its opening and closing marks cannot overlap).

    The pair's regex in dot-all mode scans back to the text's start from every closing tag (4×
    slower than without it, where a newline stops the scan). So the pair is searched line by line
    first: when the text has one closing tag and a pair on one line, that pair ends at the closing
    tag and starts at the last opening tag before it — the pair the dot-all search finds. Only the
    other rows (several closing tags, or the answer across lines) are searched in dot-all mode."""
    import polars as pl

    a = re.escape(tag)
    simple = (~output.str.contains(f"(?s)</{a}>.*</{a}>") & output.str.contains(f"<{a}>.*?</{a}>")).fill_null(False)
    pair = pl.coalesce(
        pl.when(simple).then(_last(output, f"<{a}>.*?</{a}>")),
        _last(pl.when(simple).then(None).otherwise(output), f"(?s)<{a}>.*?</{a}>"),
    )
    return pair.str.replace(f"(?s)^.*<{a}>", "").str.strip_suffix(f"</{tag}>")


def _clean_text(raw: pl.Expr) -> pl.Expr:
    """Markup off, the first non-empty line, stray punctuation stripped (stage 1 of cleaning)."""
    s = raw.str.replace_all(r"<+/?[A-Za-z!?/][^<>\n]{0,40}>+", "\n").str.replace_all("**", "", literal=True)
    return s.str.strip_chars().str.extract(r"^([^\n]*)", 1).str.strip_chars(" \t;:,：；-–—<>/#")


def _clean_final(s: pl.Expr) -> pl.Expr:
    """``\\boxed{x}`` → ``x``; null when no letter or digit is left (stage 2, on a column)."""
    import polars as pl

    unboxed = pl.when(s.str.contains(r"\\boxed\{")).then(s.str.extract(r"\\boxed\{(.*)\}", 1)).otherwise(s)
    return pl.when(unboxed.str.contains(r"[\p{L}\p{N}]")).then(unboxed)


def _in_truth_form(
    frame: pl.LazyFrame, ans: str, truth: str, name: str, conv: Conventions, *, truth_readings: bool = False
) -> pl.LazyFrame:
    """``frame`` plus ``name``: the answer ``ans`` in the ground truth's form — a choice letter when
    the truth is one ("B. pond", "(B)" → "B"), the number when the truth is a number and the answer
    holds exactly one beside words ("x = 18 apples" → "18"; "5, 6" and "41 or 42" stay as they
    are: wrong). Only the reductions the run's ground truths call for, in stages."""
    import polars as pl

    if not (conv.letter_truths or conv.number_truths):
        return frame.with_columns(pl.col(ans).alias(name))
    if truth_readings:
        frame = frame.with_columns(pl.col(ans).str.strip_chars().alias("__a"))
        t, tn, temp = pl.col(TRUTH_NORM), pl.col(TRUTH_NUM), ["__a"]
    else:
        frame = frame.with_columns(
            normalise_answer(pl.col(truth)).alias("__t"), pl.col(ans).str.strip_chars().alias("__a")
        )
        t, temp = pl.col("__t"), ["__t", "__a"]
        tn = answer_as_number(t)
    a = pl.col("__a")
    reduced: list[pl.Expr] = []  # the first reduction that applies wins, else the answer as read
    if conv.letter_truths:
        frame = frame.with_columns(
            pl.when(t.str.contains(r"^\(?[a-z]\)?$")).then(a.str.extract(r"^[(\[]?([A-Za-z])(?:[).\]:]|$)", 1)).alias("__al")
        )
        reduced.append(pl.col("__al"))
        temp.append("__al")
    if conv.number_truths:
        # only answers that are not already a plain number (digits, separators, $, exponent)
        frame = frame.with_columns(
            pl.when(
                ~a.str.contains(r"^[+\-$]*[\d,.]+(?:[eE][+-]?\d+)?$") & tn.is_not_null()
            )
            .then(a.str.replace(r"^.*=", ""))
            .alias("__rhs")
        ).with_columns(
            pl.when(pl.col("__rhs").str.count_matches(_NUM_RE) == 1)
            .then(pl.col("__rhs").str.extract(f"({_NUM_RE})", 1))
            .alias("__an")
        )
        reduced.append(pl.col("__an"))
        temp += ["__rhs", "__an"]
    return frame.with_columns(pl.coalesce([*reduced, pl.col(ans)]).alias(name)).drop(temp)


def with_answer(
    frame: pl.LazyFrame,
    output: str,
    logged: str,
    truth: str,
    conv: Conventions,
    name: str,
    *,
    truth_readings: bool = False,
) -> pl.LazyFrame:
    """``frame`` plus a column ``name``: each completion's answer (columns ``output``, ``logged``
    and ``truth`` of ``frame``) read the run's way (``conv.answer_from``), in the ground truth's
    form. Computed in stages, each reading the previous one's columns: an expression that used
    the extraction several times would run it again at every use (~10× the work).
    ``truth_readings``: ``frame`` has the truth's readings already (``with_truth_readings``)."""
    import polars as pl

    out = pl.col(output)
    if conv.answer_from == ("logged",):
        raws = [pl.col(logged)]
        cleaned: list[str] = []
    elif conv.answer_from == ("pattern",) and conv.pattern:
        raws = [_last(out, conv.pattern).str.extract(conv.pattern, _pattern_group(conv.pattern))]
        cleaned = ["__ans_0"]
    elif conv.answer_from:
        raws = [_convention(out, n, conv) for n in conv.answer_from]
        cleaned = [f"__ans_{k}" for k in range(len(raws))]
    else:
        return frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias(name))
    if not cleaned:  # the trainer's own answer, as logged
        frame = frame.with_columns(raws[0].alias("__ans"))
    else:
        frame = (
            frame.with_columns([r.alias(c) for r, c in zip(raws, cleaned, strict=True)])
            .with_columns([_clean_text(pl.col(c)).alias(c) for c in cleaned])
            .with_columns([_clean_final(pl.col(c)).alias(c) for c in cleaned])
            .with_columns(pl.coalesce([pl.col(c) for c in cleaned]).alias("__ans"))
            .drop(cleaned)
        )
    return _in_truth_form(frame, "__ans", truth, name, conv, truth_readings=truth_readings).drop("__ans")


def _pattern_group(pattern: str) -> int:
    """The capture group of an answer pattern: the one named ``answer``, else the first."""
    compiled = re.compile(pattern)
    return compiled.groupindex.get("answer", 1)


def validate_answer_pattern(pattern: str) -> str | None:
    """Why ``pattern`` cannot serve as ``general.answer_pattern`` (None when it can): it must be a
    regular expression in the syntax of Rust's ``regex`` crate (Polars; no look-around, no
    back-references) with a capture group (the one named ``answer``, else the first)."""
    import polars as pl

    if not pattern:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        return f"not a valid regular expression ({exc})"
    if compiled.groups < 1:
        return "missing a capture group around the answer, e.g. 'Final: (.+)'"
    try:
        pl.select(pl.lit("x").str.extract_all(pattern)).item()
    except Exception as exc:  # Polars' regex engine rejects what Python's accepts (look-around …)
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip().startswith("error:")]
        why = lines[0].removeprefix("error:").strip() if lines else "unsupported syntax"
        return f"not supported by Polars' regex engine ({why})"
    return None


def format_expr(output: pl.Expr, conv: Conventions) -> pl.Expr:
    """1.0 / 0.0 the run's format, null when it has none: both tags well-ordered; only a reasoning
    tag — its pair closed and something after it (the answer); only an answer tag — its pair."""
    import polars as pl

    r, a = conv.reasoning_tag, conv.answer_tag
    if r and a:
        return format_ok(output, (r, a))
    if r:
        rr = re.escape(r)
        return output.cast(pl.Utf8).str.contains(f"(?s)<{rr}>.*?</{rr}>\\s*\\S").cast(pl.Float64)
    if a:
        aa = re.escape(a)
        return output.cast(pl.Utf8).str.contains(f"(?s)<{aa}>.*?</{aa}>").cast(pl.Float64)
    return pl.lit(None, dtype=pl.Float64)


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


def utf8_bytes(texts: pl.Series) -> tuple[np.ndarray, np.ndarray] | None:
    """The UTF-8 bytes of a Utf8 series (a slice of one) read in place from its Arrow buffers:
    (bytes as uint8, offsets of each text's start rebased to 0, one more than there are texts);
    None when the texts hold no byte at all."""
    import numpy as np
    import polars as pl

    arr = texts.to_arrow(compat_level=pl.CompatLevel.oldest())  # large_string: int64 offsets
    _, obuf, dbuf = arr.buffers()
    offs = np.frombuffer(obuf, dtype=np.int64, count=len(arr) + 1, offset=arr.offset * 8)
    size = int(offs[-1] - offs[0])
    if dbuf is None or size == 0:
        return None
    data = np.frombuffer(dbuf, dtype=np.uint8, count=size, offset=int(offs[0]))
    return data, offs - offs[0]


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

    def count(off: int, part: pl.Series) -> None:
        found = utf8_bytes(part)
        if found is None:
            return
        data, offs = found
        size = data.size
        ws = _whitespace_bytes(data)
        # a word starts at a non-space byte after a space (a space "greater" than the next byte)
        # or at its text's first byte
        start = np.empty_like(ws)
        start[0] = not ws[0]
        np.greater(ws[:-1], ws[1:], out=start[1:])
        firsts = offs[:-1][offs[:-1] < size]
        start[firsts] = ~ws[firsts]
        out[off : off + len(part)] = np.diff(np.searchsorted(np.flatnonzero(start), offs))

    slices = range(0, len(s), _TOKEN_SLICE)
    if len(slices) > 1:
        from concurrent.futures import ThreadPoolExecutor

        # numpy releases the GIL in these loops: slices run on every core Polars uses. Each is
        # sliced here, so no Polars object is used by two threads (pipeline.frames_to_write).
        parts = [s.slice(off, _TOKEN_SLICE) for off in slices]
        with ThreadPoolExecutor(min(len(slices), pl.thread_pool_size())) as pool:
            list(pool.map(count, slices, parts))
    else:
        for off in slices:
            count(off, s.slice(off, _TOKEN_SLICE))
    counts = pl.Series(texts.name, out)
    if s.null_count():
        counts = pl.select(pl.when(s.is_null()).then(None).otherwise(counts)).to_series().rename(texts.name)
    return counts


def _whitespace_bytes(data: Any) -> Any:
    """Mask of the UTF-8 bytes that belong to a whitespace character (regex ``\\s``: ASCII
    ``\\t\\n\\v\\f\\r`` and space, and U+0085, U+00A0, U+1680, U+2000–U+200A, U+2028, U+2029,
    U+202F, U+205F, U+3000). Bytes of other multi-byte characters are never ASCII whitespace."""
    import numpy as np

    # one comparison per byte, then the rare exceptions fixed one by one (a mask built of several
    # comparisons per byte cost 3× as much): bytes below 32 other than \t\n\v\f\r are not spaces
    ws = data <= 32
    low = np.flatnonzero(data < 32)
    if low.size:
        b = data[low]
        ws[low[(b < 9) | (b > 13)]] = False
    # lead bytes of the non-ASCII spaces: C2 (2 bytes), E1/E2/E3 (3 bytes); rare, checked exactly
    lead = np.flatnonzero(data >= 0xC2)
    if lead.size:
        b = data[lead]
        lead = lead[(b == 0xC2) | ((b >= 0xE1) & (b <= 0xE3))]
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
    gens: pl.DataFrame,
    *,
    tags: Sequence[str] = DEFAULT_TAGS,
    all_rows: bool = True,
    conventions: Conventions | None = None,
    answer_pattern: str = "",
) -> pl.DataFrame:
    """The feature columns of ``gens``; tolerant of missing optional columns. Row for row with
    ``gens``, or without the rows that have no step when not ``all_rows``.

    One lazy pass over the completions (the accuracy in stages: ``with_exact_match``); the word
    counts with numpy (``whitespace_token_counts``). The answer and the format are read the run's
    way: ``conventions``, learned here (``learn_conventions``) when not given.
    """
    import polars as pl

    cols = set(gens.columns)
    conv = conventions or learn_conventions(gens, tags=tags, answer_pattern=answer_pattern)

    def col_or_null(name: str, dtype: Any) -> pl.Expr:
        return pl.col(name).cast(dtype) if name in cols else pl.lit(None, dtype=dtype)

    output = col_or_null(C.OUTPUT, pl.Utf8)
    truth = col_or_null(C.GROUND_TRUTH, pl.Utf8)
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
            col_or_null(C.ANSWER, pl.Utf8).alias("__logged"),
            truth.alias("__truth"),
            (format_expr(output, conv) if C.OUTPUT in cols else pl.lit(None, dtype=pl.Float64)).alias(_FMT),
            pl.col(C.GROUP_ID).alias(_GKEY),  # the GRPO group, with step
            *[pl.col(c).cast(pl.Float64) for c in gens.columns if c.startswith(C.REWARD_PREFIX)],
        )
        .filter(pl.lit(True) if all_rows else pl.col(C.STEP).is_not_null())
    )
    truths = gens.get_column(C.GROUND_TRUTH) if C.GROUND_TRUTH in cols else pl.Series([], dtype=pl.Utf8)
    lazy_rows = with_truth_readings(lazy_rows, truths, "__truth")
    lazy_rows = with_answer(lazy_rows, C.OUTPUT, "__logged", "__truth", conv, ANSWER, truth_readings=True).drop(
        "__logged"
    )
    rows = (
        with_exact_match(lazy_rows, pl.col(ANSWER), pl.col("__truth"), _ACC, truth_readings=True)
        .with_columns((pl.col(ANSWER).is_not_null() & (pl.col(ANSWER).str.strip_chars() != "")).alias(HAS_ANSWER))
        .drop("__truth", TRUTH_NORM, TRUTH_NUM)
        .collect()
    )
    tokens = whitespace_token_counts(rows.get_column(C.OUTPUT)).alias(_TOK)
    return rows.insert_column(rows.get_column_index(_LEN) + 1, tokens)


@dataclass(frozen=True, slots=True)
class CompletionFeatures:
    """``frame``: ``completion_features`` of a run's completions, built with ``tags`` (the
    configured ones) and ``answer_pattern``, row for row with ``RunData.generations``;
    ``conventions``: the tags and answer conventions learned from the run and used."""

    tags: tuple[str, ...]
    frame: pl.DataFrame
    conventions: Conventions | None = None
    answer_pattern: str = ""

    def matches(self, gens: pl.DataFrame, tags: Sequence[str], answer_pattern: str = "") -> bool:
        """Whether the frame was built from ``gens`` (same height) with these settings."""
        return (
            self.tags == tuple(tags)
            and self.answer_pattern == (answer_pattern or "")
            and self.frame.height == gens.height
        )


def build_features(
    run: RunData, *, tags: Sequence[str] = DEFAULT_TAGS, answer_pattern: str = ""
) -> CompletionFeatures | None:
    """The run's completion-feature frame, or None when it has no completions with a step."""
    gens = run.generations
    if gens is None or gens.height == 0 or C.STEP not in gens.columns:
        return None
    conv = learn_conventions(gens, tags=tags, answer_pattern=answer_pattern)
    frame = completion_features(gens, tags=tags, conventions=conv)
    return CompletionFeatures(tuple(tags), frame, conv, answer_pattern or "")
