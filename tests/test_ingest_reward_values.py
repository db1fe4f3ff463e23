"""Reward values and reward names are read back as logged, on every reader path: a boolean reward
is the number 1 or 0, and a name with backslashes (``C:\\new``, ``$\\frac{1}{2}$``) keeps them.

"careful" adds one malformed line (row), which sends the file down the line-by-line path; both
paths must give the same frame."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import polars as pl
import pytest

from analyzer.ingest import load_run
from trainer_hooks import RunLogger

PATHS = pytest.mark.parametrize("careful", [False, True], ids=["fast", "careful"])
FORMATS = pytest.mark.parametrize("fmt", ["jsonl", "csv"])


def _spoil(folder: Path, fmt: str) -> None:
    """One malformed record in the middle of the generations file."""
    path = folder / f"generations.{fmt}"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines.insert(3, "{not json\n" if fmt == "jsonl" else "x,not a step\n")
    path.write_text("".join(lines), encoding="utf-8")


@FORMATS
@PATHS
def test_boolean_rewards_are_ones_and_zeros(tmp_path: Path, fmt: Literal["jsonl", "csv"], careful: bool) -> None:
    with RunLogger(tmp_path, generations_format=fmt) as lg:
        for s in range(1, 4):
            for i in range(4):
                lg.log_generation(step=s, question="q", model_output="<answer>1</answer>", ground_truth_answer="1",
                                  rewards={"correct": i % 2 == 0, "fmt": 1.0})
            lg.log_metrics(s, {"loss": 0.5, "stopped_early": False})
    if careful:
        _spoil(tmp_path, fmt)
    run = load_run(tmp_path)
    g = run.generations
    assert g is not None and g.height == 12
    assert g.schema["reward/correct"] == pl.Float64
    assert g["reward/correct"].to_list() == [1.0, 0.0, 1.0, 0.0] * 3
    assert g["total_reward"].to_list() == [2.0, 1.0, 2.0, 1.0] * 3  # the writer's sum counted them already
    assert [i for i in run.report.issues if i.kind == "wrong_type"] == []
    assert run.steps["stopped_early"].to_list() == [0.0, 0.0, 0.0]  # a boolean metric too


@PATHS
def test_boolean_text_in_a_seed_csv_is_a_number(tmp_path: Path, careful: bool) -> None:
    """pandas (and Python's str) write booleans as True/False."""
    rows = ["global_step,question,model_output,total_reward,correct_reward,fmt_reward"]
    rows += [f"{s},q,<answer>1</answer>,{'true' if s % 2 else 'False'},{'True' if s % 2 else 'FALSE'}, 1.0" for s in range(1, 7)]
    if careful:
        rows.insert(3, "2,q,<answer>1</answer>,1,not a number,1")
    (tmp_path / "generations.csv").write_text("\n".join(rows) + "\n")
    run = load_run(tmp_path / "generations.csv")
    g = run.generations
    assert g is not None
    good = g.filter(pl.col("reward/correct").is_not_null())
    assert good["reward/correct"].to_list() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert good["total_reward"].to_list() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert [str(i) for i in run.report.issues] == (
        ["generations.csv:4: correct_reward is 'not a number', not a number; set to null"] if careful else []
    )


@FORMATS
@PATHS
@pytest.mark.parametrize("names", [["C:\\new", "$\\frac{1}{2}$"], ["tab\\t", "ends\\", 'q"uote']], ids=["escape-like", "odd"])
def test_reward_names_keep_their_backslashes(tmp_path: Path, fmt: Literal["jsonl", "csv"], careful: bool, names: list[str]) -> None:
    with RunLogger(tmp_path, generations_format=fmt) as lg:
        for s in range(1, 4):
            for _ in range(3):
                lg.log_generation(step=s, question="q", model_output="o", rewards={n: float(k) for k, n in enumerate(names)})
    if careful:
        _spoil(tmp_path, fmt)
    run = load_run(tmp_path)
    g = run.generations
    assert g is not None and g.height == 9
    assert json.loads((tmp_path / "run.json").read_text())["reward_names"] == names
    assert run.info["reward_names"] == names
    assert sorted(c for c in g.columns if c.startswith("reward/")) == sorted("reward/" + n for n in names)
    for k, name in enumerate(names):
        assert g["reward/" + name].to_list() == [float(k)] * 9


@FORMATS
@PATHS
def test_extra_text_keeps_its_backslashes(tmp_path: Path, fmt: Literal["jsonl", "csv"], careful: bool) -> None:
    with RunLogger(tmp_path, generations_format=fmt) as lg:
        for s in range(1, 4):
            lg.log_generation(step=s, question="q", model_output="o", rewards={"r": 1.0},
                              latex="\\frac{1}{2}", path="C:\\new\\file", lines='a\nb "c"')
    if careful:
        _spoil(tmp_path, fmt)
    g = load_run(tmp_path).generations
    assert g is not None and g.height == 3
    assert g["latex"].to_list() == ["\\frac{1}{2}"] * 3
    assert g["path"].to_list() == ["C:\\new\\file"] * 3
    assert g["lines"].to_list() == ['a\nb "c"'] * 3


def test_a_backslash_elsewhere_in_the_file_keeps_rewards_on_the_fast_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Model outputs full of LaTeX (escaped backslashes) with plain reward names and extras: no
    line is read by the line-by-line path."""
    from analyzer.ingest import logscan_run

    def no_careful(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the careful path was taken")

    monkeypatch.setattr(logscan_run, "_read_jsonl_careful", no_careful)
    with RunLogger(tmp_path) as lg:
        for s in range(1, 4):
            lg.log_generation(step=s, question="q", model_output="\\boxed{\\frac{1}{2}}\nnext line",
                              rewards={"correct": 1.0, "nan": math.nan}, note="plain")
    run = load_run(tmp_path)
    g = run.generations
    assert g is not None
    assert g["model_output"].to_list() == ["\\boxed{\\frac{1}{2}}\nnext line"] * 3
    assert g["reward/correct"].to_list() == [1.0] * 3 and all(math.isnan(v) for v in g["reward/nan"].to_list())
    assert g["note"].to_list() == ["plain"] * 3


def test_a_boolean_reward_column_of_trl_completion_files_is_a_reward(tmp_path: Path) -> None:
    """TRL's completion parquet files, without a trainer state to name the rewards: a boolean
    column is a reward function like a numeric one."""
    folder = tmp_path / "completions"
    folder.mkdir()
    for step in (1, 2):
        pl.DataFrame({"step": [step] * 2, "prompt": ["p", "p"], "completion": [f"a{step}", f"b{step}"],
                      "correct": [True, False], "fmt": [0.5, 0.5]}).write_parquet(folder / f"completions_{step:05d}.parquet")
    g = load_run(folder).generations
    assert g is not None
    assert g["reward/correct"].to_list() == [1.0, 0.0, 1.0, 0.0]
    assert g["total_reward"].to_list() == [1.5, 0.5, 1.5, 0.5]
