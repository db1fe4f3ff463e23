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

Anything that does not hold is computed over the whole run instead, and ``LiveRun.last_full``
says why: the result of every refresh is what a from-scratch computation gives
(tests/test_live.py checks it against ``compute_metrics``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analyzer import columns as C
from analyzer.model import Analysis

if TYPE_CHECKING:
    import polars as pl

    from analyzer.features import CompletionFeatures, Conventions
    from analyzer.model import FailOn

# the completion keys compared row for row between refreshes (a cheap hash of each row)
_KEYS = (C.STEP, C.RANK, C.SPLIT, C.SAMPLE_ID, C.GROUP_ID, C.TOTAL_REWARD, C.TIMESTAMP)
_OUT_LEN = "__out_bytes"
# Up to this many completions, a refresh runs every detector (those that read the completions'
# text too: mode_collapse, coherence_loss); above, the detectors on the per-step metrics only — the
# text checks cost O(completions) per refresh (~3 s on a million) and run in ``logscan analyze``.
FULL_DETECTORS_MAX = 100_000
WATCH_SKIPS = f"reads the completions' text: run by logscan analyze (watch does above {FULL_DETECTORS_MAX:,} completions)"


@dataclass(slots=True)
class _Prev:
    height: int
    hashes: pl.Series
    conventions: Conventions | None
    features: CompletionFeatures
    gen_metrics: pl.DataFrame
    split_range: dict[str, tuple[float | None, float | None]]


def _row_hashes(gens: pl.DataFrame) -> pl.Series:
    import polars as pl

    cols = [c for c in _KEYS if c in gens.columns]
    frame = gens.select(*cols, pl.col(C.OUTPUT).str.len_bytes().alias(_OUT_LEN))
    return frame.hash_rows(seed=7)


def _owned(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` in buffers of its own (an Arrow IPC round trip: O(its rows))."""
    import io

    import polars as pl

    buf = io.BytesIO()
    frame.write_ipc(buf, compression="uncompressed")
    buf.seek(0)
    return pl.read_ipc(buf)


def _split_range(rows: pl.DataFrame) -> dict[str, tuple[float | None, float | None]]:
    """Per split, the lowest and highest finite reward (what ``metrics._zero_spread`` compares to)."""
    import polars as pl

    from analyzer.features import REWARD

    finite = pl.when(pl.col(REWARD).is_finite()).then(pl.col(REWARD))
    got = rows.group_by(C.SPLIT).agg(finite.min().alias("lo"), finite.max().alias("hi"))
    return {s: (lo, hi) for s, lo, hi in got.iter_rows()}


def _widened(
    old: dict[str, tuple[float | None, float | None]], new: dict[str, tuple[float | None, float | None]]
) -> dict[str, tuple[float | None, float | None]]:
    """The per-split ranges of two sets of rows together (``_split_range`` of their union)."""
    out = dict(old)
    for split, (lo, hi) in new.items():
        if split not in out:
            out[split] = (lo, hi)
            continue
        old_lo, old_hi = out[split]
        out[split] = (
            lo if old_lo is None else old_lo if lo is None else min(old_lo, lo),
            hi if old_hi is None else old_hi if hi is None else max(old_hi, hi),
        )
    return out


class LiveRun:
    """``refresh()`` → the run's :class:`Analysis` now (no drift, nothing written)."""

    def __init__(self, path: str | Path, *, config: dict[str, Any] | None = None, fail_on: FailOn | None = None) -> None:
        from analyzer.ingest.tail import TailCache
        from analyzer.pipeline import AnalyzeOptions, _load_config
        from analyzer.verdict import resolve_fail_on

        self.path = Path(path)
        self.config = config if config is not None else _load_config(self.path, AnalyzeOptions())
        self.fail_on = fail_on or resolve_fail_on(None, self.config)
        self.cache = TailCache()
        self._prev: _Prev | None = None
        self.last_full: str | None = None  # why the last refresh computed features/metrics in full
        self.timings: dict[str, float] = {}

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
        metrics = self._metrics(run, files_rewritten=self.cache.full_files > full_before)
        t2 = time.perf_counter()
        from analyzer.model import RunData

        n = 0 if run.generations is None else run.generations.height
        if n <= FULL_DETECTORS_MAX:  # small enough: every detector, the completions' text included
            features = self._prev.features if self._prev is not None else None
            alerts, statuses = run_detectors(run, metrics, None, self.config, features=features)
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

    # --- features and metrics ----------------------------------------------------------------
    def _metrics(self, run: Any, *, files_rewritten: bool) -> pl.DataFrame:
        import polars as pl

        from analyzer.features import (
            CompletionFeatures,
            build_features,
            completion_features,
            learn_conventions,
        )
        from analyzer.metrics import compute_metrics, generation_metrics, joined_with_steps
        from analyzer.pipeline import completion_options

        tags, pattern = completion_options(self.config)
        gens = run.generations
        if gens is None or gens.height == 0 or C.STEP not in gens.columns:
            self._prev = None
            return compute_metrics(run, tags=tags, answer_pattern=pattern)
        hashes = _row_hashes(gens)
        prev = self._prev
        why = self._why_full(prev, gens, hashes, files_rewritten)
        conv = learn_conventions(gens, tags=tags, answer_pattern=pattern)
        if why is None and prev is not None and conv != prev.conventions:
            why = "the run's conventions (tags, where answers are read from) changed"
        if why is not None or prev is None:
            self.last_full = why or "first refresh"
            features = build_features(run, tags=tags, answer_pattern=pattern)
            assert features is not None
            rows = features.frame.filter(pl.col(C.STEP).is_not_null())
            gen_part = generation_metrics(gens, tags=tags, rows=rows)  # as compute_metrics does
            self._prev = _Prev(gens.height, hashes, conv, features, gen_part, _split_range(rows))
            return joined_with_steps(run, gen_part)
        assert prev is not None
        # the new rows copied out: a slice would keep the whole run's buffers of this refresh alive
        # in the feature frame, and a long watch would hold one copy of the run per refresh
        new = _owned(gens.slice(prev.height))
        new_rows = completion_features(new, tags=tags, conventions=conv) if new.height else None
        frame = prev.features.frame if new_rows is None else pl.concat([prev.features.frame, new_rows], how="vertical_relaxed")
        if frame.n_chunks() > 64:  # one chunk per refresh adds up in a long watch
            frame = frame.rechunk()
        features = CompletionFeatures(tags, frame, conv, pattern)
        gen_part = prev.gen_metrics
        split_range = prev.split_range
        if new_rows is not None and new_rows.height:
            touched = new_rows.get_column(C.STEP).drop_nulls().unique()
            rows = frame.filter(pl.col(C.STEP).is_in(touched.implode()))
            # the run's range is the earlier rows' range widened by the new rows': no scan of the run
            split_range = _widened(prev.split_range, _split_range(new_rows.filter(pl.col(C.STEP).is_not_null())))
            redo = generation_metrics(gens.filter(pl.col(C.STEP).is_in(touched.implode())), tags=tags, rows=rows)
            if split_range != prev.split_range or not set(redo.columns) <= set(prev.gen_metrics.columns):
                self.last_full = "a split, a reward column or a split's reward range is new"
                self._prev = None
                return self._metrics(run, files_rewritten=True)
            kept = prev.gen_metrics.filter(~pl.col(C.STEP).is_in(touched.implode()))
            redo = redo.select([pl.col(c) if c in redo.columns else pl.lit(None).alias(c) for c in prev.gen_metrics.columns])
            gen_part = pl.concat([kept, redo.cast(dict(prev.gen_metrics.schema))], how="vertical").sort(C.STEP)  # type: ignore[arg-type]
        self.last_full = None
        self._prev = _Prev(gens.height, hashes, conv, features, gen_part, split_range)
        return joined_with_steps(run, gen_part)

    @staticmethod
    def _why_full(prev: _Prev | None, gens: pl.DataFrame, hashes: pl.Series, files_rewritten: bool) -> str | None:
        if prev is None:
            return None
        if files_rewritten:
            return "a completion file was read in full (see the ingest notes)"
        if gens.height < prev.height:
            return "fewer completions than before"
        if not hashes.head(prev.height).equals(prev.hashes):
            return "completions read before changed or moved (a resume, or rows of another rank sorted in)"
        return None


__all__ = ["FULL_DETECTORS_MAX", "WATCH_SKIPS", "LiveRun"]
