"""The run's own answer and format conventions (analyzer.features): answers read from the common
conventions, tags learned from the run, a configured pattern, and the coverage of the accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer import columns as C
from analyzer import features as F
from analyzer.config import load_config
from analyzer.detectors import run_detectors
from analyzer.errors import EXIT_USAGE, ConfigError
from analyzer.features import build_features, completion_features, learn_conventions
from analyzer.metrics import compute_metrics
from analyzer.model import IngestReport, RunData

DAPO = "JuncyLu__trl_DAPO/training_logs__20251022_181457__rollout_results.md"
PROMPT = (
    "You are a precise assistant. First think privately and output exactly one reasoning block: "
    "<think> This is my reasoning. </think>; then on a new line output the final choice exactly as "
    "Answer: X.\nQuestion: {q}\nChoices:\nA. pool\nB. pond\nC. ocean\nD. swamp"
)


def frame(outputs: list[str], truths: list[str | None], prompts: list[str] | None = None, **extra) -> pl.DataFrame:
    data = {
        C.STEP: [1] * len(outputs),
        C.OUTPUT: outputs,
        C.GROUND_TRUTH: truths,
        C.SAMPLE_ID: list(range(len(outputs))),
    }
    if prompts is not None:
        data[C.QUESTION] = prompts
    data.update(extra)
    data.setdefault(C.SPLIT, ["train"] * len(outputs))
    data.setdefault(C.GROUP_ID, [f"1:{i // 4}" for i in range(len(outputs))])
    return pl.DataFrame(data, schema_overrides={C.GROUND_TRUTH: pl.Utf8})


def answers(gens: pl.DataFrame, **kw) -> list[str | None]:
    return completion_features(gens, **kw)[F.ANSWER].to_list()


@pytest.mark.parametrize(
    ("output", "truth", "expected"),
    [
        ("<reasoning>r</reasoning><answer>42</answer>", "42", "42"),
        # nested and repeated tags: the innermost of the last pair
        ("<answer>\n<answer>7</answer>\n</answer> junk <answer>\n<answer>8</answer></answer>", "8", "8"),
        ("so x = 1/2, hence \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}", "\\frac{1}{2}"),
        ("Janet has 16 - 3 - 4 = 9 eggs.\n#### 18", "18", "18"),
        ("Let me see.\n**Final answer:** 18 dollars", "18", "18"),
        ("Hmm. The answer is 18 because 3 times 6 is 18.", "18", "18"),
        ("reasoning ... Answer: B. pond", "B", "B"),
        ("Answer: (C)", "C", "C"),
    ],
)
def test_answers_are_read_from_the_common_conventions(output: str, truth: str, expected: str) -> None:
    gens = frame([output] * 20, [truth] * 20)
    got = completion_features(gens)
    assert got[F.ANSWER][0] == expected, learn_conventions(gens)
    assert got[F.CORRECT][0] == 1.0
    assert got[F.HAS_ANSWER][0]


def test_last_number_only_when_the_run_states_no_marker() -> None:
    gens = frame(["she has 3 apples and buys 4, so 7", "the total is 12 in all"], ["7", "12"])
    assert learn_conventions(gens).answer_from == ("last_number",)
    assert answers(gens) == ["7", "12"]
    # with a marker in use, a completion without it has no answer (not its last number)
    gens = frame(["Answer: 7"] * 9 + ["she has 3 apples and buys 4, so 7"], ["7"] * 10)
    assert answers(gens)[-1] is None


def test_ambiguous_answers_are_not_made_correct() -> None:
    gens = frame(["<answer>41 or 42 or 43</answer>", "<answer>5, 6</answer>"] * 5, ["42", "5"] * 5)
    assert completion_features(gens)[F.CORRECT].to_list()[:2] == [0.0, 0.0]


def test_tags_learned_from_the_prompts_when_they_state_the_format() -> None:
    outs = ["<think> water, ducks </think>\nAnswer: B. pond", "<think>x</think>\nB. pond", "no format at all"]
    gens = frame(outs * 10, ["B"] * 30, [PROMPT.format(q="What body of water is this?")] * 30)
    conv = learn_conventions(gens)
    assert (conv.reasoning_tag, conv.answer_tag, conv.source) == ("think", None, "prompts")
    assert conv.answer_from[:2] == ("answer_line", "after_reasoning")
    got = completion_features(gens)
    assert got[F.FORMAT_OK].to_list()[:3] == [1.0, 1.0, 0.0]
    assert got[F.CORRECT].to_list()[:3] == [1.0, 1.0, 0.0]
    assert got[F.HAS_ANSWER].to_list()[:3] == [True, True, False]


def test_tags_learned_from_the_completions_without_prompts() -> None:
    gens = frame(["<think>a</think><answer>3</answer>"] * 8 + ["3"] * 2, ["3"] * 10)
    conv = learn_conventions(gens)
    assert (conv.reasoning_tag, conv.answer_tag, conv.source) == ("think", "answer", "completions")
    assert completion_features(gens)[F.FORMAT_OK].to_list() == [1.0] * 8 + [0.0] * 2


def test_configured_tags_win_when_the_run_uses_them() -> None:
    gens = frame(["<reasoning>a</reasoning><answer>3</answer>", "<think>b</think><answer>3</answer>"] * 5, ["3"] * 10)
    conv = learn_conventions(gens)
    assert conv.tags == ("reasoning", "answer") and conv.source == "config"


def test_a_trainer_logged_answer_is_used_as_logged() -> None:
    gens = frame(["<answer>3</answer>", "Answer: 4"], ["3", "4"], **{C.ANSWER: ["3", "four"]})
    assert learn_conventions(gens).answer_from == ("logged",)
    assert completion_features(gens)[F.CORRECT].to_list() == [1.0, 0.0]


def test_a_configured_pattern_reads_the_answer() -> None:
    gens = frame(["RESULT=[12] Answer: 3", "RESULT=[4]"], ["12", "4"])
    assert answers(gens, answer_pattern=r"RESULT=\[(?P<answer>\d+)\]") == ["12", "4"]
    assert answers(gens, answer_pattern=r"RESULT=\[(\d+)\]") == ["12", "4"]


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ('"Final: .+"', "missing a capture group"),
        ('"(?<=Final: )(.+)"', "not supported by Polars' regex engine"),
        ('"(unclosed"', "not a valid regular expression"),
    ],
)
def test_a_bad_answer_pattern_is_a_clear_config_error(tmp_path: Path, value: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        load_config(None, overrides=[f"general.answer_pattern={value}"], cwd=tmp_path)
    assert err.value.exit_code == EXIT_USAGE
    assert "\n" not in str(err.value)


def test_a_bad_answer_pattern_in_a_config_file_exits_2(tmp_path: Path, repo_root: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "logscan.toml").write_text('[general]\nanswer_pattern = "no group"\n')
    run = repo_root / "examples" / "runs" / "healthy-grpo"
    proc = subprocess.run(
        [sys.executable, "-m", "analyzer.cli", "analyze", str(run), "--config", str(tmp_path / "logscan.toml"),
         "--output", str(tmp_path / "out")],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "general.answer_pattern 'no group': missing a capture group" in proc.stderr


# ---- the DAPO case: "Answer: B. pond" and <think> tags, the format learned then lost ---------------


def dapo_twin(n_steps: int = 36, per_step: int = 16, seed: int = 0) -> RunData:
    """A generated twin of the real DAPO rollout log: prompts state <think> + "Answer: X", letter
    ground truths; the format holds for the first steps, then the completions drop it."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in (C.STEP, C.QUESTION, C.GROUND_TRUTH, C.OUTPUT, "reward/accuracy", "reward/format")}
    for step in range(n_steps):
        fmt_p = 0.9 if step < 8 else max(0.0, 0.9 - 0.15 * (step - 7))
        for _ in range(per_step):
            truth = "ABCD"[int(rng.integers(4))]
            pick = truth if rng.random() < 0.7 else "ABCD"[int(rng.integers(4))]
            words = " ".join(rng.choice(["water", "ducks", "grass", "the", "image", "shows"], 12))
            if rng.random() < fmt_p:
                out = f"<think> {words} </think>\nAnswer: {pick}. pond"
                fmt = 1.0
            else:
                out = f"{words}\nThe scene suggests {pick}. pond is likely. Answer: {pick}. pond"
                fmt = 0.0
            rows[C.STEP].append(step)
            rows[C.QUESTION].append(PROMPT.format(q=f"What is in image {step}?"))
            rows[C.GROUND_TRUTH].append(truth)
            rows[C.OUTPUT].append(out)
            rows["reward/accuracy"].append(float(pick == truth))
            rows["reward/format"].append(fmt)
    gens = pl.DataFrame(rows).with_columns(
        pl.int_range(pl.len()).cast(pl.Int64).alias(C.SAMPLE_ID),
        pl.lit("train").alias(C.SPLIT),
        (pl.col("reward/accuracy") * 2 + pl.col("reward/format")).alias(C.TOTAL_REWARD),
    )
    return RunData(path="<dapo twin>", steps=None, generations=gens, report=IngestReport("test"))


