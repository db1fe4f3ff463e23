"""Configuration: defaults < [tool.logscan] / logscan.toml < --set overrides; strict validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.config import find_config_file, load_config, parse_override, register_section
from analyzer.detectors import REGISTRY
from analyzer.errors import EXIT_USAGE, ConfigError


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    d = tmp_path / "project" / "runs" / "001"
    d.mkdir(parents=True)
    return d


def test_defaults_come_from_the_registry(run_dir: Path, tmp_path: Path) -> None:
    cfg = load_config(run_dir, cwd=tmp_path)
    assert set(cfg) >= {"general", *REGISTRY}
    assert cfg["kl_explosion"]["budget_per_token"] == 0.5
    assert cfg["general"]["warmup_fraction"] == 0.1
    assert all(cfg[name]["enabled"] is True for name in REGISTRY)


def test_pyproject_above_the_run_is_found(run_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "project" / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.logscan.kl_explosion]\nbudget_per_token = 0.2\n'
        "[tool.logscan.mode_collapse]\nenabled = false\n"
    )
    cfg = load_config(run_dir, cwd=tmp_path)
    assert cfg["kl_explosion"]["budget_per_token"] == 0.2
    assert cfg["mode_collapse"]["enabled"] is False
    assert find_config_file(run_dir, tmp_path) == tmp_path / "project" / "pyproject.toml"


def test_pyproject_without_tool_table_is_passed_over(run_dir: Path, tmp_path: Path) -> None:
    (run_dir.parent / "pyproject.toml").write_text('[project]\nname = "x"\n')
    (tmp_path / "project" / "logscan.toml").write_text(
        "[entropy_collapse]\ncollapse_fraction = 0.5\n"
    )
    cfg = load_config(run_dir, cwd=tmp_path)
    assert cfg["entropy_collapse"]["collapse_fraction"] == 0.5


def test_logscan_toml_wins_over_pyproject_in_the_same_folder(run_dir: Path, tmp_path: Path) -> None:
    (run_dir / "logscan.toml").write_text("[general]\nmin_steps = 30\n")
    (run_dir / "pyproject.toml").write_text("[tool.logscan.general]\nmin_steps = 40\n")
    assert load_config(run_dir, cwd=tmp_path)["general"]["min_steps"] == 30


def test_cwd_is_searched_when_the_run_has_no_config(tmp_path: Path) -> None:
    run = tmp_path / "a" / "run"
    run.mkdir(parents=True)
    cwd = tmp_path / "b"
    cwd.mkdir()
    (cwd / "logscan.toml").write_text("[loss_spike]\nz_warning = 20\n")
    cfg = load_config(run, cwd=cwd)
    assert cfg["loss_spike"]["z_warning"] == 20.0  # an int is accepted where a float is expected
    assert isinstance(cfg["loss_spike"]["z_warning"], float)


def test_run_given_as_a_file_searches_its_folder(run_dir: Path, tmp_path: Path) -> None:
    f = run_dir / "trainer_state.json"
    f.write_text("{}")
    (run_dir / "logscan.toml").write_text("[general]\nmin_steps = 7\n")
    assert load_config(f, cwd=tmp_path)["general"]["min_steps"] == 7


def test_overrides_win_over_the_file(run_dir: Path, tmp_path: Path) -> None:
    (run_dir / "logscan.toml").write_text("[kl_explosion]\nbudget_per_token = 0.2\n")
    cfg = load_config(
        run_dir,
        overrides=[
            "kl_explosion.budget_per_token=0.9",
            "mode_collapse.enabled=false",
            "loss_spike.columns=loss,grad_norm",
        ],
        cwd=tmp_path,
    )
    assert cfg["kl_explosion"]["budget_per_token"] == 0.9
    assert cfg["mode_collapse"]["enabled"] is False
    assert cfg["loss_spike"]["columns"] == ["loss", "grad_norm"]


def test_explicit_config_path(tmp_path: Path) -> None:
    p = tmp_path / "custom.toml"
    p.write_text('[tool.logscan.kl_explosion]\nunit = "sequence"\n')
    assert load_config(None, p, cwd=tmp_path)["kl_explosion"]["unit"] == "sequence"
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(None, tmp_path / "nope.toml", cwd=tmp_path)


def test_dotted_keys_in_a_file(tmp_path: Path) -> None:
    p = tmp_path / "logscan.toml"
    p.write_text("'kl_explosion.budget_per_token' = 0.3\n")
    assert load_config(None, p)["kl_explosion"]["budget_per_token"] == 0.3


def test_unknown_key_is_an_error_naming_the_valid_ones(tmp_path: Path) -> None:
    p = tmp_path / "logscan.toml"
    p.write_text("[kl_explosion]\nbudget = 0.2\n")
    with pytest.raises(ConfigError) as err:
        load_config(None, p)
    msg = str(err.value)
    assert "unknown key 'kl_explosion.budget'" in msg
    assert "(did you mean kl_explosion.budget_per_sequence or kl_explosion.budget_per_token?)" in msg
    assert "\n" not in msg
    assert err.value.exit_code == EXIT_USAGE


def test_unknown_section_suggests_the_closest(tmp_path: Path) -> None:
    p = tmp_path / "logscan.toml"
    p.write_text("[kl_explosoin]\nenabled = false\n")
    with pytest.raises(
        ConfigError, match=r"unknown section 'kl_explosoin' \(did you mean kl_explosion\?\)"
    ):
        load_config(None, p)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            '[kl_explosion]\nbudget_per_token = "high"\n',
            "kl_explosion.budget_per_token must be a number",
        ),
        ("[mode_collapse]\nenabled = 1\n", "mode_collapse.enabled must be a boolean"),
        ("[general]\nmin_steps = 2.5\n", "general.min_steps must be a integer"),
        ('[loss_spike]\ncolumns = "loss"\n', "loss_spike.columns must be a list"),
        ("kl_explosion = 3\n", r"\[kl_explosion\] must be a table"),
        ("[kl_explosion\n", "not valid TOML"),
    ],
)
def test_bad_values_are_errors(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "logscan.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(None, p)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a.b=1", ("a", "b", 1)),
        ("a.b = 0.5", ("a", "b", 0.5)),
        ("a.b=true", ("a", "b", True)),
        ("a.b=token", ("a", "b", "token")),
        ('a.b=["x", "y"]', ("a", "b", ["x", "y"])),
    ],
)
def test_parse_override(text: str, expected: tuple) -> None:
    assert parse_override(text) == expected


@pytest.mark.parametrize("text", ["novalue", "nodot=1", "a.b.c=1", ".b=1"])
def test_bad_override_syntax(text: str) -> None:
    with pytest.raises(ConfigError, match="--set"):
        parse_override(text)


def test_override_with_unknown_key(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"--set truncation\.thresh=0\.3: unknown key 'truncation\.thresh'"
    ):
        load_config(None, overrides=["truncation.thresh=0.3"], cwd=tmp_path)


def test_other_stages_can_register_a_section(tmp_path: Path) -> None:
    register_section("testsection", {"model": "x", "max_embed": 100})
    try:
        cfg = load_config(None, overrides=["testsection.max_embed=5"], cwd=tmp_path)
        assert cfg["testsection"] == {"model": "x", "max_embed": 5}
    finally:
        from analyzer import config

        config._EXTRA_SECTIONS.pop("testsection", None)


def test_effective_config_feeds_run_detectors(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from detector_scenarios import make_scenario

    from analyzer.detectors import run_detectors

    cfg = load_config(None, overrides=["nan_values.enabled=false"], cwd=tmp_path)
    sc = make_scenario("nan_values")
    alerts, _statuses = run_detectors(sc.run, sc.run.steps, None, cfg)
    assert not [a for a in alerts if a.kind == "nan_values"]
