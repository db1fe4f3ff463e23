"""analysis.json's metric summary: first/last/best/trend per column, JSON-safe."""

from __future__ import annotations

import math

import polars as pl
import pytest

from analyzer import columns as C
from analyzer.report.data import metric_direction, summarize_metrics


def test_summarize_metrics() -> None:
    m = pl.DataFrame(
        {
            C.STEP: [0, 1, 2, 3],
            C.LOSS: [4.0, 3.0, float("nan"), 1.0],
            C.GEN_ACCURACY: [0.1, 0.5, 0.3, None],
            C.KL: [0.0, 0.1, 0.2, 0.3],
            "all_null": pl.Series([None, None, None, None], dtype=pl.Float64),
        }
    )
    s = summarize_metrics(m)
    assert s[C.LOSS]["first"] == 4.0 and s[C.LOSS]["last"] == 1.0 and s[C.LOSS]["n"] == 3
    assert (s[C.LOSS]["first_step"], s[C.LOSS]["last_step"]) == (0, 3)
    assert s[C.LOSS]["best"] == 1.0  # lower is better
    assert s[C.GEN_ACCURACY]["best"] == 0.5  # higher is better
    assert s[C.KL]["best"] is None  # no "better" direction
    assert s[C.KL]["trend_slope"] == pytest.approx(0.1)
    assert s[C.LOSS]["trend_slope"] == pytest.approx(-1.0)  # least squares over (0,4) (1,3) (3,1)
    assert "all_null" not in s  # no finite value: the reports list it as absent
    for col in s.values():
        for v in col.values():
            assert v is None or isinstance(v, int) or math.isfinite(v)


def test_direction_strips_split_prefixes() -> None:
    assert metric_direction("eval/gen_accuracy") == 1
    assert metric_direction("probe/loss") == -1
    assert metric_direction("gen_reward/correctness_mean") == 1
    assert metric_direction("reward/correctness/std") == 0
    assert metric_direction("kl") == 0
