"""Bad input never raises anything but a one-line InputError, and only when nothing usable is
left; otherwise every problem is a counted, located issue (file:line, reason)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import polars as pl
import pytest

from analyzer.errors import InputError
from analyzer.ingest import load_run


def _gen(step: object, text: str = "out", **kw: object) -> str:
    rec = {"timestamp": 1.7e9, "global_step": step, "question_id": "q", "question": "Q", "ground_truth_answer": "1",
           "model_output": text, "reasoning": None, "model_answer": None, "total_reward": 1.0,
           "rewards": {"correct": 1.0}, "split": "train", "group_id": None, "rank": 0, "extra": {}}
    rec.update(kw)
    return json.dumps(rec) + "\n"


def _issues(run) -> list[str]:
    return [str(i) for i in run.report.issues]


def test_torn_last_line(tmp_path: Path) -> None:
    (tmp_path / "generations.jsonl").write_text(_gen(1) + _gen(2) + _gen(3)[:40])
    run = load_run(tmp_path)
    assert run.generations is not None and run.generations["step"].to_list() == [1, 2]
    assert _issues(run) == ["generations.jsonl:3: torn last line: the record is cut short (the writer was interrupted); skipped"]
    assert run.report.issues[0].kind == "torn_line"
    assert run.report.records_skipped == 1 and run.report.records_read == 2


def test_malformed_lines_and_non_objects(tmp_path: Path) -> None:
    (tmp_path / "generations.jsonl").write_text(_gen(1) + "this is not json\n" + "[1, 2]\n" + _gen(2))
    run = load_run(tmp_path)
    assert run.generations is not None and run.generations.height == 2
    assert _issues(run) == [
        "generations.jsonl:2: malformed JSON (Expecting value); line skipped",
        "generations.jsonl:3: expected a JSON object, got list; line skipped",
    ]
    assert run.report.records_skipped == 2


def test_wrong_types(tmp_path: Path) -> None:
    (tmp_path / "generations.jsonl").write_text(
        _gen(1) + _gen("abc") + _gen(2, rewards={"correct": [1, 2]}) + _gen(3, question=42) + _gen(4, total_reward="lots")
    )
    run = load_run(tmp_path)
    g = run.generations
    assert g is not None and g["step"].to_list() == [1, 2, 3, 4]
    assert _issues(run) == [
        "generations.jsonl:2: global_step is 'abc', not an integer; record skipped",
        "generations.jsonl:3: reward 'correct' is [1, 2], not a number; set to null",
        "generations.jsonl:4: question is int, not text; kept as its JSON text",
        "generations.jsonl:5: total_reward is 'lots', not a number; set to null",
    ]
    assert [i.kind for i in run.report.issues] == ["wrong_type"] * 4
    assert run.report.records_skipped == 1
    assert g["reward/correct"].to_list() == [1.0, None, 1.0, 1.0]
    assert g["question"][2] == "42" and g["total_reward"][3] is None


def test_wrong_types_in_events_and_csv(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text(
        json.dumps({"time": 1, "step": 1, "phase": "metrics", "split": "train", "metrics": {"loss": "high", "kl": 0.1}}) + "\n"
        + json.dumps({"time": 1, "step": "x", "phase": "metrics", "split": "train", "metrics": {"kl": 0.2}}) + "\n"
    )
    (tmp_path / "generations.csv").write_text(
        "timestamp,global_step,question,ground_truth_answer,model_output,total_reward,a_reward\n"
        "1,1,Q,1,out,1.0,1.0\n1,two,Q,1,out,1.0,1.0\n1,2,Q,1,out,lots,[1]\n"
    )
    (tmp_path / "run.json").write_text("{}")
    run = load_run(tmp_path)
    assert _issues(run) == [
        "events.jsonl:1: metric 'loss' is 'high', not a number; ignored",
        "events.jsonl:2: step is 'x', not an integer; record skipped",
        "generations.csv:3: global_step is 'two', not an integer; row skipped",
        "generations.csv:4: total_reward is 'lots', not a number; set to null",
        "generations.csv:4: a_reward is '[1]', not a number; set to null",
    ]
    assert run.steps.to_dicts() == [{"step": 1, "kl": 0.1}]
    g = run.generations
    assert g is not None and g["step"].to_list() == [1, 2] and g["total_reward"].to_list() == [1.0, None]


def test_unknown_columns_are_kept(tmp_path: Path) -> None:
    (tmp_path / "generations.jsonl").write_text(_gen(1, temperature=0.7, judge="ok") + _gen(2, temperature=0.9, judge="no"))
    run = load_run(tmp_path)
    g = run.generations
    assert g is not None and run.report.issues == []
    assert g["temperature"].to_list() == [0.7, 0.9] and g.schema["temperature"] == pl.Float64
    assert g["judge"].to_list() == ["ok", "no"]
    csv = tmp_path / "c" / "gens.csv"
    csv.parent.mkdir()
    csv.write_text("global_step,question,model_output,total_reward,my_col\n1,Q,out,1.0,hello\n")
    g2 = load_run(csv).generations
    assert g2 is not None and g2["my_col"].to_list() == ["hello"]


def test_empty_files(tmp_path: Path) -> None:
    (tmp_path / "generations.jsonl").write_text("")
    (tmp_path / "events.jsonl").write_text(json.dumps({"time": 1, "step": 1, "phase": "metrics", "metrics": {"loss": 1.0}}) + "\n")
    run = load_run(tmp_path)
    assert _issues(run) == ["generations.jsonl: empty file"]
    assert run.generations is None and run.steps["loss"].to_list() == [1.0]
    (tmp_path / "events.jsonl").write_text("")
    with pytest.raises(InputError) as exc:
        load_run(tmp_path)
    assert str(exc.value) == f"{tmp_path}: nothing readable in this logscan run folder (events.jsonl: empty file and 1 more issues)"
    empty_csv = tmp_path / "x.csv"
    empty_csv.write_text("")
    with pytest.raises(InputError, match=r"x\.csv: the file is empty$"):
        load_run(empty_csv)


def test_folder_with_nothing_readable(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(InputError) as exc:
        load_run(tmp_path)
    assert str(exc.value).startswith(f"{tmp_path}: nothing logscan can read in this folder; expected a logscan run folder")
    with pytest.raises(InputError, match=r"notes\.txt: not a format logscan reads"):
        load_run(tmp_path / "notes.txt")
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(InputError, match=r"state\.json: not valid JSON \(JSONDecodeError\)"):
        load_run(tmp_path / "state.json")
    (tmp_path / "trainer_state.json").write_text('{"log_history": "nope"}')
    with pytest.raises(InputError, match=r"no readable trainer_state\.json \(trainer_state\.json: no log_history list"):
        load_run(tmp_path / "trainer_state.json")


def test_only_garbage_lines(tmp_path: Path) -> None:
    (tmp_path / "generations.jsonl").write_bytes(b"garbage\n\xff\xfe\n")
    with pytest.raises(InputError) as exc:
        load_run(tmp_path)
    assert "\n" not in str(exc.value)
    assert "generations.jsonl:1: malformed JSON (Expecting value); line skipped and 1 more issues" in str(exc.value)


def test_non_utf8_bytes(tmp_path: Path) -> None:
    bad = _gen(2, "cafX").encode().replace(b"cafX", b"caf\xe9")  # a latin-1 byte
    (tmp_path / "generations.jsonl").write_bytes(_gen(1).encode() + bad + _gen(3).encode())
    run = load_run(tmp_path)
    assert run.generations is not None and run.generations["step"].to_list() == [1, 3]
    assert _issues(run) == ["generations.jsonl:2: not valid UTF-8 (byte 132 of the line); line skipped"]
    assert run.report.issues[0].kind == "not_utf8"
    csv = tmp_path / "c" / "g.csv"
    csv.parent.mkdir()
    csv.write_bytes(b"global_step,question,model_output,total_reward\n1,Q,ok,1.0\n2,Q,caf\xe9,1.0\n")
    run2 = load_run(csv)
    assert [str(i) for i in run2.report.issues] == ["g.csv:3: not valid UTF-8; row skipped"]
    assert run2.generations is not None and run2.generations["step"].to_list() == [1]


def test_torn_csv_row(tmp_path: Path) -> None:
    path = tmp_path / "generations.csv"
    path.write_text('global_step,question,model_output,total_reward\n1,Q,out,1.0\n2,Q,"cut sho')
    run = load_run(path)
    assert [str(i) for i in run.report.issues] == ["generations.csv:3: torn last row (the writer was interrupted); skipped"]
    assert run.generations is not None and run.generations.height == 1


def test_csv_without_the_seed_columns(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match=r"other\.csv: a CSV without the seed's columns"):
        load_run(path)


def test_broken_manifest_and_parquet(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text("{broken")
    (tmp_path / "generations.jsonl").write_text(_gen(1))
    run = load_run(tmp_path)
    assert _issues(run) == ["run.json: unreadable manifest (JSONDecodeError); ignored"]
    out = tmp_path / "hf"
    (out / "completions").mkdir(parents=True)
    (out / "completions" / "completions_00001.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(InputError, match="no readable TRL completion parquet files"):
        load_run(out)


def test_100_mb_field(tmp_path: Path) -> None:
    big = "x" * 100_000_000
    with (tmp_path / "generations.jsonl").open("w") as fh:
        fh.write(_gen(1))
        fh.write(_gen(2, big))
        fh.write(_gen(3))
    start = time.perf_counter()
    run = load_run(tmp_path)
    elapsed = time.perf_counter() - start
    g = run.generations
    assert g is not None and run.report.issues == []
    assert g["model_output"].str.len_bytes().to_list() == [3, 100_000_000, 3]
    assert elapsed < 60  # generous: not a timing test, a guard against pathological paths


def test_cli_reports_unreadable_input_in_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from analyzer.cli import cli

    (tmp_path / "notes.txt").write_text("hello\n")
    result = CliRunner().invoke(cli, ["analyze", str(tmp_path), "--no-embeddings"])
    assert result.exit_code == 2
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1
    assert "nothing logscan can read in this folder" in result.output
    assert "Traceback" not in result.output


def test_issue_list_is_capped_per_file(tmp_path: Path) -> None:
    (tmp_path / "generations.jsonl").write_text("nope\n" * 150 + _gen(1))
    run = load_run(tmp_path)
    assert len(run.report.issues) == 101 and run.report.records_skipped == 150
    assert str(run.report.issues[-1]) == "generations.jsonl: 50 more issues not listed"
    assert run.generations is not None and run.generations.height == 1
