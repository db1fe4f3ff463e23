"""A bug in logscan is never mistaken for a verdict: every command turns an unexpected exception
into one ``Error: internal error …`` line and exit code 70, distinct from 1 (alerts) and 2 (bad
input), and keeps the traceback where the line says."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from analyzer.cli import cli
from analyzer.errors import EXIT_ALERTS, EXIT_INTERNAL, EXIT_USAGE

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "examples" / "runs" / "healthy-grpo"


def boom(*args: object, **kwargs: object) -> None:
    raise RuntimeError("boom in a stage")


def run_cli(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def saved_traceback(stderr: str) -> Path:
    m = re.fullmatch(r"Error: internal error \(RuntimeError: boom in a stage\); please report it with the traceback saved in (\S+)\n", stderr)
    assert m, stderr
    return Path(m.group(1))


def test_the_code_is_distinct_from_verdicts_and_bad_input() -> None:
    assert EXIT_INTERNAL not in (0, EXIT_ALERTS, EXIT_USAGE)


def test_analyze_internal_error_saves_the_traceback_in_the_output_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import analyzer.pipeline

    monkeypatch.setattr(analyzer.pipeline, "analyze", boom)
    result = run_cli("analyze", SAMPLE, "--no-embeddings", "-o", tmp_path / "out")
    assert result.exit_code == EXIT_INTERNAL
    assert result.stdout == ""
    path = saved_traceback(result.stderr)
    assert path == tmp_path / "out" / "logscan-traceback.txt"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("Traceback (most recent call last):") and "RuntimeError: boom in a stage" in text


def test_debug_prints_the_traceback_instead(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import analyzer.pipeline

    monkeypatch.setattr(analyzer.pipeline, "analyze", boom)
    result = run_cli("--debug", "analyze", SAMPLE, "--no-embeddings", "-o", tmp_path / "out")
    assert result.exit_code == EXIT_INTERNAL
    lines = result.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-1] == "Error: internal error (RuntimeError: boom in a stage); please report it with the traceback above"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("module", "name", "args"),
    [
        ("analyzer.report.render", "write_html_report", ["html-report", "{run}", "--no-embeddings", "-o", "{tmp}/r.html"]),
        ("analyzer.compare", "run_compare", ["compare", "{run}", "{run}"]),
        ("analyzer.samples", "samples_text", ["samples", "{run}", "--question-id", "q"]),
        ("analyzer.watch", "watch_run", ["watch", "{run}", "--once"]),
        ("analyzer.detectors", "describe_detectors", ["detectors"]),
    ],
)
def test_every_command_reports_an_internal_error_the_same_way(
    module: str, name: str, args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    run = Path(shutil.copytree(SAMPLE, tmp_path / "run"))
    monkeypatch.setattr(importlib.import_module(module), name, boom)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where commands without an output folder save it
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    result = run_cli(*[a.format(run=run, tmp=tmp_path) for a in args])
    assert result.exit_code == EXIT_INTERNAL, result.output
    path = saved_traceback(result.stderr)
    assert "RuntimeError: boom in a stage" in path.read_text(encoding="utf-8")
    assert path.parent in (tmp_path, run / "logscan")


def test_bad_input_and_usage_errors_keep_code_2() -> None:
    result = run_cli("analyze", "/nonexistent/run")
    assert result.exit_code == EXIT_USAGE and result.stderr.startswith("Error: ")
    assert run_cli("analyze", "--no-such-option").exit_code == 2


def test_a_real_process_exits_70_without_a_traceback(tmp_path: Path) -> None:
    code = (
        "import sys, analyzer.pipeline as p\n"
        "def boom(*a, **k): raise RuntimeError('boom in a stage')\n"
        "p.analyze = boom\n"
        "from analyzer.cli import main\n"
        f"sys.argv = ['logscan', 'analyze', {str(SAMPLE)!r}, '--no-embeddings', '-o', {str(tmp_path / 'out')!r}]\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_INTERNAL
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert saved_traceback(proc.stderr).is_file()


def test_ctrl_c_is_not_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    import analyzer.pipeline

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(analyzer.pipeline, "analyze", interrupted)
    result = run_cli("analyze", SAMPLE, "--no-embeddings")
    assert result.exit_code == 130 and result.stderr == "Error: interrupted\n"
