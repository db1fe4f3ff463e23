"""The promises the training loop relies on: every public call returns within its bound, nothing
raises into training after construction, and the counters say what reached the disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from trainer_hooks import RunLogger, read_stop_request, request_stop, schema


def manifest(run_dir: Path, rank: int = 0) -> dict[str, Any]:
    return json.loads((run_dir / schema.manifest_file(rank)).read_text(encoding="utf-8"))


# --- the stop file ---------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_a_stop_file_that_is_a_fifo_is_ignored_without_blocking(tmp_path: Path) -> None:
    """A FIFO named STOP used to block the check (run after every training step) forever."""
    os.mkfifo(tmp_path / schema.STOP_FILE)
    code = (
        "import sys, warnings\n"
        "from trainer_hooks import RunLogger\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    with RunLogger(sys.argv[1]) as lg:\n"
        "        answers = [lg.stop_requested() for _ in range(3)]\n"
        "print(answers, sum('STOP' in str(w.message) for w in caught))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=15
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[None,", "None,", "None]", "1"]  # ignored, reported once


@pytest.mark.timeout(60)
def test_a_stop_file_linked_to_an_endless_device_is_ignored(tmp_path: Path) -> None:
    """A STOP symlinked to /dev/zero used to be read to the end: memory ran out."""
    (tmp_path / schema.STOP_FILE).symlink_to("/dev/zero")
    code = (
        "import resource, sys, warnings\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
        "warnings.simplefilter('ignore')\n"
        "from trainer_hooks import read_stop_request\n"
        "print(read_stop_request(sys.argv[1]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=15
    )
    assert (out.returncode, out.stdout.strip()) == (0, "None"), out.stderr


def test_a_huge_regular_stop_file_is_read_up_to_its_cap(tmp_path: Path) -> None:
    (tmp_path / schema.STOP_FILE).write_text("reward hacking " + "x" * 10_000_000)
    reason = read_stop_request(tmp_path)
    assert reason is not None and reason.startswith("reward hacking x")
    assert len(reason) <= schema.STOP_MAX_BYTES


def test_a_stop_reason_with_a_lone_surrogate_is_written(tmp_path: Path) -> None:
    request_stop(tmp_path, "bad \udcff byte")
    assert read_stop_request(tmp_path) == "bad \\udcff byte"


# --- wrong argument types --------------------------------------------------------------------------
def _nested(depth: int) -> list[Any]:
    root: list[Any] = []
    cur = root
    for _ in range(depth):
        cur.append([])
        cur = cur[0]
    return root


def test_wrong_argument_types_are_counted_not_raised_into_training(tmp_path: Path) -> None:
    """After construction nothing raises into the training thread, not even a misuse of the API:
    each bad call is one lost record in records_failed, one warning per method, and training goes
    on logging."""
    deep = _nested(5000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("error")  # a warning must not become an exception in training either
        lg = RunLogger(tmp_path, config={"deep": deep})
        lg.log_metrics(1, 0.5)  # type: ignore[arg-type]
        lg.log_metrics(1, [0.5])  # type: ignore[arg-type]
        lg.log_metrics(2, 0.5)  # type: ignore[arg-type]
        lg.log_generation(step=1, question="q", model_output="o", rewards=[1.0])  # type: ignore[arg-type]
        lg.log_event("checkpoint", 1, meta=[1])  # type: ignore[arg-type]
        lg.emit("not an event")  # type: ignore[arg-type]
        lg.log_generations([{"step": 1}, 7])  # type: ignore[list-item]
        lg.log_generations(None)  # type: ignore[arg-type]
        lg.update_manifest(config={"d": deep})
        lg.log_metrics(3, {"deep": deep, "loss": 0.25})
        lg.log_metrics(4, {"loss": 0.5})
        assert lg.close(timeout=30) is False  # records were lost
    failed = lg.counters[schema.C_RECORDS_FAILED]
    assert failed == 9
    assert manifest(tmp_path)[schema.M_COUNTERS][schema.C_RECORDS_FAILED] == 9
    evs = [
        json.loads(line)
        for line in (tmp_path / schema.events_file()).read_text(encoding="utf-8").splitlines()
    ]
    assert [e[schema.E_METRICS].get("loss") for e in evs if e[schema.E_PHASE] == "metrics"] == [
        0.25,
        0.5,
    ]
    assert len(json.dumps(manifest(tmp_path)[schema.M_CONFIG])) < 10_000  # cut at a depth limit
    messages = [str(w.message) for w in caught]
    per_method = {m.split("(")[0] for m in messages if "cannot log" in m}
    assert len([m for m in messages if "cannot log" in m]) == len(per_method)  # once per method
