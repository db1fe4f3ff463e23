"""mode_collapse's near-duplicate pairs, vectorised: equal to the pairwise ``text.shingles`` /
``text.jaccard`` comparison they replace, on random and hostile texts."""

from __future__ import annotations

import random
import re
from types import SimpleNamespace
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer import columns as C
from analyzer.detectors.base import default_config
from analyzer.detectors.collapse import _near_dup_rates, near_duplicate_pairs, shingle_words
from analyzer.detectors.text import GROUP, jaccard, normalised_text, shingles

# words where Python's and Rust's \w disagree or lower-casing changes length, and separators
# beyond ASCII whitespace
HOSTILE_WORDS = [
    "a",
    "b",
    "the",
    "answer",
    "İstanbul",
    "\u212a",
    "café",
    "cafe\u0301",
    "x²",
    "٣٤",
    "日本語",
    "_",
    "a_b",
    "42",
    "ǅ",
    "ΣΑΣ",
    "Straße",
    "ﬁne",
    "\U0001f600",
    "e\u0300\u0301",
    "Ⅻ",
    "A",
]
SEPARATORS = [" ", "  ", "\n", ", ", ".", "\t", "\u00a0", "—", "\u2028", ""]


def reference_pairs(texts: list[str], groups: list[int], thr: float) -> list[tuple[int, int, bool]]:
    """The pairwise comparison mode_collapse ran before (text.shingles + text.jaccard per pair)."""
    out = []
    starts = [k for k in range(len(groups)) if k == 0 or groups[k] != groups[k - 1]]
    for lo, hi in zip(starts, [*starts[1:], len(groups)], strict=True):
        for i in range(lo, hi):
            for j in range(i + 1, hi):
                same = (
                    texts[i] == texts[j] or jaccard(shingles(texts[i]), shingles(texts[j])) >= thr
                )
                out.append((i, j, same))
    return out


def pairs(texts: list[str], groups: list[int], thr: float) -> list[tuple[int, int, bool]]:
    i, j, dup = near_duplicate_pairs(pl.Series(texts, dtype=pl.Utf8), np.array(groups), thr)
    return list(zip(i.tolist(), j.tolist(), dup.tolist(), strict=True))


def random_text(rng: random.Random) -> str:
    n = rng.choice([0, 1, 2, 3, 4, 10, 125, 500])
    return "".join(rng.choice(HOSTILE_WORDS) + rng.choice(SEPARATORS) for _ in range(n))


def random_groups(rng: random.Random) -> tuple[list[str], list[int]]:
    texts: list[str] = []
    groups: list[int] = []
    for g in range(rng.randint(1, 6)):
        base = random_text(rng)
        for _ in range(rng.choice([1, 1, 2, 3, 6])):  # single-completion groups too
            texts.append(
                rng.choice(
                    [base, base, random_text(rng), base + " " + rng.choice(HOSTILE_WORDS), ""]
                )
            )
            groups.append(g)
    return texts, groups


@pytest.mark.parametrize("thr", [0.0, 0.3, 0.8, 1.0, 1.5])
def test_equal_to_the_pairwise_jaccard_on_random_hostile_groups(thr: float) -> None:
    rng = random.Random(int(thr * 10))
    for _ in range(60):
        texts, groups = random_groups(rng)
        assert pairs(texts, groups, thr) == reference_pairs(texts, groups, thr), (texts, groups)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.lists(st.text(max_size=60), min_size=1, max_size=5), min_size=1, max_size=5),
    st.sampled_from([0.0, 0.5, 0.8, 1.0]),
)
def test_equal_to_the_pairwise_jaccard_on_arbitrary_unicode(
    groups_of_texts: list[list[str]], thr: float
) -> None:
    texts = [t for g in groups_of_texts for t in g]
    groups = [k for k, g in enumerate(groups_of_texts) for _ in g]
    assert pairs(texts, groups, thr) == reference_pairs(texts, groups, thr)


def test_the_edge_cases_by_name() -> None:
    long_a = " ".join(f"w{k}" for k in range(200))
    long_b = long_a + " tail differs beyond the 120 words shingles read"
    texts = ["", "", "one", "one", "two words", "two words!", long_a, long_b, "ΣΑΣ", "σας", "x"]
    groups = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5]  # the last group has one completion: no pair
    got = pairs(texts, groups, 0.8)
    assert got == reference_pairs(texts, groups, 0.8)
    assert [d for *_, d in got] == [
        True,
        True,
        True,
        True,
        bool(shingles("ΣΑΣ") == shingles("σας")),
    ]
    assert pairs([], [], 0.8) == []
    assert pairs(["only"], [0], 0.8) == []


def test_shingle_words_are_the_words_shingles_reads() -> None:
    rng = random.Random(7)
    texts = [random_text(rng) for _ in range(300)] + ["", "A" * 2000, "ab " * 700]
    words = shingle_words(pl.Series(texts)).to_list()
    assert words == [re.findall(r"\w+", t[:1440].lower())[:120] for t in texts]


