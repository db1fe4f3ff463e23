"""Inputs at the edge of what a JSON decoder or a file system gives back: JSON nested hundreds of
levels deep, integer literals longer than Python converts, symlink loops, dangling links, devices
where a log should be. Each is a located issue (or a one-line InputError when nothing usable is
left), never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from analyzer.cli import cli
from analyzer.errors import EXIT_USAGE, InputError
from analyzer.ingest import load_run
from analyzer.ingest._common import MAX_INT_DIGITS, MAX_JSON_DEPTH, JSONLimitError, loads

DEEP = "[" * 1000 + "]" * 1000
HUGE = "9" * 5000  # > MAX_INT_DIGITS: int() refuses it since Python 3.11


def _issues(run) -> list[str]:
    return [str(i) for i in run.report.issues]


def _events(folder: Path, steps: range, extra: dict[int, str] | None = None) -> None:
    lines = [json.dumps({"time": 1.7e9 + s, "step": s, "phase": "metrics", "metrics": {"loss": 1.0 / s}}) for s in steps]
    for at, text in (extra or {}).items():
        lines.insert(at, text)
    (folder / "events.jsonl").write_text("\n".join(lines) + "\n")


def _gen(step: int, **kw: object) -> str:
    rec = {"global_step": step, "question": "Q", "model_output": "<answer>1</answer>", "total_reward": 1.0, "rewards": {"r": 1.0}}
    rec.update(kw)
    return json.dumps(rec)


def test_the_shared_decoder_refuses_deep_and_huge_documents_with_a_position() -> None:
    assert MAX_INT_DIGITS == 4300
    with pytest.raises(JSONLimitError) as deep:
        loads('{"a": ' + DEEP + "}")
    assert deep.value.msg == f"nested deeper than {MAX_JSON_DEPTH} levels" and deep.value.pos == 6 + MAX_JSON_DEPTH - 1  # the outer { is level 1
    # below the interpreter's recursion limit, but deeper than any log: later stages (the reports,
    # analysis.json) walk values recursively
    with pytest.raises(JSONLimitError):
        loads("[" * 300 + "]" * 300)
    with pytest.raises(JSONLimitError) as huge:
        loads('{"x": 1,\n "loss": ' + HUGE + "}")
    assert huge.value.msg == "an integer of 5000 digits, more than 4300" and (huge.value.lineno, huge.value.colno) == (2, 10)
    # brackets inside strings are text, and ordinary nesting is read as before
    assert loads(json.dumps({"t": "[" * 500, "n": [[[1]]]})) == {"t": "[" * 500, "n": [[[1]]]}
    assert loads("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None
    assert isinstance(JSONLimitError("m", "", 0), json.JSONDecodeError)  # every reader's malformed-JSON path


def test_deep_trainer_state_is_a_located_one_line_error(tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "trainer_state.json").write_text('{"global_step": 2, "log_history": ' + DEEP + "}")
    with pytest.raises(InputError) as err:
        load_run(hf)
    assert str(err.value).endswith(
        ": no readable trainer_state.json (trainer_state.json:1: malformed JSON (nested deeper than 100 levels); file skipped)"
    )
    result = CliRunner().invoke(cli, ["analyze", str(hf), "--no-embeddings", "-o", str(tmp_path / "out")])
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.startswith("Error: ") and len(result.stderr.splitlines()) == 1


def test_huge_integer_in_trainer_state_names_its_line(tmp_path: Path) -> None:
    entries = ",\n".join(json.dumps({"step": s, "loss": 1.0}) for s in range(1, 4))
    (tmp_path / "trainer_state.json").write_text('{"global_step": 3, "log_history": [\n' + entries + ',\n{"step": 4, "loss": ' + HUGE + "}]}")
    with pytest.raises(InputError, match=r"trainer_state\.json:5: malformed JSON \(an integer of 5000 digits, more than 4300\)"):
        load_run(tmp_path)


def test_huge_integer_in_events_skips_only_its_line(tmp_path: Path) -> None:
    _events(tmp_path, range(1, 12), {3: '{"step": 3, "metrics": {"loss": ' + HUGE + "}}"})
    run = load_run(tmp_path)
    assert run.steps["step"].to_list() == list(range(1, 12))
    assert _issues(run) == ["events.jsonl:4: malformed JSON (an integer of 5000 digits, more than 4300); line skipped"]
    assert run.report.records_skipped == 1 and run.report.records_read == 11


def test_deep_and_huge_values_in_generations_skip_only_their_lines(tmp_path: Path) -> None:
    lines = [_gen(s) for s in range(1, 9)]
    lines[1] = _gen(2, extra="X").replace('"X"', DEEP)
    lines[3] = _gen(4).replace('"r": 1.0', '"r": ' + HUGE)
    lines[5] = _gen(6, meta="X").replace('"X"', HUGE)
    (tmp_path / "generations.jsonl").write_text("\n".join(lines) + "\n")
    run = load_run(tmp_path)
    assert run.generations is not None and run.generations["step"].to_list() == [1, 3, 5, 7, 8]
    assert _issues(run) == [
        "generations.jsonl:2: malformed JSON (nested deeper than 100 levels); line skipped",
        "generations.jsonl:4: malformed JSON (an integer of 5000 digits, more than 4300); line skipped",
        "generations.jsonl:6: malformed JSON (an integer of 5000 digits, more than 4300); line skipped",
    ]


def test_deep_run_json_is_ignored_with_a_located_issue_and_the_run_is_analyzed(tmp_path: Path) -> None:
    # 500 levels parse under the interpreter's limit; before, analysis.json's writer then crashed
    (tmp_path / "run.json").write_text('{"format": "logscan-run/1", "run_id": "r", "config": ' + "[" * 500 + "]" * 500 + "}")
    _events(tmp_path, range(1, 12))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["analyze", str(tmp_path), "--no-embeddings", "--no-plots", "--no-html", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "run.json: unreadable manifest (nested deeper than 100 levels); ignored" in result.output
    assert json.loads((out / "analysis.json").read_text())["summary"]["steps"] == 11


def test_deep_json_files_beside_a_run_are_not_a_crash(tmp_path: Path) -> None:
    """The other JSON files ingest looks at: a *.json given as the run, a model config.json next to
    a trainer state, an analysis.json deciding whether a folder is logscan's own output."""
    lone = tmp_path / "state.json"
    lone.write_text('{"a": ' + DEEP + "}")
    with pytest.raises(InputError, match=r"not valid JSON \(nested deeper than 100 levels\)"):
        load_run(lone)
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "trainer_state.json").write_text(json.dumps({"global_step": 2, "log_history": [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}]}))
    (hf / "config.json").write_text('{"_name_or_path": "m", "x": ' + DEEP + "}")
    assert load_run(hf).info["model"] is None
    (hf / "analysis.json").write_text('{"format": "logscan-analysis/1", "run": ' + DEEP + "}")
    assert load_run(hf / "trainer_state.json").steps.height == 2


