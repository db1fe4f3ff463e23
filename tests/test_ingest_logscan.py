"""logscan run folders: what trainer_hooks writes is read back unchanged (JSONL and CSV, several
ranks, part files, resumed runs), through both the Polars fast path and the careful path."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.ingest import load_run, logscan_run
from trainer_hooks import RunLogger, question_id_for


def _write_run(folder: Path, fmt: Literal["jsonl", "csv"] = "jsonl", *, rank: int = 0, world_size: int = 1, steps=(1, 2, 3)) -> None:
    log = RunLogger(folder, algorithm="grpo", model="tiny", reward_names=["correct"],
                    generations_format=fmt, rank=rank, world_size=world_size)
    for step in steps:
        log.log_metrics(step, {"reward": 0.5 * step, "kl": float("nan") if step == 2 else 0.01 * step})
        log.log_metrics(step, {"reward": 0.1 * step}, split="eval")
        for i in range(2):
            rewards = {"correct": float(i)}
            if step == 3:
                rewards["fmt"] = float("nan")  # a reward function that appears mid-run
            log.log_generation(step=step, question=f"q{i}, \"quoted\"\nsecond line", ground_truth_answer="1",
                               model_output=f"<reasoning>r{i}</reasoning>\n<answer>{i}</answer>",
                               rewards=rewards, temperature=0.7, note=f"rank{rank}")
    log.close()


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_round_trip(tmp_path: Path, fmt: Literal["jsonl", "csv"]) -> None:
    _write_run(tmp_path, fmt)
    run = load_run(tmp_path)
    assert run.report.source_kind == "logscan"
    assert run.report.issues == [] and run.report.records_skipped == 0
    assert run.steps["step"].to_list() == [1, 2, 3]
    assert run.steps["reward"].to_list() == [0.5, 1.0, 1.5]
    assert run.steps["eval/reward"].to_list() == pytest.approx([0.1, 0.2, 0.3])
    assert math.isnan(run.steps["kl"][1])
    g = run.generations
    assert g is not None and g.height == 6
    assert g["sample_id"].to_list() == list(range(6))
    assert g["question"][0] == 'q0, "quoted"\nsecond line'
    assert g["question_id"][0] == question_id_for('q0, "quoted"\nsecond line', "1")
    assert g["reasoning"].to_list()[:2] == ["r0", "r1"] and g["model_answer"].to_list()[:2] == ["0", "1"]
    assert g["reward/correct"].to_list() == [0.0, 1.0] * 3
    assert g["reward/fmt"][:4].to_list() == [None] * 4 and math.isnan(g["reward/fmt"][4])
    assert g["total_reward"].to_list() == [0.0, 1.0] * 3  # NaN ignored in the sum, as TRL's nansum
    assert g["temperature"].to_list() == [0.7] * 6 and g["note"][0] == "rank0"  # extra keys as columns
    assert g.schema["timestamp"] == pl.Float64 and g["timestamp"][0] > 1.7e9
    assert run.info["status"] == "finished" and run.info["algorithm"] == "grpo" and run.info["model"] == "tiny"
    assert run.reward_names == ["correct", "fmt"]
    if fmt == "csv":
        assert "generations.part2.csv" in run.report.files_read


def test_multi_rank_merge(tmp_path: Path) -> None:
    _write_run(tmp_path, rank=0, world_size=2)
    _write_run(tmp_path, rank=1, world_size=2)
    run = load_run(tmp_path)
    g = run.generations
    assert g is not None and g.height == 12
    assert set(run.report.files_read) >= {"generations.jsonl", "generations.rank1.jsonl", "events.rank1.jsonl"}
    # canonical order: step, then rank, then file order
    assert g.select("step", "rank").rows()[:4] == [(1, 0), (1, 0), (1, 1), (1, 1)]
    assert g.filter(pl.col("rank") == 1)["note"].unique().to_list() == ["rank1"]
    assert run.info["world_size"] == 2
    assert run.steps["reward"].to_list() == [0.5, 1.0, 1.5]


def _gen(step: int, text: str, **kw) -> str:
    rec = {"timestamp": 1.7e9 + step, "global_step": step, "question_id": "q", "question": "Q",
           "ground_truth_answer": "1", "model_output": text, "reasoning": None, "model_answer": None,
           "total_reward": 1.0, "rewards": {"correct": 1.0}, "split": "train", "group_id": None, "rank": 0, "extra": {}}
    rec.update(kw)
    return json.dumps(rec) + "\n"


def test_resumed_run_latest_segment_wins(tmp_path: Path) -> None:
    lines = [_gen(s, f"first {s}") for s in (1, 2, 3, 4)] + [_gen(s, f"second {s}") for s in (3, 4, 5)]
    (tmp_path / "generations.jsonl").write_text("".join(lines))
    (tmp_path / "run.json").write_text(json.dumps({"format": "logscan-run/1", "run_id": "r", "status": "crashed"}))
    run = load_run(tmp_path)
    g = run.generations
    assert g is not None
    assert g["model_output"].to_list() == ["first 1", "first 2", "second 3", "second 4", "second 5"]
    assert run.report.resumes == [{"file": "generations.jsonl", "line": 5, "from_step": 4, "to_step": 3, "rank": 0}]
    assert any("2 completions of steps 3-4 were logged again after a resume" in n for n in run.report.notes)
    assert "run.json says the run crashed" in run.report.notes


def test_events_resume_and_running_status(tmp_path: Path) -> None:
    ev = [{"time": 1.0, "step": s, "phase": "metrics", "split": "train", "metrics": {"loss": float(s) + off}, "meta": {}, "rank": 0}
          for s, off in ((1, 0), (2, 0), (3, 0), (2, 0.5), (3, 0.5))]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in ev))
    (tmp_path / "run.json").write_text(json.dumps({"format": "logscan-run/1", "run_id": "r", "status": "running"}))
    run = load_run(tmp_path)
    assert run.steps["loss"].to_list() == [1.0, 2.5, 3.5]
    assert run.report.resumes == [{"file": "events.jsonl", "line": 4, "from_step": 3, "to_step": 2}]
    assert run.generations is None
    assert any("still running" in n for n in run.report.notes)


def test_chunked_fast_path_sends_only_the_bad_chunk_to_the_careful_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logscan_run, "CHUNK_BYTES", 1000)  # a few records per chunk
    lines = [_gen(s // 4 + 1, f"out {s}") for s in range(40)]
    lines[21] = '{"global_step": 6, "model_output": "broken\n'  # malformed, mid-file
    lines[30] = _gen(8, "bad type", total_reward=[1, 2])
    (tmp_path / "generations.jsonl").write_text("".join(lines))
    run = load_run(tmp_path)
    g = run.generations
    assert g is not None and g.height == 39
    assert [str(i) for i in run.report.issues] == [
        "generations.jsonl:22: torn line: the record is cut short (the writer was interrupted); skipped",
        "generations.jsonl:31: total_reward is [1, 2], not a number; set to null",
    ]
    assert g.filter(pl.col("model_output") == "bad type")["total_reward"].to_list() == [None]
    assert g["model_output"].to_list()[:3] == ["out 0", "out 1", "out 2"]
    assert run.report.records_read == 39 and run.report.records_skipped == 1


text = st.text(st.characters(exclude_categories=["Cs"]), max_size=200)
number = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6).map(float))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(question=text, output=text, truth=st.one_of(st.none(), text), reward=number, fmt=st.sampled_from(["jsonl", "csv"]))
def test_hypothesis_round_trip(tmp_path_factory: pytest.TempPathFactory, question: str, output: str,
                               truth: str | None, reward: float, fmt: Literal["jsonl", "csv"]) -> None:
    folder = tmp_path_factory.mktemp("rt")
    log = RunLogger(folder, generations_format=fmt)
    log.log_generation(step=1, question=question, model_output=output, ground_truth_answer=truth, rewards={"r": reward})
    log.close()
    run = load_run(folder)
    g = run.generations
    assert g is not None and g.height == 1, run.report.issues
    row = g.row(0, named=True)
    assert row["question"] == question or (fmt == "csv" and question == "" and row["question"] is None)
    assert row["model_output"] == output or (fmt == "csv" and output == "" and row["model_output"] is None)
    got = row["reward/r"]
    assert (math.isnan(got) and math.isnan(reward)) or got == reward
    assert row["question_id"] == question_id_for(question, truth)


def test_allocator_setting_is_made_only_before_polars_loads() -> None:
    import os
    import subprocess
    import sys

    code = (
        "import os\n"
        "from analyzer.ingest._common import POLARS_ALLOCATOR_ENV, return_freed_memory_promptly as f\n"
        "print(f(), os.environ.get(POLARS_ALLOCATOR_ENV[0]) == POLARS_ALLOCATOR_ENV[1])\n"
        "import polars\n"
        "del os.environ[POLARS_ALLOCATOR_ENV[0]]\n"
        "print(f(), POLARS_ALLOCATOR_ENV[0] in os.environ)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True", "False", "False"]
    # a value the user chose is left alone
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
                          env=env | {"_RJEM_MALLOC_CONF": "narenas:1"})
    assert proc.stdout.split()[:2] == ["False", "False"]


def test_a_rejected_chunk_is_narrowed_to_pieces_before_the_line_by_line_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logscan_run, "CHUNK_BYTES", 4000)
    monkeypatch.setattr(logscan_run, "PIECE_BYTES", 300)
    careful_lines: list[int] = []
    real = logscan_run._read_jsonl_careful

    def spy(path, col, raw_lines=None):  # type: ignore[no-untyped-def]
        lines = list(raw_lines or [])
        careful_lines.extend(n for n, _ in lines)
        return real(path, col, iter(lines))

    monkeypatch.setattr(logscan_run, "_read_jsonl_careful", spy)
    lines = [_gen(s // 4 + 1, f"out {s}") for s in range(60)]
    lines[33] = '{"global_step": 9, "model_output": "x", "total_reward": "much"}\n'
    (tmp_path / "generations.jsonl").write_text("".join(lines))
    run = load_run(tmp_path)
    assert run.generations is not None and run.generations.height == 60
    assert [str(i) for i in run.report.issues] == ["generations.jsonl:34: total_reward is 'much', not a number; set to null"]
    assert 34 in careful_lines and len(careful_lines) < 10  # one small piece, not the whole chunk
    assert run.generations["model_output"].to_list()[:2] == ["out 0", "out 1"]
    assert run.report.records_read == 60


def test_a_reward_first_logged_mid_file_of_a_crashed_run_is_read(tmp_path: Path) -> None:
    """JSONL reward names come from run.json plus the first and last records of the file; the
    writer lists a new name in run.json before the records carrying it reach the file, so a reward
    function that only appears mid-file — far from both ends — is still read, even when the
    run died before close()."""
    lg = RunLogger(tmp_path, reward_names=["acc"])
    try:
        step = 0
        for step in range(1, 301):
            lg.log_generation(step=step, question=f"q{step % 7}", model_output="x" * 300, rewards={"acc": 1.0})
        for k in range(10):
            lg.log_generation(step=301, question="q", model_output=f"judged {k}", rewards={"acc": 0.0, "judge": k / 10})
        for step in range(302, 302 + 3000):  # > 1 MB after the judged records
            lg.log_generation(step=step, question="q", model_output="y" * 400, rewards={"acc": 0.5})
        assert lg.flush()
        lines = (tmp_path / "generations.jsonl").read_bytes().splitlines()
        judged = [i for i, line in enumerate(lines) if b'"judge"' in line]
        assert judged[0] >= 200 and len(b"\n".join(lines[judged[-1] + 1 :])) > (1 << 20)
        run = load_run(tmp_path)  # the writer is still open: as after a crash
    finally:
        lg.close()
    assert run.generations is not None
    judge = run.generations.filter(pl.col("reward/judge").is_not_null())
    assert judge["step"].unique().to_list() == [301]
    assert judge["reward/judge"].to_list() == pytest.approx([k / 10 for k in range(10)])


def test_a_reward_only_mid_file_is_read_without_any_run_json(tmp_path: Path) -> None:
    """A hand-made (or foreign) generations.jsonl with no run.json: a reward name that appears only
    far from both ends of the file — so no sampled record names it — is still read, on the fast
    path (no issue, no line re-read), with its values at the right records. It used to be dropped
    silently: the rewards object was parsed with the names found in the sampled records only."""
    lines = []
    for i in range(6000):
        rewards: dict[str, object] = {"a": float(i % 2)}
        if 3000 <= i < 3010:
            rewards["judge"] = "NaN" if i == 3009 else i / 10_000
        lines.append(json.dumps({"global_step": 1 + i // 100, "question": f"q{i % 8}", "model_output": "z" * 300,
                                 "total_reward": float(i % 2), "rewards": rewards}))
    (tmp_path / "generations.jsonl").write_text("\n".join(lines) + "\n")
    head = "\n".join(lines[:200]).encode()
    assert b"judge" not in head and b"judge" not in "\n".join(lines[3010:]).encode()[-(1 << 20):]
    run = load_run(tmp_path)
    g = run.generations
    assert g is not None and g.height == 6000 and not run.report.issues
    judged = g.filter(pl.col("reward/judge").is_not_null()).sort("sample_id")
    assert judged["step"].to_list() == [31] * 10
    assert judged["reward/judge"].to_list()[:9] == pytest.approx([i / 10_000 for i in range(3000, 3009)])
    assert math.isnan(judged["reward/judge"][9])
    assert g["reward/a"].to_list() == [float(i % 2) for i in range(6000)]


def test_nested_values_read_the_same_on_the_fast_and_the_careful_path(tmp_path: Path) -> None:
    """A nested value (a chat message list, an unknown key's object) becomes the same JSON text —
    non-ASCII kept as it is — whether Polars read its chunk or the line-by-line path did."""
    rec = {
        "global_step": 1, "question_id": "q", "question": [{"role": "user", "content": "héllo ✓"}],
        "model_output": "x", "total_reward": 1.0, "rewards": {"r": 1.0}, "meta": {"lang": "日本語"},
    }  # fmt: skip
    line = json.dumps(rec, ensure_ascii=False) + "\n"
    fast, careful = tmp_path / "fast", tmp_path / "careful"
    for folder, bad in ((fast, ""), (careful, "{not json\n")):
        folder.mkdir()
        (folder / "generations.jsonl").write_text(line + bad + line, encoding="utf-8")
    a, b = load_run(fast), load_run(careful)
    assert not [i for i in a.report.issues if i.kind == "malformed"]
    assert [i.line for i in b.report.issues if i.kind == "malformed"] == [2]  # the careful path ran
    assert a.generations is not None and b.generations is not None
    cols = ["question", "meta"]
    assert a.generations.select(cols).equals(b.generations.select(cols))
    assert a.generations["question"][0] == '[{"role": "user", "content": "héllo ✓"}]'
    assert a.generations["meta"][0] == '{"lang": "日本語"}'


def test_a_nested_extra_value_keeps_its_non_ascii_text(tmp_path: Path) -> None:
    rec = {"global_step": 1, "question_id": "q", "question": "Q", "model_output": "x", "total_reward": 1.0,
           "extra": {"judge": {"why": "çà — ok"}}}
    (tmp_path / "generations.jsonl").write_text(json.dumps(rec) + "\n", encoding="utf-8")
    g = load_run(tmp_path).generations
    assert g is not None and g["judge"].to_list() == ['{"why": "çà — ok"}']


@pytest.mark.parametrize("careful", [False, True], ids=["fast", "careful"])
def test_a_csv_reward_named_like_a_fixed_column_round_trips(tmp_path: Path, careful: bool) -> None:
    """A reward function named "total" would be the column "total_reward": the writer puts it in
    the row's extra cell as "reward/total" instead, and ingest reads it back as that reward."""
    with RunLogger(tmp_path, generations_format="csv") as lg:
        lg.log_generation(step=1, question="q", model_output="a", rewards={"total": 0.5, "acc": 1.0})
        lg.log_generation(step=2, question="q", model_output="b", rewards={"total": float("nan"), "acc": 0.0}, note="x")
    path = tmp_path / "generations.csv"
    header = path.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert header.count("total_reward") == 1 and "acc_reward" in header
    if careful:
        with path.open("a", encoding="utf-8") as fh:
            fh.write("1.0,3,q,q,,c,,,not a number,1.0,train,,\n")
    run = load_run(tmp_path)
    g = run.generations
    assert g is not None
    assert g["total_reward"].to_list()[:2] == [1.5, 0.0]
    assert g["reward/acc"].to_list()[:2] == [1.0, 0.0]
    total = g["reward/total"].to_list()
    assert total[0] == 0.5 and math.isnan(total[1])
    assert g["note"].to_list()[:2] == [None, "x"]
    assert run.reward_names == ["acc", "total"]


def test_reward_keys_under_extra_never_break_the_careful_path(tmp_path: Path) -> None:
    """The "reward/total" key under extra (how a CSV keeps a reward named like a fixed column) with
    a non-finite string or text: read as a number or null, never a traceback."""
    recs = [
        {"global_step": 1, "question": "q", "model_output": "a", "total_reward": 1.0, "extra": {"reward/total": "NaN"}},
        {"global_step": 2, "question": "q", "model_output": "b", "total_reward": 1.0, "extra": {"reward/total": "oops"}},
        {"global_step": 3, "question": "q", "model_output": "c", "total_reward": 1.0, "extra": {"reward/total": 2}},
    ]
    text = "".join(json.dumps(r) + "\n" for r in recs) + "{not json\n"  # the careful path
    (tmp_path / "generations.jsonl").write_text(text, encoding="utf-8")
    g = load_run(tmp_path).generations
    assert g is not None
    x = g["reward/total"].to_list()
    assert math.isnan(x[0]) and x[1:] == [None, 2.0]


@pytest.mark.parametrize("careful", [False, True], ids=["fast", "careful"])
def test_reward_like_keys_of_a_user_are_not_reward_functions(tmp_path: Path, careful: bool) -> None:
    """Found in review: extra={"reward/model": "gpt-4"} (or such a top-level key) became a phantom
    reward function. Only the CSV writer's escape for a reward named like a fixed column
    (reward/total) is a reward; other reward-like keys stay ordinary columns under extra/."""
    recs = [
        {"global_step": s, "question": "q", "model_output": "x", "total_reward": 1.0, "rewards": {"acc": 1.0},
         "extra": {"reward/model": "gpt-4", "reward/total": 0.5}, "reward/judge": "strict", "step": 99}
        for s in (1, 2)
    ]
    text = "".join(json.dumps(r) + "\n" for r in recs) + ("{not json\n" if careful else "")
    (tmp_path / "generations.jsonl").write_text(text, encoding="utf-8")
    run = load_run(tmp_path)
    g = run.generations
    assert g is not None
    assert run.reward_names == ["acc", "total"]
    assert g["extra/reward/model"].to_list() == ["gpt-4", "gpt-4"]
    assert g["extra/reward/judge"].to_list() == ["strict", "strict"]
    assert g["step"].to_list() == [1, 2] and g["extra/step"].cast(pl.Float64).to_list() == [99.0, 99.0]
    assert g["reward/total"].to_list() == [0.5, 0.5]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_session_resumed_from_a_checkpoint_replaces_the_steps_it_redoes(tmp_path: Path, fmt: Literal["jsonl", "csv"]) -> None:
    """Found by a bug hunt: a run that crashed during step 3 and resumed from the step-3 checkpoint
    logs step 3 again without the step going back. run.json's resumes mark the new session; its
    records replace the interrupted session's (completions and metrics alike, stale keys too)."""
    lg = RunLogger(tmp_path, generations_format=fmt)
    for s in (1, 2, 3):
        for _ in range(2):
            lg.log_generation(step=s, question=f"q{s}", model_output="old", rewards={"acc": 1.0})
        lg.log_metrics(s, {"loss": 1.0, "kl": 0.5})
    lg.close(status="crashed")
    lg = RunLogger(tmp_path, generations_format=fmt)
    for s in (3, 4):
        for _ in range(2):
            lg.log_generation(step=s, question=f"q{s}", model_output="new", rewards={"acc": 0.0})
        lg.log_metrics(s, {"loss": 2.0})
    lg.close()
    run = load_run(tmp_path)
    g = run.generations
    assert g is not None
    assert g.group_by("step").len().sort("step").rows() == [(1, 2), (2, 2), (3, 2), (4, 2)]
    assert g.filter(pl.col("step") == 3)["model_output"].to_list() == ["new", "new"]
    assert run.steps.select("step", "loss", "kl").rows() == [(1, 1.0, 0.5), (2, 1.0, 0.5), (3, 2.0, None), (4, 2.0, None)]
    assert any("2 completions of steps 3-3 were logged again after a resume" in n for n in run.report.notes)


def test_the_end_of_training_summary_is_not_a_step(tmp_path: Path) -> None:
    """Found by a bug hunt: train_end's train_runtime / train_loss became columns of the last step."""
    from trainer_hooks import TrainingPhase

    with RunLogger(tmp_path) as lg:
        lg.log_metrics(1, {"loss": 1.0})
        lg.log_metrics(2, {"loss": 0.5})
        lg.log_event(TrainingPhase.TRAIN_END, 2, metrics={"train_runtime": 12.3, "train_loss": 0.75})
    run = load_run(tmp_path)
    assert run.steps.columns == ["step", "loss"]
    assert run.info["train_summary"] == {"train_runtime": 12.3, "train_loss": 0.75}
    assert "train_runtime" not in run.report.unknown_keys


def test_every_ranks_manifest_names_its_rewards(tmp_path: Path) -> None:
    """Found by a bug hunt: rank 1's reward names (in run.rank1.json) were ignored when run.json
    existed, so a reward only rank 1 logs, mid-file, silently vanished."""
    with RunLogger(tmp_path, rank=0, world_size=2) as lg0, RunLogger(tmp_path, rank=1, world_size=2) as lg1:
        for s in range(1, 4):
            lg0.log_generation(step=s, question="q", model_output="a", rewards={"a": 1.0})
        for k in range(3000):
            rewards = {"a": 0.0, "b": 0.5} if 1000 <= k < 1010 else {"a": 0.0}
            lg1.log_generation(step=1 + k // 1000, question="q", model_output="y" * 400, rewards=rewards)
    run = load_run(tmp_path)
    g = run.generations
    assert g is not None and "reward/b" in g.columns
    assert g["reward/b"].drop_nulls().to_list() == [0.5] * 10
