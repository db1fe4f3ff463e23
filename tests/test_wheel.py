"""The wheel ships the templates and the analysis schema, and ``logscan html-report`` works from a
non-editable install with the repository nowhere on sys.path.

The wheel is built from a copy of the sources (so no build/ or egg-info lands in the working
tree), installed with ``pip install --no-deps --target`` (dependencies come from the test venv),
and run with ``PYTHONPATH`` = that target from a scratch directory.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "analyzer", "trainer_hooks", "templates")


def _write_csv(path: Path) -> None:
    cols = [
        "timestamp",
        "global_step",
        "question_id",
        "question",
        "ground_truth_answer",
        "model_output",
        "reasoning",
        "model_answer",
        "total_reward",
        "correctness_reward",
    ]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for step in range(8):
            for p in range(2):
                for k in range(2):
                    out = f"<reasoning>step {step} <script>window.__pwned=1</script></reasoning><answer>{p + k}</answer>"
                    w.writerow(
                        [
                            1.7e9 + step,
                            step,
                            f"q{p}",
                            f"{p} + 1?",
                            str(p + 1),
                            out,
                            "",
                            str(p + k),
                            float(k),
                            float(k),
                        ]
                    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "logscan")
    for name in SOURCES:
        p = REPO / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=ignore)
        elif p.exists():
            shutil.copy2(p, src / name)
    dist = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(dist),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheels = list(dist.glob("logscan-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def test_wheel_contains_templates_and_schema(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "templates/__init__.py",
        "templates/report.md.j2",
        "templates/report.html.j2",
        "templates/report.js",
        "templates/report.css",
        "analyzer/analysis.schema.json",
        "analyzer/render.py",
        "analyzer/plots.py",
        "analyzer/py.typed",
    ):
        assert required in names, f"{required} is not in {wheel.name}"
    schema = json.loads(zipfile.ZipFile(wheel).read("analyzer/analysis.schema.json"))
    assert schema["properties"]["format"]["const"] == "logscan-analysis/1"


def test_html_report_from_a_non_editable_install(wheel, tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--quiet",
            "--target",
            str(site),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    work = tmp_path / "work"
    work.mkdir()
    _write_csv(work / "generations.csv")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = str(site)
    env["MPLBACKEND"] = "Agg"
    probe = (
        "import json, sys, analyzer, templates, importlib.resources as r; "
        "print(json.dumps({'analyzer': analyzer.__file__, "
        "'template': str(r.files('templates').joinpath('report.html.j2')), 'path': sys.path}))"
    )
    where = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert where.returncode == 0, where.stderr
    found = json.loads(where.stdout)
    assert found["analyzer"].startswith(str(site)) and found["template"].startswith(str(site)), (
        found
    )
    assert str(REPO) not in [p.rstrip("/") for p in found["path"]]
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "analyzer.cli",
            "html-report",
            "generations.csv",
            "--no-embeddings",
            "-o",
            "out/report.html",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    html = (work / "out" / "report.html").read_text(encoding="utf-8")
    assert "Content-Security-Policy" in html and 'id="completions-data"' in html
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html.replace(
        "\\u003c", "&lt;"
    ).replace("\\u003e", "&gt;")
    assert "<script>window.__pwned" not in html