def check_dapo(run: RunData, *, min_agreement: float) -> None:
    features = build_features(run)
    assert features is not None and features.conventions is not None
    conv = features.conventions
    assert conv.reasoning_tag == "think" and "answer_line" in conv.answer_from
    metrics = compute_metrics(run, features=features)
    acc = metrics[C.GEN_ACCURACY].drop_nulls()
    # the recomputed accuracy is the run's: not 0 at almost every step
    assert (acc > 0).mean() >= 0.8, acc.to_list()
    cov = metrics[C.GEN_ANSWER_COVERAGE].drop_nulls()
    assert cov.len() == acc.len() and cov.head(5).min() >= 0.75
    # format compliance agrees with the run's own format reward, completion by completion
    f = features.frame.with_columns(run.generations["reward/format"])
    assert (f[F.FORMAT_OK] == f["reward/format"]).mean() >= min_agreement
    # and its fall is reported, read from the completions — not "never learned"
    alerts, _ = run_detectors(run, metrics, None, None, features=features)
    fr = [a for a in alerts if a.kind == "format_regression"]
    assert fr and fr[0].evidence["learned_peak"] >= 0.8, [(a.kind, a.message) for a in alerts]
    assert "think" in fr[0].evidence["format"]
    # the run's own format reward is judged as well, and fell with it
    assert "gen_reward/format_mean" in fr[0].evidence["also_fell"], fr[0].evidence


