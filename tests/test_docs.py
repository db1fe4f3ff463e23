"""Docs match code: every command has help with an example and is documented; the README's two
commands stay true (the test command is what CI runs; the quick start names a real sample run)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

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


def test_no_install_instruction_fetches_the_unrelated_pypi_logscan():
    """`logscan` on PyPI is an unrelated project: nothing we ship tells a user to install the bare
    name (extras of the installed checkout, `-e '.[…]'` or `logscan[…] @ <source>`, are fine)."""
    import re

    root = Path(__file__).resolve().parent.parent
    bare = re.compile(r"pip install [\"']?logscan(\[[a-z,]+\])?[\"']?(?!\s*@)(?=[\s`]|$)")
    offenders = []
    for path in [*root.glob("*.md"), *root.glob("docs/*.md"), *root.glob("examples/**/*"), *root.glob("analyzer/**/*.py")]:
        if path.is_file() and path.suffix in {".md", ".py", ".yml"}:
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if bare.search(line):
                    offenders.append(f"{path.relative_to(root)}:{n}: {line.strip()}")
    assert not offenders, offenders
