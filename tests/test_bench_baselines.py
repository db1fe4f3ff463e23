"""The ingest benchmark's same-work baselines (benchmarks/ingest/baselines.py) compute exactly
logscan's train-split ``gen_*`` columns: on a small run from gen_big_run, and on a copy of it
edited to reach the rules' corners (non-finite rewards, numeric and text answers, missing truths
and answers, an eval split, repeated n-grams, Unicode spaces, a run without tags)."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from analyzer.ingest import load_run
from analyzer.metrics import compute_metrics

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "ingest"


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_big_run = _module("gen_big_run")
baselines = _module("baselines")

EXPECTED_COLUMNS = [
    "step", "gen_count",
    "gen_reward_mean", "gen_reward_std", "gen_reward_min", "gen_reward_max",
    "gen_reward_p10", "gen_reward_p50", "gen_reward_p90", "gen_reward_nonfinite",
    *[f"gen_reward/{n}_{s}" for n in ("correct", "format") for s in ("mean", "std", "min", "max", "p50")],
    "gen_length_chars_mean", "gen_length_tokens_mean", "gen_accuracy", "gen_answer_coverage", "gen_format_ok",
    "gen_reward_length_corr", "gen_frac_zero_spread_groups", "gen_frac_zero_spread_all_correct",
    "gen_frac_zero_spread_all_wrong", "gen_repeated_ngram_rate",
]  # fmt: skip
CSV_HEADER = [
    "timestamp", "global_step", "question_id", "question", "ground_truth_answer", "model_output",
    "reasoning", "model_answer", "total_reward", "correct_reward", "format_reward", "split", "group_id",
]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("bench_baselines")
    jdir, cdir = gen_big_run.generate(completions=1600, steps=20, out=out)
    found = {"jsonl": jdir / "generations.jsonl", "csv": cdir / "generations.csv"}
    records = [json.loads(line) for line in found["jsonl"].read_text().splitlines()]
    for variant, edit in (("edited", _edit), ("untagged", _untag)):
        edited = [edit(i, dict(rec, rewards=dict(rec["rewards"]))) for i, rec in enumerate(records)]
        for fmt, src in (("jsonl", jdir), ("csv", cdir)):
            dst = out / f"{variant}_{fmt}"
            shutil.copytree(src, dst)
            found[f"{variant}_{fmt}"] = _write(dst / f"generations.{fmt}", edited)
    return found


def _edit(i: int, rec: dict[str, Any]) -> dict[str, Any]:
    """Deterministic edits that exercise each rule (several may hit one record)."""
    if i % 7 == 0:  # repeated word 4-grams, and Unicode spaces between words
        rec["model_output"] = "so we add\u2003the apples so we add the apples\u00a0so we add " + rec["model_output"]
    if i % 11 == 0:
        rec["total_reward"] = "NaN"
    if i % 13 == 0:
        rec["total_reward"] = "Infinity"
    if i % 5 == 1:
        rec["rewards"]["format"] = "NaN"
    if i % 17 == 0:  # thousands separators vs a plain number
        rec["model_answer"], rec["ground_truth_answer"] = "1,000", "1000"
    if i % 19 == 0:  # currency, spaces and a full stop around a number
        rec["model_answer"] = f" ${rec['ground_truth_answer']}. "
    if i % 31 == 0:  # text answers compare as normalised text
        rec["model_answer"], rec["ground_truth_answer"] = "Paris.", "paris"
    if i % 43 == 0:
        rec["model_answer"], rec["ground_truth_answer"] = "1,2", "12"
    if i % 23 == 0:  # no ground truth: not counted, and its group is classified by reward
        rec["ground_truth_answer"] = ""
    if i % 29 == 0:  # no answer and no tags: wrong, format not ok
        rec["model_answer"] = None
        rec["model_output"] = "I do not know"
    if i % 37 == 0:
        rec["split"] = "eval"
    if i % 41 == 0:  # no group id: the group is the question within the step
        rec["group_id"] = None
    return rec


def _untag(i: int, rec: dict[str, Any]) -> dict[str, Any]:
    """A run whose completions never use the tags: format_ok is null."""
    rec["model_output"] = rec["model_output"].replace("<", "[").replace(">", "]")
    return rec


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(rec) + "\n" for rec in records))
        return path
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_HEADER)
        for rec in records:
            row = {**rec, "correct_reward": rec["rewards"]["correct"], "format_reward": rec["rewards"]["format"]}
            writer.writerow(["" if row[k] is None else row[k] for k in CSV_HEADER])
    return path


def _logscan(path: Path) -> pl.DataFrame:
    metrics = compute_metrics(load_run(path.parent))
    gen = ["step", *(c for c in metrics.columns if c.startswith("gen_"))]  # the train split's
    return metrics.filter(pl.col("gen_count").is_not_null()).select(gen)


def _aligned(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    return frame.select(pl.col("step").cast(pl.Int64), *(pl.col(c).cast(pl.Float64) for c in columns[1:]))


CASES = ["jsonl", "csv", "edited_jsonl", "edited_csv", "untagged_jsonl", "untagged_csv"]


@pytest.mark.parametrize("tuned", [False, True], ids=["plain", "tuned"])
@pytest.mark.parametrize("case", CASES)
def test_polars_baseline_equals_logscan(runs: dict[str, Path], case: str, tuned: bool) -> None:
    expected = _logscan(runs[case])
    got = baselines.polars_metrics(runs[case], tuned=tuned)
    assert got.columns == EXPECTED_COLUMNS
    assert sorted(got.columns) == sorted(expected.columns)  # every gen_* column logscan has, no more
    assert got.height == expected.height == 20
    assert got["gen_count"].dtype == pl.Int64
    assert_frame_equal(
        _aligned(got, EXPECTED_COLUMNS), _aligned(expected, EXPECTED_COLUMNS),
        check_exact=False, rel_tol=1e-9, abs_tol=1e-12,
    )  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_pandas_baseline_equals_logscan(runs: dict[str, Path], case: str) -> None:
    expected = _logscan(runs[case])
    got = pl.from_pandas(baselines.pandas_metrics(runs[case]), nan_to_null=True)
    assert got.columns == EXPECTED_COLUMNS
    assert got.height == expected.height == 20
    assert_frame_equal(
        _aligned(got, EXPECTED_COLUMNS), _aligned(expected, EXPECTED_COLUMNS),
        check_exact=False, rel_tol=1e-9, abs_tol=1e-12,
    )  # fmt: skip


def _stat(frame: pl.DataFrame, column: str, how: str) -> float:
    return float(frame.select(getattr(pl.col(column), how)()).item())


def test_edited_run_reaches_the_corners(runs: dict[str, Path]) -> None:
    """The edits do what they are for: otherwise the equality above proves less than it claims."""
    edited, plain = _logscan(runs["edited_jsonl"]), _logscan(runs["jsonl"])
    assert _stat(edited, "gen_reward_nonfinite", "min") > 0  # 0 on the unedited run
    assert edited["gen_reward/format_mean"].is_not_null().all()  # NaN format rewards left out
    assert _stat(edited, "gen_repeated_ngram_rate", "min") > 0.005  # 0 on the unedited run
    assert 0 < _stat(edited, "gen_format_ok", "min") < 1  # 1 on the unedited run
    assert _stat(edited, "gen_frac_zero_spread_all_correct", "max") > 0
    assert _stat(edited, "gen_frac_zero_spread_all_wrong", "max") > 0
    assert _stat(edited, "gen_count", "sum") < 1600  # the eval split is left out
    assert (edited["gen_accuracy"] != plain["gen_accuracy"]).any()
    assert _logscan(runs["untagged_csv"])["gen_format_ok"].is_null().all()