def old_near_dup_rates(
    samples: pl.DataFrame, cfg: dict[str, Any]
) -> tuple[list[int], list[float], dict[int, list[int]]]:
    """mode_collapse's per-step rates as computed before the vectorised pairs (one group at a time)."""
    max_groups, max_size = int(cfg["max_groups_per_step"]), int(cfg["max_group_size"])
    thr = float(cfg["near_duplicate_jaccard"])
    key = [C.STEP, GROUP]
    parts = (
        samples.with_columns(pl.int_range(pl.len()).over(key).alias("_i"))
        .filter(pl.col("_i") < max_size)
        .filter(pl.col(GROUP).rank("dense").over(C.STEP) <= max_groups)
        .with_columns(normalised_text(pl.col(C.OUTPUT)).alias("t"))
        .group_by(key, maintain_order=True)
        .agg(pl.col(C.SAMPLE_ID), pl.col("t"))
        .sort(C.STEP, maintain_order=True)
    )
    rates: dict[int, list[float]] = {}
    worst: dict[int, tuple[float, list[int]]] = {}
    for row in parts.iter_rows(named=True):
        step, texts, ids = int(row[C.STEP]), row["t"], row[C.SAMPLE_ID]
        if len(rates.get(step, [])) >= max_groups or len(texts) < 2:
            continue
        found = reference_pairs(texts, [0] * len(texts), thr)
        dup_ids = {ids[k] for i, j, d in found if d for k in (i, j)}
        rate = sum(d for *_, d in found) / len(found)
        rates.setdefault(step, []).append(rate)
        if rate > worst.get(step, (-1.0, []))[0]:
            worst[step] = (rate, sorted(dup_ids))
    steps = sorted(rates)
    return steps, [float(np.mean(rates[k])) for k in steps], {k: v[1] for k, v in worst.items()}


def samples_context(
    samples: pl.DataFrame, previous: dict[str, Any] | None = None, carry: dict[str, Any] | None = None
) -> Any:
    """What ``_near_dup_rates`` reads of a ``DetectorContext``: the samples, and what the previous
    analysis kept (``previous``) / where this one keeps it (``carry``)."""
    previous = previous or {}

    def keep(name: str, value: Any) -> None:
        if carry is not None:
            carry[name] = value

    return SimpleNamespace(
        train_samples=lambda: samples, carried_over=previous.get, keep=keep, carry=carry
    )


def grouped_samples(rng: random.Random, steps: range, *, first_id: int = 0) -> pl.DataFrame:
    rows = []
    for step in steps:
        for g in range(rng.choice([1, 3, 20])):  # more groups than max_groups_per_step at times
            base = random_text(rng)
            for _ in range(rng.choice([1, 2, 4, 20])):  # more completions than max_group_size too
                text = rng.choice([base, base.upper(), base + " x", random_text(rng), ""])
                rows.append({C.STEP: step, GROUP: f"{step}:{g}", C.OUTPUT: text})
    return (
        pl.DataFrame(rows)
        .with_row_index(C.SAMPLE_ID, offset=first_id)
        .with_columns(pl.col(C.SAMPLE_ID).cast(pl.Int64))
    )


def test_per_step_rates_and_worst_groups_equal_the_group_by_group_computation() -> None:
    rng = random.Random(3)
    rows = []
    for step in range(1, 13):
        for g in range(rng.choice([1, 3, 20])):  # more groups than max_groups_per_step at times
            base = random_text(rng)
            for _ in range(rng.choice([1, 2, 4, 20])):  # more completions than max_group_size too
                text = rng.choice([base, base.upper(), base + " x", random_text(rng), ""])
                rows.append({C.STEP: step, GROUP: f"{step}:{g}", C.OUTPUT: text})
    samples = (
        pl.DataFrame(rows)
        .with_row_index(C.SAMPLE_ID)
        .with_columns(pl.col(C.SAMPLE_ID).cast(pl.Int64))
    )
    cfg = {**default_config()["mode_collapse"], "near_duplicate_jaccard": 0.5}
    ctx = samples_context(samples)
    steps, vals, worst = _near_dup_rates(ctx, cfg)  # type: ignore[arg-type]
    old_steps, old_vals, old_worst = old_near_dup_rates(samples, cfg)
    assert steps.tolist() == old_steps
    assert vals.tolist() == old_vals  # exactly: same rates, averaged in the same order
    assert worst == old_worst
    assert any(v > 0 for v in old_vals) and any(0 < v < 1 for v in old_vals)


