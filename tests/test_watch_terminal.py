"""``logscan watch`` on a real terminal: a pseudo-terminal from tmux, 80 and 200 columns wide.

The run grows while it is watched: the view is redrawn in place with the new step; a completion
holding terminal escape sequences and rich markup is shown as inert text; a NaN loss fires a
critical alert and ``--stop-on critical`` writes the run's STOP request. Without a terminal, one
line per refresh."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

EVIL = "\x1b[31mEVIL\x1b]0;pwned\x07 [bold red]markup[/bold red]"


def _events(run: Path, steps: range, *, nan_at: int | None = None) -> None:
    with (run / "events.jsonl").open("a", encoding="utf-8") as fh:
        for s in steps:
            loss = "NaN" if s == nan_at else 1.0 / s
            fh.write(json.dumps({"time": 1.7e9 + s, "step": s, "phase": "train", "metrics": {"loss": loss, "kl": 0.01 * s, "reward": 0.1 * s}}) + "\n")


def _gens(run: Path, steps: range, *, evil_at: int | None = None) -> None:
    with (run / "generations.jsonl").open("a", encoding="utf-8") as fh:
        for s in steps:
            for k in range(4):
                out = f"<reasoning>step {s}</reasoning><answer>{k}</answer>"
                if s == evil_at and k == 3:
                    out = EVIL
                fh.write(json.dumps({"global_step": s, "question": f"q{k % 2}", "ground_truth_answer": "1",
                                     "model_output": out, "total_reward": float(k == 1),
                                     "rewards": {"correct": float(k == 1), "format": 0.5}}) + "\n")


def _live_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"format": "logscan-run/1", "run_id": "live", "status": "running",
                                              "algorithm": "grpo", "reward_names": ["correct", "format"]}))
    _events(run, range(1, 13))
    _gens(run, range(1, 13), evil_at=12)
    return run


class Pane:
    def __init__(self, name: str, width: int, cmd: list[str]) -> None:
        self.name = name
        # the terminal's own size, not one a parent process left in the environment
        shell = "env -u LINES -u COLUMNS " + " ".join(_quote(c) for c in cmd)
        subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", str(width), "-y", "60", shell], check=True)
        subprocess.run(["tmux", "resize-window", "-t", name, "-x", str(width), "-y", "60"], capture_output=True)

    def text(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True).stdout

    def wait_for(self, needle: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if needle in text:
                return text
            time.sleep(0.2)
        raise AssertionError(f"{needle!r} never appeared; the pane shows:\n{text}")

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def _quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


@pytest.mark.parametrize("width", [80, 200])
@pytest.mark.parametrize("verbose", [False, True])
def test_watch_view_on_a_terminal(tmp_path: Path, width: int, verbose: bool) -> None:
    run = _live_run(tmp_path)
    name = f"logscan-watch-{width}-{int(verbose)}-{tmp_path.name}"[:60]
    cmd = [sys.executable, "-m", "analyzer.cli", "watch", str(run), "--stop-on", "critical", "--interval", "0.2"]
    pane = Pane(name, width, [*cmd, "-v"] if verbose else cmd)
    try:
        pane.wait_for("last step 12")
        text = pane.wait_for("alerts")  # the view is drawn whole: status, metrics, then the alerts
        assert "no alerts" in text or "alerts (" in text
        lines = text.splitlines()
        assert all(len(line) <= width for line in lines)
        assert any(line.lstrip().startswith("reward") for line in lines)  # the compact metrics
        if verbose:
            for title in ("rewards per function", "accuracy and format", "latest completions"):
                assert title in text
            # the hostile completion: its escapes shown as text, its markup not interpreted
            evil = pane.wait_for("\\x1b[31mEVIL")
            assert "\\x07" in evil or "\\x1b]0;pwned" in evil or width == 80  # cut at 80 columns
        assert "pwned" not in subprocess.run(["tmux", "display-message", "-p", "-t", name, "#{pane_title}"],
                                             capture_output=True, text=True).stdout
        # the run grows: the view is redrawn with the new step, in place (one status line)
        _events(run, range(13, 16))
        _gens(run, range(13, 16))
        text = pane.wait_for("last step 15")
        assert text.count("last step") == 1
        # a NaN loss: a critical alert, and the STOP request is written
        _events(run, range(16, 17), nan_at=16)
        text = pane.wait_for("requested stop")
        assert "CRITICAL" in pane.wait_for("CRITICAL")
        assert "nan_values" in (run / "STOP").read_text(encoding="utf-8")
    finally:
        pane.close()


def test_watch_without_a_terminal_prints_one_line_per_refresh(tmp_path: Path) -> None:
    run = _live_run(tmp_path)
    (run / "run.json").write_text(json.dumps({"format": "logscan-run/1", "status": "finished", "algorithm": "grpo"}))
    out = subprocess.run([sys.executable, "-m", "analyzer.cli", "watch", str(run)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == "run finished; watch ends"
    first = lines[0]
    assert "last step 12" in first and "reward 1.2@12" in first and "kl 0.12@12" in first
    assert "\x1b" not in out.stdout  # no colour, no cursor movement: a CI log
