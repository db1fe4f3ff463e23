"""Coherence loss: completions becoming less coherent, measured from their text without a model.

Four per-completion signals, each a Polars expression or one numpy pass over the UTF-8 bytes of a
bounded sample of completions per step (``max_per_step``, like ``repetition``):

- **mixed scripts** — letters of a second writing system mid-answer (Latin and Han, Cyrillic,
  Arabic, …): the "language mixing" of R1-Zero-style runs (DeepSeek-AI 2025, the R1 report);
- **gibberish** — runs of junk symbols (``;<;<;<``) and long vowel-less "words" (``xkcdqrt``);
- **byte entropy** — the Shannon entropy of the completion's UTF-8 bytes far above the run's early
  completions (random text is flatter than language); judged against the early completions, so a
  run that is multilingual or LaTeX-heavy from the start is its own baseline;
- **broken tags** — opening and closing tags that do not balance, or the run's own tags
  (``analyzer.features.Conventions``) opened more than once (``<answer><answer>…``).

A completion showing any of them is incoherent; the detector judges the per-step share against the
warm-up. Loops and repeated phrases are ``repetition``'s subject, not this one's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from analyzer import columns as C
from analyzer.detectors._common import excursion_alert, find_rise, per_step
from analyzer.detectors.base import DetectorContext, Skip, register
from analyzer.detectors.headline import onset_period, when
from analyzer.features import utf8_bytes
from analyzer.model import Alert

if TYPE_CHECKING:
    import polars as pl

# letters of the writing systems told apart; Latin is counted from the bytes (ASCII letters);
# Greek is left out: α, β, π, σ are mathematics, not a language switch
_SCRIPTS: dict[str, str] = {
    "han": r"[\p{Han}\p{Hiragana}\p{Katakana}]",
    "cyrillic": r"\p{Cyrillic}",
    "arabic": r"\p{Arabic}",
    "hangul": r"\p{Hangul}",
    "devanagari": r"\p{Devanagari}",
    "thai": r"\p{Thai}",
    "hebrew": r"\p{Hebrew}",
}
# junk: 4+ symbols in a row, leaving out the ones markdown and LaTeX repeat (---, ***, $$, }}, ...)
_SYMBOL_RUN = r"[^\w\s\-=*_.#~|$\\{}()\[\]^+/,:'\"!?`]{4,}"
_NO_VOWEL_WORD = r"(?i)\b[b-df-hj-np-tv-xz]{6,}\b"
_OPEN_TAG = r"<[A-Za-z][\w-]*(?:\s+[\w-]+=\"[^\"<>]*\")*\s*>"
_CLOSE_TAG = r"</[A-Za-z][\w-]*\s*>"
_SLICE = 1 << 12  # texts per numpy slice of the byte measures (4,096 × 256 histogram bins)

MIXED, GIBBERISH, ENTROPY, TAGS = "_mixed_scripts", "_gibberish", "_high_entropy", "_broken_tags"
SIGNALS: dict[str, str] = {
    MIXED: "mixed scripts",
    GIBBERISH: "gibberish",
    ENTROPY: "high byte entropy",
    TAGS: "unbalanced or nested tags",
}
BYTE_ENTROPY = "_byte_entropy"
INCOHERENT = "_incoherent"


def byte_measures(texts: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per text: (UTF-8 bytes, ASCII letters, Shannon entropy of its bytes in bits), in one numpy
    pass per slice of texts: a histogram of every text's bytes with one ``bincount``, the entropy
    summed over its non-empty bins only (~50 of 256 for text)."""
    import polars as pl

    s = texts.cast(pl.Utf8).fill_null("")
    n = len(s)
    size = np.zeros(n, dtype=np.int64)
    letters = np.zeros(n, dtype=np.int64)
    entropy = np.zeros(n, dtype=np.float64)
    for off in range(0, n, _SLICE):
        part = s.slice(off, _SLICE)
        found = utf8_bytes(part)
        if found is None:
            continue
        data, offs = found
        lengths = np.diff(offs)
        row = np.repeat(np.arange(len(part), dtype=np.int64), lengths)
        low = data | 0x20
        is_letter = (low >= ord("a")) & (low <= ord("z"))
        counts = np.bincount(row * 256 + data, minlength=len(part) * 256)
        bins = np.flatnonzero(counts)  # (text, byte) pairs that occur; text = bin // 256
        owner = bins >> 8
        p = counts[bins] / lengths[owner]
        h = -np.bincount(owner, weights=p * np.log2(p), minlength=len(part))
        size[off : off + len(part)] = lengths
        letters[off : off + len(part)] = np.bincount(row, weights=is_letter, minlength=len(part)).astype(np.int64)
        entropy[off : off + len(part)] = h
    return size, letters, entropy


