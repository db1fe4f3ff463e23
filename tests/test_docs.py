"""Docs match code: every command has help with an example and is documented; the README's two
commands stay true (the test command is what CI runs; the quick start names a real sample run)."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

import analyzer
from analyzer.cli import cli

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
CLI_DOC = REPO / "docs" / "cli.md"
COMMANDS = sorted(cli.commands)


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```(?:bash|sh|console)\n(.*?)```", text, flags=re.S)


def readme_command(after_heading: str) -> str:
    """The first shell command after the paragraph that mentions ``after_heading``."""
    start = README.index(after_heading)
    block = bash_blocks(README[start:])[0]
    return " ".join(line.strip() for line in block.strip().splitlines() if not line.startswith("#"))


def last_step(command: str) -> str:
    return command.split("&&")[-1].strip()


def test_there_are_commands():
    assert {"analyze", "compare", "watch"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_command_has_help_with_example(name):
    command = cli.commands[name]
    assert command.help and len(command.help.strip()) > 20, f"{name} has no help text"
    assert "Example" in command.help and f"logscan {name}" in command.help, f"{name}'s help has no example"
    for param in command.params:
        if getattr(param, "param_type_name", "") == "option" and not getattr(param, "hidden", False):
            assert getattr(param, "help", None), f"{name} {param.opts} has no help"


@pytest.mark.parametrize("name", COMMANDS)
def test_command_is_in_readme_and_cli_doc(name):
    assert f"logscan {name}" in README, f"README.md does not mention `logscan {name}`"
    assert f"logscan {name}" in CLI_DOC.read_text(encoding="utf-8"), f"docs/cli.md does not mention `logscan {name}`"


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_is_in_cli_doc(name):
    doc = CLI_DOC.read_text(encoding="utf-8")
    for param in cli.commands[name].params:
        if getattr(param, "param_type_name", "") == "option" and not getattr(param, "hidden", False):
            assert any(opt in doc for opt in param.opts), f"docs/cli.md does not mention {name} {param.opts[0]}"


def test_readme_test_command_is_what_ci_runs():
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    ci_pytest = [line.strip() for line in ci.splitlines() if re.match(r"\s*python -m pytest\b", line)]
    assert len(ci_pytest) == 1
    assert last_step(readme_command("Run the tests")) == ci_pytest[0]


def test_readme_quick_start_runs_an_existing_sample():
    step = last_step(readme_command("Quick start"))
    argv = shlex.split(step)
    assert argv[:2] == ["logscan", "analyze"]
    run = REPO / argv[2]
    assert run.is_dir() and (run / "run.json").is_file() and (run / "README.md").is_file()


PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
NAME = PYPROJECT["name"]
EXTRAS = set(PYPROJECT["optional-dependencies"])
# An install command up to the end of its shell step (`&&`, `;`, `|`, a closing backtick or quote
# of the prose around it, or the end of the line).
INSTALL = re.compile(r"\b(?:pip|pipx|uv pip|uv tool)\s+install\b([^`&;|\n]*)")


def shipped_text_files() -> list[Path]:
    """Everything a user reads or runs: docs, examples, CI and release workflows, the packaging
    metadata and the code (its error hints)."""
    files = [
        *REPO.glob("*.md"),
        *REPO.glob("docs/*.md"),
        *REPO.glob("examples/**/*"),
        *REPO.glob(".github/**/*"),
        REPO / ".ci" / "run",
        REPO / "pyproject.toml",
        *REPO.glob("analyzer/**/*.py"),
        *REPO.glob("trainer_hooks/**/*.py"),
    ]
    return [p for p in files if p.is_file() and (p.suffix in {".md", ".py", ".yml", ".yaml", ".toml"} or p.name == "run")]


def install_lines() -> list[tuple[str, str]]:
    found = []
    for path in shipped_text_files():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for m in INSTALL.finditer(line):
                found.append((f"{path.relative_to(REPO)}:{n}", m.group(1)))
    return found


def test_the_distribution_name_is_not_the_unrelated_pypi_logscan():
    assert NAME == "logscan-rl" and NAME == analyzer.DISTRIBUTION
    assert PYPROJECT["scripts"] == {"logscan": "analyzer.cli:main"}  # the command keeps its name


def test_no_install_instruction_fetches_the_unrelated_pypi_logscan():
    """`logscan` on PyPI is an unrelated project: no install line we ship names it — bare, with
    extras, pinned or as `logscan[…] @ <source>` — in prose, shell blocks, workflows or hints."""
    bare = re.compile(r"(?<![\w./-])[\"']?logscan(?![\w-])(?!/)")
    offenders = [f"{where}: {args.strip()}" for where, args in install_lines() if bare.search(args)]
    assert not offenders, offenders
    # the extras' references to the project itself use its name (pip resolves them on the index)
    for extra, reqs in PYPROJECT["optional-dependencies"].items():
        for req in reqs:
            if req.startswith("logscan"):
                assert re.match(rf"{re.escape(NAME)}\[", req), f"[{extra}] names {req!r}"


def test_install_lines_use_the_name_and_extras_that_exist():
    """Every `logscan-rl[…]` or checkout `.[…]` install names extras pyproject.toml defines, and
    the install lines users copy name the published distribution."""
    lines = install_lines()
    named = [(where, args) for where, args in lines if NAME in args]
    assert any(where.startswith("README.md") for where, _ in named), "README has no install by name"
    for where, args in lines:
        for extras in re.findall(rf"(?:{re.escape(NAME)}|(?<![\w-])\.)\[([^\]]*)\]", args):
            unknown = {e.strip() for e in extras.split(",")} - EXTRAS
            assert not unknown, f"{where}: unknown extra {unknown} in {args.strip()!r}"
    for tool in ("pipx install", "uv tool install"):
        assert f"{tool} {NAME}" in README, f"README does not show `{tool} {NAME}`"
    assert 'pip install "logscan-rl[embeddings]"' in README


def test_the_embeddings_hint_names_the_extra_under_the_new_name():
    from analyzer.embeddings import EXTRA_INSTALL, INSTALL_HINT

    assert EXTRA_INSTALL == f'pip install "{NAME}[embeddings]"' and EXTRA_INSTALL in INSTALL_HINT


def test_ci_runs_the_readme_quick_start_from_the_wheel():
    """.ci/run installs the built wheel in a fresh venv and runs the quick start's last step."""
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    quick = re.findall(r'^QUICK_START="([^"]+)"', ci, flags=re.M)
    assert quick == [last_step(readme_command("Quick start"))]
    assert "python -m build" in ci and "twine check --strict" in ci
    assert re.search(r"pip install --quiet \"\$DIST\"/dist/logscan_rl-\"\$VERSION\"-py3-none-any\.whl", ci)


DOCS = [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_set_example_in_the_docs_is_a_valid_override(doc: Path, tmp_path: Path) -> None:
    import analyzer.detectors  # noqa: F401  (registers the detectors' sections)
    from analyzer.config import load_config, register_section
    from analyzer.report.data import REPORT_CONFIG_DEFAULTS

    # the sections the pipeline adds before it loads the config
    register_section("analyze", {"fail_on": "critical"})
    register_section("report", REPORT_CONFIG_DEFAULTS)
    text = doc.read_text(encoding="utf-8")
    examples = re.findall(r"--set[ =]([A-Za-z_][\w.]*=[^\s`|)]+)", text)
    placeholders = {"section.key=value", "key=value"}
    for example in (e for e in examples if e.lower() not in placeholders):
        load_config(None, overrides=[example], cwd=tmp_path)  # raises ConfigError if it would fail


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_name_and_link_only_files_that_exist(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (doc.parent / target).is_file(), f"{doc.name} links to {target}, which does not exist"
    for named in re.findall(r"(?<![\w/.])docs/[\w-]+\.md", text):
        assert (REPO / named).is_file(), f"{doc.name} names {named}, which does not exist"
