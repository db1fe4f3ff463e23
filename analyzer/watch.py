"""``logscan watch``: a live terminal view of a run that is still being written.

Each refresh reads only what the run appended since the last one and recomputes the metrics of
the steps it touched (``analyzer.live.LiveRun``: the result equals a from-scratch analysis), then
runs the detectors — drift, the expensive stage, is skipped — and draws the view: the rich views
of ``analyzer.report.watch_live`` on a terminal, one line per refresh otherwise. With ``stop_on``
it asks the run to stop through ``trainer_hooks.request_stop`` (the STOP file the training loop
polls) the first time an alert at or above that severity fires.

Two things keep it light on the machine that trains: a refresh whose run files have not changed
(same names, sizes and modification times) reads nothing; and the wait between refreshes is never
shorter than the last refresh took, so a refresh never runs back to back with the previous one
(the first refresh, which reads the whole run once, excepted: the view then follows the run at
the interval instead of waiting as long as that read took).
"""

from __future__ import annotations

import datetime as _dt
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analyzer.errors import InputError
from analyzer.model import Analysis
from analyzer.report.watch_view import snapshot_text

if TYPE_CHECKING:
    from analyzer.live import LiveRun

FINISHED_STATUSES = ("finished", "crashed")


def run_fingerprint(path: Path) -> tuple[tuple[str, int, int], ...]:
    """Name, size and modification time of every file of the run (logscan's own output folder
    and the STOP file excluded): equal fingerprints mean nothing new was written."""
    if path.is_file():
        files = [path]
    else:
        files = [p for p in path.rglob("*") if p.is_file() and "logscan" not in p.relative_to(path).parts[:1]]
    out = []
    for p in files:
        if p.name == "STOP":
            continue
        try:
            st = p.stat()
        except OSError:  # removed while we looked
            continue
        out.append((str(p), st.st_size, st.st_mtime_ns))
    return tuple(sorted(out))


def snapshot(live: LiveRun) -> Analysis:
    """One refresh: what was appended since the last one, read and analysed (analyzer.live)."""
    return live.refresh()


def watch_run(
    path: str | Path,
    *,
    interval: float = 0.5,
    once: bool = False,
    stop_on: str | None = None,
    echo: Callable[[str], Any] = print,
    stop_event: threading.Event | None = None,
    display: Callable[[Analysis, float], Any] | None = None,
) -> int:
    """Refresh every ``interval`` seconds until the run finishes, Ctrl-C, ``once`` or ``stop_event``.

    ``display(analysis, seconds the refresh took)`` draws each refresh (the rich view on a
    terminal, analyzer.report.watch_live); without it each refresh is one line through ``echo``
    (``once``: the snapshot's block). Returns 0 (the exit code): watching is not judging;
    ``logscan analyze`` is the CI gate.
    """
    from analyzer.live import LiveRun
    from analyzer.report.watch_live import plain_line
    from analyzer.verdict import alerts_at_or_above

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist; give the run folder the training process writes to")
    live = LiveRun(path)
    waiter = stop_event or threading.Event()
    stop_requested = False
    seen: tuple[tuple[str, int, int], ...] | None = None
    took = pause = 0.0
    try:
        while True:
            fingerprint = run_fingerprint(path)
            if fingerprint == seen:
                if display is None:
                    now = _dt.datetime.now().strftime("%H:%M:%S")
                    echo(f"[{now}] no new records")
                if waiter.wait(max(interval, pause)):
                    return 0
                continue
            started = time.perf_counter()
            analysis = snapshot(live)
            took = time.perf_counter() - started
            # the first refresh reads the whole run once; what keeps watch light is the cost of
            # the refreshes after it, so only those stretch the wait
            pause = took if seen is not None else 0.0
            seen = fingerprint
            if display is not None:
                display(analysis, took)
            else:
                echo(snapshot_text(analysis) if once else plain_line(analysis, took))
            if stop_on and not stop_requested:
                hits = alerts_at_or_above(analysis, stop_on)
                if hits:
                    stop_requested = True
                    echo(request_stop(path, hits[0]))
            if once:
                return 0
            if analysis.run.info.get("status") in FINISHED_STATUSES:
                echo(f"run {analysis.run.info.get('status')}; watch ends")
                return 0
            if waiter.wait(max(interval, pause)):
                return 0
    except KeyboardInterrupt:
        echo("watch: interrupted")
        return 0


def request_stop(path: Path, alert: Any) -> str:
    """Write the STOP file through trainer_hooks (imported here: the analyzer does not need it otherwise)."""
    from trainer_hooks import request_stop as _request_stop

    run_dir = path if path.is_dir() else path.parent
    at = f" at step {alert.step}" if alert.step is not None else ""
    reason = f"logscan watch: {alert.severity.value} {alert.kind}{at}: {alert.message}"
    _request_stop(run_dir, reason)
    return f"requested stop: wrote {run_dir / 'STOP'} ({reason})"
