"""Each supported input format, read from small hand-made fixtures (tests/data/ingest/) or files
written here the way the library itself writes them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest

from analyzer import columns as C
from analyzer.errors import InputError
from analyzer.ingest import detect_source, load_run
from analyzer.ingest.keymap import canonical_key, map_record
from trainer_hooks import question_id_for

DATA = Path(__file__).parent / "data" / "ingest"


def _row(frame: pl.DataFrame, step: int) -> dict:
    rows = frame.filter(pl.col("step") == step).to_dicts()
    assert len(rows) == 1
    return rows[0]


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("hf_grpo_checkpoints", "hf_trainer_state"),
        ("hf_grpo_checkpoints/checkpoint-2/trainer_state.json", "hf_trainer_state"),
        ("hf_ppo", "hf_trainer_state"),
        ("verl_file_logger.jsonl", "verl_jsonl"),
        ("verl_rollouts", "verl_rollouts"),
        ("verl_rollouts/1.jsonl", "verl_rollouts"),
        ("verl_console.log", "verl_console"),
        ("trl_console.log", "trl_console"),
        ("seed_csv", "seed_csv"),
        ("seed_csv/generations.csv", "seed_csv"),
    ],
)
def test_detect_source(name: str, kind: str) -> None:
    assert detect_source(DATA / name) == kind


def test_keymap_old_and_new_names() -> None:
    assert canonical_key("rewards/acc/mean")[0] == "reward/acc"
    assert canonical_key("rewards/acc/std")[0] == "reward/acc/std"
    assert canonical_key("rewards/acc")[0] == "reward/acc"
    assert canonical_key("rewards/chosen") == ("rewards/chosen", len(__import__("analyzer.ingest.keymap").ingest.keymap.KEYMAP), True)
    assert canonical_key("eval_rewards/acc/mean")[0] == "eval/reward/acc"
    assert canonical_key("objective/rlhf_reward")[0] == C.REWARD
    assert canonical_key("actor/kl_loss")[0] == C.KL
    assert canonical_key("val-core/gsm8k/acc/mean@1")[0] == "eval/gsm8k/acc/mean@1"
    assert canonical_key("val/ratio")[0] == "val/ratio"  # TRL PPO's value-head ratio, not validation
    assert canonical_key("something_new") == ("something_new", len(__import__("analyzer.ingest.keymap").ingest.keymap.KEYMAP), False)
    # old and new completion length in one record: the new name wins, the alias is not duplicated
    mapped, unknown = map_record({"completion_length": 10.0, "completions/mean_length": 12.0, "x": 1.0})
    assert mapped == {"completion_length": 12.0, "x": 1.0} and unknown == ["x"]
    mapped, _ = map_record({"reward": 1.0, "loss": 2.0}, prefix="eval/")
    assert mapped == {"eval/reward": 1.0, "eval/loss": 2.0}


def test_hf_checkpoints_latest_state_wins() -> None:
    run = load_run(DATA / "hf_grpo_checkpoints")
    assert run.report.files_read == ["checkpoint-4/trainer_state.json"]
    assert run.steps["step"].to_list() == [1, 2, 3, 4]
    s2, s3, s4 = _row(run.steps, 2), _row(run.steps, 3), _row(run.steps, 4)
    # train and eval entries of step 2 merged into one row
    assert s2["loss"] == 0.02 and s2["eval/loss"] == 0.5 and s2["eval/reward"] == 0.45
    assert s3["loss"] is None  # JSON null stays null
    assert math.isnan(s3["kl"]) and s3["grad_norm"] == math.inf  # Python json's NaN / Infinity
    assert s4["reward"] == 0.875  # the string "0.875"
    assert s4["reward/correct"] is None  # a list: reported, not kept
    assert s4["my_custom_metric"] == 7.0
    assert s2["completion_length"] == 110.0 and s2["reward/correct"] == 0.5
    assert [str(i) for i in run.report.issues] == [
        "checkpoint-4/trainer_state.json: log_history[4]: rewards/correct is [1, 2], not a number; ignored"
    ]
    assert run.report.unknown_keys == ["my_custom_metric"]
    assert run.info["train_summary"]["train_runtime"] == 12.5  # the summary entry is not a step
    assert run.info["status"] == "finished" and run.info["max_steps"] == 4
    assert any("using checkpoint-4/trainer_state.json" in n for n in run.report.notes)


def test_hf_ppo_keys() -> None:
    run = load_run(DATA / "hf_ppo" / "trainer_state.json")
    row = _row(run.steps, 3)
    assert row[C.REWARD] == 0.52 and row[C.KL] == 1.5 and row[C.ENTROPY] == 90.5
    assert row[C.CLIP_FRACTION] == 0.03 and row[C.POLICY_LOSS] == -0.04 and row[C.VALUE_LOSS] == 0.9
    assert row[C.LEARNING_RATE] == 1e-06
    assert row["val/ratio"] == 1.02 and row["objective/scores"] == 0.59 and row["policy/entropy_avg"] == 1.9
    assert run.info["algorithm"] == "ppo"
    assert run.report.unknown_keys == []


def _write_trl_output(folder: Path) -> None:
    import pandas as pd

    state = {"global_step": 2, "log_history": [
        {"step": 1, "reward": 0.5, "rewards/correct/mean": 0.5, "rewards/fmt/mean": 0.0},
        {"step": 2, "reward": 1.0, "rewards/correct/mean": 1.0, "rewards/fmt/mean": 0.5},
    ]}
    (folder / "completions").mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps(state))
    for step in (1, 2):
        # what GRPOTrainer._log writes: step, prompt, completion, one column per reward function,
        # the reward functions' extra logs, advantage (conversational prompts are message lists)
        table = {
            "step": [step, step],
            "prompt": [[{"role": "user", "content": "What is 2+2?"}]] * 2,
            "completion": [[{"role": "assistant", "content": f"<answer>{4 + i}</answer>"}] for i in range(2)],
            "correct": [1.0, 0.0],
            "fmt": [0.5, float("nan")],
            # each step a new generation (a file identical to the previous one is TRL repeating it)
            "judge_note": ["ok", "wrong"] if step == 1 else ["ok (2)", "wrong (2)"],
            "advantage": [0.7, -0.7],
        }
        pd.DataFrame(table).to_parquet(folder / "completions" / f"completions_{step:05d}.parquet")


def test_trl_completion_parquet_next_to_trainer_state(tmp_path: Path) -> None:
    _write_trl_output(tmp_path)
    run = load_run(tmp_path)
    assert run.report.source_kind == "hf_trainer_state+trl_completions"
    g = run.generations
    assert g is not None and g.height == 4
    assert g["step"].to_list() == [1, 1, 2, 2] and g["sample_id"].to_list() == [0, 1, 2, 3]
    assert g["question"][0] == "user: What is 2+2?"
    assert g["model_output"].to_list()[:2] == ["<answer>4</answer>", "<answer>5</answer>"]
    assert g["model_answer"].to_list()[:2] == ["4", "5"]
    assert g["reward/correct"].to_list() == [1.0, 0.0, 1.0, 0.0]
    assert g["reward/fmt"][1] is None  # pandas writes NaN to parquet as null
    assert g["total_reward"].to_list() == [1.5, 0.0, 1.5, 0.0]  # like TRL's nansum
    assert g["advantage"].to_list() == [0.7, -0.7, 0.7, -0.7]
    assert g["judge_note"].to_list()[:2] == ["ok", "wrong"]  # extra columns kept
    assert g["question_id"][0] == question_id_for("user: What is 2+2?", None)
    assert g["group_id"][0] == f"1:{g['question_id'][0]}"
    assert run.reward_names == ["correct", "fmt"]
    assert _row(run.steps, 2)["reward/correct"] == 1.0
    only = load_run(tmp_path / "completions")
    assert only.report.source_kind == "trl_completions" and only.generations is not None and only.generations.height == 4


def test_verl_file_logger_resume_and_torn_tail() -> None:
    run = load_run(DATA / "verl_file_logger.jsonl")
    assert run.steps["step"].to_list() == [1, 2, 3]
    s2 = _row(run.steps, 2)
    assert s2[C.REWARD] == 0.35  # the resumed segment's line wins
    assert s2["eval/gsm8k/acc/mean@1"] == 0.41  # only the first segment logged it: kept
    assert _row(run.steps, 1)[C.KL] == 0.001 and _row(run.steps, 1)[C.COMPLETION_LENGTH] == 300.0
    assert run.report.resumes == [{"file": "verl_file_logger.jsonl", "line": 4, "from_step": 3, "to_step": 2}]
    assert [str(i) for i in run.report.issues] == [
        "verl_file_logger.jsonl:5: torn last line: the record is cut short (the writer was interrupted); skipped"
    ]
    assert run.report.records_skipped == 1 and run.report.records_read == 4


def test_verl_rollout_dumps() -> None:
    run = load_run(DATA / "verl_rollouts")
    g = run.generations
    assert g is not None and g.height == 4
    assert g["step"].to_list() == [1, 1, 2, 2]
    assert g["question"][1] == "What is 3+3?" and g["ground_truth_answer"][1] == "6"
    assert g["total_reward"].to_list() == [1.0, 0.0, 1.0, 1.0]
    assert g["acc"].to_list() == [1.0, 0.0, 1.0, 1.0]  # booleans as numbers
    assert g["pred"].to_list() == ["4", "5", "4", "6"]  # text stays text
    assert g["split"].unique().to_list() == ["train"]


def test_verl_console_snippet() -> None:
    run = load_run(DATA / "verl_console.log")
    assert run.steps["step"].to_list() == [3, 4]
    assert _row(run.steps, 4)["eval/gsm8k/reward/mean@1"] == 0.81
    assert _row(run.steps, 3)[C.ENTROPY] == 0.52
    assert run.report.resumes == [{"file": "verl_console.log", "line": 1, "from_step": None, "to_step": 2}]


def test_trl_console_snippet() -> None:
    run = load_run(DATA / "trl_console.log")
    # the third dict is cut short: skipped; the progress bar gives the others their steps
    assert run.steps["step"].to_list() == [1, 2, 4]
    assert _row(run.steps, 1)[C.LOSS] == 0.0123
    assert math.isnan(_row(run.steps, 2)[C.LOSS])
    assert _row(run.steps, 4)["reward/correct"] == 1.0
    assert [str(i) for i in run.report.issues] == [
        "trl_console.log:8: a metrics dict line without its closing brace (cut short?); skipped",
        "trl_console.log:5: note is 'warmup', not a number; ignored",
    ]
    assert run.info["train_summary"]["train_runtime"] == 40.0


def test_llamafactory_log(tmp_path: Path) -> None:
    path = tmp_path / "trainer_log.jsonl"
    lines = [
        {"current_steps": 5, "total_steps": 10, "loss": 0.9, "learning_rate": 1e-5, "epoch": 0.5, "percentage": 50.0, "elapsed_time": "0:00:10", "remaining_time": "0:00:10"},
        {"current_steps": 10, "total_steps": 10, "loss": 0.7, "learning_rate": 5e-6, "epoch": 1.0, "percentage": 100.0, "elapsed_time": "0:00:20", "remaining_time": "0:00:00"},
        {"current_steps": 10, "total_steps": 10, "epoch": 1.0, "percentage": 100.0, "elapsed_time": "0:00:21", "remaining_time": "0:00:00"},
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    run = load_run(tmp_path)
    assert run.report.source_kind == "llamafactory"
    assert run.steps["step"].to_list() == [5, 10]
    assert _row(run.steps, 10)[C.LOSS] == 0.7 and run.report.issues == []


def test_seed_csv() -> None:
    run = load_run(DATA / "seed_csv")
    g = run.generations
    assert g is not None and run.report.source_kind == "seed_csv"
    assert g.columns[:11] == ["step", "split", "sample_id", "question_id", "group_id", "question",
                              "ground_truth_answer", "model_output", "reasoning", "model_answer", "total_reward"]
    assert g["question_id"][0] == question_id_for("What is 2+2?", "4")  # the hooks' own hash
    assert g["question_id"][2] == g["question_id"][0]
    assert g["reasoning"].to_list() == ["two plus two", None, "add", None]  # from the tags
    assert g["model_answer"].to_list() == ["4", "5", "4", None]
    assert math.isnan(g["total_reward"][3]) and math.isnan(g["reward/correctness"][3])
    assert g["reward/format"].to_list() == [0.5, 0.0, 0.5, 0.0]
    assert g["timestamp"][0] == 1735689600.0  # 2025-01-01T00:00:00, naive = UTC
    assert g["split"].unique().to_list() == ["train"]
    assert g["model_output"][3] == 'no tags, "quoted", here'
    assert run.reward_names == ["correctness", "format"]
    assert run.steps.height == 0 and run.steps["step"].dtype == pl.Int64


def test_seed_csv_extra_rewards_column(tmp_path: Path) -> None:
    path = tmp_path / "gens.csv"
    path.write_text(
        "timestamp,global_step,question_id,question,ground_truth_answer,model_output,reasoning,model_answer,total_reward,a_reward,extra_rewards\n"
        '1.0,1,q1,Q,1,out,,1,1.0,1.0,\n'
        '2.0,2,q1,Q,1,out,,1,2.0,1.0,"{""b"": 1.0}"\n'
    )
    run = load_run(path)
    g = run.generations
    assert g is not None
    assert g["reward/a"].to_list() == [1.0, 1.0] and g["reward/b"].to_list() == [None, 1.0]
    assert "extra_rewards" not in g.columns


def test_seed_csv_folder_of_ranks_and_parts(tmp_path: Path) -> None:
    # Files of one folder are separate sequences (rank and part from the name), not one
    # interleaved sequence whose steps "go back" (spurious resumes, dropped completions).
    header = "timestamp,global_step,question_id,question,ground_truth_answer,model_output,reasoning,model_answer,total_reward\n"

    def write(name: str, steps: list[int]) -> None:
        (tmp_path / name).write_text(header + "".join(f"1.0,{s},q,Q,1,out,,1,1.0\n" for s in steps))

    write("generations.rank0.csv", [1, 1, 2, 2])
    write("generations.rank1.csv", [1, 1, 2, 2])
    write("generations.rank0.part1.csv", [3, 3])
    run = load_run(tmp_path)
    g = run.generations
    assert run.report.source_kind == "seed_csv" and g is not None
    assert g["step"].to_list() == [1, 1, 1, 1, 2, 2, 2, 2, 3, 3]
    assert g["rank"].to_list() == [0, 0, 1, 1, 0, 0, 1, 1, 0, 0]
    assert run.report.resumes == [] and run.report.notes == []


@pytest.mark.parametrize("careful", [False, True], ids=["fast", "careful"])
def test_seed_csv_resume_line_counts_lines_inside_fields(tmp_path: Path, careful: bool) -> None:
    """A resume is reported at the line its record starts on, counting completions that span
    several lines — whether Polars read the file whole or the csv module read it row by row."""
    import csv

    path = tmp_path / "generations.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "global_step", "question_id", "question", "ground_truth_answer", "model_output",
                    "reasoning", "model_answer", "total_reward", "extra"])
        # the extra cell's JSON holds an escaped "\n": a line break once parsed, not one in the file
        extra = json.dumps({"note": "x\ny"})
        for step, text in [(1, "one\ntwo"), (2, "a\r\nb\nc"), (3, "plain"), (2, "again\nx"), (3, "z")]:
            w.writerow([1.0, step, "q", "Q", "1", text, "", "1", 1.0, extra])
        if careful:
            w.writerow([1.0, 4, "q", "Q", "1", "w", "", "1", "not a number", ""])  # sends the file down the careful path
    run = load_run(path)
    # header 1; step 1 on lines 2-3; step 2 on 4-6; step 3 on 7; the resumed step 2 starts on line 8
    assert run.report.resumes == [{"file": "generations.csv", "line": 8, "from_step": 3, "to_step": 2, "rank": 0}]
    with path.open(newline="", encoding="utf-8") as fh:
        assert fh.read().splitlines()[7].split(",")[1] == "2"


def test_missing_path_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope: no such file or folder$"):
        load_run(tmp_path / "nope")


def test_a_folder_of_folders_is_not_searched_recursively(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Looking for runs inside a folder checks its immediate subfolders only (a home folder must not
    cost a walk of the whole tree)."""
    import analyzer.ingest as ingest

    for a in range(4):
        for b in range(4):
            (tmp_path / f"a{a}" / f"b{b}" / "c").mkdir(parents=True)
    calls: list[Path] = []
    real = ingest._detect_dir

    def counting(path: Path, **kw: object) -> str:
        calls.append(path)
        return real(path, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest, "_detect_dir", counting)
    with pytest.raises(InputError, match="nothing logscan can read in this folder"):
        load_run(tmp_path)
    assert len(calls) == 1 + 4


