"""run.json is written by trainer_hooks, but also edited by hand or by other tools: a field of the
wrong type is read as the type analysis.json promises (with a located warning) or left out, so
the output always validates against its own JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from analyzer.cli import cli
from analyzer.ingest import load_run
from analyzer.report.data import load_schema

WRONG = {
    "format": 1,
    "run_id": 42,
    "algorithm": ["grpo"],
    "model": {"name": "qwen"},
    "status": True,
    "reward_names": "correct",
    "world_size": "2",
    "config": [1, 2],
    "resumes": "yesterday",
    "counters": 7,
    "created_at": 1.5,
}


def _run(folder: Path, manifest: dict[str, object]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps(manifest))
    with (folder / "events.jsonl").open("w") as fh:
        for s in range(1, 12):
            fh.write(json.dumps({"time": 1.7e9 + s, "step": s, "phase": "metrics", "metrics": {"loss": 1.0 / s}}) + "\n")
    with (folder / "generations.jsonl").open("w") as fh:
        for s in range(1, 12):
            fh.write(json.dumps({"global_step": s, "question": "Q", "model_output": "<answer>1</answer>", "ground_truth_answer": "1",
                                 "total_reward": 1.0, "rewards": {"correct": 1.0}}) + "\n")
    return folder


def test_wrong_typed_fields_are_coerced_or_dropped_with_located_warnings(tmp_path: Path) -> None:
    run = load_run(_run(tmp_path, WRONG))
    info = run.info
    assert (info["run_id"], info["world_size"], info["reward_names"]) == ("42", 2, ["correct"])
    for dropped in ("algorithm", "model", "status", "config"):
        assert info.get(dropped) is None, dropped
    assert [str(i) for i in run.report.issues if i.kind == "wrong_type"] == [
        "run.json: run_id is 42 (int); read as the text '42'",
        "run.json: algorithm is ['grpo'] (list); not text; ignored",
        "run.json: model is {'name': 'qwen'} (dict); not text; ignored",
        "run.json: status is True (bool); not text; ignored",
        "run.json: created_at is 1.5 (float); read as the text '1.5'",
        "run.json: format is 1 (int); read as the text '1'",
        "run.json: reward_names is 'correct' (str); read as a list of one name",
        "run.json: world_size is '2' (str); read as 2",
        "run.json: config is [1, 2] (list); not an object; ignored",
        "run.json: resumes is 'yesterday' (str); not a list; ignored",
        "run.json: counters is 7 (int); not an object; ignored",
    ]


@pytest.mark.parametrize(
    "manifest",
    [
        WRONG,
        {"run_id": None, "reward_names": [1, None, {"a": 1}], "world_size": 2.0, "config": "lr=1e-5"},
        {"run_id": ["a"], "world_size": -1.5, "reward_names": {"correct": 1}, "status": 3},
    ],
)
def test_analysis_json_validates_against_its_schema(tmp_path: Path, manifest: dict[str, object]) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["analyze", str(_run(tmp_path / "run", manifest)), "--no-embeddings", "--no-plots", "-o", str(out)]
    )
    assert result.exit_code in (0, 1), result.output + result.stderr
    data = json.loads((out / "analysis.json").read_text())
    jsonschema.validate(data, load_schema())
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
