"""A run folder is one run: every source in it is read and merged on step (analyzer/ingest/merge.py).

The folders are written in the real formats: a TRL ``trainer_state.json`` (``log_history`` with
TRL's key names, Python's json ``NaN``), a CSV in the seed's schema whose ``global_step`` is the
step a reward function sees (one before TRL's logged step), trainer_hooks' own run files, and
LLaMA-Factory's ``trainer_log.jsonl``. Each problem is visible in one source only; it must be found
at its step when the folder is the input.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from detector_scenarios import delay_tolerance, make_scenario

from analyzer.errors import InputError
from analyzer.ingest import load_run
from analyzer.pipeline import AnalyzeOptions, analyze
from analyzer.report.terminal import summary_text

FAST = dict(no_embeddings=True, no_plots=True, no_html=True)
# canonical name → the key TRL's GRPOTrainer logs
TRL_KEYS = {"clipped_ratio": "completions/clipped_ratio", "completion_length": "completions/mean_length"}
SEED_COLUMNS = ["timestamp", "global_step", "question_id", "question", "ground_truth_answer", "model_output",
                "reasoning", "model_answer", "total_reward"]


def write_trainer_state(path: Path, steps: pl.DataFrame, *, global_step: int | None = None) -> Path:
    log: list[dict[str, Any]] = []
    for row in steps.to_dicts():
        entry: dict[str, Any] = {}
        for k, v in row.items():
            if k == "step" or v is None or k.startswith("eval/"):
                continue
            key = f"rewards/{k[len('reward/'):]}/mean" if k.startswith("reward/") else TRL_KEYS.get(k, k)
            entry[key] = v
        entry["step"] = row["step"]
        log.append(entry)
    last = int(steps["step"].max())  # type: ignore[arg-type]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"global_step": last if global_step is None else global_step,
                                "max_steps": last, "logging_steps": 1, "log_history": log}, indent=1))
    return path


def write_seed_csv(path: Path, gens: pl.DataFrame, *, step_offset: int = -1) -> Path:
    """The seed's CSV logger: one row per completion, ``global_step`` as the reward function saw
    it (``trainer_state.global_step`` before the update: TRL's logged step − 1)."""
    rewards = sorted(c for c in gens.columns if c.startswith("reward/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([*SEED_COLUMNS, *(r[len("reward/"):] + "_reward" for r in rewards), "split"])
        for row in gens.iter_rows(named=True):
            step = row["step"] + (step_offset if row["split"] == "train" else 0)
            w.writerow([row["timestamp"], step, row["question_id"], row["question"], row["ground_truth_answer"],
                        row["model_output"], row["reasoning"] or "", row["model_answer"] or "", row["total_reward"],
                        *(row[r] for r in rewards), row["split"]])
    return path


def _alerts(folder: Path, kind: str, tmp_path: Path) -> list:
    analysis = analyze(folder, AnalyzeOptions(output_dir=tmp_path / "out", **FAST))  # type: ignore[arg-type]
    return [a for a in analysis.alerts if a.kind == kind]


def _at_onset(alerts: list, onset: int, n: int) -> bool:
    return any(a.step is not None and abs(a.step - onset) <= delay_tolerance(n) for a in alerts)


# --- problems visible in one source only -----------------------------------------------------------
@pytest.mark.parametrize("kind", ["kl_explosion", "truncation"])
def test_a_problem_only_the_trainer_state_shows_is_found_from_the_folder(kind: str, tmp_path: Path) -> None:
    bad = make_scenario(kind, with_generations=True)
    fine = make_scenario(None, with_generations=True)  # completions that look fine
    run = tmp_path / "run"
    write_trainer_state(run / "trainer_state.json", bad.run.steps)
    write_seed_csv(run / "generations.csv", fine.run.generations)  # type: ignore[arg-type]
    # the CSV alone: nothing to see (and no kl at all)
    assert not _at_onset(_alerts(run / "generations.csv", kind, tmp_path / "a"), bad.onset, bad.n_steps)  # type: ignore[arg-type]
    found = _alerts(run, kind, tmp_path / "b")
    assert _at_onset(found, bad.onset, bad.n_steps), (kind, [(a.step, a.message) for a in found])  # type: ignore[arg-type]
    merged = load_run(run)
    assert [s.kind for s in merged.sources] == ["hf_trainer_state", "seed_csv"]
    assert merged.data_kinds == {"scalars", "completions"}
    assert merged.sources[1].step_shift == 1  # the seed's step is one before TRL's


def test_a_nan_loss_only_the_trainer_state_shows_is_found_at_its_step(tmp_path: Path) -> None:
    sc = make_scenario(None, with_generations=True)
    steps = sc.run.steps.with_columns(pl.when(pl.col("step") >= 120).then(float("nan")).otherwise(pl.col("loss")).alias("loss"))
    run = tmp_path / "run"
    write_trainer_state(run / "trainer_state.json", steps)
    write_seed_csv(run / "generations.csv", sc.run.generations)  # type: ignore[arg-type]
    assert "NaN" in (run / "trainer_state.json").read_text()  # Python's json literal, as TRL writes it
    nan = _alerts(run, "nan_values", tmp_path)
    assert nan and min(a.step for a in nan) == 120


def test_a_reward_hack_only_the_completions_show_is_found_from_the_folder(tmp_path: Path) -> None:
    sc = make_scenario("reward_hacking", with_generations=True)
    run = tmp_path / "run"
    # the trainer's log looks fine: the proxy reward it logs goes up
    write_trainer_state(run / "trainer_state.json", sc.run.steps)
    write_seed_csv(run / "generations.csv", sc.run.generations)  # type: ignore[arg-type]
    assert not _alerts(run / "trainer_state.json", "reward_hacking", tmp_path / "a")
    found = _alerts(run, "reward_hacking", tmp_path / "b")
    assert _at_onset(found, sc.onset, sc.n_steps), [(a.step, a.message) for a in found]  # type: ignore[arg-type]
    merged = load_run(run)
    # the alignment was checked against the data: TRL's logged reward is the completions' mean at +1
    assert merged.sources[1].step_shift == 1 and "checked" in merged.sources[1].alignment
    g = merged.generations
    assert g is not None
    for step in (5, 150):
        mean = g.filter((pl.col("step") == step) & (pl.col("split") == "train"))["total_reward"].mean()
        assert mean == pytest.approx(merged.steps.filter(pl.col("step") == step)["reward"].item())


# --- duplicates, conflicts, checkpoints, unknown files, two runs ----------------------------------
def _llamafactory_log(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w") as fh:
        for r in rows:
            fh.write(json.dumps({"current_steps": r["step"], "total_steps": 20, "loss": r["loss"],
                                 "learning_rate": r["learning_rate"], "epoch": r["step"] / 20,
                                 "percentage": r["step"] * 5.0, "elapsed_time": "0:00:01", "remaining_time": "0:00:01"}) + "\n")


@pytest.mark.parametrize("kind", ["length_hacking", "truncation"])
def test_a_sparse_trainer_log_does_not_hide_what_the_completions_show(kind: str, tmp_path: Path) -> None:
    """A trainer that logs every 50 steps beside completions at every step: the logged column is
    too sparse to judge, so the detector reads the completions instead of skipping."""
    sc = make_scenario(kind, with_generations=True)
    sparse = sc.run.steps.filter(pl.col("step") % 50 == 0).drop("clipped_ratio", "completion_length", strict=False)
    sparse = sparse.with_columns(pl.lit(0.0).alias("clipped_ratio"), pl.lit(40.0).alias("completion_length"))
    run = tmp_path / "run"
    write_trainer_state(run / "trainer_state.json", sparse)
    write_seed_csv(run / "generations.csv", sc.run.generations)  # type: ignore[arg-type]
    analysis = analyze(run, AnalyzeOptions(output_dir=tmp_path / "out", **FAST))  # type: ignore[arg-type]
    found = [a for a in analysis.alerts if a.kind == kind]
    assert _at_onset(found, sc.onset, sc.n_steps), (kind, [(a.step, a.message) for a in found])  # type: ignore[arg-type]
    # the logged value is still the trainer's own where it was logged
    metrics = pl.read_parquet(tmp_path / "out" / "metrics.parquet")
    assert metrics.filter(pl.col("step") == 50)["clipped_ratio"].to_list() == [0.0]


def test_conflicting_duplicate_metrics_keep_the_trainer_value_and_report(tmp_path: Path) -> None:
    rows = [{"step": s, "loss": round(1.0 / s, 4), "learning_rate": 1e-5, "grad_norm": 0.5 + s / 100} for s in range(1, 21)]
    write_trainer_state(tmp_path / "trainer_state.json", pl.DataFrame(rows))
    other = [dict(r) for r in rows]
    other[6]["loss"], other[11]["loss"] = 5.0, 7.0  # steps 7 and 12 disagree
    _llamafactory_log(tmp_path / "trainer_log.jsonl", other)
    run = load_run(tmp_path)
    assert run.report.source_kind == "hf_trainer_state+llamafactory"
    by_step = {r["step"]: r for r in run.steps.to_dicts()}
    assert by_step[7]["loss"] == pytest.approx(1 / 7, abs=1e-4)  # the trainer's own log first
    assert by_step[7]["llamafactory:loss"] == 5.0 and by_step[12]["llamafactory:loss"] == 7.0
    conflicts = [i for i in run.report.issues if i.kind == "conflict"]
    assert len(conflicts) == 1
    assert conflicts[0].file == "trainer_log.jsonl"
    assert "loss differs from trainer_state.json at 2 of 20 shared steps (first at step 7: 0.1429 vs 5)" in conflicts[0].reason
    # agreeing duplicates (learning_rate) are not doubled
    assert "llamafactory:learning_rate" not in run.steps.columns


def test_metrics_only_one_source_has_at_a_step_are_all_kept(tmp_path: Path) -> None:
    rows = [{"step": s, "loss": 0.5, "learning_rate": 1e-5} for s in range(1, 11)]
    write_trainer_state(tmp_path / "trainer_state.json", pl.DataFrame(rows[:5]))
    _llamafactory_log(tmp_path / "trainer_log.jsonl", rows)  # logs five more steps
    run = load_run(tmp_path)
    assert run.steps["step"].to_list() == list(range(1, 11)) and run.steps["loss"].null_count() == 0


@pytest.mark.parametrize("newer", ["checkpoint", "top"])
def test_the_newest_trainer_state_wins_and_the_others_are_listed(tmp_path: Path, newer: str) -> None:
    def steps(n: int) -> pl.DataFrame:
        return pl.DataFrame({"step": list(range(1, n + 1)), "loss": [0.1] * n})

    top_n, ck_n = (2, 4) if newer == "checkpoint" else (4, 3)
    write_trainer_state(tmp_path / "trainer_state.json", steps(top_n))
    write_trainer_state(tmp_path / f"checkpoint-{ck_n}" / "trainer_state.json", steps(ck_n))
    (tmp_path / f"checkpoint-{ck_n}" / "optimizer.pt").write_bytes(b"\0" * 16)
    run = load_run(tmp_path)
    not_read = {n.file: n.reason for n in run.report.not_read}
    if newer == "checkpoint":
        assert run.report.files_read == ["checkpoint-4/trainer_state.json"]
        assert run.steps.height == 4
        assert not_read["trainer_state.json"] == "stale copy: global_step 2, older than checkpoint-4/trainer_state.json (4)"
    else:
        assert run.report.files_read == ["trainer_state.json"]
        assert not_read["checkpoint-3/trainer_state.json"] == "older checkpoint: global_step 3; trainer_state.json has 4"
    assert f"checkpoint-{ck_n}/optimizer.pt" in not_read
    assert any("using" in n and "highest global_step" in n for n in run.report.notes)


def test_an_unknown_file_is_listed_as_not_read_in_every_output(tmp_path: Path) -> None:
    sc = make_scenario(None, n_steps=30, with_generations=True)
    run = tmp_path / "run"
    write_trainer_state(run / "trainer_state.json", sc.run.steps)
    write_seed_csv(run / "generations.csv", sc.run.generations)  # type: ignore[arg-type]
    (run / "notes.xyz").write_text("my notes about this run\n")
    analysis = analyze(run, AnalyzeOptions(output_dir=tmp_path / "out", no_embeddings=True, no_plots=True))
    not_read = {n.file: n.reason for n in analysis.run.report.not_read}
    assert not_read == {"notes.xyz": "unknown format: not a format logscan reads"}
    data = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert data["ingest"]["not_read"] == [{"file": "notes.xyz", "reason": "unknown format: not a format logscan reads"}]
    assert [s["kind"] for s in data["ingest"]["sources"]] == ["hf_trainer_state", "seed_csv"]
    assert data["ingest"]["sources"][1]["records"] == sc.run.generations.height  # type: ignore[union-attr]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "`notes.xyz`" in md and "not a format logscan reads" in md and "`generations.csv`" in md
    text = summary_text(analysis)
    assert "source:      Hugging Face trainer_state.json: trainer_state.json" in text
    assert "source:      seed-schema CSV: generations.csv" in text
    assert "not read:    notes.xyz (unknown format: not a format logscan reads)" in text


def test_two_seed_csvs_of_different_runs_are_refused(tmp_path: Path) -> None:
    a = make_scenario(None, seed=1, n_steps=20, with_generations=True).run.generations
    b = make_scenario(None, seed=2, n_steps=20, with_generations=True).run.generations
    write_seed_csv(tmp_path / "run_a.csv", a)  # type: ignore[arg-type]
    write_seed_csv(tmp_path / "run_b.csv", b)  # type: ignore[arg-type]
    with pytest.raises(InputError) as exc:
        load_run(tmp_path)
    msg = str(exc.value)
    assert msg.startswith(f"{tmp_path}: a folder of 2 runs (run_a.csv, run_b.csv), not a run; analyze one of them")
    assert "told apart by: at the steps both cover, only 0 of " in msg and "\n" not in msg


def test_two_trainer_states_of_different_runs_are_refused(tmp_path: Path) -> None:
    """The generated twin of realdata's Rusheel86__Chaos-Economy (two runs' trainer states)."""
    write_trainer_state(tmp_path / "trainer_state.json", make_scenario(None, seed=1, n_steps=20).run.steps)
    write_trainer_state(tmp_path / "training_logs.json", make_scenario(None, seed=2, n_steps=20).run.steps)
    with pytest.raises(InputError, match=r"a folder of 2 runs \(trainer_state\.json, training_logs\.json\), not a run;"):
        load_run(tmp_path)


def test_two_logs_of_the_same_completions_are_one_run_counted_once(tmp_path: Path) -> None:
    """trainer_hooks' run files and the seed's CSV logger in one folder hold the same completions
    (the CSV one step earlier): one run, each completion once, on TRL's step."""
    from trainer_hooks import RunLogger

    sc = make_scenario(None, n_steps=12, with_generations=True)
    g = sc.run.generations
    assert g is not None
    run = tmp_path / "run"
    with RunLogger(run, algorithm="grpo") as logger:
        for row in g.iter_rows(named=True):
            logger.log_generation(
                step=row["step"], question=row["question"], ground_truth_answer=row["ground_truth_answer"],
                model_output=row["model_output"], rewards={"correctness": row["reward/correctness"], "format": row["reward/format"]},
                split=row["split"],
            )
    write_seed_csv(run / "generations.csv", g)
    merged = load_run(run)
    assert [s.kind for s in merged.sources] == ["logscan", "seed_csv"]
    assert merged.generations is not None and merged.generations.height == g.height
    assert "repeat those of an earlier source" in merged.sources[1].note
    assert merged.sources[1].step_shift == 1
    assert sorted(merged.generations["step"].unique().to_list()) == sorted(g["step"].unique().to_list())


def test_the_registry_drives_kinds_and_display_names() -> None:
    from analyzer.ingest import SOURCE_KINDS
    from analyzer.ingest.sources import FORMATS, display_name

    assert SOURCE_KINDS == tuple(FORMATS)
    assert display_name("hf_trainer_state+trl_completions") == "Hugging Face trainer_state.json + TRL completion files"
    for f in FORMATS.values():
        assert f.step_basis in ("after_update", "before_update", "verl") and f.alignment and f.data


def test_a_folder_of_run_folders_is_still_refused_without_reading_them(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_trainer_state(tmp_path / name / "trainer_state.json", pl.DataFrame({"step": [1, 2], "loss": [1.0, 2.0]}))
    with pytest.raises(InputError, match=r"a folder of 2 runs \(a, b\), not a run"):
        load_run(tmp_path)


def test_a_different_run_one_level_down_is_not_read(tmp_path: Path) -> None:
    write_trainer_state(tmp_path / "trainer_state.json", make_scenario(None, seed=1, n_steps=20).run.steps)
    write_trainer_state(tmp_path / "old" / "trainer_state.json", make_scenario(None, seed=2, n_steps=20).run.steps)
    run = load_run(tmp_path)
    reasons = {n.file: n.reason for n in run.report.not_read}
    assert reasons["old/"].startswith("a second run's log: ")
    assert run.report.source_kind == "hf_trainer_state"
    assert not math.isnan(run.steps["loss"][0])


# --- real folders (../shared/realdata, skipped when absent) and their generated twins --------------
def test_realdata_folders_are_each_one_run_or_refused(realdata: Path) -> None:
    """Every real folder reads all of its logs as one run, or is refused as two runs' logs."""
    one_run = {
        "JuncyLu__trl_DAPO": ["trl_console", "rollout_markdown"],
        "chandlerzuo__rlhf_recsys": ["hf_trainer_state", "llamafactory"],
        "5ivatej__meta-hackathon": ["hf_trainer_state"],
        "Ray-Cheng-11__Tau-Bench-Model-Training": ["hf_trainer_state"],
        "harryc295__soup-dpo-takehome": ["hf_trainer_state"],
        "Bihan__dstack-configs": ["verl_console"],
    }
    two_runs = {"Rusheel86__Chaos-Economy", "Sunshine535__nips-grpo-dynamics"}
    assert {p.name for p in realdata.iterdir() if p.is_dir()} == set(one_run) | two_runs
    for name, kinds in one_run.items():
        run = load_run(realdata / name)
        assert [s.kind for s in run.sources] == kinds, name
        assert run.report.not_read == [], name
        assert not [i for i in run.report.issues if i.kind == "conflict"], name
    for name in two_runs:
        with pytest.raises(InputError, match=r": a folder of 2 runs \(.+\), not a run; .* told apart by: "):
            load_run(realdata / name)
    # the rollouts are printed at the step before TRL's logged one (Step: 0/43 is the first)
    juncy = load_run(realdata / "JuncyLu__trl_DAPO")
    assert juncy.sources[1].step_shift == 1 and juncy.sources[1].first_step == 1


def test_a_console_log_and_its_markdown_rollouts_are_one_run(tmp_path: Path) -> None:
    """The generated twin of realdata's JuncyLu__trl_DAPO: a TRL console log (progress bar + dicts)
    beside a Markdown dump of the same run's rollouts."""
    console = ["***** Running training *****"]
    md = ["# Rollout Results Log", ""]
    for step in range(1, 4):
        md += [f"## === Rollout Step {step} ===", f"Step: {step - 1}/3 | 2025-10-22 18:16:55", ""]
        for k in range(1, 3):
            md += [f"### Sample {k}", "", f"**Prompt:** What is {step}+{k}?", "", f"**Completion:** <answer>{step + k}</answer>",
                   "", f"**Solution:** {step + k}", "", "**Rewards:** accuracy=1.000, total=1.000", ""]
        console += [f"{step}/3 [00:0{step}<00:10,  1.00s/it]", "{" + f"'loss': {0.1 * step}, 'reward': 1.0, 'epoch': {step / 3}" + "}"]
    (tmp_path / "run_terminal.md").write_text("\n".join(console) + "\n")
    (tmp_path / "rollout_results.md").write_text("\n".join(md) + "\n")
    run = load_run(tmp_path)
    assert [s.kind for s in run.sources] == ["trl_console", "rollout_markdown"]
    assert run.report.not_read == []
    g = run.generations
    assert g is not None and g["step"].unique().sort().to_list() == [1, 2, 3] == run.steps["step"].to_list()
    assert run.sources[1].step_shift == 1


def test_seed_csvs_are_grouped_into_logs(tmp_path: Path) -> None:
    """Every generations*.csv of a folder is one log (ranks, parts, other suffixes), as a
    seed-schema folder has always been read; a differently named CSV is its own log."""
    from analyzer.ingest.sources import discover

    g = make_scenario(None, n_steps=12, with_generations=True).run.generations
    assert g is not None
    write_seed_csv(tmp_path / "generations.csv", g.filter(pl.col("step") <= 6))
    write_seed_csv(tmp_path / "generations.part2.csv", g.filter(pl.col("step") > 6))
    write_seed_csv(tmp_path / "generations_old.csv", g.head(0))
    write_seed_csv(tmp_path / "other.csv", g)
    write_seed_csv(tmp_path / "other.rank1.csv", g.head(0))
    groups = sorted(sorted(p.name for p in f.files) for f in discover(tmp_path).found)
    assert groups == [["generations.csv", "generations.part2.csv", "generations_old.csv"], ["other.csv", "other.rank1.csv"]]
    run = load_run(tmp_path)  # the same completions in both logs: one run, each completion once
    assert [s.kind for s in run.sources] == ["seed_csv", "seed_csv"]
    assert run.generations is not None and run.generations.height == g.height


def test_names_of_files_not_read_are_escaped_in_every_report(tmp_path: Path) -> None:
    sc = make_scenario(None, n_steps=12, with_generations=True)
    run = tmp_path / "run"
    write_trainer_state(run / "trainer_state.json", sc.run.steps)
    bad = "<img src=x onerror=alert(1)>|`x`.dat"
    (run / bad).write_text("not a log\n")
    analysis = analyze(run, AnalyzeOptions(output_dir=tmp_path / "out", no_embeddings=True, no_plots=True))
    assert [n.file for n in analysis.run.report.not_read] == [bad]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    md = (tmp_path / "out" / "report.md").read_text()
    # in Markdown a code span shows markup as text; its backticks and pipe cannot end or split it
    assert "- ``<img src=x onerror=alert(1)>\\|`x`.dat``: unknown format: not a format logscan reads" in md


def test_the_step_alignment_table_in_the_docs_matches_the_registry() -> None:
    """docs/formats.md's table of step bases says what FORMATS says, for every kind."""
    import re

    from analyzer.ingest.sources import FORMATS

    text = (Path(__file__).resolve().parent.parent / "docs" / "formats.md").read_text(encoding="utf-8")
    start = text.index("## Several sources in one folder")
    section = text[start : text.index("\n## ", start + 1)]
    moved: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            for kind in re.findall(r"`([a-z_]+)`", cells[0]):
                moved[kind] = cells[2]
    assert set(moved) == set(FORMATS)
    for kind, fmt in FORMATS.items():
        assert moved[kind].startswith("+1" if fmt.step_basis == "before_update" else "0"), kind
