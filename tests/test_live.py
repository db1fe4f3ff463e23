"""``logscan watch``'s engine (analyzer.live.LiveRun): each refresh reads only what was appended and
recomputes the metrics of the steps it touched, and gives what a from-scratch computation gives —
the metrics frame, the alerts of the detectors on the per-step metrics and the verdict — over
random append splits, resumes, torn tails and malformed lines."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_incremental import COMPARISONS, RUNS, append_in_cuts, jsonl_run, run_files

from analyzer.detectors import run_detectors
from analyzer.errors import InputError
from analyzer.features import build_features
from analyzer.ingest import load_run
from analyzer.live import LiveRun
from analyzer.metrics import compute_metrics
from analyzer.verdict import sort_alerts


def _scratch(path: Path, config: dict) -> tuple:
    run = load_run(path)
    features = build_features(run)
    metrics = compute_metrics(run, features=features)
    alerts, _ = run_detectors(run, metrics, None, config, features=features)
    return metrics, sort_alerts(alerts)


def _check(live: LiveRun, run: Path) -> None:
    try:
        ref_metrics, ref_alerts = _scratch(run, live.config)
    except InputError:
        with pytest.raises(InputError):
            live.refresh()
        return
    got = live.refresh()
    assert got.metrics.equals(ref_metrics), (live.last_full, got.metrics, ref_metrics)
    assert [a.to_dict() for a in got.alerts] == [a.to_dict() for a in ref_alerts]


@COMPARISONS
@given(**RUNS, cuts=st.lists(st.integers(1, 99), min_size=1, max_size=5))
def test_live_refresh_equals_from_scratch(tmp_path_factory: pytest.TempPathFactory, recs: list[dict], fmt: str, cuts: list[int], bad: set[int]) -> None:
    run = tmp_path_factory.mktemp("live") / "run"
    run.mkdir()
    files = run_files(recs, fmt, bad)
    live = LiveRun(run, config={})
    for _ in append_in_cuts(run, files, sorted(cuts), min_bytes=0):
        if any((run / n).stat().st_size for n in files):
            _check(live, run)


def test_appends_recompute_only_the_touched_steps(tmp_path: Path) -> None:
    run, recs, data, half = jsonl_run(tmp_path, 40)
    (run / "generations.jsonl").write_bytes(data[:half])
    live = LiveRun(run, config={})
    _check(live, run)
    assert live.last_full == "first computation"
    with (run / "generations.jsonl").open("ab") as fh:
        fh.write(data[half:])
    _check(live, run)
    assert live.last_full is None  # the new completions only
    new_rows = len(recs) - data[:half].count(b"\n")
    assert live.cache.events == [f"generations.jsonl: {len(data) - half:,} new bytes read, {new_rows:,} new rows"]


@given(
    st.lists(st.tuples(st.sampled_from(["train", "eval"]), st.sampled_from([0.0, 1.0, -2.5, 3.0, float("nan"), float("inf"), None])), max_size=12),
    st.integers(min_value=0, max_value=12),
)
def test_split_ranges_widen_as_of_the_whole(rows: list, cut: int) -> None:
    """A refresh widens the earlier rows' per-split reward range by the new rows' (no scan of the
    run): the result is the range of all the rows."""
    import polars as pl

    from analyzer import columns as C
    from analyzer.features import REWARD
    from analyzer.incremental import split_range as _split_range
    from analyzer.incremental import widened as _widened

    frame = pl.DataFrame({C.SPLIT: [s for s, _ in rows], REWARD: [r for _, r in rows]}, schema={C.SPLIT: pl.String, REWARD: pl.Float64})
    before, after = frame.head(cut), frame.slice(cut)
    assert _widened(_split_range(before), _split_range(after)) == _split_range(frame)
