"""The prompts whose answers differ most between two runs (``logscan compare``).

For every prompt both runs answered (the same ``question_id``), each run's answers at the last
step it answered that prompt are embedded with the encoder drift used (the embedding model, or
TF-IDF fitted once on every text compared, so all pairs share one vector space); the distance of
a prompt is the cosine distance between the two runs' mean answers. A run's representative
answer is the one closest to its mean. The texts are model output: the views escape them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from analyzer import columns as C
from analyzer.values import finite_or_none

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

    from analyzer.embeddings import EncoderLike

MAX_PROMPTS = 200  # shared prompts scored per pair (a deterministic sample beyond it)
PER_PROMPT = 4  # answers of one prompt at its last step kept per run
TOP_K = 10


@dataclass(frozen=True, slots=True)
class Answer:
    """One run's answers to a prompt at the last step it answered it."""

    step: int | None
    split: str
    n: int  # answers at that step (at most PER_PROMPT kept)
    reward: float | None  # their mean total reward
    text: str  # the answer closest to their mean embedding


@dataclass(frozen=True, slots=True)
class AnswerDiff:
    question_id: str
    question: str
    distance: float  # cosine distance of the two runs' mean answers, 0 (the same) .. 1 (nothing in common)
    a: Answer
    b: Answer


@dataclass(frozen=True, slots=True)
class PairDiff:
    """Run ``a`` against run ``b`` (indices of the compared runs)."""

    a: int
    b: int
    shared: int  # prompts both runs answered
    scored: int  # of them, scored (MAX_PROMPTS at most)
    top: tuple[AnswerDiff, ...]


@dataclass(frozen=True, slots=True)
class AnswerComparison:
    pairs: tuple[PairDiff, ...]
    method: str  # the encoder's: "embeddings" | "tfidf" | "hashing" | "none"
    model: str | None
    embedded: int  # texts the encoder computed
    cached: int  # ... and found in a cache


@dataclass(slots=True)
class _Prompt:
    question: str
    answers: list[str]
    answer: Answer | None = None


def _last_answers(gens: pl.DataFrame | None) -> dict[str, _Prompt]:
    """``{question_id: its answers at the last step it was answered}`` of a ``RunData.generations``."""
    import polars as pl

    if gens is None or gens.height == 0 or C.QUESTION_ID not in gens.columns or C.OUTPUT not in gens.columns:
        return {}
    cols = gens.columns
    df = (
        gens.lazy()
        .select(
            pl.col(C.QUESTION_ID).cast(pl.String).alias("qid"),
            (pl.col(C.STEP).cast(pl.Int64) if C.STEP in cols else pl.lit(None, pl.Int64)).alias("step"),
            pl.col(C.SPLIT).alias("split"),  # complete in a RunData (analyzer.model.completion_keys)
            (pl.col(C.QUESTION).cast(pl.String) if C.QUESTION in cols else pl.lit(None, pl.String)).alias("q"),
            pl.col(C.OUTPUT).cast(pl.String).fill_null("").alias("out"),
            (pl.col(C.TOTAL_REWARD).cast(pl.Float64) if C.TOTAL_REWARD in cols else pl.lit(None, pl.Float64)).alias("r"),
        )
        .filter(pl.col("qid").is_not_null())
        .filter(pl.col("step").fill_null(-1) == pl.col("step").fill_null(-1).max().over("qid"))
        .group_by("qid", maintain_order=True)
        .agg(
            pl.col("step").first(),
            pl.col("split").first(),
            pl.col("q").drop_nulls().first(),
            pl.col("out").head(PER_PROMPT),
            pl.len().alias("n"),
            pl.col("r").mean(),
        )
        .collect()
    )
    out: dict[str, _Prompt] = {}
    for row in df.iter_rows(named=True):
        p = _Prompt(row["q"] or "", list(row["out"]))
        p.answer = Answer(row["step"], row["split"], int(row["n"]), finite_or_none(row["r"]), "")
        out[row["qid"]] = p
    return out


def _sample(qids: list[str], limit: int) -> list[str]:
    """At most ``limit`` of ``qids``: the same ones on every call (ordered by a hash)."""
    if len(qids) <= limit:
        return qids
    return sorted(qids, key=lambda q: hashlib.sha256(q.encode("utf-8")).digest())[:limit]


def compare_answers(
    generations: Sequence[pl.DataFrame | None],
    pairs: Sequence[tuple[int, int]],
    encoder: EncoderLike,
    *,
    top_k: int = TOP_K,
    max_prompts: int = MAX_PROMPTS,
) -> AnswerComparison:
    """For each ``(a, b)`` in ``pairs`` (indices into ``generations``), the ``top_k`` prompts
    whose answers differ most between run ``a`` and run ``b``. Every text is encoded in one
    call, so a lexical encoder sees one corpus."""
    import numpy as np

    prompts: dict[int, dict[str, _Prompt]] = {}
    chosen: list[tuple[int, int, int, list[str]]] = []
    for a, b in pairs:
        for i in (a, b):
            if i not in prompts:
                prompts[i] = _last_answers(generations[i])
        shared = sorted(set(prompts[a]) & set(prompts[b]))
        chosen.append((a, b, len(shared), _sample(shared, max_prompts)))
    # one row per (run, prompt, answer), each needed text once
    index: dict[tuple[int, str], tuple[int, int]] = {}
    texts: list[str] = []
    for a, b, _, qids in chosen:
        for i in (a, b):
            for q in qids:
                if (i, q) not in index:
                    answers = prompts[i][q].answers
                    index[(i, q)] = (len(texts), len(answers))
                    texts += answers
    if not texts:
        return AnswerComparison(
            tuple(PairDiff(a, b, n, 0, ()) for a, b, n, _ in chosen), "none", None, 0, 0
        )
    x = np.asarray(encoder.encode(texts), dtype=np.float32)
    means: dict[tuple[int, str], np.ndarray] = {}
    for key, (start, n) in index.items():
        rows = x[start : start + n]
        mean = rows.mean(axis=0)
        norm = float(np.linalg.norm(mean))
        means[key] = mean / norm if norm > 0 else mean
        nearest = int(np.argmax(rows @ means[key])) if n else 0
        i, q = key
        p = prompts[i][q]
        if p.answer is not None and n:
            p.answer = Answer(p.answer.step, p.answer.split, p.answer.n, p.answer.reward, p.answers[nearest])
    out: list[PairDiff] = []
    for a, b, n_shared, qids in chosen:
        scored = []
        for q in qids:
            # 1 - cosine, within 0..1: a negative cosine (possible after TF-IDF's random
            # projection, rare with embeddings) means nothing in common, as a cosine of 0 does
            distance = min(1.0, max(0.0, 1.0 - float(means[(a, q)] @ means[(b, q)])))
            pa, pb = prompts[a][q], prompts[b][q]
            assert pa.answer is not None and pb.answer is not None
            scored.append(AnswerDiff(q, pa.question or pb.question, distance, pa.answer, pb.answer))
        scored.sort(key=lambda d: (-d.distance, d.question_id))
        out.append(PairDiff(a, b, n_shared, len(qids), tuple(scored[:top_k])))
    return AnswerComparison(
        tuple(out),
        encoder.method,
        None if encoder.method == "tfidf" else encoder.name,
        int(encoder.last_embedded),
        int(encoder.last_cached),
    )