def test_dapo_twin_reads_the_runs_own_conventions() -> None:
    check_dapo(dapo_twin(), min_agreement=0.99)


def test_real_dapo_rollouts_read_the_runs_own_conventions(real_run) -> None:
    run = real_run(DAPO)
    check_dapo(run, min_agreement=0.85)


# ---- a logged format / accuracy reward is a first-class signal -------------------------------------


def test_a_logged_format_reward_is_judged_with_the_completions() -> None:
    """Completions without tags (no format to recompute) and a logged format reward that falls:
    format_regression reads the reward, at full severity."""
    run = dapo_twin(n_steps=40)
    gens = run.generations.with_columns(pl.col(C.OUTPUT).str.replace_all(r"</?think>", "")).drop(C.QUESTION)
    run = RunData(path="<no tags>", steps=None, generations=gens, report=IngestReport("test"))
    features = build_features(run)
    assert features is not None and features.frame[F.FORMAT_OK].null_count() == gens.height
    alerts, _ = run_detectors(run, compute_metrics(run, features=features), None, None, features=features)
    fr = [a for a in alerts if a.kind == "format_regression"]
    assert fr and "format" in fr[0].evidence["signal"] and fr[0].severity.value == "critical", alerts


def test_a_logged_accuracy_reward_is_a_truth_signal_for_reward_hacking() -> None:
    """No ground truth: the total reward keeps rising on a style component while the run's own
    accuracy reward falls — reward_hacking says so, from the accuracy reward."""
    rng = np.random.default_rng(1)
    n = 120
    t = np.arange(n)
    acc = np.clip(0.3 + 0.4 * np.minimum(t, 50) / 50 - 0.5 * np.clip((t - 60) / 10, 0, 1), 0, 1)
    style = 0.2 + 0.7 * np.clip((t - 55) / 20, 0, 1)
    steps = pl.DataFrame(
        {
            C.STEP: t.astype(np.int64),
            "rewards/accuracy_reward/mean": acc + 0.03 * rng.standard_normal(n),
            "rewards/style_reward/mean": style + 0.03 * rng.standard_normal(n),
        }
    ).with_columns((pl.col("rewards/accuracy_reward/mean") + 2 * pl.col("rewards/style_reward/mean")).alias(C.REWARD))
    run = RunData(path="<acc reward>", steps=steps, generations=None, report=IngestReport("test"))
    alerts, _ = run_detectors(run, compute_metrics(run), None, None)
    hack = [a for a in alerts if a.kind == "reward_hacking" and a.evidence.get("check") == "proxy_up_truth_down"]
    assert hack and "accuracy_reward" in hack[0].evidence["truth"], [(a.kind, a.message) for a in alerts]
    assert abs(hack[0].step - 60) <= 6


# ---- the coverage is shown wherever the recomputed accuracy is ---------------------------------