# --- the files of a run folder -------------------------------------------------------------------


def _small_run(folder: Path, steps: range = range(1, 12)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps({"format": "logscan-run/1", "run_id": "r", "status": "finished"}))
    _events(folder, steps)
    (folder / "generations.jsonl").write_text("".join(_gen(s) + "\n" for s in steps))


def test_a_symlink_loop_is_reported_and_the_rest_is_read(tmp_path: Path) -> None:
    _small_run(tmp_path)
    (tmp_path / "generations.rank1.jsonl").symlink_to("generations.rank1.jsonl")
    run = load_run(tmp_path)
    assert run.generations is not None and run.generations.height == 11
    assert run.steps.height == 11
    assert _issues(run) == ["generations.rank1.jsonl: a symlink loop; not read"]
    assert run.report.issues[0].kind == "unreadable_file"


def test_a_dangling_symlink_is_reported_by_name_and_target(tmp_path: Path) -> None:
    _small_run(tmp_path)
    (tmp_path / "events.rank1.jsonl").symlink_to(tmp_path / "gone" / "events.jsonl")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["analyze", str(tmp_path), "--no-embeddings", "--no-plots", "--no-html", "-o", str(out)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert f"events.rank1.jsonl: a dangling symlink (to {tmp_path / 'gone' / 'events.jsonl'}); not read" in result.output
    data = json.loads((out / "analysis.json").read_text())
    integrity = [a for a in data["alerts"] if a["kind"] == "log_integrity"]
    assert integrity and "unreadable" in integrity[0]["message"]  # a log that could not be read is not "healthy"


def test_run_json_that_is_a_device_or_a_fifo_is_named_not_read(tmp_path: Path) -> None:
    import os

    _small_run(tmp_path)
    (tmp_path / "run.json").unlink()
    # a device is never read: /dev/zero would never end (/dev/null stands in for it here, so a
    # regression fails this test instead of filling the machine's memory)
    (tmp_path / "run.json").symlink_to("/dev/null")
    os.mkfifo(tmp_path / "events.rank1.jsonl")  # nor would opening this one (no writer)
    run = load_run(tmp_path)
    assert run.steps.height == 11 and run.generations is not None
    assert sorted(_issues(run)) == [
        "events.rank1.jsonl: a FIFO, not a regular file; not read",
        "run.json: a device (a symlink to /dev/null), not a regular file; not read",
    ]


def test_a_rank_file_linked_to_rank_0_is_read_once_not_as_a_resume(tmp_path: Path) -> None:
    _small_run(tmp_path)
    (tmp_path / "events.rank1.jsonl").symlink_to("events.jsonl")
    (tmp_path / "generations.rank1.jsonl").symlink_to(tmp_path / "generations.jsonl")
    run = load_run(tmp_path)
    assert run.report.resumes == []
    assert run.generations is not None and run.generations.height == 11
    assert run.report.records_read == 22 and _issues(run) == []
    assert "events.rank1.jsonl is another name (a link) of events.jsonl; read once" in run.report.notes
    assert "generations.rank1.jsonl is another name (a link) of generations.jsonl; read once" in run.report.notes


def test_a_verl_rollout_dump_that_is_a_symlink_loop_is_reported(tmp_path: Path) -> None:
    for step in (1, 2, 3):
        (tmp_path / f"{step}.jsonl").write_text(json.dumps({"input": "q", "output": "o", "score": 1.0, "step": step}) + "\n")
    (tmp_path / "4.jsonl").symlink_to("4.jsonl")
    run = load_run(tmp_path)
    assert run.generations is not None and run.generations["step"].to_list() == [1, 2, 3]
    assert _issues(run) == ["4.jsonl: a symlink loop; not read"]


def test_a_broken_link_beside_the_run_is_listed_as_not_read(tmp_path: Path) -> None:
    import os

    _small_run(tmp_path)
    (tmp_path / "notes.log").symlink_to(tmp_path / "gone.log")
    os.mkfifo(tmp_path / "trace.log")  # opening it would wait for a writer forever
    run = load_run(tmp_path)
    not_read = {n.to_dict()["file"]: n.to_dict()["reason"] for n in run.report.not_read}
    assert not_read["notes.log"] == f"a dangling symlink (to {tmp_path / 'gone.log'})"
    assert not_read["trace.log"] == "a FIFO, not a regular file"
    assert run.steps.height == 11
