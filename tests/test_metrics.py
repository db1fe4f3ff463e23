"""analyzer.metrics on hand-built frames whose answers are known."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer import columns as C
from analyzer.metrics import (
    compute_metrics,
    exact_match,
    format_ok,
    repeated_ngram_rates,
    with_exact_match,
)
from analyzer.model import IngestReport, RunData


def make_run(rows: list[dict], steps: pl.DataFrame | None = None) -> RunData:
    gens = pl.DataFrame(rows, infer_schema_length=None)
    gens = gens.with_columns(pl.int_range(pl.len()).cast(pl.Int64).alias(C.SAMPLE_ID))
    if steps is None:
        steps = pl.DataFrame({C.STEP: pl.Series([], dtype=pl.Int64)})
    return RunData(path="mem", steps=steps, generations=gens, report=IngestReport("test"))


def gen(step: int, output: str = "x", *, reward: float = 0.0, answer: str | None = None, truth: str | None = None,
        split: str | None = "train", qid: str = "q", group: str | None = None, **rewards: float) -> dict:
    row = {
        C.STEP: step, C.SPLIT: split, C.QUESTION_ID: qid, C.GROUP_ID: group, C.OUTPUT: output,
        C.ANSWER: answer, C.GROUND_TRUTH: truth, C.TOTAL_REWARD: reward,
    }
    row.update({f"{C.REWARD_PREFIX}{k}": v for k, v in rewards.items()})
    return row


def row_of(metrics: pl.DataFrame, step: int) -> dict:
    return metrics.filter(pl.col(C.STEP) == step).to_dicts()[0]


@pytest.mark.parametrize(
    ("answer", "truth", "expected"),
    [
        ("1,000", "1000", 1.0),
        ("1000.0", "1000", 1.0),
        ("1000", "1,000", 1.0),
        ("12,345,678.5", "12345678.5", 1.0),
        ("$18", "18", 1.0),
        ("1e3", "1000", 1.0),
        ("  Paris. ", "paris", 1.0),
        ("PARIS", "Paris.", 1.0),
        ("-3", "-3.0", 1.0),
        ("0.1", "0.10", 1.0),
        ("19", "119", 0.0),
        ("18, 19, 20", "19", 0.0),  # a list of numbers is not the answer
        ("1,2", "12", 0.0),  # not a thousands separator
        ("nan", "nan", 1.0),  # text, compared as text
        ("london", "paris", 0.0),
        (None, "7", 0.0),  # no answer: wrong
        ("7", None, None),  # no ground truth: unknown
        ("7", "", None),
    ],
)
def test_exact_match_normalisation(answer, truth, expected):
    df = pl.DataFrame({"a": [answer], "t": [truth]}, schema={"a": pl.Utf8, "t": pl.Utf8})
    got = df.select(exact_match(pl.col("a"), pl.col("t"))).item()
    assert got == expected


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("<reasoning>r</reasoning><answer>1</answer>", 1.0),
        ("<reasoning>multi\nline</reasoning>\n\n<answer>\n1\n</answer>", 1.0),
        ("<answer>1</answer><reasoning>r</reasoning>", 0.0),  # wrong order
        ("<reasoning>r</reasoning>", 0.0),  # no answer
        ("<answer>1</answer>", 0.0),  # no reasoning
        ("<reasoning>r<answer>1</answer></reasoning>", 0.0),  # answer inside reasoning
        ("<reasoning>r</reasoning><answer>1", 0.0),  # unclosed
        ("plain text", 0.0),
    ],
)
def test_format_compliance(output, expected):
    df = pl.DataFrame({"o": [output]})
    assert df.select(format_ok(pl.col("o"))).item() == expected


def test_format_compliance_custom_tags():
    df = pl.DataFrame({"o": ["<think>a</think><final>b</final>", "<reasoning>a</reasoning><answer>b</answer>"]})
    assert df.select(format_ok(pl.col("o"), ("think", "final"))).to_series().to_list() == [1.0, 0.0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a b c d", 0.0),  # one 4-gram
        ("a b c d a b c d", 1 - 4 / 5),  # 5 grams: abcd bcda cdab dabc abcd
        ("w w w w w w", 1 - 1 / 3),
        ("a  b\n\tc d  e", 0.0),  # any whitespace separates words
        ("one two three", None),  # fewer than 4 words
        ("", None),
    ],
)
def test_repeated_ngram_rate(text, expected):
    got = repeated_ngram_rates(pl.Series("t", [text])).item()
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


def test_repeated_ngram_rates_keep_order_and_do_not_cross_texts():
    # the last 3 words of one text and the first of the next must not form an n-gram
    texts = pl.Series("t", ["a b c", "a b c d", None, "a b c d a b c d", "x x x x x"])
    got = repeated_ngram_rates(texts).to_list()
    assert got[0] is None and got[1] == 0.0 and got[2] is None
    assert got[3] == pytest.approx(0.2) and got[4] == pytest.approx(0.5)


def test_reward_stats_lengths_and_accuracy_per_step():
    run = make_run(
        [
            gen(1, "<reasoning>a b</reasoning><answer>4</answer>", reward=1.0, answer="4", truth="4", correctness=1.0),
            gen(1, "<answer>5</answer>", reward=0.0, answer="5", truth="4", correctness=0.0),
            gen(1, "three words here", reward=2.0, answer=None, truth="4", correctness=0.5),
            gen(2, "<reasoning>x</reasoning><answer>1,000</answer>", reward=3.0, answer="1,000", truth="1000", correctness=1.0),
        ]
    )
    m = compute_metrics(run)
    assert m.get_column(C.STEP).to_list() == [1, 2]
    r1 = row_of(m, 1)
    assert r1[C.GEN_COUNT] == 3
    assert r1[C.GEN_REWARD_MEAN] == pytest.approx(1.0)
    assert r1[C.GEN_REWARD_STD] == pytest.approx(1.0)  # sample std of 1, 0, 2
    assert (r1[C.GEN_REWARD_MIN], r1[C.GEN_REWARD_MAX]) == (0.0, 2.0)
    assert r1[C.GEN_REWARD_P50] == pytest.approx(1.0)
    assert r1[C.GEN_REWARD_P10] == pytest.approx(0.2)
    assert r1[C.GEN_REWARD_P90] == pytest.approx(1.8)
    assert r1[C.GEN_ACCURACY] == pytest.approx(1 / 3)
    assert r1[C.GEN_FORMAT_OK] == pytest.approx(1 / 3)
    lengths = [len("<reasoning>a b</reasoning><answer>4</answer>"), len("<answer>5</answer>"), len("three words here")]
    assert r1[C.GEN_LEN_CHARS] == pytest.approx(sum(lengths) / 3)
    assert r1[C.GEN_LEN_TOKENS] == pytest.approx((2 + 1 + 3) / 3)
    assert r1["gen_reward/correctness_mean"] == pytest.approx(0.5)
    assert r1["gen_reward/correctness_max"] == 1.0
    assert r1["gen_reward/correctness_p50"] == 0.5
    assert row_of(m, 2)[C.GEN_ACCURACY] == 1.0
    # the reward–length correlation within step 1: rewards 1, 0, 2 against lengths
    import numpy as np

    assert r1[C.GEN_REWARD_LENGTH_CORR] == pytest.approx(float(np.corrcoef([1, 0, 2], lengths)[0, 1]))


def test_nonfinite_rewards_are_counted_not_averaged():
    run = make_run([gen(1, reward=1.0), gen(1, reward=float("nan")), gen(1, reward=float("inf")), gen(1, reward=3.0)])
    r = row_of(compute_metrics(run), 1)
    assert r[C.GEN_REWARD_MEAN] == pytest.approx(2.0)
    assert r[C.GEN_REWARD_NONFINITE] == pytest.approx(0.5)


def test_accuracy_is_null_without_ground_truth_and_format_null_without_tags():
    run = make_run([gen(1, "plain", answer="3"), gen(1, "text", answer="4")])
    r = row_of(compute_metrics(run), 1)
    assert r[C.GEN_ACCURACY] is None
    assert r[C.GEN_FORMAT_OK] is None  # the run never uses the tags: nothing to comply with


def test_answer_extracted_from_output_when_no_model_answer_column():
    run = make_run([gen(1, "<reasoning>r</reasoning><answer> 42 </answer>", truth="42"), gen(1, "no tags", truth="42")])
    run.generations = run.generations.drop(C.ANSWER)
    assert row_of(compute_metrics(run), 1)[C.GEN_ACCURACY] == 0.5


def test_zero_spread_groups_by_accuracy_and_by_reward():
    rows = [
        # step 1, group g1: equal rewards, all correct
        *[gen(1, reward=1.0, answer="5", truth="5", group="g1") for _ in range(2)],
        # group g2: equal rewards, all wrong
        *[gen(1, reward=0.0, answer="6", truth="5", group="g2") for _ in range(2)],
        # group g3: spread
        gen(1, reward=0.0, answer="6", truth="5", group="g3"),
        gen(1, reward=1.0, answer="5", truth="5", group="g3"),
        # group g4: equal rewards but mixed accuracy (a lenient verifier): zero spread, neither
        gen(1, reward=1.0, answer="5", truth="5", group="g4"),
        gen(1, reward=1.0, answer="5, 6", truth="5", group="g4"),
        # a singleton group has no spread to speak of: not counted
        gen(1, reward=1.0, answer="5", truth="5", group="g5"),
    ]
    r = row_of(compute_metrics(make_run(rows)), 1)
    assert r[C.GEN_ZERO_SPREAD_GROUPS] == pytest.approx(3 / 4)
    assert r[C.GEN_ZERO_SPREAD_ALL_CORRECT] == pytest.approx(1 / 4)
    assert r[C.GEN_ZERO_SPREAD_ALL_WRONG] == pytest.approx(1 / 4)


def test_zero_spread_without_group_id_uses_question_id_and_reward_extremes():
    rows = [
        *[gen(1, reward=2.0, qid="a") for _ in range(3)],  # the highest reward of the split: all correct
        *[gen(1, reward=0.0, qid="b") for _ in range(3)],  # the lowest: all wrong
        *[gen(1, reward=1.0, qid="c") for _ in range(3)],  # constant but in between: neither
        gen(2, reward=0.0, qid="a"),
        gen(2, reward=2.0, qid="a"),
    ]
    m = compute_metrics(make_run(rows))
    r1 = row_of(m, 1)
    assert r1[C.GEN_ZERO_SPREAD_GROUPS] == 1.0
    assert r1[C.GEN_ZERO_SPREAD_ALL_CORRECT] == pytest.approx(1 / 3)
    assert r1[C.GEN_ZERO_SPREAD_ALL_WRONG] == pytest.approx(1 / 3)
    assert row_of(m, 2)[C.GEN_ZERO_SPREAD_GROUPS] == 0.0


def test_eval_and_probe_are_prefixed_and_null_split_is_train():
    rows = [
        gen(1, reward=1.0, split=None),
        gen(1, reward=3.0, split="train"),
        gen(1, reward=5.0, split="eval", answer="1", truth="1"),
        gen(2, reward=7.0, split="probe"),
    ]
    m = compute_metrics(make_run(rows))
    r1, r2 = row_of(m, 1), row_of(m, 2)
    assert r1[C.GEN_COUNT] == 2 and r1[C.GEN_REWARD_MEAN] == 2.0
    assert r1["eval/" + C.GEN_COUNT] == 1 and r1["eval/" + C.GEN_ACCURACY] == 1.0
    assert r1["probe/" + C.GEN_COUNT] is None
    assert r2["probe/" + C.GEN_REWARD_MEAN] == 7.0
    assert r2[C.GEN_COUNT] is None
    assert not any(c.startswith("train/") for c in m.columns)


def test_join_with_logged_scalars_is_full_outer_and_sorted():
    steps = pl.DataFrame({C.STEP: [3, 0, 1], C.LOSS: [0.3, 1.0, 0.5], "eval/reward": [None, None, 0.7]})
    run = make_run([gen(5, reward=1.0), gen(1, reward=2.0)], steps=steps)
    m = compute_metrics(run)
    assert m.get_column(C.STEP).to_list() == [0, 1, 3, 5]
    assert m.get_column(C.LOSS).to_list() == [1.0, 0.5, 0.3, None]
    assert m.get_column(C.GEN_REWARD_MEAN).to_list() == [None, 2.0, None, 1.0]
    assert m.get_column("eval/reward").to_list() == [None, 0.7, None, None]
    assert m.schema[C.STEP] == pl.Int64


def test_no_generations_returns_the_scalars():
    steps = pl.DataFrame({C.STEP: [2, 1], C.KL: [0.2, 0.1]})
    run = RunData(path="mem", steps=steps, generations=None, report=IngestReport("test"))
    m = compute_metrics(run)
    assert m.columns == [C.STEP, C.KL]
    assert m.get_column(C.STEP).to_list() == [1, 2]


def test_ngram_sample_caps_completions_per_step():
    rows = [gen(1, "a b c d") for _ in range(3)] + [gen(1, "z z z z z z z z") for _ in range(3)]
    full = row_of(compute_metrics(make_run(rows)), 1)[C.GEN_REPEAT_NGRAM]
    capped = row_of(compute_metrics(make_run(rows), ngram_sample=3), 1)[C.GEN_REPEAT_NGRAM]
    assert full == pytest.approx((0 + 0 + 0 + 0.8 * 3) / 6)
    assert capped == 0.0  # only the three lowest sample_ids


# --- the fast paths agree with their plain definitions ----------------------------------------------
# Regex ``\s`` (Rust, Unicode): the characters the numpy word counter and the n-gram split treat as
# whitespace; the alphabet also holds look-alikes that are not whitespace (U+200B, U+001C, "…").
_SPACES = " \t\n\x0b\x0c\r\x85\xa0\u1680\u2000\u2005\u200a\u2028\u2029\u202f\u205f\u3000"
_ALPHABET = _SPACES + "\u200b\x1c\x00\x08\x0e\x1f!\u2026\u1681\u3001©ab日é😀"  # © \u1681 \u3001: lead bytes of spaces, not spaces


def _words(text: str) -> list[str]:
    import re

    return [w for w in re.split(f"[{re.escape(_SPACES)}]+", text) if w]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(alphabet=_ALPHABET, max_size=30)), max_size=40), st.integers(1, 5))
def test_whitespace_token_counts_match_the_regex_and_plain_splitting(texts, slice_rows):
    import analyzer.features as M  # the word-count kernel lives with the feature frame

    s = pl.Series("t", texts, dtype=pl.String)
    old = M._TOKEN_SLICE
    M._TOKEN_SLICE = slice_rows  # many slices (and the thread pool) even on a short column
    try:
        got = M.whitespace_token_counts(s)
    finally:
        M._TOKEN_SLICE = old
    assert got.dtype == pl.UInt32
    assert got.to_list() == s.str.count_matches(r"\S+").to_list()
    assert got.to_list() == [None if t is None else len(_words(t)) for t in texts]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(alphabet=_SPACES[:3] + "\xa0\u3000ab", max_size=30)), max_size=30))
def test_repeated_ngram_rates_match_a_plain_python_count(texts):
    got = repeated_ngram_rates(pl.Series("t", texts, dtype=pl.String)).to_list()
    want = []
    for t in texts:
        words = _words(t or "")
        grams = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
        want.append(1.0 - len(set(grams)) / len(grams) if grams else None)
    assert got == pytest.approx(want)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([None, "", " 1,000 ", "1000", "$1e3", "Paris.", "paris", "x", "nan", "-0", "0"]),
                          st.sampled_from([None, "", "1000", "paris", "0", "X"])), min_size=1, max_size=12))
def test_staged_accuracy_equals_the_exact_match_expression(pairs):
    # completions with no answer of their own to read (a bare "x" reads as choice x for truth "X")
    rows = [gen(1 + i % 2, "", answer=a, truth=t) for i, (a, t) in enumerate(pairs)]
    m = compute_metrics(make_run(rows))
    frame = pl.DataFrame(rows, infer_schema_length=None).with_columns(
        exact_match(pl.col(C.ANSWER).cast(pl.String), pl.col(C.GROUND_TRUTH).cast(pl.String)).alias("em")
    )
    want = frame.group_by(C.STEP).agg(pl.col("em").mean()).sort(C.STEP)["em"].to_list()
    assert m.sort(C.STEP)[C.GEN_ACCURACY].to_list() == want
    staged = with_exact_match(frame.lazy(), pl.col(C.ANSWER).cast(pl.String), pl.col(C.GROUND_TRUTH).cast(pl.String), "s")
    assert staged.collect()["s"].to_list() == frame["em"].to_list()


def test_detectors_reuse_the_metrics_features_and_get_the_same_frame():
    """The completion-feature frame is built once (analyzer.features) and read by the metrics and
    the detectors; the detectors' frame is the same whether it reuses it or computes it itself."""
    from analyzer.detectors.text import CORRECT, N_TOKENS, sample_features
    from analyzer.features import CORRECT as F_CORRECT
    from analyzer.features import build_features

    run = make_run([
        gen(1, "<reasoning>a b</reasoning><answer>4</answer>", answer="4", truth="4", group="g1"),
        gen(1, "<reasoning>a  b\tc</reasoning><answer>5</answer>", answer="5", truth="4", group="g1"),
        gen(2, "no tags at all", answer=None, truth="1,000", group="g2"),
        gen(2, "<answer>1000.0</answer>", answer="1000.0", truth="1,000", group="g2"),
    ])
    features = build_features(run)
    assert features is not None
    assert features.frame[F_CORRECT].to_list() == [1.0, 0.0, 0.0, 1.0]
    assert compute_metrics(run, features=features).equals(compute_metrics(run))
    assert run.generations is not None
    reused = sample_features(run.generations, features=features)
    computed = sample_features(run.generations)
    assert reused.equals(computed)
    assert reused[N_TOKENS].to_list() == [2.0, 3.0, 4.0, 1.0]  # whitespace-separated words
    assert reused[CORRECT].to_list() == [1.0, 0.0, 0.0, 1.0]
    # not aligned (another frame): computed, not borrowed
    other = sample_features(run.generations.head(2), features=features)
    assert other[CORRECT].to_list() == [1.0, 0.0]
    # other tags: the frame does not match, nothing is borrowed
    assert not features.matches(run.generations, ("think", "answer"))