def test_trl_console_steps_come_from_the_training_bar_not_the_eval_bar(tmp_path: Path) -> None:
    """Found by a bug hunt: an evaluation loop's own progress bar (1/4 … 4/4) between the training
    bar's updates made the steps non-increasing, so every dict fell back to line order."""
    lines = []
    for block in range(3):
        lines.append(" ".join(f"{i}/30 [00:0{i % 10}<00:10,  1.00s/it]" for i in range(block * 10 + 1, block * 10 + 11)))
        lines.append(repr({"loss": float(block + 1), "reward": 0.3 * (block + 1), "epoch": (block + 1) / 3}))
        if block < 2:
            lines.append(" ".join(f"{i}/4 [00:01<00:00,  3.2it/s]" for i in range(1, 5)))
            lines.append(repr({"eval_loss": 0.5, "eval_reward": 0.4, "epoch": (block + 1) / 3}))
    path = tmp_path / "train.log"
    path.write_text("***** Running training *****\n" + "\n".join(lines) + "\n", encoding="utf-8")
    run = load_run(path)
    assert run.report.source_kind == "trl_console"
    assert run.steps["step"].to_list() == [10, 20, 30]
    assert run.steps["loss"].to_list() == [1.0, 2.0, 3.0]
    assert run.steps["eval/reward"].to_list() == [0.4, 0.4, None]