def coherence_frame(
    samples: pl.DataFrame,
    *,
    run_tags: tuple[str | None, ...] = (),
    min_script_letters: int = 5,
    min_script_share: float = 0.05,
    min_gibberish: int = 3,
    min_tag_imbalance: int = 2,
) -> pl.DataFrame:
    """``samples`` (step, sample_id, model_output) with the four signal flags, ``BYTE_ENTROPY``
    and the count of letters per script; the entropy flag is set by ``flag_entropy``."""
    import polars as pl

    out = pl.col(C.OUTPUT).cast(pl.Utf8).fill_null("")
    size, latin, entropy = byte_measures(samples.get_column(C.OUTPUT))
    scripts = [out.str.count_matches(rx).alias(f"_n_{name}") for name, rx in _SCRIPTS.items()]
    nested = [
        out.str.count_matches(f"<{t}>", literal=True) >= 2 for t in run_tags if t
    ]
    frame = samples.with_columns(
        pl.Series("_bytes", size),
        pl.Series("_n_latin", latin),
        pl.Series(BYTE_ENTROPY, entropy),
        *scripts,
        (out.str.count_matches(_SYMBOL_RUN) + out.str.count_matches(_NO_VOWEL_WORD)).alias("_junk"),
        (out.str.count_matches(_OPEN_TAG).cast(pl.Int64) - out.str.count_matches(_CLOSE_TAG).cast(pl.Int64))
        .abs()
        .alias("_tag_imbalance"),
        (pl.any_horizontal(nested) if nested else pl.lit(False)).alias("_nested"),
    )
    letters = ["_n_latin", *(f"_n_{name}" for name in _SCRIPTS)]
    total = pl.sum_horizontal(letters)
    minority = total - pl.max_horizontal(letters)
    return frame.with_columns(
        ((minority >= min_script_letters) & (minority >= min_script_share * total)).alias(MIXED),
        (pl.col("_junk") >= min_gibberish).alias(GIBBERISH),
        ((pl.col("_tag_imbalance") >= min_tag_imbalance) | pl.col("_nested")).alias(TAGS),
    )


def flag_entropy(frame: pl.DataFrame, early_steps: int, z: float, min_bytes: int = 64) -> pl.DataFrame:
    """``frame`` with the ``ENTROPY`` flag: byte entropy ≥ ``z`` robust scales (MAD, at least
    0.05 bits) above the median of the completions of the first ``early_steps`` steps (texts of at
    least ``min_bytes`` bytes; shorter ones are never flagged), and ``INCOHERENT``."""
    import polars as pl

    steps = frame.get_column(C.STEP).unique().sort()
    early = frame.filter(
        pl.col(C.STEP).is_in(steps.head(max(early_steps, 1)).implode()) & (pl.col("_bytes") >= min_bytes)
    ).get_column(BYTE_ENTROPY).to_numpy()
    if early.size >= 5:
        center = float(np.median(early))
        scale = max(1.4826 * float(np.median(np.abs(early - center))), 0.05)
        high = (pl.col(BYTE_ENTROPY) - center) / scale >= z
    else:
        high = pl.lit(False)
    frame = frame.with_columns((high & (pl.col("_bytes") >= min_bytes)).alias(ENTROPY))
    return frame.with_columns(pl.any_horizontal(list(SIGNALS)).alias(INCOHERENT))


