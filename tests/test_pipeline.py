"""analyzer.pipeline: verdicts, exit codes, files written and the summary, on runs built in memory."""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest

from analyzer import columns as C
from analyzer.errors import ConfigError, InputError
from analyzer.model import Alert, Analysis, IngestIssue, IngestReport, RunData, Severity
from analyzer.pipeline import AnalyzeOptions, analyze, analyze_run, output_dir_for
from analyzer.report.terminal import summary_text
from analyzer.verdict import MIN_STEPS, exit_code, verdict_for


def alert(sev: str, kind: str = "reward_hacking", step: int | None = 3) -> Alert:
    return Alert(kind=kind, severity=Severity(sev), step=step, message=f"{kind} seen", evidence={})


def memory_run(n_steps: int = 12, *, path: str = "mem-run", with_nan: bool = True) -> RunData:
    steps = pl.DataFrame(
        {
            C.STEP: list(range(n_steps)),
            C.LOSS: [float("nan") if with_nan and i == 1 else 1.0 / (i + 1) for i in range(n_steps)],
            C.KL: [0.01 * i for i in range(n_steps)],
        }
    )
    rows = []
    for s in range(n_steps):
        for k in range(4):
            rows.append(
                {
                    C.STEP: s,
                    C.SPLIT: "eval" if k == 3 else "train",
                    C.SAMPLE_ID: len(rows),
                    C.QUESTION_ID: f"q{k % 2}",
                    C.GROUP_ID: None,
                    C.QUESTION: "What is 2+2?",
                    C.GROUND_TRUTH: "4",
                    C.OUTPUT: f"<reasoning>2+2</reasoning><answer>{4 if k else 5}</answer>",
                    C.REASONING: "2+2",
                    C.ANSWER: str(4 if k else 5),
                    C.TOTAL_REWARD: float(k > 0),
                    "reward/correctness": float(k > 0),
                }
            )
    report = IngestReport(
        source_kind="logscan",
        files_read=["events.jsonl", "generations.jsonl"],
        records_read=len(rows) + n_steps,
        records_skipped=1,
        issues=[IngestIssue(file="generations.jsonl", line=99, reason="torn last line (no newline)", kind="torn_line")],
    )
    return RunData(path=path, steps=steps, generations=pl.DataFrame(rows), report=report, info={"algorithm": "grpo"})


FAST = dict(no_embeddings=True, no_plots=True, no_html=True)


def test_verdict_rules():
    assert verdict_for([], MIN_STEPS) == "healthy"
    assert verdict_for([], MIN_STEPS - 1) == "too_short"
    assert verdict_for([alert("info")], MIN_STEPS - 1) == "too_short"
    assert verdict_for([alert("info")], 50) == "healthy"
    assert verdict_for([alert("warning"), alert("info")], 50) == "warnings"
    assert verdict_for([alert("warning"), alert("critical")], 2) == "critical"  # alerts beat too_short


@pytest.mark.parametrize(
    ("severities", "fail_on", "expected"),
    [
        ([], "critical", 0),
        (["warning"], "critical", 0),
        (["warning"], "warning", 1),
        (["critical"], "critical", 1),
        (["info"], "info", 1),
        (["info"], "warning", 0),
        (["critical"], "never", 0),
    ],
)
def test_exit_code(severities, fail_on, expected):
    a = Analysis(run=memory_run(), metrics=pl.DataFrame(), alerts=[alert(s) for s in severities], fail_on=fail_on)
    assert exit_code(a) == expected


