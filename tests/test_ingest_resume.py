"""A run that is killed and resumed — what trainer_hooks exists to survive — is read at realistic
size: thousands of completions (megabytes, so the file is read in pieces), a torn line where the
kill cut a record, then a second session that starts again from step 0 or from a checkpoint."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from analyzer.ingest import load_run
from trainer_hooks import RunLogger

PER_STEP = 10
STEPS = 300  # 3,000 completions of 500 characters a session: ≈ 1.5 MB each, more than a piece


def _session(folder: Path, steps: range, text: str) -> None:
    with RunLogger(folder, generations_format="jsonl") as lg:
        for s in steps:
            lg.log_metrics(s, {"loss": 1.0 / (s + 1)})
            for k in range(PER_STEP):
                lg.log_generation(step=s, question=f"q{k % 5}", ground_truth_answer="1",
                                  model_output=f"<answer>1</answer> {text}" + "y" * 480, rewards={"r": 1.0})


def _killed_and_resumed(folder: Path, resume_from: int) -> None:
    _session(folder, range(STEPS), "first")
    with (folder / "generations.jsonl").open("ab") as fh:  # what a kill in the middle of a write leaves
        fh.write(b'{"timestamp":17000,"global_step":3')
    _session(folder, range(resume_from, STEPS), "second")


@pytest.mark.parametrize("resume_from", [0, 150], ids=["from-step-0", "from-a-checkpoint"])
def test_a_killed_and_resumed_run_is_read_at_realistic_size(tmp_path: Path, resume_from: int) -> None:
    _killed_and_resumed(tmp_path, resume_from)
    assert (tmp_path / "generations.jsonl").stat().st_size > 3_000_000
    run = load_run(tmp_path)
    g = run.generations
    assert g is not None
    # every step once, each with its own completions; the re-logged steps from the second session
    assert g.height == STEPS * PER_STEP
    assert g["step"].to_list() == [s for s in range(STEPS) for _ in range(PER_STEP)]
    kept = g.group_by("step").agg(pl.col("model_output").str.contains("second").all().alias("second")).sort("step")
    assert kept["second"].to_list() == [s >= resume_from for s in range(STEPS)]
    assert g["group_id"].to_list()[:2] == [f"0:{g['question_id'][0]}", f"0:{g['question_id'][1]}"]
    assert g["sample_id"].to_list() == list(range(g.height))
    # the torn line is reported where it is, and the resume where the step went back
    torn = [i for i in run.report.issues if i.kind == "torn_line"]
    assert [(i.file, i.line) for i in torn] == [("generations.jsonl", STEPS * PER_STEP + 1)]
    assert [(r["from_step"], r["to_step"]) for r in run.report.resumes if r["file"] == "generations.jsonl"] == [(STEPS - 1, resume_from)]
    superseded = (STEPS - resume_from) * PER_STEP
    assert any(f"{superseded} completions of steps {resume_from}-{STEPS - 1} were logged again" in n for n in run.report.notes)


@pytest.mark.slow
def test_every_reading_command_survives_a_killed_and_resumed_run(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from analyzer.cli import cli

    run = tmp_path / "run"
    _killed_and_resumed(run, 0)
    qid = str(load_run(run).generations["question_id"][0])  # type: ignore[index]
    for args in (
        ["analyze", run, "--no-embeddings", "--no-plots", "--no-html", "-q", "--fail-on", "never", "-o", tmp_path / "out"],
        ["html-report", run, "--no-embeddings", "-o", tmp_path / "report.html"],
        ["watch", run, "--once"],
        ["samples", run, "--question-id", qid],
    ):
        out = CliRunner().invoke(cli, [str(a) for a in args])
        assert out.exit_code == 0, (args[0], out.output, out.exception)
    assert (tmp_path / "report.html").stat().st_size > 0
