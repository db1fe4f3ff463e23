"""The import contracts (pyproject.toml [tool.importlinter], docs/architecture.md "Layers and import
contracts") hold, and the helpers moved down to keep them are still where callers found them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).exists():
        pytest.fail("lint-imports is missing: pip install -e '.[test]' (import-linter)")
    done = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_moved_helpers_are_the_same_objects_at_their_old_homes() -> None:
    from analyzer import columns, metrics, values
    from analyzer.detectors import kl
    from analyzer.report import data as report_data
    from analyzer.report import escape, samples_view

    assert samples_view.terminal_safe is escape.terminal_safe is values.terminal_safe
    assert report_data.finite_or_none is values.finite_or_none
    assert kl.kl_unit is values.kl_unit
    assert metrics.split_prefix is columns.split_prefix


def test_logscan_detectors_lists_the_detectors_then_the_core_checks() -> None:
    from analyzer.coverage import describe_checks
    from analyzer.detectors import describe_detectors

    text = describe_checks()
    assert text.startswith(describe_detectors())
    assert "\nCore checks per kind of run (all must run, else the verdict is limited" in text
    assert "Core checks" not in describe_detectors()


def test_every_package_of_the_repository_is_installed_and_nothing_generic_at_top_level() -> None:
    """pyproject.toml lists the packages (the templates folder installs as ``analyzer.templates``):
    a new package under analyzer/ or trainer_hooks/ must be added there, or the wheel lacks it."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("analyzer", "trainer_hooks")
        for init in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert set(setuptools["packages"]) == found | {"analyzer.templates"}
    assert setuptools["package-dir"] == {"analyzer.templates": "templates"}
    assert {p.split(".")[0] for p in setuptools["packages"]} == {"analyzer", "trainer_hooks"}


def test_the_report_package_holds_every_view_and_the_commands_stay_thin() -> None:
    """Showing lives in analyzer.report: the commands hand their result to a view there, and no
    module outside the package formats numbers or escapes Markdown/HTML itself."""
    import ast

    from analyzer import compare, samples, watch
    from analyzer.report import compare_view, samples_view, watch_view

    assert compare.compare_text.__module__ == "analyzer.compare"
    assert watch.snapshot_text is watch_view.snapshot_text
    assert callable(compare_view.format_comparison) and callable(samples_view.format_samples)
    assert "format_samples" not in vars(samples)
    view_names = {"fmt", "fmt_signed", "fmt_fixed", "md_escape", "md_code", "md_fence", "md_html", "script_json"}
    for path in (ROOT / "analyzer").rglob("*.py"):
        if "report" in path.relative_to(ROOT / "analyzer").parts[:1]:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}  # module-level helpers
        assert not defined & view_names, f"{path.name} defines {sorted(defined & view_names)}: views live in analyzer.report"
