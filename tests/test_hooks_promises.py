"""The promises the training loop relies on: every public call returns within its bound, nothing
raises into training after construction, and the counters say what reached the disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from trainer_hooks import read_stop_request, request_stop, schema


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
