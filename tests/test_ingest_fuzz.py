"""Property: whatever a generations file holds, logscan reads it or says why in one line.

Hypothesis writes logscan-format JSONL and seed-schema CSV files whose fields hold any JSON value
(numbers, the non-finite strings, text, booleans, nulls, nested lists and objects), unknown keys,
odd reward maps and broken lines; the whole pipeline (ingest, metrics, detectors, drift by TF-IDF)
must finish or raise a ``LogscanError`` — never another exception, and no detector may fail with
an internal error.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.errors import LogscanError
from analyzer.pipeline import AnalyzeOptions, analyze

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "nan", " 1.5 ", "1,000", "", "0x10", "1e400", "true"]),
    st.text(max_size=30),
    # lone surrogates: valid JSON escapes ("\ud800") that UTF-8, and so Polars, cannot hold
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=()), min_size=1, max_size=2),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)
FIELDS = ["timestamp", "global_step", "question_id", "question", "ground_truth_answer", "model_output",
          "reasoning", "model_answer", "total_reward", "rewards", "split", "group_id", "rank", "extra"]


def _value(draw: Any, field: str) -> Any:
    if field == "global_step":  # mostly usable steps, so the later stages get exercised too
        return draw(st.one_of(st.integers(0, 40), st.integers(0, 40), VALUES))
    if field == "rewards":
        return draw(st.one_of(st.dictionaries(st.sampled_from(["acc", "fmt", "total", "reward/x", ""]), VALUES, max_size=3), VALUES))
    if field == "model_output":
        return draw(st.one_of(st.text(max_size=60), st.just("<reasoning>a b</reasoning><answer>1</answer>"), VALUES))
    return draw(VALUES)


@st.composite
def records(draw: Any) -> list[dict[str, Any]]:
    out = []
    for _ in range(draw(st.integers(1, 25))):
        fields = draw(st.lists(st.sampled_from(FIELDS), unique=True, min_size=1))
        rec = {f: _value(draw, f) for f in fields}
        rec.update(draw(st.dictionaries(st.sampled_from(["step", "sample_id", "reward/acc", "note", "__line"]), VALUES, max_size=2)))
        out.append(rec)
    return out


@st.composite
def mostly_valid_records(draw: Any) -> list[dict[str, Any]]:
    """A plausible GRPO log (steps, groups, rewards, tagged outputs) with a few fields fuzzed: the
    odd values then reach metrics, detectors and drift instead of stopping at ingest."""
    out = []
    n_steps = draw(st.integers(1, 14))
    for step in range(n_steps):
        for k in range(draw(st.integers(1, 4))):
            rec: dict[str, Any] = {
                "timestamp": 1.7e9 + step, "global_step": step, "question_id": f"q{k % 2}", "question": f"Q{k % 2}?",
                "ground_truth_answer": "4", "model_output": f"<reasoning>r {k}</reasoning><answer>{k}</answer>",
                "model_answer": str(k), "total_reward": float(k == 2),
                "rewards": {"acc": float(k == 2), "fmt": 1.0}, "split": "train", "group_id": f"{step}:q{k % 2}",
            }
            for field in draw(st.lists(st.sampled_from(FIELDS), max_size=2, unique=True)):
                rec[field] = _value(draw, field)
            out.append(rec)
    return out


def _analyze(path: Path) -> None:
    try:
        result = analyze(path, AnalyzeOptions(no_embeddings=True, write_outputs=False))
    except LogscanError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    broken = [d for d in result.detectors if (d.reason or "").startswith("internal error")]
    assert not broken, broken


FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(recs=st.one_of(records(), mostly_valid_records()), garbage=st.lists(st.sampled_from(["{not json", "[1, 2]", "", "\x00", '{"global_step": 3, "model_out']), max_size=2))
def test_any_jsonl_generations_are_read_or_refused_in_one_line(tmp_path_factory: pytest.TempPathFactory,
                                                               recs: list[dict[str, Any]], garbage: list[str]) -> None:
    folder = tmp_path_factory.mktemp("run")
    lines = [json.dumps(r, allow_nan=False) for r in recs] + garbage
    (folder / "generations.jsonl").write_text("\n".join(lines) + ("\n" if not garbage else ""), encoding="utf-8")
    _analyze(folder)


@FUZZ
@given(recs=st.one_of(records(), mostly_valid_records()))
def test_any_seed_csv_is_read_or_refused_in_one_line(tmp_path_factory: pytest.TempPathFactory, recs: list[dict[str, Any]]) -> None:
    folder = tmp_path_factory.mktemp("csv")
    header = ["timestamp", "global_step", "question_id", "question", "ground_truth_answer", "model_output",
              "reasoning", "model_answer", "total_reward", "acc_reward", "split", "group_id", "extra"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    for r in recs:
        rewards = r.get("rewards") if isinstance(r.get("rewards"), dict) else {}
        row = {**r, "acc_reward": rewards.get("acc") if rewards else r.get("reward/acc")}
        w.writerow(["" if row.get(h) is None else row[h] if isinstance(row.get(h), str) else json.dumps(row[h]) for h in header])
    # a lone surrogate cannot be UTF-8: written as the invalid bytes a broken writer would leave
    (folder / "generations.csv").write_text(buf.getvalue(), encoding="utf-8", errors="surrogatepass")
    _analyze(folder / "generations.csv")


KEYS = ["loss", "reward", "kl", "entropy", "grad_norm", "learning_rate", "rewards/acc/mean", "rewards/acc",
        "completions/mean_length", "frac_reward_zero_std", "objective/kl", "eval_reward", "eval_loss", "epoch", "odd key"]
ENTRY = st.dictionaries(st.sampled_from(KEYS), st.one_of(st.floats(), VALUES), max_size=6)
PLAUSIBLE = st.builds(lambda s, d: {"step": s, **d}, st.integers(0, 30),
                      st.dictionaries(st.sampled_from(KEYS[:10]), st.floats(-10, 10) | st.just(math.nan), max_size=5))


@FUZZ
@given(entries=st.lists(st.one_of(ENTRY, PLAUSIBLE, PLAUSIBLE), max_size=40), as_state=st.booleans())
def test_any_logged_scalars_are_read_or_refused_in_one_line(tmp_path_factory: pytest.TempPathFactory,
                                                           entries: list[dict[str, Any]], as_state: bool) -> None:
    """events.jsonl metrics and a trainer_state.json log_history holding any values."""
    folder = tmp_path_factory.mktemp("scalars")
    if as_state:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": 3, "log_history": entries}), encoding="utf-8")
        _analyze(folder / "trainer_state.json")
        return
    lines = []
    for e in entries:
        e = dict(e)
        step = e.pop("step", None)
        metrics = {k: ("NaN" if isinstance(v, float) and math.isnan(v) else "Infinity" if v == math.inf
                       else "-Infinity" if v == -math.inf else v) for k, v in e.items()}
        lines.append(json.dumps({"time": 1.0, "step": step, "phase": "metrics", "split": "train", "metrics": metrics, "meta": {}, "rank": 0}))
    (folder / "events.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _analyze(folder)


def test_a_step_beyond_int64_is_a_located_issue_not_a_crash(tmp_path: Path) -> None:
    """Found by the properties above: a float step of 1.8e308 used to overflow Polars' Int64."""
    from analyzer.ingest import load_run

    recs = [{"global_step": s, "model_output": "x", "total_reward": 1.0} for s in (1, 1.7976931348623157e308, 2**64, 2)]
    (tmp_path / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    run = load_run(tmp_path)
    assert run.generations is not None and run.generations["step"].to_list() == [1, 2]
    assert [(i.line, i.kind) for i in run.report.issues] == [(2, "wrong_type"), (3, "wrong_type")]


def test_the_harness_runs_every_stage_on_a_plausible_run(tmp_path: Path) -> None:
    """The property's check on a run that is fine: every stage runs and no detector errs."""
    lines = [
        json.dumps({"global_step": s, "question_id": f"q{k % 2}", "question": "Q", "ground_truth_answer": "1",
                    "model_output": f"<reasoning>r</reasoning><answer>{k}</answer>", "total_reward": float(k == 1),
                    "rewards": {"acc": float(k == 1)}, "group_id": f"{s}:q{k % 2}"})
        for s in range(12) for k in range(4)
    ]
    (tmp_path / "generations.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = analyze(tmp_path, AnalyzeOptions(no_embeddings=True, write_outputs=False))
    assert result.metrics.height == 12 and sum(d.ran for d in result.detectors) >= 5
    _analyze(tmp_path)


def test_keys_with_control_characters_are_read(tmp_path: Path) -> None:
    """Found by the properties above: a key holding a tab (under extra, or a reward name) crashed
    the fast path, which re-parsed Polars' unescaped key text."""
    from analyzer.ingest import load_run

    recs = [{"global_step": s, "model_output": "x", "total_reward": 1.0, "rewards": {"a\tb": 0.5},
             "extra": {"k\t1": "v", "note": 'say "hi": now'}} for s in (1, 2)]
    (tmp_path / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    run = load_run(tmp_path)
    g = run.generations
    assert g is not None and not run.report.issues
    assert g["reward/a\tb"].to_list() == [0.5, 0.5]
    assert g["k\t1"].to_list() == ["v", "v"] and g["note"].to_list() == ['say "hi": now'] * 2


ROLLOUT = st.one_of(
    st.fixed_dictionaries({}, optional={k: VALUES for k in ["input", "output", "gts", "score", "step", "acc", "pred"]}),
    st.fixed_dictionaries({"input": st.text(max_size=20), "output": st.text(max_size=30), "gts": st.text(max_size=5),
                           "score": st.floats(), "step": st.integers(0, 20)}),
)
CONSOLE_LINE = st.one_of(
    st.builds(repr, st.dictionaries(st.sampled_from(["loss", "reward", "kl", "epoch", "rewards/a/mean", "odd"]),
                                    st.one_of(st.floats(), st.text(max_size=6), st.integers()), max_size=4)),
    st.builds(lambda s, kv: f"step:{s} - " + " - ".join(f"{k}:{v}" for k, v in kv.items()), st.integers(0, 30),
              st.dictionaries(st.sampled_from(["actor/entropy", "critic/score/mean", "x"]), st.floats() | st.text(max_size=4), max_size=3)),
    st.text(max_size=40),
    st.just(" 50%|#####     | 2/4 [00:20<00:20, 10.00s/it]"),
)


@FUZZ
@given(steps=st.lists(st.tuples(st.integers(0, 30), st.lists(ROLLOUT, max_size=6)), max_size=10, unique_by=lambda t: t[0]),
       console=st.lists(CONSOLE_LINE, max_size=40))
def test_any_verl_rollouts_and_console_logs_are_read_or_refused(tmp_path_factory: pytest.TempPathFactory,
                                                                 steps: list[Any], console: list[str]) -> None:
    folder = tmp_path_factory.mktemp("verl")
    rollouts = folder / "rollouts"
    rollouts.mkdir()
    for step, recs in steps:
        (rollouts / f"{step}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    _analyze(rollouts)
    (folder / "train.log").write_text("\n".join(console), encoding="utf-8")
    _analyze(folder / "train.log")


@st.composite
def completion_files(draw: Any) -> list[Any]:
    import polars as pl

    def column(draw_: Any) -> Any:
        return draw_(st.one_of(
            st.lists(st.floats(), min_size=3, max_size=3), st.lists(st.text(max_size=5), min_size=3, max_size=3),
            st.lists(st.integers(-5, 5), min_size=3, max_size=3), st.lists(st.none(), min_size=3, max_size=3),
            st.lists(st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", ""]),
                                                     "content": st.text(max_size=8)}), max_size=2), min_size=3, max_size=3),
        ))

    files = []
    for _ in range(draw(st.integers(1, 3))):
        data = {"step": draw(st.lists(st.integers(0, 10), min_size=3, max_size=3)), "completion": column(draw)}
        for name in draw(st.lists(st.sampled_from(["prompt", "acc", "advantage", "odd"]), unique=True)):
            data[name] = column(draw)
        files.append(pl.DataFrame(data, strict=False))
    return files


@FUZZ
@given(files=completion_files())
def test_any_trl_completion_files_are_read_or_refused(tmp_path_factory: pytest.TempPathFactory, files: list[Any]) -> None:
    """TRL's completions_*.parquet with any column types, differing from file to file."""
    folder = tmp_path_factory.mktemp("trl")
    (folder / "completions").mkdir()
    for i, df in enumerate(files):
        df.write_parquet(folder / "completions" / f"completions_{i:05d}.parquet")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 3, "log_history": [{"step": 1, "loss": 0.1}]}))
    _analyze(folder)


