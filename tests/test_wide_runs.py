"""Runs with thousands of metric columns (a reward function per rubric item, per test case…):
the analysis is linear in the number of columns and its numbers are the per-column ones. The
timing itself is measured by benchmarks/wide/bench_wide.py, never asserted here."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from analyzer.pipeline import WIDE_PARQUET_COLUMNS, AnalyzeOptions, analyze, write_parquet
from analyzer.report.data import summarize_metrics


def _reference_summary(metrics: pl.DataFrame) -> dict[str, dict[str, object]]:
    """One column at a time, the obvious way: what summarize_metrics must agree with."""
    out: dict[str, dict[str, object]] = {}
    steps = metrics["step"].cast(pl.Float64).to_numpy()
    with np.errstate(all="ignore"):  # values near the float maximum
        return _reference_columns(metrics, steps, out)


def _reference_columns(metrics: pl.DataFrame, steps: np.ndarray, out: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    from analyzer.report.data import finite_or_none, metric_direction

    for name, dtype in metrics.schema.items():
        if name == "step" or not dtype.is_numeric():
            continue
        values = metrics[name].cast(pl.Float64).to_numpy()
        mask = np.isfinite(values) & np.isfinite(steps)
        if not mask.any():
            continue
        x, y = steps[mask], values[mask]
        slope = None
        if len(y) >= 2 and np.ptp(x) > 0:
            xc = x - x.mean()
            slope = float((xc * (y - y.mean())).sum() / (xc * xc).sum())
        d = metric_direction(name)
        scale = float(np.max(np.abs(y))) or 1.0
        out[name] = {
            "first": float(y[0]), "last": float(y[-1]), "min": float(y.min()), "max": float(y.max()),
            "mean": float(np.mean(y / scale) * scale), "best": float(y.max()) if d > 0 else float(y.min()) if d < 0 else None,
            "trend_slope": finite_or_none(slope), "n": len(y), "first_step": int(x[0]), "last_step": int(x[-1]),
        }
    return out


def test_summary_of_all_columns_at_once_is_the_per_column_summary() -> None:
    rng = np.random.default_rng(7)
    n = 25
    data: dict[str, object] = {"step": pl.Series([s if s % 9 else None for s in range(1, n + 1)], dtype=pl.Int64)}
    for j in range(40):
        v = rng.normal(size=n) * 10.0 ** rng.integers(-3, 300)
        r = rng.random(n)
        v[r < 0.2], v[(r >= 0.2) & (r < 0.25)] = np.nan, np.inf
        data[f"reward/c{j}"] = v
    data["all_nan"] = np.full(n, np.nan)
    data["one_point"] = np.where(np.arange(n) == 4, 2.5, np.nan)
    data["near_max"] = np.full(n, 1.7e308)
    data["loss"] = pl.Series(rng.integers(0, 5, n))
    data["flag"] = pl.Series([True] * n)
    data["text"] = pl.Series(["a"] * n)
    metrics = pl.DataFrame(data)
    got, want = summarize_metrics(metrics), _reference_summary(metrics)
    assert got.keys() == want.keys() and "all_nan" not in got and "flag" not in got
    for name, fields in want.items():
        for field, value in fields.items():
            if isinstance(value, float):
                assert got[name][field] == pytest.approx(value, rel=1e-9), (name, field)
            else:
                assert got[name][field] == value, (name, field)
    assert got["one_point"]["trend_slope"] is None and got["near_max"]["mean"] == pytest.approx(1.7e308)


@pytest.mark.slow
def test_a_run_with_2000_reward_columns_is_analyzed_whole(tmp_path: Path) -> None:
    n_cols, rnd = 2000, random.Random(0)
    with (tmp_path / "generations.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["global_step", "question", "model_output", "total_reward", *(f"r{i}_reward" for i in range(n_cols))])
        for step in range(1, 31):
            for k in range(4):
                # r0 climbs with the step, the rest is noise
                w.writerow([step, f"q{k}", "<answer>1</answer>", 1.0, step / 30, *(rnd.random() for _ in range(n_cols - 1))])
    out = tmp_path / "out"
    analysis = analyze(tmp_path, AnalyzeOptions(output_dir=out, no_embeddings=True))
    assert len(analysis.run.reward_names) == n_cols
    data = json.loads((out / "analysis.json").read_text())
    assert all(f"gen_reward/r{i}_mean" in data["metrics"] for i in range(n_cols))
    r0 = data["metrics"]["gen_reward/r0_mean"]
    assert (r0["first"], r0["last"], r0["n"]) == (pytest.approx(1 / 30), pytest.approx(1.0), 30)
    assert r0["trend_slope"] == pytest.approx(1 / 30)
    reward_plot = next(p for p in analysis.outputs if p.endswith("reward.png"))
    assert Path(reward_plot).stat().st_size > 0
    # every column is in analysis.json, one line per metric; the reports show the ones that moved
    text = (out / "analysis.json").read_text()
    assert '\n    "gen_reward/r0_mean": {"first": ' in text
    md = (out / "report.md").read_text()
    assert "`gen_reward/r0_mean`" in md and "… and 1988 more reward functions that moved less" in md
    assert len(md.encode()) < 65536  # still fits a PR comment
    html = (out / "report.html").read_text()
    assert f"All {len(data['metrics'])} metrics (the first 1000 here; every one is in analysis.json)" in html
    # the summary computed once for the reports is the one analysis.json holds; metrics.parquet
    # (written by pyarrow: > WIDE_PARQUET_COLUMNS columns) reads back as the analysis' frame
    assert data["metrics"] == json.loads(json.dumps(summarize_metrics(analysis.metrics)))
    assert_frame_equal(pl.read_parquet(out / "metrics.parquet"), analysis.metrics)


@pytest.mark.parametrize("width", [3, WIDE_PARQUET_COLUMNS + 5])
def test_a_wide_frame_written_by_pyarrow_reads_back_as_written_by_polars(tmp_path: Path, width: int) -> None:
    rnd = np.random.default_rng(0)
    columns: dict[str, object] = {"step": pl.Series(range(1, 31), dtype=pl.Int64)}
    for i in range(width):
        values = rnd.normal(size=30)
        values[i % 30] = np.nan
        columns[f"gen_reward/r{i}_mean"] = values
    columns["with_nulls"] = pl.Series([None if i % 3 else float(i) for i in range(30)], dtype=pl.Float64)
    columns["count"] = pl.Series([i % 4 for i in range(30)], dtype=pl.UInt32)
    columns["flag"] = [i % 2 == 0 for i in range(30)]
    columns["label"] = [None if i % 5 == 0 else f"é{i}" for i in range(30)]
    frame = pl.DataFrame(columns)
    write_parquet(frame, tmp_path / "ours.parquet")
    frame.write_parquet(tmp_path / "polars.parquet")
    ours = pl.read_parquet(tmp_path / "ours.parquet")
    assert_frame_equal(ours, pl.read_parquet(tmp_path / "polars.parquet"), check_exact=True)
    assert_frame_equal(ours, frame, check_exact=True)
    # a type Parquet alone cannot say (a time zone) still reads back: the Arrow schema is kept then
    zoned = frame.with_columns(
        when=pl.datetime(2026, 12, 7, time_zone="Europe/Paris") + pl.duration(minutes=pl.col("step"))
    )
    write_parquet(zoned, tmp_path / "zoned.parquet")
    assert_frame_equal(pl.read_parquet(tmp_path / "zoned.parquet"), zoned, check_exact=True)


def test_nan_values_names_the_one_bad_column_among_thousands() -> None:
    from analyzer.model import IngestReport, RunData
    from analyzer.pipeline import analyze_run

    n = 20
    cols: dict[str, object] = {"step": pl.Series(range(1, n + 1), dtype=pl.Int64)}
    for i in range(3000):
        cols[f"reward/f{i}"] = np.linspace(0, 1, n)
    cols["reward/f7"] = np.where(np.arange(n) == 12, np.nan, 0.5)  # NaN at step 13
    cols["reward/f9"] = pl.Series([None] * 3 + [0.5] * (n - 3), dtype=pl.Float64)  # missing is not NaN
    cols["reward/f11"] = pl.Series([1, 2] * (n // 2), dtype=pl.Int64)
    run = RunData(path="wide", steps=pl.DataFrame(cols), generations=None, report=IngestReport(source_kind="logscan"), info={})
    analysis = analyze_run(run, AnalyzeOptions(write_outputs=False, drift=False))
    (nan,) = [a for a in analysis.alerts if a.kind == "nan_values"]
    assert list(nan.evidence["columns"]) == ["reward/f7"]
    assert nan.evidence["columns"]["reward/f7"]["steps"] == [13] and nan.step == 13


def test_prefetched_series_equal_the_one_column_read() -> None:
    """DetectorContext.prefetch reads many columns at once; each must equal what ``series`` reads
    alone: nulls, NaN and inf dropped, the steps kept with their values."""
    import numpy as np
    import polars as pl

    from analyzer.detectors.base import DetectorContext, default_config

    metrics = pl.DataFrame(
        {
            "step": [1, 2, 3, 4, 5],
            "reward/a": [0.1, 0.2, 0.3, 0.4, 0.5],
            "reward/b": [None, 0.2, float("nan"), float("inf"), 0.5],
            "reward/c": [1, 2, 3, 4, 5],
            "reward/d": [None, None, None, None, None],
        },
        schema_overrides={"reward/d": pl.Float64},
    )
    general = default_config()["general"]
    fresh = DetectorContext(run=None, metrics=metrics, drift=None, general=general)  # type: ignore[arg-type]
    warm = DetectorContext(run=None, metrics=metrics, drift=None, general=general)  # type: ignore[arg-type]
    warm.prefetch(["reward/a", "reward/b", "reward/c", "reward/d", "missing"])
    for col in ("reward/a", "reward/b", "reward/c", "reward/d", "missing"):
        (x1, y1), (x2, y2) = fresh.series(col), warm.series(col)
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert warm.series("reward/b")[0].tolist() == [2, 5]


def test_reward_components_are_found_once_per_context() -> None:
    """Five detectors ask for the reward components; a run with 10,000 of them paid a pass over
    every column each time. The answer is kept per context, and a caller cannot change it."""
    import polars as pl

    from analyzer.detectors import _common
    from analyzer.detectors.base import DetectorContext, default_config

    metrics = pl.DataFrame(
        {
            "step": [1, 2, 3],
            "reward/correct": [0.1, 0.5, 0.9],
            "gen_reward/correct_mean": [0.2, 0.4, 0.6],  # the logged one wins
            "gen_reward/format_mean": [1.0, 1.0, 0.0],
            "gen_reward/format_std": [0.0, 0.0, 0.0],  # a spread, not a component
            "reward/empty": [None, None, None],  # no finite value: not there
        },
        schema_overrides={"reward/empty": pl.Float64},
    )
    ctx = DetectorContext(run=None, metrics=metrics, drift=None, general=default_config()["general"])  # type: ignore[arg-type]
    first = _common.component_columns(ctx)
    assert first == {"correct": "reward/correct", "format": "gen_reward/format_mean"}
    first["intruder"] = "x"  # the caller's copy
    ctx.metrics = metrics.drop("reward/correct")  # cached per context: the same context answers the same
    assert _common.component_columns(ctx) == {"correct": "reward/correct", "format": "gen_reward/format_mean"}
    other = DetectorContext(run=None, metrics=metrics.drop("reward/correct"), drift=None, general=default_config()["general"])  # type: ignore[arg-type]
    assert _common.component_columns(other) == {"correct": "gen_reward/correct_mean", "format": "gen_reward/format_mean"}
