"""A run analysed as it grows (``logscan watch``): each refresh costs what was appended.

:class:`LiveRun` keeps, between refreshes, what the last one computed: the completion files' rows
(an in-memory :class:`~analyzer.ingest.tail.TailCache`: only appended bytes are parsed), the
completion-feature frame and the per-step ``gen_*`` metrics. A refresh

1. reads the run through the cache (the small files — run.json, events, trainer_state.json — whole);
2. computes the features of the new completions only, when the completions read before are
   unchanged (every completion file only grew, their keys — step, rank, split, sample id, group,
   reward, time, output length — are the same row for row) and the run's conventions (tags, where
   answers are read from: ``analyzer.features.learn_conventions``) did not change;
3. recomputes the ``gen_*`` metrics of the steps the new completions belong to only, when no other
   step can change (the split's lowest and highest reward, which the zero-spread shares compare to,
   are the same; no split or reward column appeared);
4. runs the detectors on the updated per-step metrics; on a run of more than
   ``FULL_DETECTORS_MAX`` completions the two that read the completions' text (mode_collapse,
   coherence_loss) are left to ``logscan analyze`` and say so.

Steps 2 and 3 are :class:`analyzer.incremental.StepMetrics`, which ``logscan analyze`` keeps in
its analysis state. Anything that does not hold is computed over the whole run instead, and
``LiveRun.last_full`` says why: the result of every refresh is what a from-scratch computation
gives (tests/test_live.py checks it against ``compute_metrics``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analyzer.model import Analysis

if TYPE_CHECKING:
    from analyzer.model import FailOn

# Up to this many completions, a refresh runs every detector (those that read the completions'
# text too: mode_collapse, coherence_loss); above, the detectors on the per-step metrics only — the
# text checks cost O(completions) per refresh (~3 s on a million) and run in ``logscan analyze``.
FULL_DETECTORS_MAX = 100_000
WATCH_SKIPS = f"reads the completions' text: run by logscan analyze (watch does above {FULL_DETECTORS_MAX:,} completions)"


class LiveRun:
    """``refresh()`` → the run's :class:`Analysis` now (no drift, nothing written)."""

    def __init__(self, path: str | Path, *, config: dict[str, Any] | None = None, fail_on: FailOn | None = None) -> None:
        from analyzer.incremental import StepMetrics
        from analyzer.ingest.tail import TailCache
        from analyzer.pipeline import AnalyzeOptions, _load_config, completion_options
        from analyzer.verdict import resolve_fail_on

        self.path = Path(path)
        self.config = config if config is not None else _load_config(self.path, AnalyzeOptions())
        self.fail_on = fail_on or resolve_fail_on(None, self.config)
        self.cache = TailCache()
        self.steps = StepMetrics(*completion_options(self.config))
        self.timings: dict[str, float] = {}

    @property
    def last_full(self) -> str | None:
        """Why the last refresh computed the features and metrics over the whole run (None: the new
        completions only)."""
        return self.steps.last_full

    def refresh(self) -> Analysis:
        from analyzer.coverage import coverage_of
        from analyzer.detectors import run_detectors
        from analyzer.ingest import load_run
        from analyzer.ingest.tail import active
        from analyzer.pipeline import n_steps
        from analyzer.verdict import min_steps, sort_alerts, verdict_for

        t0 = time.perf_counter()
        self.cache.events.clear()
        full_before = self.cache.full_files
        with active(self.cache):
            run = load_run(self.path)
        t1 = time.perf_counter()
        metrics, features = self.steps.compute(run, files_rewritten=self.cache.full_files > full_before)
        t2 = time.perf_counter()
        from analyzer.model import RunData

        n = 0 if run.generations is None else run.generations.height
        if n <= FULL_DETECTORS_MAX:  # small enough: every detector, the completions' text included
            alerts, statuses = run_detectors(run, metrics, None, self.config, features=features, carried=self.steps.carried)
        else:  # the detectors on the per-step metrics: the run without its completion frame
            scalars = RunData(run.path, run.steps, None, run.report, run.info)
            alerts, statuses = run_detectors(scalars, metrics, None, self.config)
            statuses = [
                s if s.ran or not (s.reason or "").startswith("needs completions") else type(s)(name=s.name, ran=False, reason=WATCH_SKIPS)
                for s in statuses
            ]
        t3 = time.perf_counter()
        analysis = Analysis(
            run=run, metrics=metrics, alerts=sort_alerts(alerts), detectors=statuses, drift=None,
            config=self.config, verdict="healthy", fail_on=self.fail_on,
            timings={"ingest": t1 - t0, "metrics": t2 - t1, "detectors": t3 - t2}, notes=[],
        )
        analysis.verdict = verdict_for(
            analysis.alerts, n_steps(metrics), min_steps=min_steps(self.config), limited=coverage_of(analysis).limited
        )
        self.timings = analysis.timings
        return analysis


__all__ = ["FULL_DETECTORS_MAX", "WATCH_SKIPS", "LiveRun"]