def test_trl_completion_files_whose_types_disagree(tmp_path: Path) -> None:
    """Found by the property above: text in the advantage column, and a completion column that is a
    chat list in one file and plain text in the next, crashed the reader."""
    import polars as pl

    from analyzer.ingest import load_run

    d = tmp_path / "completions"
    d.mkdir()
    pl.DataFrame({"step": [1, 1], "completion": [[{"role": "assistant", "content": "hi"}], [{"role": "assistant", "content": "yo"}]],
                  "acc": [1.0, 0.0], "advantage": ["0.5", "n/a"]}).write_parquet(d / "completions_00001.parquet")
    pl.DataFrame({"step": [2, 2], "completion": ["plain", "text"], "acc": [1, 0],
                  "advantage": [0.1, -0.1]}).write_parquet(d / "completions_00002.parquet")
    g = load_run(d).generations
    assert g is not None
    assert g["model_output"].to_list() == ["hi", "yo", "plain", "text"]
    assert g["advantage"].to_list() == [0.5, None, 0.1, -0.1]
    assert g["reward/acc"].to_list() == [1.0, 0.0, 1.0, 0.0]


def test_one_column_typed_differently_by_two_trl_files_leaves_the_rewards_numbers(tmp_path: Path) -> None:
    """Found in review: when one extra column's type differed between files, every column became
    text, so the rewards (found as "the numeric columns") vanished and total_reward was null."""
    import polars as pl

    from analyzer.ingest import load_run

    d = tmp_path / "completions"
    d.mkdir()
    pl.DataFrame({"step": [1, 1], "completion": ["a", "b"], "acc": [1.0, 0.0],
                  "tag": pl.Series(["x", "y"], dtype=pl.Categorical)}).write_parquet(d / "completions_00001.parquet")
    pl.DataFrame({"step": [2, 2], "completion": ["c", "d"], "acc": [0.5, 0.0],
                  "tag": [1, 2]}).write_parquet(d / "completions_00002.parquet")
    g = load_run(d).generations
    assert g is not None
    assert g["reward/acc"].to_list() == [1.0, 0.0, 0.5, 0.0]
    assert g["total_reward"].to_list() == [1.0, 0.0, 0.5, 0.0]
    assert g["tag"].to_list() == ["x", "y", "1", "2"]