def test_analyze_run_writes_outputs(tmp_path):
    out = tmp_path / "out"
    analysis = analyze_run(memory_run(), AnalyzeOptions(output_dir=out, **FAST))
    assert analysis.output_dir == str(out)
    assert (out / "metrics.parquet").is_file() and (out / "generations.parquet").is_file()
    metrics = pl.read_parquet(out / "metrics.parquet")
    assert metrics.get_column(C.STEP).to_list() == list(range(12))
    assert {C.LOSS, C.KL, C.GEN_ACCURACY, "eval/" + C.GEN_ACCURACY} <= set(metrics.columns)
    assert pl.read_parquet(out / "generations.parquet").height == 48

    text = (out / "analysis.json").read_text(encoding="utf-8")
    def no_constants(token):
        raise AssertionError(f"bare {token} in analysis.json")

    data = json.loads(text, parse_constant=no_constants)
    assert data["format"] == "logscan-analysis/1"
    assert data["run"]["source_kind"] == "logscan" and data["run"]["algorithm"] == "grpo"
    assert data["summary"]["steps"] == 12 and data["summary"]["completions"] == 48
    assert data["summary"]["splits"] == {"train": 36, "eval": 12}
    assert data["ingest"]["issues"][0]["line"] == 99
    assert data["metrics"][C.GEN_ACCURACY]["first"] == pytest.approx(2 / 3)
    assert data["metrics"][C.LOSS]["n"] == 11  # the NaN is not a value
    assert data["verdict"] in ("healthy", "warnings", "critical")
    assert data["config"]["fail_on"] == "critical"
    assert {"metrics", "detectors", "write", "reports", "total"} <= set(data["timings"])
    assert data["timings"]["total"] == pytest.approx(analysis.timings["total"])
    assert isinstance(data["alerts"], list)
    for a in data["alerts"]:
        assert set(a) == {"kind", "severity", "step", "message", "evidence"}