def test_feature_frame_keeps_stepless_rows_and_metrics_leave_them_out():
    """The frame is row for row with the completions (a completion without a step included); the
    metrics aggregate only the rows that have a step — the same numbers as without the frame."""
    from analyzer.features import build_features

    run = make_run([gen(1, answer="4", truth="4"), gen(1, answer="5", truth="4"), gen(2, answer="4", truth="4")])
    assert run.generations is not None
    run.generations = run.generations.with_columns(
        pl.when(pl.col(C.SAMPLE_ID) == 1).then(None).otherwise(pl.col(C.STEP)).alias(C.STEP)
    )
    features = build_features(run)
    assert features is not None and features.frame.height == 3
    assert compute_metrics(run, features=features).equals(compute_metrics(run))


def test_detector_features_follow_the_metrics_definitions_without_an_answer_column():
    """No model_answer column (TRL / verl completions) and a null completion: the detectors' exact
    match and word counts are the metrics' (answer read from the answer tag; null words for a null
    completion) whether they reuse the completion-feature frame or compute it themselves."""
    from analyzer.detectors.text import CORRECT, N_TOKENS, sample_features
    from analyzer.features import build_features

    gens = pl.DataFrame({
        C.STEP: [1, 1, 2],
        C.OUTPUT: ["<answer>4</answer>", None, "<answer>5</answer>"],
        C.GROUND_TRUTH: ["4", "4", "4"],
        C.TOTAL_REWARD: [1.0, 0.0, 1.0],
    }).with_columns(pl.int_range(pl.len()).cast(pl.Int64).alias(C.SAMPLE_ID))
    run = RunData(path="mem", steps=pl.DataFrame({C.STEP: pl.Series([], dtype=pl.Int64)}), generations=gens,
                  report=IngestReport("test"))
    metrics = compute_metrics(run)
    assert row_of(metrics, 1)[C.GEN_ACCURACY] == 0.5  # the tag's answer 4 is right; no answer is wrong
    gens = run.generations  # with its keys (split, group) complete: analyzer.model.completion_keys
    assert gens is not None
    reused = sample_features(gens, features=build_features(run))
    computed = sample_features(gens)
    assert reused.equals(computed)
    assert computed[CORRECT].to_list() == [1.0, 0.0, 0.0]
    assert computed[N_TOKENS].to_list() == [1.0, None, 1.0]
