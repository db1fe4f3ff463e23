"""The wheel ships the templates and the analysis schema, and ``logscan html-report`` works from a
non-editable install with the repository nowhere on sys.path.

The wheel is built from a copy of the sources (so no build/ or egg-info lands in the working
tree), installed with ``pip install --no-deps --target`` (dependencies come from the test venv),
and run with ``PYTHONPATH`` = that target from a scratch directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from render_fixture import write_seed_csv

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "analyzer", "trainer_hooks", "templates")


def _pip(*args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", *args, "--quiet"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


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
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src))
    wheels = list(dist.glob("logscan_rl-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def test_wheel_contains_templates_and_schema(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "analyzer/templates/__init__.py",
        "analyzer/templates/report.md.j2",
        "analyzer/templates/report.html.j2",
        "analyzer/templates/report.js",
        "analyzer/templates/report.css",
        "analyzer/analysis.schema.json",
        "analyzer/templates/compare.md.j2",
        "analyzer/templates/compare.html.j2",
        "analyzer/report/__init__.py",
        "analyzer/report/render.py",
        "analyzer/report/plots.py",
        "analyzer/py.typed",
    ):
        assert required in names, f"{required} is not in {wheel.name}"
    # nothing generic at top level: the templates install inside the analyzer (pyproject.toml)
    top = {n.split("/", 1)[0] for n in names if "/" in n and ".dist-info/" not in n}
    assert top == {"analyzer", "trainer_hooks"}, top
    schema = json.loads(zipfile.ZipFile(wheel).read("analyzer/analysis.schema.json"))
    assert schema["properties"]["format"]["const"] == "logscan-analysis/1"


def test_html_report_from_a_non_editable_install(wheel, tmp_path):
    site = tmp_path / "site"
    _pip("install", "--no-deps", "--target", str(site), str(wheel))
    work = tmp_path / "work"
    work.mkdir()
    write_seed_csv(
        work / "generations.csv",
        steps=8,
        per_prompt=2,
        reasoning=lambda step: f"step {step} <script>window.__pwned=1</script>",
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = str(site)
    env["MPLBACKEND"] = "Agg"
    probe = (
        "import json, sys, analyzer, analyzer.templates, importlib.resources as r; "
        "print(json.dumps({'analyzer': analyzer.__file__, "
        "'template': str(r.files('analyzer.templates').joinpath('report.html.j2')), 'path': sys.path}))"
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
