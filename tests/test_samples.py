"""``logscan samples``: one prompt's completions over time, with diffs and rewards."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from analyzer import columns as C
from analyzer.cli import cli
from analyzer.errors import InputError
from analyzer.model import IngestReport, RunData
from analyzer.report.samples_view import format_samples, terminal_safe
from trainer_hooks import schema as S

ANSWERS = [
    "Let me think.\nWe have 3 apples and buy 4.\n3 + 4 = 7\n<answer>7</answer>",
    "Let me think.\nWe have 3 apples and buy 4 more.\n3 + 4 = 7\n<answer>7</answer>",
    "Let me think.\nWe have 3 apples and buy 4 more.\n3 + 4 = 7\n<answer>7</answer>",
    "<answer>7</answer>",
    "Bananas! \x1b[31mred alert\x1b[0m 🍌👩‍👩‍👧 \u202e done",
]


def write_run(folder: Path, *, steps: int = 5) -> Path:
    """A logscan run folder as trainer_hooks writes it: run.json + generations.jsonl."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / S.MANIFEST_FILE).write_text(
        json.dumps({S.M_FORMAT: S.FORMAT, S.M_RUN_ID: "t", S.M_STATUS: "finished", S.M_REWARD_NAMES: ["format", "correct"]})
    )
    lines = []
    for step in range(steps):
        for k in range(2):  # a GRPO group of two completions per prompt
            out = ANSWERS[step % len(ANSWERS)] if k == 0 else f"other completion {step}"
            lines.append(
                {S.G_STEP: step, S.G_QUESTION_ID: "apples-1", S.G_QUESTION: "How many apples does Ann have?",
                 S.G_GROUND_TRUTH: "7", S.G_OUTPUT: out, S.G_TOTAL_REWARD: 1.0 + step / 10 - k,
                 S.G_REWARDS: {"format": 1.0 - k, "correct": step / 10}, S.G_SPLIT: "train", S.G_GROUP_ID: f"{step}:a"}
            )
        lines.append(
            {S.G_STEP: step, S.G_QUESTION_ID: "capital-2", S.G_QUESTION: "What is the capital of France?",
             S.G_GROUND_TRUTH: "Paris", S.G_OUTPUT: "Paris." if step < 3 else "Lyon, I think.", S.G_TOTAL_REWARD: 1.0,
             S.G_REWARDS: {"format": 1.0, "correct": 1.0}, S.G_SPLIT: "eval", S.G_GROUP_ID: None}
        )
    (folder / S.generations_file()).write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return folder


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run")


def invoke(*args: str):
    return CliRunner().invoke(cli, ["samples", *args])


def test_samples_by_question_id(run_dir: Path) -> None:
    res = invoke(str(run_dir), "--question-id", "apples-1")
    assert res.exit_code == 0, res.output
    out = res.output
    assert out.startswith("question_id: apples-1  (train · 5 steps · 10 completions)\n")
    assert "prompt: How many apples does Ann have?" in out and "ground truth: 7" in out
    headers = [line for line in out.splitlines() if line.startswith("── step")]
    assert [h.split(" · ")[0] for h in headers] == [f"── step {i}" for i in range(5)]
    assert headers[0].startswith("── step 0 · sample ") and "reward 1.00 (format 1.00, correct 0.00)" in headers[0]
    assert "2 completions at this step, reward mean 0.50 [0.00–1.00]; showing the first" in headers[0]
    # multi-line, similar texts: a line diff against the previous step shown
    assert "vs step 0: similarity 0.9" in out and "-We have 3 apples and buy 4." in out
    assert "+We have 3 apples and buy 4 more." in out
    assert "(same text as step 1)" in out  # step 2 repeats step 1
    assert "vs step 2:" in out and "\n<answer>7</answer>\n" in out  # very different: the new text itself


def test_escapes_terminal_control_characters(run_dir: Path) -> None:
    res = invoke(str(run_dir), "--question-id", "apples-1")
    assert res.exit_code == 0
    assert "\x1b" not in res.output and "\\x1b[31mred alert\\x1b[0m" in res.output
    assert "🍌👩‍👩‍👧" in res.output  # printable unicode (emoji, ZWJ sequences) kept
    assert "\u202e" not in res.output and "\\u202e" in res.output  # bidi override shown, not obeyed


def test_samples_by_prompt_substring_and_split(run_dir: Path) -> None:
    res = invoke(str(run_dir), "--prompt", "CAPITAL of france", "--split", "eval")
    assert res.exit_code == 0, res.output
    assert res.output.startswith("question_id: capital-2  (eval · 5 steps · 5 completions)")
    assert "(same text as step 0)" in res.output and "vs step 2: similarity" in res.output
    assert "Lyon, I think." in res.output


