"""Where the commands write: `html-report -o FILE` needs only FILE's folder to be writable."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from analyzer.cli import cli

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "runs" / "healthy-grpo"


def test_html_report_to_a_writable_file_of_a_run_whose_output_folder_cannot_be_made(tmp_path: Path) -> None:
    run = Path(shutil.copytree(SAMPLE, tmp_path / "run"))
    # RUN/logscan cannot be created (a file is in the way; a read-only run is the same to us,
    # and unlike chmod this also holds for root)
    (run / "logscan").write_text("not a folder")
    page = tmp_path / "elsewhere" / "page.html"
    result = CliRunner().invoke(cli, ["html-report", str(run), "--no-embeddings", "-o", str(page)])
    assert result.exit_code == 0, result.output + result.stderr
    assert result.stdout == f"Wrote {page}\nlogscan: HEALTHY — no alerts\n"  # then the verdict
    assert result.stderr == (
        f"note: {run / 'logscan'} cannot be written (a file or folder is in the way): its analysis.json "
        "and parquet files were not refreshed\n"
    )
    assert page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert (run / "logscan").read_text() == "not a folder"


def test_html_report_without_o_still_refuses_an_unwritable_run(tmp_path: Path) -> None:
    run = Path(shutil.copytree(SAMPLE, tmp_path / "run"))
    (run / "logscan").write_text("not a folder")
    result = CliRunner().invoke(cli, ["html-report", str(run), "--no-embeddings"])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ") and len(result.stderr.splitlines()) == 1
