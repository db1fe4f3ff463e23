"""Experiment-tracker logs (TensorBoard, Weights & Biases, Trackio, MLflow), each written by the
tracker's real library the way transformers' ``report_to`` callbacks write it (``train/<key>``
names, ``train/global_step`` beside W&B's and Trackio's own step counter, MLflow's raw keys at
``step=global_step``): a KL blow-up logged through each is found at its step, and reading never
changes the tracker's files. Nothing here reaches the network (``_offline`` below).

Trackio's tests read a store written by the real Trackio 0.43 (``tests/data/trackers/trackio/``,
made by ``tests/data/trackers/make_trackio_store.py``, with completion tables), and write a fresh one
with the installed Trackio (the test extra; it caps ``pillow<13``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner
from detector_scenarios import delay_tolerance, make_scenario

from analyzer.cli import cli
from analyzer.errors import InputError
from analyzer.ingest import load_run
from analyzer.pipeline import AnalyzeOptions, analyze

FAST = dict(no_embeddings=True, no_plots=True, no_html=True)
DATA = Path(__file__).resolve().parent / "data" / "trackers"
# canonical name → the key TRL's GRPOTrainer logs (Trainer.log's keys)
TIMING = "profiling/Time taken: GRPOTrainer.compute_loss"  # trl/extras/profiling.py
TRL_KEYS = {"clipped_ratio": "completions/clipped_ratio", "completion_length": "completions/mean_length"}


@pytest.fixture(autouse=True)
def _offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {
        "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(tmp_path), "WANDB_DISABLE_GIT": "true",
        "WANDB_CONFIG_DIR": str(tmp_path / ".wandb-config"), "WANDB_CACHE_DIR": str(tmp_path / ".wandb-cache"),
        "HF_HUB_OFFLINE": "1", "TRACKIO_DIR": str(tmp_path / "trackio"), "GRADIO_ANALYTICS_ENABLED": "False",
        "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "DISABLE_MLFLOW_INTEGRATION": "TRUE",
    }.items():
        monkeypatch.setenv(k, v)


def trl_logs(row: dict[str, Any]) -> dict[str, float]:
    """One step of a scenario as ``Trainer.log`` gets it from TRL's GRPOTrainer (no step key)."""
    out = {}
    for k, v in row.items():
        if k == "step" or v is None or k.startswith("eval/"):
            continue
        out[f"rewards/{k[len('reward/'):]}/mean" if k.startswith("reward/") else TRL_KEYS.get(k, k)] = float(v)
    return out


def kl_run() -> Any:
    return make_scenario("kl_explosion", with_generations=False)


def assert_kl_found(folder: Path | str, sc: Any, tmp_path: Path) -> None:
    analysis = analyze(folder, AnalyzeOptions(output_dir=tmp_path / "out", **FAST))  # type: ignore[arg-type]
    found = [a for a in analysis.alerts if a.kind == "kl_explosion"]
    assert any(a.step is not None and abs(a.step - sc.onset) <= delay_tolerance(sc.n_steps) for a in found), (
        sc.onset, [(a.step, a.message) for a in found])


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder``: its bytes' hash and mtime (ns)."""
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()
    }


# --- TensorBoard ----------------------------------------------------------------------------------
def write_tensorboard(logdir: Path, steps: pl.DataFrame) -> None:
    """What transformers' TensorBoardCallback does: add_scalar("train/<key>", v, global_step)."""
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(logdir))
    for row in steps.to_dicts():
        for k, v in trl_logs(row).items():
            w.add_scalar(f"train/{k}", v, row["step"])
        w.add_text("train/note", "text is not a scalar", row["step"])
    w.add_scalar("train/train_runtime", 12.5, steps["step"].max())  # the end-of-training summary
    w.close()