def test_a_fractional_trl_step_is_refused_not_truncated(tmp_path: Path) -> None:
    import polars as pl

    from analyzer.ingest import load_run

    d = tmp_path / "completions"
    d.mkdir()
    pl.DataFrame({"step": [1.0, 3.7, 2.0], "completion": ["a", "b", "c"], "acc": [1.0, 0.0, 1.0]}).write_parquet(
        d / "completions_00001.parquet"
    )
    run = load_run(d)
    assert run.generations is not None and run.generations["step"].to_list() == [1, 2]
    assert [i.reason for i in run.report.issues] == ["1 rows whose step is not a whole number; skipped"]


@pytest.mark.parametrize("meta", ['"\\ud800"', '{"a": "\\ud800x"}', '["\\udfff"]'], ids=["flat", "nested", "list"])
def test_a_lone_surrogate_escape_is_kept_as_text_on_the_careful_path(tmp_path: Path, meta: str) -> None:
    """Found in review: JSON may escape a lone surrogate ("\\ud800"); Python decodes it, UTF-8 (and
    Polars) cannot hold it. It is kept as its escape text, not a traceback."""
    from analyzer.ingest import load_run

    lines = [f'{{"global_step": {s}, "question": "q", "model_output": "x \\ud800", "meta": {meta}}}' for s in range(3)]
    lines.insert(1, '{"global_step": oops}')  # the careful path
    (tmp_path / "generations.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    run = load_run(tmp_path)
    g = run.generations
    assert g is not None and g.height == 3
    assert g["model_output"].to_list() == ["x \\ud800"] * 3
    assert all("\\ud" in v or "\\\\ud" in v for v in g["meta"].to_list())


def test_trl_completion_files_repeating_the_last_generation_count_once(tmp_path: Path) -> None:
    """Found by a bug hunt: TRL writes its whole buffer of the last generation at every logging
    step (its deques are not cleared), so with steps_per_generation > logging_steps a file repeats
    the previous one's completions under a later step. Each completion counts once."""
    import polars as pl

    from analyzer.ingest import load_run

    d = tmp_path / "completions"
    d.mkdir()
    first = {"prompt": ["p", "p"], "completion": ["a", "b"], "acc": [1.0, 0.0], "advantage": [0.5, -0.5]}
    pl.DataFrame({"step": [1, 1], **first}).write_parquet(d / "completions_00001.parquet")
    pl.DataFrame({"step": [2, 2], **first}).write_parquet(d / "completions_00002.parquet")  # the same generation
    pl.DataFrame({"step": [3, 3], **first, "completion": ["c", "d"]}).write_parquet(d / "completions_00003.parquet")
    run = load_run(d)
    g = run.generations
    assert g is not None
    assert g.select("step", "model_output").rows() == [(1, "a"), (1, "b"), (3, "c"), (3, "d")]
    assert any("2 rows repeat the previous file's completions" in n for n in run.report.notes)
