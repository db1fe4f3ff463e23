"""One definition of a completion's keys (split, sample id, GRPO group), applied once when a
``RunData`` is built — every later stage (features, metrics, detectors, drift, the reports) reads
them as they are instead of refilling them its own way."""

from __future__ import annotations

import ast
from pathlib import Path

import polars as pl

from analyzer import columns as C
from analyzer.ingest import load_run
from analyzer.model import IngestReport, RunData, completion_keys

ROOT = Path(__file__).resolve().parent.parent


def _run(gens: pl.DataFrame) -> RunData:
    return RunData(path="mem", steps=pl.DataFrame({C.STEP: [1, 2]}), generations=gens, report=IngestReport(source_kind="test"))


def test_a_hand_built_run_gets_split_sample_id_and_the_grpo_group() -> None:
    gens = pl.DataFrame(
        {
            C.STEP: [1, 1, 1, 2],
            C.QUESTION_ID: ["a", "a", "b", None],
            C.SPLIT: ["train", None, "eval", None],
            C.GROUP_ID: [None, None, "g7", None],
            C.OUTPUT: ["x", "y", "z", "w"],
        }
    )
    out = _run(gens).generations
    assert out is not None
    assert out[C.SPLIT].to_list() == ["train", "train", "eval", "train"]
    assert out[C.SAMPLE_ID].to_list() == [0, 1, 2, 3] and out.schema[C.SAMPLE_ID] == pl.Int64
    # a logged group wins; otherwise one prompt's completions at one step, as ingest fills it
    assert out[C.GROUP_ID].to_list() == ["1:a", "1:a", "g7", "2:?"]
    assert completion_keys(out).equals(out)  # idempotent, and cheap when nothing is missing


def test_no_split_column_means_train_and_types_are_canonical() -> None:
    gens = pl.DataFrame({C.STEP: [1.0, 2.0], C.SAMPLE_ID: [5, 9], C.OUTPUT: ["a", "b"]}, schema_overrides={C.SAMPLE_ID: pl.Int32})
    out = completion_keys(gens)
    assert out.schema[C.STEP] == pl.Int64 and out.schema[C.SAMPLE_ID] == pl.Int64
    assert out[C.SAMPLE_ID].to_list() == [5, 9]  # kept, not renumbered
    assert out[C.SPLIT].to_list() == ["train", "train"]
    assert out[C.GROUP_ID].to_list() == ["1:?", "2:?"]


def test_ingest_and_a_hand_built_run_define_the_group_the_same_way(tmp_path: Path) -> None:
    csv = tmp_path / "generations.csv"
    csv.write_text(
        "step,question_id,model_output,ground_truth_answer,reward_correct\n"
        "1,q1,<answer>4</answer>,4,1\n1,q1,<answer>5</answer>,4,0\n2,q2,<answer>7</answer>,7,1\n",
        encoding="utf-8",
    )
    loaded = load_run(csv).generations
    assert loaded is not None
    assert loaded[C.GROUP_ID].to_list() == ["1:q1", "1:q1", "2:q2"]
    by_hand = _run(loaded.drop(C.GROUP_ID)).generations
    assert by_hand is not None and by_hand[C.GROUP_ID].to_list() == loaded[C.GROUP_ID].to_list()


def test_no_stage_refills_the_keys_itself() -> None:
    """The smell this replaced: six consumers each refilled ``split`` / rebuilt ``sample_id`` /
    defined the group their own way. Only ingest and ``completion_keys`` may."""
    allowed = {ROOT / "analyzer" / "model.py"}
    for path in (ROOT / "analyzer").rglob("*.py"):
        if path in allowed or "ingest" in path.relative_to(ROOT / "analyzer").parts:
            continue
        text = path.read_text(encoding="utf-8")
        assert 'fill_null("train")' not in text, f"{path.name} refills split"
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "with_row_index":
                arg = node.args[0] if node.args else None
                assert not (isinstance(arg, ast.Attribute) and arg.attr == "SAMPLE_ID"), f"{path.name} rebuilds sample_id"
