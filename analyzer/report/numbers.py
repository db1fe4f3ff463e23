"""The one number formatter of every view (reports, terminal summary, compare, watch, samples)."""

from __future__ import annotations

import math
from typing import Any


def fmt(value: Any, digits: int = 4) -> str:
    """A number for humans: ints with thousands separators, floats with ``digits`` significant digits."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value != 0 and (abs(value) >= 10**digits or abs(value) < 10 ** -(digits - 1)):
            return f"{value:.{digits - 1}g}" if abs(value) < 10**digits else f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def fmt_signed(value: Any, digits: int = 3) -> str:
    if value is None or not isinstance(value, int | float):
        return "—"
    return ("+" if value > 0 else "") + fmt(float(value), digits)


def fmt_fixed(value: Any, decimals: int = 2) -> str:
    """A number with a fixed count of decimals (rewards side by side: ``1.00``, ``0.50``); ``–`` for none."""
    if value is None:
        return "–"
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(f):
        return "NaN"
    return f"{f:.{decimals}f}"