def test_reports_show_the_accuracy_with_its_coverage(tmp_path: Path, repo_root: Path) -> None:
    import json

    jsonschema = pytest.importorskip("jsonschema")
    from analyzer.pipeline import AnalyzeOptions, analyze_run

    run = dapo_twin()
    out = tmp_path / "out"
    analysis = analyze_run(run, AnalyzeOptions(output_dir=out, no_embeddings=True), run_path=tmp_path, config=None)
    assert analysis.conventions is not None and analysis.conventions["reasoning_tag"] == "think"
    data = json.loads((out / "analysis.json").read_text())
    jsonschema.validate(data, json.loads((repo_root / "analyzer" / "analysis.schema.json").read_text()))
    answers = data["summary"]["answers"]
    assert answers["conventions"]["answer_from"][:2] == ["answer_line", "after_reasoning"]
    assert 0.5 < answers["coverage"] <= 1 and answers["coverage_min_step"] >= 0
    assert C.GEN_ANSWER_COVERAGE in data["metrics"]
    md = (out / "report.md").read_text()
    note = f"answers read from {answers['coverage']:.0%} of the completions with a ground truth"
    # beside the accuracy in the metrics table, in the plots' captions, and how answers were read
    assert f"`{C.GEN_ACCURACY}` ({note}" in md
    assert f"accuracy from {note}" in md
    assert "Completions were read with tags &lt;think&gt; (from the prompts)" in md
    html = (out / "report.html").read_text()
    assert note in html and "accuracy from" in html


def test_no_completions_no_answers_summary(tmp_path: Path) -> None:
    import json

    from analyzer.pipeline import AnalyzeOptions, analyze_run

    steps = pl.DataFrame({C.STEP: list(range(20)), C.REWARD: [0.1 * i for i in range(20)]})
    run = RunData(path="<scalars>", steps=steps, generations=None, report=IngestReport("test"))
    out = tmp_path / "out"
    analyze_run(run, AnalyzeOptions(output_dir=out, no_embeddings=True, no_plots=True), run_path=tmp_path)
    assert json.loads((out / "analysis.json").read_text())["summary"]["answers"] is None


_TAG_PIECES = ["<answer>", "</answer>", "<answer", "answer>", "</answer", "\n", "\r\n", " 42 ", "B", "é", "<think>", ""]


def _tag_pair_by_one_regex(output: pl.Expr, tag: str) -> pl.Expr:
    """The innermost of the last pair, read with one dot-all regex (what ``_last_tag_pair`` speeds up)."""
    return (
        output.str.extract_all(f"(?s)<{tag}>.*?</{tag}>")
        .list.last()
        .str.replace(f"(?s)^.*<{tag}>", "")
        .str.strip_suffix(f"</{tag}>")
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.lists(st.sampled_from(_TAG_PIECES), max_size=12).map("".join)), max_size=20))
def test_the_last_tag_pair_equals_the_one_regex_reading(outputs: list[str | None]) -> None:
    texts = pl.DataFrame({"o": pl.Series(outputs, dtype=pl.String)})
    fast = texts.select(F._last_tag_pair(pl.col("o"), "answer")).to_series().to_list()
    assert fast == texts.select(_tag_pair_by_one_regex(pl.col("o"), "answer")).to_series().to_list()


_TRUTHS = [None, "", " 1,000 ", "1000", "$1e3", "B", "(b)", "Paris.", "42", "-0", "x = 7", "nan"]
_ANSWER_TEXTS = ["<answer>B. pond</answer>", "<answer>x = 18 apples</answer>", "Answer: 1,000", "the answer is 42.", "", "(C)", "no answer"]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_ANSWER_TEXTS), st.sampled_from(_TRUTHS)), min_size=1, max_size=15))
def test_truth_readings_joined_per_distinct_truth_equal_the_per_row_ones(rows: list[tuple[str, str | None]]) -> None:
    # the answer reduced to the truth's form and the exact match, with the truth's readings computed
    # per row or once per distinct truth and joined back: the same values, row for row
    data = pl.DataFrame({"o": [o for o, _ in rows], "t": [t for _, t in rows]}, schema={"o": pl.String, "t": pl.String})
    conv = F.Conventions(None, "answer", ("tag", "answer_line", "answer_is"), letter_truths=True, number_truths=True)
    per_row = F.with_answer(data.lazy().with_columns(pl.lit(None, pl.String).alias("l")), "o", "l", "t", conv, "a")
    per_row = F.with_exact_match(per_row, pl.col("a"), pl.col("t"), "em").collect()
    joined = F.with_truth_readings(data.lazy().with_columns(pl.lit(None, pl.String).alias("l")), data["t"], "t")
    joined = F.with_answer(joined, "o", "l", "t", conv, "a", truth_readings=True)
    joined = F.with_exact_match(joined, pl.col("a"), pl.col("t"), "em", truth_readings=True).collect()
    assert joined.select("o", "t", "a", "em").equals(per_row.select("o", "t", "a", "em"))