def test_analysis_json_validates_against_schema(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    from analyzer.report.data import load_schema

    try:
        schema = load_schema()
    except FileNotFoundError:
        pytest.skip("analysis.schema.json not written yet")
    analyze_run(memory_run(), AnalyzeOptions(output_dir=tmp_path, **FAST))
    jsonschema.validate(json.loads((tmp_path / "analysis.json").read_text()), schema)


def test_too_short_run_exits_zero(tmp_path):
    analysis = analyze_run(memory_run(3, with_nan=False), AnalyzeOptions(output_dir=tmp_path, **FAST))
    assert all(a.severity is Severity.INFO for a in analysis.alerts)  # only the torn-line notice
    assert analysis.verdict == "too_short"
    assert exit_code(analysis) == 0
    assert summary_text(analysis).startswith("logscan: TOO SHORT")
    assert json.loads((tmp_path / "analysis.json").read_text())["verdict"] == "too_short"


def test_too_short_run_with_nan_is_still_critical(tmp_path):
    analysis = analyze_run(memory_run(3, with_nan=True), AnalyzeOptions(output_dir=tmp_path, **FAST))
    assert analysis.verdict == "critical" and exit_code(analysis) == 1
    assert any(a.kind == "nan_values" for a in analysis.alerts)


def test_fail_on_from_config_file_and_flag_precedence(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "logscan.toml").write_text('[analyze]\nfail_on = "info"\n', encoding="utf-8")
    run = memory_run(path=str(run_dir), with_nan=False)
    opts = dict(write_outputs=False, **FAST)
    from_file = analyze_run(run, AnalyzeOptions(**opts))
    assert from_file.fail_on == "info" and "fail_on" not in from_file.config
    assert exit_code(from_file) == 1  # the torn-line info alert now fails
    flag = analyze_run(run, AnalyzeOptions(fail_on="critical", **opts))
    assert flag.fail_on == "critical" and exit_code(flag) == 0
    override = analyze_run(run, AnalyzeOptions(overrides=("analyze.fail_on=never",), **opts))
    assert exit_code(override) == 0


def test_unknown_config_key_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        analyze_run(memory_run(path=str(tmp_path)), AnalyzeOptions(overrides=("analyze.nope=1",), write_outputs=False, **FAST))


def test_write_outputs_false_writes_nothing(tmp_path):
    run = memory_run(path=str(tmp_path))
    analysis = analyze_run(run, AnalyzeOptions(write_outputs=False, **FAST))
    assert analysis.output_dir is None and analysis.outputs == []
    assert list(tmp_path.iterdir()) == []


def test_summary_text_contents(tmp_path):
    analysis = analyze_run(memory_run(), AnalyzeOptions(output_dir=tmp_path, **FAST))
    analysis.alerts = [alert("warning", "length_hacking", 5), alert("critical", "nan_values", 1)]
    analysis.alerts.sort(key=lambda a: -a.severity.rank)
    text = summary_text(analysis)
    lines = text.splitlines()
    assert lines[0].startswith("logscan: ")
    assert "1 critical, 1 warning" in lines[0]
    assert "mem-run" in text and "logscan run folder" in text
    assert "steps:       0..11 (12 steps)" in text
    assert "completions: 48 (36 train, 12 eval)" in text
    assert "generations.jsonl:99: torn last line" in text
    alert_lines = lines[lines.index("alerts (worst first):") + 1 :]
    assert "nan_values" in alert_lines[0] and "length_hacking" in alert_lines[1]  # worst first
    assert f"written:     {tmp_path}/" in text and "analysis.json" in text
    assert summary_text(analysis, quiet=True) == lines[0]


def test_fail_on_is_validated():
    with pytest.raises(ConfigError, match="fail_on"):
        analyze_run(memory_run(), AnalyzeOptions(write_outputs=False, fail_on="sometimes", **FAST))


def test_missing_path_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        analyze(tmp_path / "nope", AnalyzeOptions(**FAST))


def test_output_dir_defaults(tmp_path):
    f = tmp_path / "generations.csv"
    f.write_text("x")
    assert output_dir_for(tmp_path, AnalyzeOptions()) == tmp_path / "logscan"
    assert output_dir_for(f, AnalyzeOptions()) == tmp_path / "logscan"
    assert output_dir_for(f, AnalyzeOptions(output_dir=Path("elsewhere"))) == Path("elsewhere")


def test_timings_are_recorded(tmp_path):
    analysis = analyze_run(memory_run(), AnalyzeOptions(output_dir=tmp_path, **FAST))
    assert all(isinstance(v, float) and v >= 0 and math.isfinite(v) for v in analysis.timings.values())
    assert analysis.timings["total"] >= analysis.timings["metrics"]


def test_analysis_json_is_written_once_and_listed_after_the_frames(tmp_path, monkeypatch):
    from analyzer import pipeline

    written: list[Path] = []
    real = pipeline._write_json
    monkeypatch.setattr(pipeline, "_write_json", lambda a, path, *rest: (written.append(path), real(a, path, *rest)))
    analysis = analyze_run(memory_run(), AnalyzeOptions(output_dir=tmp_path, **FAST))
    assert written == [tmp_path / "analysis.json"]
    names = [Path(p).name for p in analysis.outputs]
    assert names[:3] == ["metrics.parquet", "generations.parquet", "analysis.json"]


def _extreme_run(value: float) -> RunData:
    """A plausible run whose grad_norm sits at the edge of float range (found by a bug hunt)."""
    run = memory_run(with_nan=False)
    steps = run.steps.with_columns(pl.lit(value).alias(C.GRAD_NORM))
    return RunData(run.path, steps, run.generations, run.report, run.info)


def test_values_near_the_float_maximum_give_a_valid_report(tmp_path):
    """Constant grad_norm 1e308: matplotlib cannot scale it (the plot is skipped with the reason,
    not a traceback), and its mean must not overflow into a schema-breaking null."""
    import jsonschema

    from analyzer.report.data import load_schema

    analysis = analyze_run(_extreme_run(1e308), AnalyzeOptions(output_dir=tmp_path, no_embeddings=True))
    data = json.loads((tmp_path / "analysis.json").read_text(encoding="utf-8"))
    jsonschema.validate(data, load_schema())
    assert data["metrics"]["grad_norm"]["mean"] == pytest.approx(1e308)
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "mechanics (could not draw:" in report
    assert (tmp_path / "report.html").is_file() and analysis.verdict


def test_terminal_summary_shows_log_text_safely():
    """Text from the logs reaches the terminal with control characters escaped and line breaks as
    ⏎: a run.json or a logged key cannot rewrite the terminal or fake a summary line."""
    run = memory_run(with_nan=False)
    run.info.update(model="m\x1b]0;title\x07", algorithm="grpo\rX")
    steps = run.steps.with_columns(pl.lit(float("nan")).alias("x\x1b[2Jkey\nFAKE"))
    run = RunData(run.path, steps, run.generations, run.report, run.info)
    text = summary_text(analyze_run(run, AnalyzeOptions(write_outputs=False, **FAST)))
    assert "\x1b" not in text and "\r" not in text and "\x07" not in text
    assert "model m\\x1b]0;title\\x07" in text and "grpo\\x0dX" in text
    assert not any(line.startswith("FAKE") for line in text.splitlines())
    assert "x\\x1b[2Jkey⏎FAKE" in text


def test_frames_are_written_beside_the_reports_and_a_failed_frame_is_the_error(tmp_path, monkeypatch):
    """metrics.parquet and generations.parquet are written on a second thread while the reports
    render (the Parquet writers release the GIL); every output still lands, in the usual order, and
    a frame that cannot be written is the error analyze reports, not a lost exception."""
    import threading

    from analyzer import pipeline
    from analyzer.errors import LogscanError

    threads: dict[str, str] = {}
    real_parquet, real_reports = pipeline.write_parquet, pipeline._write_reports

    written: dict[str, pl.DataFrame] = {}

    def parquet(frame, path):
        threads[path.name] = threading.current_thread().name
        written[path.name] = frame
        real_parquet(frame, path)

    def reports(*args, **kwargs):
        threads["reports"] = threading.current_thread().name
        return real_reports(*args, **kwargs)

    monkeypatch.setattr(pipeline, "write_parquet", parquet)
    monkeypatch.setattr(pipeline, "_write_reports", reports)
    out = tmp_path / "out"
    analysis = analyze_run(memory_run(), AnalyzeOptions(output_dir=out, no_embeddings=True, no_plots=True))
    assert threads["reports"] == threading.main_thread().name
    assert threads["metrics.parquet"] == threads["generations.parquet"] != threads["reports"]
    # the writer thread has frame objects of its own, equal to the analysis' (see the next test)
    assert written["metrics.parquet"] is not analysis.metrics
    assert written["generations.parquet"] is not analysis.run.generations
    assert written["metrics.parquet"].equals(analysis.metrics)
    assert written["generations.parquet"].drop("judged_answer").equals(analysis.run.generations)
    names = [Path(p).name for p in analysis.outputs]
    assert names[:3] == ["metrics.parquet", "generations.parquet", "analysis.json"] and "report.html" in names
    assert all(Path(p).is_file() for p in analysis.outputs)

    def broken(frame, path):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(pipeline, "write_parquet", broken)
    with pytest.raises(LogscanError, match="No space left on device"):
        analyze_run(memory_run(), AnalyzeOptions(output_dir=tmp_path / "full", no_embeddings=True, no_plots=True))


# The frame writer thread against the reports' use of the same analysis, made deterministic: a
# garbage collection runs Python (a __del__) inside Polars' DataFrame.dtypes, which holds the
# frame's lock; that Python lets the writer run. On the analysis' own frame object the writer's
# to_arrow waits for the lock while holding the GIL, and the collection waits for the GIL: Polars
# 2.1 deadlocks every time (CI hung for 90 minutes). Run in a child process so that a hang fails
# this test instead of hanging the suite.
_WRITER_AGAINST_REPORTS = """
import gc, sys, tempfile, threading
from pathlib import Path
import polars as pl
from analyzer import pipeline
from analyzer.model import Analysis, IngestReport, RunData

metrics = pl.DataFrame({"step": list(range(30)), **{f"gen_reward/r{i}_mean": [0.5] * 30 for i in range(1200)}})
gens = pl.DataFrame({"step": [1, 2], "completion": ["a", "b"]})
run = RunData(path="t", steps=metrics.select("step"), generations=gens, report=IngestReport("t"))
analysis = Analysis(run=run, metrics=metrics)
out = Path(tempfile.mkdtemp())
go, wrote = threading.Event(), threading.Event()
frames = pipeline.frames_to_write(analysis)  # on this thread, as analyze_run does

def writer():
    go.wait()
    pipeline._write_frames_timed(frames, out, {})
    wrote.set()

where = []

class Collected:
    def __del__(self):
        where.append(sys._getframe(1).f_code.co_name)
        go.set()
        wrote.wait(10)  # releases the GIL: the writer runs now

threading.Thread(target=writer, daemon=True).start()
gc.collect()
c = Collected()
c.cycle = c
del c
gc.set_threshold(int(sys.argv[1]))  # the next collection: that many allocations into dtypes()
analysis.metrics.dtypes
gc.set_threshold(700)
print(where, wrote.is_set(), sorted(p.name for p in out.iterdir()))
"""


@pytest.mark.parametrize("allocations", [5, 50])
def test_the_frame_writer_thread_never_waits_on_a_frame_the_reports_hold(allocations):
    import subprocess
    import sys

    try:
        done = subprocess.run(
            [sys.executable, "-c", _WRITER_AGAINST_REPORTS, str(allocations)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the frame writer and the reports deadlocked (see pipeline.frames_to_write)")
    assert done.returncode == 0, done.stderr[-2000:]
    # the collection ran inside dtypes(), and the writer wrote both files meanwhile
    assert done.stdout.strip() == "['dtypes'] True ['generations.parquet', 'metrics.parquet']"
