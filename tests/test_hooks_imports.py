"""trainer_hooks is standard-library only: checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CODE = r"""
import json, sys
before = set(sys.modules)  # whatever the interpreter loads at start-up (site, .pth finders)
import trainer_hooks, trainer_hooks.schema, trainer_hooks.logger, trainer_hooks.rewards, trainer_hooks.trl
from trainer_hooks import (RunLogger, TrainingEvent, TrainingPhase, request_stop, question_id_for,
                           wrap_reward_functions)
new = sorted(set(sys.modules) - before)
print(json.dumps({"new": new, "stdlib": sorted(sys.stdlib_module_names)}))
"""


def test_import_loads_only_the_standard_library() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, check=True
    ).stdout
    data = json.loads(out)
    stdlib = set(data["stdlib"])
    foreign = [
        m
        for m in data["new"]
        if m.split(".")[0] not in stdlib and m.split(".")[0] != "trainer_hooks"
    ]
    assert foreign == [], f"trainer_hooks imported non-stdlib modules: {foreign}"
    assert (
        "trainer_hooks.trl" in data["new"]
    )  # the TRL module itself is importable without transformers
    assert not any(
        m.startswith(("transformers", "torch", "trl"))
        for m in data["new"]
        if not m.startswith("trainer_hooks")
    )


@pytest.mark.slow
def test_callback_is_loaded_lazily() -> None:
    code = (
        "import sys, trainer_hooks\n"
        "assert 'transformers' not in sys.modules\n"
        "cls = trainer_hooks.LogscanCallback\n"
        "import transformers\n"
        "assert issubclass(cls, transformers.TrainerCallback)\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "ok"