@register(
    "coherence_loss",
    signals="the completions' text, without a model: per completion, mixed writing systems (≥ "
    "min_script_letters letters and ≥ min_script_share of them outside its main script), gibberish "
    "(≥ min_gibberish junk-symbol runs or vowel-less 6+-letter words), byte entropy ≥ entropy_z robust "
    "scales above the run's early completions, unbalanced tags (open − close ≥ min_tag_imbalance) or the "
    "run's own tags opened twice; the per-step share of completions showing any of them, on up to "
    "max_per_step completions per step.",
    defaults={
        "threshold": 0.2,
        "critical_threshold": 0.5,
        "min_increase": 0.15,
        "max_per_step": 32,
        "min_script_letters": 5,
        "min_script_share": 0.05,
        "min_gibberish": 3,
        "min_tag_imbalance": 2,
        "entropy_z": 6.0,
    },
    requires=("completions",),
    severity="warning when the rolling median share of incoherent completions stays ≥ threshold and ≥ "
    "min_increase above the warm-up; critical ≥ critical_threshold.",
)
def coherence_loss(ctx: DetectorContext, cfg: dict[str, Any]) -> list[Alert]:
    """Completions becoming less coherent: mixed scripts, gibberish, flat byte statistics, broken tags."""
    import polars as pl

    ctx.skip_if_too_short()
    if not ctx.has_generations:
        raise Skip("needs completions (coherence is read from their text)")
    per = int(cfg["max_per_step"])
    # the first max_per_step completions of each step (ingest orders them by step, then sample
    # id): three columns of the frame, not a copy of all of it
    sub = (
        ctx.samples.lazy()
        .select(C.STEP, C.SPLIT, C.SAMPLE_ID, C.OUTPUT)
        .filter((pl.col(C.SPLIT) == "train") & pl.col(C.STEP).is_not_null())
        .filter(pl.int_range(pl.len()).over(C.STEP) < per)
        .drop(C.SPLIT)
        .collect()
    )
    n_steps = sub.get_column(C.STEP).n_unique()
    ctx.require_length(n_steps, "completions")
    conv = ctx.features.conventions if ctx.features is not None else None
    run_tags = conv.tags if conv is not None else tuple(ctx.general["tags"])
    frame = coherence_frame(
        sub,
        run_tags=run_tags,
        min_script_letters=int(cfg["min_script_letters"]),
        min_script_share=float(cfg["min_script_share"]),
        min_gibberish=int(cfg["min_gibberish"]),
        min_tag_imbalance=int(cfg["min_tag_imbalance"]),
    )
    frame = flag_entropy(frame, ctx.warmup_points(n_steps), float(cfg["entropy_z"]))
    x, y = per_step(frame, INCOHERENT)
    exc = find_rise(ctx, x, y, cfg)
    if exc is None:
        return []
    early = frame.filter(pl.col(C.STEP) < exc.onset_step)
    late = frame.filter(pl.col(C.STEP) >= exc.onset_step)

    def share(f: pl.DataFrame, col: str) -> float:
        return float(f.get_column(col).mean() or 0.0) if f.height else 0.0  # type: ignore[arg-type]

    causes = {
        SIGNALS[c]: {"before": share(early, c), "after": share(late, c)} for c in SIGNALS
    }
    rising = sorted(
        ((name, v["after"] - v["before"], v["after"]) for name, v in causes.items()),
        key=lambda t: -t[1],
    )
    named = [f"{name} {after:.0%}" for name, gain, after in rising if gain >= 0.05] or [
        f"{rising[0][0]} {rising[0][2]:.0%}"
    ]
    # completions of the onset period (docs/detectors.md, "Honest headlines"), most signals first
    ids = ctx.pick_samples(
        onset_period(ctx, late, exc).filter(pl.col(INCOHERENT))
        .with_columns(pl.sum_horizontal(list(SIGNALS)).alias("_n_signals"))
        .sort(["_n_signals", C.STEP], descending=[True, False]),
    )
    return [
        excursion_alert(
            "coherence_loss",
            exc,
            f"completions lost coherence {when(exc, lambda v: f'{v:.0%} of them', rising=True)} "
            f"(warm-up {exc.baseline:.0%}): {', '.join(named)} after the onset",
            critical=exc.extreme >= float(cfg["critical_threshold"]),
            share_affected=share(late, INCOHERENT),
            signals=causes,
            completions_judged=frame.height,
            threshold=float(cfg["threshold"]),
            sample_ids=ids,
        )
    ]