def test_limit_keeps_first_and_last_steps(run_dir: Path) -> None:
    res = invoke(str(run_dir), "--question-id", "apples-1", "--limit", "3")
    assert res.exit_code == 0
    assert "showing 3 of 5 steps" in res.output
    steps = [line.split(" · ")[0] for line in res.output.splitlines() if line.startswith("── step")]
    assert steps == ["── step 0", "── step 2", "── step 4"]


def test_unknown_id_lists_valid_ones(run_dir: Path) -> None:
    res = invoke(str(run_dir), "--question-id", "nope")
    assert res.exit_code == 2
    assert res.output.strip() == (
        "Error: no completions with question_id 'nope'; some valid ids: apples-1 (5 steps), capital-2 (5 steps) "
        "(or search the prompt text with --prompt)"
    )


def test_unknown_prompt_and_split(run_dir: Path) -> None:
    res = invoke(str(run_dir), "--prompt", "zebras")
    assert res.exit_code == 2 and res.output.startswith("Error: no prompt contains 'zebras'; some valid ids: apples-1")
    res = invoke(str(run_dir), "--question-id", "apples-1", "--split", "probe")
    assert res.exit_code == 2
    assert res.output.strip() == "Error: no completions with split 'probe'; splits in this run: eval, train"


def test_needs_an_id_or_prompt(run_dir: Path) -> None:
    res = invoke(str(run_dir))
    assert res.exit_code == 2 and "give --question-id ID or --prompt TEXT" in res.output


def test_missing_run_is_a_clean_error(tmp_path: Path) -> None:
    res = invoke(str(tmp_path / "absent"), "--question-id", "x")
    assert res.exit_code == 2 and res.output.startswith("Error: ") and "Traceback" not in res.output


# --- the library function, without files --------------------------------------------------------------


def frame_run(rows: list[dict[str, object]]) -> RunData:
    return RunData(path="mem", steps=pl.DataFrame({C.STEP: [0]}), generations=pl.DataFrame(rows), report=IngestReport("t"))


def test_run_without_completions() -> None:
    run = RunData(path="mem", steps=pl.DataFrame({C.STEP: [0]}), generations=None, report=IngestReport("t"))
    with pytest.raises(InputError, match="has no logged completions"):
        format_samples(run, question_id="x")


def test_several_prompts_match_the_substring() -> None:
    rows = [
        {C.STEP: s, C.QUESTION_ID: q, C.QUESTION: f"Count the {q}", C.OUTPUT: f"{q} {s}", C.TOTAL_REWARD: 0.5}
        for q, steps in (("apples", [0]), ("apple pies", [0, 1, 2]))
        for s in steps
    ]
    text = format_samples(frame_run(rows), prompt="apple")
    assert text.startswith("question_id: apple pies  (train · 3 steps")
    assert "2 prompts match; showing the one logged at the most steps (others: apples)" in text


def test_integer_question_ids_and_missing_rewards() -> None:
    rows = [{C.STEP: s, C.QUESTION_ID: 17, C.QUESTION: "q", C.OUTPUT: f"answer {s}"} for s in (3, 1)]
    text = format_samples(frame_run(rows), question_id="17")
    # a run built by hand gets sample ids like an ingested one (analyzer.model.completion_keys)
    assert "── step 1 · sample 1 · reward –" in text and text.index("step 1") < text.index("step 3")


def test_terminal_safe() -> None:
    assert terminal_safe("a\tb\nc") == "a\tb\nc"
    assert terminal_safe("\x07bell\r") == "\\x07bell\\x0d"
    assert terminal_safe("x\ud800y") == "x\ufffdy"
    assert terminal_safe("zero\u200bwidth") == "zero\\u200bwidth"


def test_long_chat_prompts_keep_the_question_visible() -> None:
    system = "system\nYou are a precise assistant. " * 20
    rows = [{C.STEP: 0, C.QUESTION_ID: "q", C.QUESTION: system + "user\nWhat body of water is this?", C.OUTPUT: "A"}]
    text = format_samples(frame_run(rows), question_id="q")
    header = text.split("\n\n── ")[0]
    assert header.splitlines()[1] == "prompt: system"
    assert header.endswith("What body of water is this?") and "characters) …" in header


def test_real_rollout_log_samples(realdata) -> None:
    path = realdata / "JuncyLu__trl_DAPO" / "training_logs__20251022_181457__rollout_results.md"
    if not path.is_file():
        pytest.skip("rollout dump not present")
    res = invoke(str(path), "--prompt", "identical twins")
    assert res.exit_code == 0, res.output
    assert res.output.startswith("question_id: ") and "── step 32 · sample " in res.output
    header = res.output.split("\n\n── ")[0]
    assert "twins" in header and "ground truth: " in header  # the question, not only the system prompt
