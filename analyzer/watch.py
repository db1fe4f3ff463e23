"""``logscan watch``: a live terminal view of a run that is still being written.

Every refresh re-ingests the whole run (simple and always consistent with ``logscan analyze``;
Polars keeps it quick), rebuilds the metrics and runs the detectors — drift, the expensive stage,
is skipped — then prints the latest value of the key metrics and the alerts. With ``stop_on`` it
asks the run to stop through ``trainer_hooks.request_stop`` (the STOP file the training loop
polls) the first time an alert at or above that severity fires.
"""

from __future__ import annotations

import datetime as _dt
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from analyzer import columns as C
from analyzer.errors import InputError
from analyzer.model import Analysis
from analyzer.report_data import finite_or_none

WATCHED: tuple[str, ...] = (
    C.REWARD,
    C.GEN_REWARD_MEAN,
    C.GEN_ACCURACY,
    C.GEN_FORMAT_OK,
    C.GEN_LEN_CHARS,
    C.KL,
    C.ENTROPY,
    C.LOSS,
    C.GRAD_NORM,
)
FINISHED_STATUSES = ("finished", "crashed")


def snapshot(path: Path) -> Analysis:
    from analyzer.pipeline import AnalyzeOptions, analyze

    return analyze(path, AnalyzeOptions(write_outputs=False, drift=False))


def snapshot_text(analysis: Analysis) -> str:
    """Latest value (and its step) of the key metrics, then the alerts, worst first."""
    now = _dt.datetime.now().strftime("%H:%M:%S")
    status = analysis.run.info.get("status") or "unknown"
    m = analysis.metrics
    last = str(m.get_column(C.STEP).max()) if C.STEP in m.columns and m.height else None
    lines = [f"[{now}] {analysis.run.path}  status {status}  last step {last}  verdict {analysis.verdict}"]
    for key in WATCHED:
        if key not in m.columns:
            continue
        pairs = [(s, v) for s, v in zip(m.get_column(C.STEP).to_list(), m.get_column(key).to_list(), strict=True) if finite_or_none(v) is not None]
        if pairs:
            step, value = pairs[-1]
            lines.append(f"  {key:24s} {value:>12.4g}  (step {step})")
    if analysis.alerts:
        lines.append("  alerts:")
        for a in analysis.alerts[:8]:
            at = f" @ step {a.step}" if a.step is not None else ""
            lines.append(f"    {a.severity.value.upper():8s} {a.kind}{at}: {a.message}")
    else:
        lines.append("  no alerts")
    return "\n".join(lines)


def watch_run(
    path: str | Path,
    *,
    interval: float = 5.0,
    once: bool = False,
    stop_on: str | None = None,
    echo: Callable[[str], Any] = print,
    stop_event: threading.Event | None = None,
) -> int:
    """Refresh every ``interval`` seconds until the run finishes, Ctrl-C, ``once`` or ``stop_event``.

    Returns 0 (the exit code): watching is not judging; ``logscan analyze`` is the CI gate.
    """
    from analyzer.pipeline import alerts_at_or_above

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist; give the run folder the training process writes to")
    waiter = stop_event or threading.Event()
    stop_requested = False
    try:
        while True:
            analysis = snapshot(path)
            echo(snapshot_text(analysis))
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
            if waiter.wait(interval):
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
