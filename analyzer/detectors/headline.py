"""Honest headlines: every alert says when its problem began, when the evidence first held, and
how far it went by when — in words that cannot be misread ("from step 28 (held from step 30),
rising to 97 % by step 45") — and shows completions from the onset period (docs/detectors.md,
"Honest headlines")."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from analyzer import columns as C

if TYPE_CHECKING:
    import polars as pl

    from analyzer.detectors._common import Excursion
    from analyzer.detectors.base import DetectorContext


def when(exc: Excursion, fmt: Callable[[float], str], *, rising: bool | None = None) -> str:
    """The headline's account of when, in words that cannot be misread: the estimated onset, the
    first step the evidence held, and the extreme with its step — e.g. "from step 28 (held from
    step 30), rising to 97 % by step 45". ``fmt`` formats a value of the curve."""
    up = exc.extreme >= exc.baseline if rising is None else rising
    held = f" (held from step {exc.detect_step})" if exc.detect_step != exc.onset_step else ""
    by = f" by step {exc.extreme_step}" if exc.extreme_step >= 0 else ""
    return f"from step {exc.onset_step}{held}, {'rising' if up else 'falling'} to {fmt(exc.extreme)}{by}"


def onset_period(ctx: DetectorContext, frame: pl.DataFrame, exc: Excursion) -> pl.DataFrame:
    """The rows of a sample-level ``frame`` from the onset period of ``exc``: from its onset to two
    logged steps past the first step its evidence held — the completions that show the problem
    as it began, not the worst ones of the run's end."""
    return onset_rows(frame, exc.onset_step, exc.detect_step)


def onset_rows(frame: pl.DataFrame, onset: int, first: int) -> pl.DataFrame:
    """``onset_period`` from the two steps themselves: the rows from ``onset`` to two logged
    steps past ``first``, the first step the evidence held."""
    import polars as pl

    if frame.height == 0 or C.STEP not in frame.columns:
        return frame
    steps = np.unique(frame[C.STEP].drop_nulls().to_numpy())
    later = steps[steps > first]
    end = int(later[min(1, later.size - 1)]) if later.size else first
    return frame.filter((pl.col(C.STEP) >= onset) & (pl.col(C.STEP) <= end))


def pct(v: float) -> str:
    """A share as a percentage that never rounds 99.5 % up to 100 % nor 0.4 % down to 0 %."""
    p = 100 * float(v)
    return f"{p:.0f} %" if p == round(p) or 1 <= p <= 99 else f"{p:.1f} %"