def test_steps_of_one_completion_each_have_nothing_to_compare() -> None:
    """Found by the ingest fuzz test: one completion per step and group (no pair anywhere) — no
    rates, no error, as the group-by-group computation."""
    samples = pl.DataFrame(
        {C.STEP: list(range(10)), GROUP: [f"{s}:q0" for s in range(10)], C.OUTPUT: ["<answer>0</answer>"] * 10}
    ).with_row_index(C.SAMPLE_ID).with_columns(pl.col(C.SAMPLE_ID).cast(pl.Int64))
    cfg = default_config()["mode_collapse"]
    ctx = samples_context(samples)
    steps, vals, worst = _near_dup_rates(ctx, cfg)  # type: ignore[arg-type]
    assert (steps.tolist(), vals.tolist(), worst) == ([], [], {})
    assert old_near_dup_rates(samples, cfg) == ([], [], {})


def test_a_vocabulary_too_large_for_one_int64_key_numbers_word_pairs_first(monkeypatch) -> None:
    from analyzer.detectors import collapse

    monkeypatch.setattr(collapse, "_KEY_LIMIT", 8)  # every vocabulary counts as huge
    rng = random.Random(11)
    for _ in range(20):
        texts, groups = random_groups(rng)
        assert pairs(texts, groups, 0.5) == reference_pairs(texts, groups, 0.5)


@pytest.mark.parametrize("max_steps", [400, 9])
def test_a_grown_run_compares_only_the_steps_whose_completions_changed(monkeypatch, max_steps) -> None:
    """What the previous analysis kept (a fingerprint of each step's rows and what was found) is
    reused for the steps whose rows hash the same: the result is the from-scratch one, and only
    new steps and steps that got completions are compared again. With more steps than
    ``max_steps``, the steps judged are chosen so that a grown run keeps the earlier choice."""
    from analyzer.detectors import collapse

    rng = random.Random(11)
    first = grouped_samples(rng, range(1, 21))
    more = grouped_samples(rng, range(20, 31), first_id=first.height)  # step 20 gets completions too
    grown = pl.concat([first, more]).sort(C.STEP, maintain_order=True)
    cfg = {**default_config()["mode_collapse"], "near_duplicate_jaccard": 0.5, "max_steps": max_steps}
    compared: list[set[int]] = []
    real = collapse._step_rates

    def counting(s: pl.DataFrame, *args: Any, **kwargs: Any) -> Any:
        compared.append(set(s.get_column(C.STEP).unique().to_list()))
        return real(s, *args, **kwargs)

    monkeypatch.setattr(collapse, "_step_rates", counting)
    kept: dict[str, Any] = {}
    before = _near_dup_rates(samples_context(first, carry=kept), cfg)
    assert set(kept) == {"mode_collapse"}
    again: dict[str, Any] = {}
    steps, vals, worst = _near_dup_rates(samples_context(grown, previous=kept, carry=again), cfg)
    scratch = _near_dup_rates(samples_context(grown), cfg)
    assert steps.tolist() == scratch[0].tolist() and vals.tolist() == scratch[1].tolist() and worst == scratch[2]
    judged_before = {int(k) for k in kept["mode_collapse"]["steps"]}
    judged_now = {int(k) for k in again["mode_collapse"]["steps"]}
    assert compared[1] == judged_now - (judged_before - {20})  # new steps, and step 20 if judged
    if max_steps == 9:
        assert len(judged_now) == 9 and len(compared[1]) < 9
        # a step left out is never taken later: the earlier steps judged now were judged before
        assert {st for st in judged_now if st < 20} <= judged_before
    # the same run again: nothing is compared; other settings: everything is
    calls = len(compared)
    assert _near_dup_rates(samples_context(grown, previous=again, carry={}), cfg)[2] == worst
    assert len(compared) == calls
    _near_dup_rates(samples_context(grown, previous=again, carry={}), {**cfg, "near_duplicate_jaccard": 0.6})
    assert compared[-1] == judged_now
    # a damaged entry is compared again, never trusted
    damaged = {"mode_collapse": {**again["mode_collapse"], "steps": {**again["mode_collapse"]["steps"], "21": ["x"]}}}
    assert _near_dup_rates(samples_context(grown, previous=damaged, carry={}), cfg)[2] == worst
    if 21 in judged_now:
        assert compared[-1] == {21}
    assert before[0].size


def test_completions_without_a_step_are_left_out() -> None:
    """They failed the detector (an empty group range: ValueError) before."""
    rows = [{C.STEP: st, GROUP: f"{st}:q", C.OUTPUT: "the same text again"} for st in [1, 1, 2, 2, None, None]]
    samples = (
        pl.DataFrame(rows, schema={C.STEP: pl.Int64, GROUP: pl.String, C.OUTPUT: pl.String})
        .with_row_index(C.SAMPLE_ID)
        .with_columns(pl.col(C.SAMPLE_ID).cast(pl.Int64))
    )
    steps, vals, worst = _near_dup_rates(samples_context(samples, carry={}), default_config()["mode_collapse"])
    assert (steps.tolist(), vals.tolist(), worst) == ([1, 2], [1.0, 1.0], {1: [0, 1], 2: [2, 3]})