def test_tensorboard_kl_blowup_is_found_at_its_step(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    sc = kl_run()
    out = tmp_path / "output"
    write_tensorboard(out / "runs" / "Dec07_12-00-00_host", sc.run.steps)
    before = snapshot(out)
    run = load_run(out)
    assert run.report.source_kind == "tensorboard"
    assert run.steps["step"].to_list() == sc.run.steps["step"].to_list()
    # TRL's tags land on the canonical names; float32 as TensorBoard stores them
    assert run.steps["kl"].to_list() == pytest.approx(sc.run.steps["kl"].to_list(), rel=1e-6)
    assert run.info["train_summary"] == {"train_runtime": 12.5}
    assert run.sources[0].alignment.startswith("TensorBoardCallback")
    assert_kl_found(out, sc, tmp_path)
    assert snapshot(out) == before
    # a live or killed run: the event file cut mid-record keeps the points before the cut
    events = next((out / "runs").rglob("events.out.tfevents.*"))
    torn = tmp_path / "torn" / "runs" / "x" / events.name
    torn.parent.mkdir(parents=True)
    torn.write_bytes(events.read_bytes()[: events.stat().st_size // 2])
    cut = load_run(tmp_path / "torn")
    assert 0 < cut.steps.height < sc.n_steps
    assert [i.kind for i in cut.report.issues] == ["torn_line"]


def test_tensorboard_every_point_is_read_and_a_relaunch_is_a_resume(tmp_path: Path) -> None:
    """EventAccumulator keeps 10,000 points per tag by default and purges points a restart
    orphans: both are off."""
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tmp_path / "runs" / "a"))
    for s in range(1, 10_051):
        w.add_scalar("train/loss", 1.0 / s, s)
        if s == 7:
            w.add_scalar("train/kl", math.nan, s)
    w.close()
    w = SummaryWriter(str(tmp_path / "runs" / "a"))  # a second launch resumed from step 10,000
    for s in range(10_001, 10_011):
        w.add_scalar("train/loss", 5.0, s)
    w.close()
    run = load_run(tmp_path)
    assert run.steps.height == 10_050
    by = dict(zip(run.steps["step"].to_list(), run.steps["loss"].to_list(), strict=True))
    assert by[10_005] == 5.0 and by[10_040] == pytest.approx(1 / 10_040)  # the later launch wins its steps
    assert math.isnan(run.steps.filter(pl.col("step") == 7)["kl"].item())
    assert [(r["from_step"], r["to_step"]) for r in run.report.resumes] == [(10_050, 10_001)]


def test_a_folder_of_runs_logged_only_to_tensorboard_is_named_as_such(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    steps = make_scenario(None, with_generations=False, n_steps=12).run.steps
    for name in ("run-a", "run-b"):
        write_tensorboard(tmp_path / name / "runs" / "Dec07_host", steps)
    with pytest.raises(InputError, match=r"a folder of 2 runs \(run-a, run-b\), not a run"):
        load_run(tmp_path)
    assert load_run(tmp_path / "run-a").report.source_kind == "tensorboard"


# --- Weights & Biases -----------------------------------------------------------------------------
def write_wandb(folder: Path, steps: pl.DataFrame, *, table_every: int = 0, name: str = "grpo") -> Path:
    """What transformers' WandbCallback (and TRL's completions table) do, offline, into
    ``folder/wandb/``."""
    import wandb

    run = wandb.init(project="logscan-test", name=name, dir=str(folder), mode="offline",
                     config={"learning_rate": 1e-6, "beta": 0.04})
    for row in steps.to_dicts():
        s = row["step"]
        run.log({TIMING: 0.5 * s})  # TRL's profiling, while the step runs: no train/global_step
        run.log({**{f"train/{k}": v for k, v in trl_logs(row).items()}, "train/global_step": s})
        if table_every and s % table_every == 0:
            # TRL's GRPOTrainer.log: {"completions": Table(dataframe=...)} with a step column
            table = wandb.Table(columns=["step", "prompt", "completion", "accuracy", "advantage"],
                                data=[[s, f"q{i}", f"answer {i} at {s}", float(i % 2), math.nan] for i in range(4)])
            run.log({"completions": table})
    run.summary["train_runtime"] = 3.0
    run.finish()
    # finish() returns before wandb-core has written the log's last records: shutting the service
    # down waits for them (and leaves no service process behind)
    wandb.teardown()
    return Path(run.dir).parent


@pytest.mark.slow
def test_wandb_offline_run_kl_blowup_completions_and_a_torn_tail(tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    sc = kl_run()
    steps = sc.run.steps
    run_dir = write_wandb(tmp_path, steps, table_every=25)
    assert run_dir.parent == tmp_path / "wandb" and run_dir.name.startswith("offline-run-")
    before = snapshot(tmp_path / "wandb")
    run = load_run(tmp_path)
    assert run.report.source_kind == "wandb"
    # on train/global_step, not W&B's own _step (which the 8 tables advanced)
    assert run.steps["step"].to_list() == steps["step"].to_list()
    assert run.steps["kl"].to_list() == pytest.approx(steps["kl"].to_list())
    # TRL's timings, logged while a step runs, are put on the step they time (the first one too)
    assert run.steps[TIMING].to_list() == [0.5 * s for s in steps["step"].to_list()]
    assert TIMING not in run.report.unknown_keys and not [n for n in run.report.notes if "not read" in n]
    assert run.info["run_name"] == "grpo" and run.info["config"]["beta"] == 0.04 and run.info["status"] == "finished"
    g = run.generations
    assert g is not None and g.height == 8 * 4
    assert sorted(set(g["step"].to_list())) == list(range(25, 201, 25))
    assert g.filter(pl.col("step") == 50)["model_output"].to_list() == [f"answer {i} at 50" for i in range(4)]
    assert g["reward/accuracy"].sum() == 16 and g["advantage"].is_nan().all()
    assert not [i for i in run.report.issues if i.kind != "torn_line"], run.report.issues
    assert_kl_found(tmp_path, sc, tmp_path)
    assert snapshot(tmp_path / "wandb") == before

    # an older run in the same wandb/ folder: the latest run is read, the other one named
    rid = run_dir.name.rsplit("-", 1)[1]
    older = tmp_path / "wandb" / "offline-run-20200101_000000-older1"
    shutil.copytree(run_dir, older)
    (older / f"run-{rid}.wandb").rename(older / "run-older1.wandb")
    both = load_run(tmp_path)
    assert both.steps.height == steps.height and both.info["run_id"] == rid
    assert {n.file: n.reason for n in both.report.not_read}["wandb/offline-run-20200101_000000-older1/"].startswith(
        f"another W&B run (older1); this run's is {rid}")
    shutil.rmtree(older)

    # a live or killed run: the log cut mid-record keeps every record before the cut
    log = next(run_dir.glob("run-*.wandb"))
    data = log.read_bytes()
    torn = tmp_path / "torn" / "wandb" / run_dir.name
    shutil.copytree(run_dir, torn)
    # a cut exactly at the end of a record tears nothing (5 of 400 cuts between 50 % and 90 % of
    # one such log): the byte after it is inside the next record
    for end in (int(len(data) * 0.6), int(len(data) * 0.6) + 1):
        (torn / log.name).write_bytes(data[:end])
        cut = load_run(tmp_path / "torn")
        if cut.report.issues:
            break
    assert 50 < cut.steps.height < steps.height
    kl = cut.steps["kl"].to_list()
    if kl[-1] is None:  # the cut can keep the last step's timing record (logged first) but not its metrics
        kl = kl[:-1]
    assert kl == pytest.approx(steps["kl"].to_list()[: len(kl)])
    assert [i.kind for i in cut.report.issues] == ["torn_line"]
    assert cut.info["status"] == "running"  # no exit record


@pytest.mark.slow
def test_wandb_beside_the_trainer_state_is_one_run(tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    from test_ingest_multisource import write_trainer_state

    sc = make_scenario(None, with_generations=False, n_steps=40)
    write_trainer_state(tmp_path / "trainer_state.json", sc.run.steps)
    write_wandb(tmp_path, sc.run.steps)
    run = load_run(tmp_path)
    assert [s.kind for s in run.sources] == ["hf_trainer_state", "wandb"]
    assert not [i for i in run.report.issues if i.kind == "conflict"]
    assert not [c for c in run.steps.columns if c.startswith("wandb:")]


# --- MLflow ---------------------------------------------------------------------------------------
def write_mlflow(uri: str, steps: pl.DataFrame, *, name: str = "grpo") -> None:
    """What transformers' MLflowCallback does: log_metrics(raw keys, step=global_step)."""
    import re

    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("logscan-test")
    with mlflow.start_run(run_name=name):
        mlflow.log_params({"learning_rate": 1e-6, "beta": 0.04})
        for row in steps.to_dicts():
            mlflow.log_metrics({TIMING: 0.5 * row["step"]}, step=row["step"] - 1)  # TRL's profiling: the step before
            logs = {re.sub(r"[^0-9A-Za-z_\-\.\ :/]", "_", k): v for k, v in trl_logs(row).items()}
            mlflow.log_metrics(logs, step=row["step"])
        mlflow.log_metrics({"eval_loss": math.nan}, step=int(steps["step"].max()))


@pytest.fixture(scope="module")
def mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite store (MLflow's default) of two runs: "healthy" and "blowup" (``kl_run()``).
    Creating the store runs MLflow's schema migrations (~10 s): written once."""
    pytest.importorskip("mlflow")
    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    env = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        write_mlflow(f"sqlite:///{db}", make_scenario(None, with_generations=False, n_steps=20).run.steps, name="healthy")
        write_mlflow(f"sqlite:///{db}", kl_run().run.steps, name="blowup")
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return db


@pytest.mark.slow
def test_mlflow_sqlite_store_kl_blowup_and_run_selection(mlflow_db: Path, tmp_path: Path) -> None:
    folder = tmp_path / "output"
    folder.mkdir()
    db = folder / "mlflow.db"
    shutil.copyfile(mlflow_db, db)
    before = snapshot(folder)
    with pytest.raises(InputError, match=r"an MLflow store of 2 runs \(healthy, blowup\), not a run; analyze one of them \(logscan analyze '.*mlflow.db#healthy'\)"):
        load_run(db)
    sc = kl_run()
    run = load_run(f"{db}#blowup")
    assert run.report.source_kind == "mlflow"
    assert run.steps["kl"].to_list() == pytest.approx(sc.run.steps["kl"].to_list())
    assert math.isnan(run.steps["eval/loss"].drop_nulls().item())  # is_nan = 1: NaN, not the stored 0.0
    assert run.info["run_name"] == "blowup" and run.info["config"]["beta"] == "0.04" and run.info["status"] == "finished"
    result = CliRunner().invoke(cli, ["analyze", f"{db}#blowup", "-o", str(tmp_path / "out"), "--no-embeddings"])
    assert result.exit_code == 1, result.output  # a critical alert
    alerts = [a for a in json.loads((tmp_path / "out" / "analysis.json").read_text())["alerts"] if a["kind"] == "kl_explosion"]
    assert any(abs(a["step"] - sc.onset) <= delay_tolerance(sc.n_steps) for a in alerts), alerts
    result = CliRunner().invoke(cli, ["analyze", f"{db}#nope", "-o", str(tmp_path / "out2")])
    assert result.exit_code == 2 and "no run 'nope' in this MLflow store (it holds healthy, blowup)" in result.output
    assert snapshot(folder) == before  # bytes and mtimes; no -journal/-wal/-shm file left behind


@pytest.mark.slow
def test_mlflow_file_store_kl_blowup_is_found_at_its_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    sc = kl_run()
    folder = tmp_path / "output"
    write_mlflow((folder / "mlruns").as_uri(), sc.run.steps)
    before = snapshot(folder)
    run = load_run(folder)
    assert run.report.source_kind == "mlflow_files"
    assert run.steps["kl"].to_list() == pytest.approx(sc.run.steps["kl"].to_list())
    assert run.steps["step"].min() == 1 and run.steps[TIMING].to_list() == [0.5 * s for s in run.steps["step"].to_list()]
    assert math.isnan(run.steps["eval/loss"].drop_nulls().item())
    assert run.info["run_name"] == "grpo" and run.info["config"]["beta"] == "0.04"
    assert_kl_found(folder, sc, tmp_path)
    assert snapshot(folder) == before


# --- Trackio --------------------------------------------------------------------------------------
TRACKIO_STORE = DATA / "trackio" / "logscan-test.db"  # runs "healthy" and "blowup" (kl_run())


def test_trackio_store_written_by_trackio_kl_blowup_and_completions(tmp_path: Path) -> None:
    store = tmp_path / "trackio" / TRACKIO_STORE.name
    store.parent.mkdir()
    shutil.copyfile(TRACKIO_STORE, store)
    before = snapshot(store.parent)
    with pytest.raises(InputError, match=r"a Trackio store of 2 runs \(healthy, blowup\)"):
        load_run(store)
    sc = kl_run()
    run = load_run(f"{store}#blowup")
    assert run.report.source_kind == "trackio"
    # on train/global_step, not Trackio's own step (which the tables advanced)
    assert run.steps["step"].to_list() == sc.run.steps["step"].to_list()
    assert run.steps["kl"].to_list() == pytest.approx(sc.run.steps["kl"].to_list())
    g = run.generations
    assert g is not None and sorted(set(g["step"].to_list())) == list(range(25, 201, 25))
    assert g.filter(pl.col("step") == 50)["model_output"].to_list() == [f"answer {i} at 50" for i in range(4)]
    result = CliRunner().invoke(cli, ["analyze", f"{store}#blowup", "-o", str(tmp_path / "out"), "--no-embeddings"])
    assert result.exit_code == 1, result.output  # a critical alert
    alerts = [a for a in json.loads((tmp_path / "out" / "analysis.json").read_text())["alerts"] if a["kind"] == "kl_explosion"]
    assert any(abs(a["step"] - sc.onset) <= delay_tolerance(sc.n_steps) for a in alerts), alerts
    assert snapshot(store.parent) == before


def test_a_trackio_store_being_written_is_read_with_its_wal_and_left_as_it_was(tmp_path: Path) -> None:
    """A live run: Trackio's store is in WAL mode and the latest rows are still in the -wal file."""
    store = tmp_path / TRACKIO_STORE.name
    shutil.copyfile(TRACKIO_STORE, store)
    writer = sqlite3.connect(store)
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("PRAGMA wal_autocheckpoint=0")
        rid, name, step = writer.execute("SELECT run_id, run_name, MAX(step) FROM metrics WHERE run_name = 'blowup'").fetchone()
        writer.execute(
            "INSERT INTO metrics (run_id, timestamp, run_name, step, metrics) VALUES (?, '2026-01-01T00:00:00', ?, ?, ?)",
            (rid, name, step + 1, '{"train/kl": "Infinity", "train/loss": 0.5, "train/global_step": 201}'))
        writer.commit()
        assert (tmp_path / (store.name + "-wal")).stat().st_size > 0
        before = snapshot(tmp_path)
        run = load_run(f"{store}#blowup")
        assert run.steps["step"].max() == 201 and run.steps.filter(pl.col("step") == 201)["kl"].item() == math.inf
        assert snapshot(tmp_path) == before
    finally:
        writer.close()


@pytest.mark.slow
def test_trackio_written_now_reads_the_same_and_its_kl_blowup_is_found(tmp_path: Path) -> None:
    """The real Trackio (in the test extra) writes a store now: it reads like the checked-in one,
    and a KL blow-up logged through it is found at its step."""
    import trackio  # noqa: F401 - the test extra installs it: a missing one is a failure, not a skip

    sys.path.insert(0, str(DATA))
    try:
        from make_trackio_store import write_trackio
    finally:
        sys.path.remove(str(DATA))
    sc, blowup = make_scenario(None, with_generations=False, n_steps=30), kl_run()
    # one store, two runs (TRACKIO_DIR is read once, when trackio is first imported)
    store = write_trackio(Path(os.environ["TRACKIO_DIR"]), [("only", sc.run.steps), ("blowup", blowup.run.steps)])
    run = load_run(f"{store}#only")
    assert run.steps["step"].to_list() == sc.run.steps["step"].to_list()
    assert run.steps["kl"].to_list() == pytest.approx(sc.run.steps["kl"].to_list())
    assert_kl_found(f"{store}#blowup", blowup, tmp_path)


# --- a missing optional package -------------------------------------------------------------------
@pytest.mark.parametrize(("blocked", "extra", "write"), [("tensorboard", "tensorboard", "tb"), ("wandb", "wandb", "wandb")])
def test_a_missing_extra_is_one_line_naming_it(blocked: str, extra: str, write: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "run"
    if write == "tb":
        (run_dir / "runs" / "x").mkdir(parents=True)
        (run_dir / "runs" / "x" / "events.out.tfevents.1.host").write_bytes(b"\0" * 16)
    else:
        (run_dir / "wandb" / "offline-run-20260101_000000-abc").mkdir(parents=True)
        (run_dir / "wandb" / "offline-run-20260101_000000-abc" / "run-abc.wandb").write_bytes(b":W&B\xe1\xbe\x00")
    for mod in [m for m in sys.modules if m == blocked or m.startswith(blocked + ".")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, blocked, None)  # import fails as if not installed
    result = CliRunner().invoke(cli, ["analyze", str(run_dir), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].endswith(f'needs the {blocked} package: pip install "logscan-rl[{extra}]"')
    assert len(result.output.strip().splitlines()) == 1
