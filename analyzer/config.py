"""Thresholds and switches: built-in defaults < config file < ``--set key=value`` overrides.

The config is a two-level table ``{section: {key: value}}``: one section per detector (its
defaults come from the detector registry), ``general`` for shared settings, and any section
another stage registers with ``register_section``. The file is the ``[tool.logscan]`` table of a
``pyproject.toml``, or a ``logscan.toml`` (its top level, or its own ``[tool.logscan]``), found
next to the run or above it, else in the working directory or above it — or named by ``--config``.

Unknown sections or keys and wrongly typed values are errors (``ConfigError``, exit 2): a typo in
a threshold must not silently leave the default in force.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from analyzer.errors import ConfigError

CONFIG_FILE = "logscan.toml"
PYPROJECT = "pyproject.toml"

# Sections other stages add (e.g. drift options): {section: defaults}. See register_section.
_EXTRA_SECTIONS: dict[str, dict[str, Any]] = {}


def register_section(name: str, defaults: Mapping[str, Any]) -> None:
    """Declare a config section owned by another stage, so its keys are validated and defaulted."""
    _EXTRA_SECTIONS[name] = dict(defaults)


def default_config() -> dict[str, dict[str, Any]]:
    """Built-in defaults of every section (fresh copies)."""
    from analyzer.detectors import default_config as detector_defaults
    from analyzer.detectors.base import copy_section

    out = detector_defaults()
    for name, values in _EXTRA_SECTIONS.items():
        out[name] = copy_section(values)
    return out


def find_config_file(run_path: str | Path | None, cwd: str | Path | None = None) -> Path | None:
    """The nearest ``logscan.toml`` or ``pyproject.toml`` with ``[tool.logscan]``, searching the run's
    folder and its parents first, then the working directory and its parents."""
    starts: list[Path] = []
    if run_path is not None:
        p = Path(run_path).resolve()
        starts.append(p if p.is_dir() else p.parent)
    starts.append(Path(cwd or Path.cwd()).resolve())
    seen: set[Path] = set()
    for start in starts:
        for d in (start, *start.parents):
            if d in seen:
                continue
            seen.add(d)
            cand = d / CONFIG_FILE
            if cand.is_file():
                return cand
            pyproject = d / PYPROJECT
            if pyproject.is_file() and _has_tool_table(pyproject):
                return pyproject
    return None


def _has_tool_table(path: Path) -> bool:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return isinstance(data.get("tool"), dict) and "logscan" in data["tool"]


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The logscan table of ``path``: ``[tool.logscan]`` when present (required in a pyproject.toml),
    else the whole file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {p}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p} is not valid TOML: {exc}") from None
    tool = data.get("tool")
    if isinstance(tool, dict) and "logscan" in tool:
        table = tool["logscan"]
        if not isinstance(table, dict):
            raise ConfigError(f"{p}: [tool.logscan] must be a table")
        return table
    if p.name == PYPROJECT:
        return {}
    return data


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    return type(v).__name__


def _coerce(key: str, value: Any, default: Any, source: str) -> Any:
    """``value`` checked against the type of ``default`` (ints are accepted where floats are)."""
    if default is None:
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok:
            value = float(value)
    elif isinstance(default, list):
        ok = isinstance(value, list)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(
            f"{source}: {key} must be a {_type_name(default)} (default {default!r}), got {value!r}"
        )
    return value


def _unknown(what: str, name: str, valid: Iterable[str], source: str) -> ConfigError:
    valid = sorted(valid)
    # a key that extends what was typed ("budget" → "budget_per_token") beats spelling similarity
    close = [v for v in valid if v.startswith(name)] or difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean {' or '.join(close[:2])}?)" if close else ""
    return ConfigError(f"{source}: unknown {what} '{name}'{hint}; valid: {', '.join(valid)}")


def merge(config: dict[str, dict[str, Any]], table: Mapping[str, Any], source: str) -> None:
    """Validate ``table`` (``{section: {key: value}}``, dotted keys allowed) and merge it in place."""
    for section, values in table.items():
        if "." in section and not isinstance(values, Mapping):
            sec, key = section.split(".", 1)
            merge(config, {sec: {key: values}}, source)
            continue
        if section not in config:
            raise _unknown("section", section, config, source)
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: [{section}] must be a table of settings, got {values!r}")
        for key, value in values.items():
            if key not in config[section]:
                raise _unknown(
                    "key", f"{section}.{key}", (f"{section}.{k}" for k in config[section]), source
                )
            config[section][key] = _coerce(f"{section}.{key}", value, config[section][key], source)
            if (section, key) == ("general", "answer_pattern"):
                from analyzer.features import validate_answer_pattern

                if (why := validate_answer_pattern(value)) is not None:
                    raise ConfigError(f"{source}: general.answer_pattern {value!r}: {why}")


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"kl_explosion.budget_per_token=0.2"`` → ``("kl_explosion", "budget_per_token", 0.2)``.

    The value is read as a TOML value (numbers, true/false, ["lists"], "strings"); anything that
    is not valid TOML is taken as a bare string.
    """
    if "=" not in text:
        raise ConfigError(
            f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. kl_explosion.budget_per_token=0.2"
        )
    name, raw = text.split("=", 1)
    name = name.strip()
    if name.count(".") != 1 or not all(name.split(".")):
        raise ConfigError(
            f"--set {text!r}: the key must be SECTION.KEY, e.g. kl_explosion.budget_per_token"
        )
    section, key = name.split(".")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return section, key, value


def load_config(
    run_path: str | Path | None,
    config_path: str | Path | None = None,
    overrides: Iterable[str] = (),
    *,
    cwd: str | Path | None = None,
) -> dict[str, dict[str, Any]]:
    """The effective configuration: defaults < config file < ``--set`` overrides.

    ``config_path`` names the file explicitly (it must exist); otherwise the nearest
    ``logscan.toml`` / ``pyproject.toml`` with ``[tool.logscan]`` is used (see ``find_config_file``).
    Raises ``ConfigError`` for an unreadable file, an unknown section or key, or a wrong type.
    """
    config = default_config()
    path = Path(config_path) if config_path is not None else find_config_file(run_path, cwd)
    if path is not None:
        merge(config, read_config_file(path), str(path))
    for text in overrides:
        section, key, value = parse_override(text)
        if (
            isinstance(value, str)
            and section in config
            and isinstance(config[section].get(key), list)
        ):
            value = [v.strip() for v in value.split(",") if v.strip()]
        merge(config, {section: {key: value}}, f"--set {text}")
    return config
