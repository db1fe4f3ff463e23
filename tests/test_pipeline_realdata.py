"""The whole pipeline on real logs from public runs (../shared/realdata; skipped when absent):
every file either analyzes to a verdict and a valid analysis.json, or is refused with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analyzer.errors import LogscanError
from analyzer.pipeline import AnalyzeOptions, analyze
from analyzer.report.terminal import summary_text
from analyzer.verdict import VERDICTS, exit_code

REALDATA = Path(__file__).resolve().parent.parent.parent / "shared" / "realdata"  # as in conftest.py

FILES = sorted(p for p in REALDATA.rglob("*") if p.is_file() and p.name != "README.md") if REALDATA.is_dir() else []


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_realdata_end_to_end(path, tmp_path, realdata):
    options = AnalyzeOptions(output_dir=tmp_path, no_embeddings=True, no_plots=True, no_html=True)
    try:
        analysis = analyze(path, options)
    except LogscanError as exc:  # an unsupported input is refused with one line, never a traceback
        assert str(exc) and "\n" not in str(exc)
        return
    assert analysis.verdict in VERDICTS
    assert exit_code(analysis) in (0, 1)
    assert summary_text(analysis).splitlines()[0].startswith("logscan: ")
    data = json.loads((tmp_path / "analysis.json").read_text(encoding="utf-8"))
    assert data["format"] == "logscan-analysis/1"
    assert data["summary"]["steps"] == analysis.metrics.height
    assert (tmp_path / "metrics.parquet").is_file()
