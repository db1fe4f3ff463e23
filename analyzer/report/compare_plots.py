"""matplotlib figures of ``logscan compare``: one figure per key metric, every run drawn on the
same axes in its own colour (the same colour in every figure), the baseline thicker and first.

Each figure is rendered to PNG bytes (``analyzer.report.plots.Plot``), written beside
compare.md and inlined in compare.html. matplotlib is imported inside the function.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from analyzer.catalogue import BY_NAME, label_of
from analyzer.report.escape import excerpt
from analyzer.report.plots import PALETTE, Plot, ema_smooth, finite_series, lay_out, style_axes

LEGEND_NAME = 34  # characters of a run's name in a legend


@dataclass(frozen=True, slots=True)
class Curve:
    """One run as the figures draw it."""

    name: str
    color: str
    metrics: object  # the run's metrics frame (polars.DataFrame)
    baseline: bool = False


def run_color(position: int) -> str:
    """The colour of the ``position``-th run drawn (the same in every figure and in the tables)."""
    return PALETTE[position % len(PALETTE)]


def render_compare_plots(curves: Sequence[Curve], columns: Sequence[str], *, dpi: int = 100) -> list[Plot]:
    """One figure per column that at least one run has; a column no run has is not drawn."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plots: list[Plot] = []
    with matplotlib.rc_context({"font.size": 9, "axes.titleweight": "bold", "figure.dpi": dpi}):
        for column in columns:
            series = [(c, xy) for c in curves if (xy := finite_series(c.metrics, column)) is not None]  # type: ignore[arg-type]
            if not series:
                continue
            fig, ax = plt.subplots(figsize=(7.6, 3.4))
            try:
                for curve, (x, y) in sorted(series, key=lambda s: not s[0].baseline):
                    name = excerpt(curve.name, LEGEND_NAME) + (" (baseline)" if curve.baseline else "")
                    width = 2.6 if curve.baseline else 1.6
                    z = 3 if curve.baseline else 2
                    if len(y) == 1:
                        ax.plot(x, y, "o", color=curve.color, label=name, zorder=z)
                    elif len(y) > 40:  # noisy: a faint raw line under the smoothed one
                        ax.plot(x, y, color=curve.color, alpha=0.18, linewidth=0.7, zorder=z)
                        ax.plot(x, ema_smooth(y), color=curve.color, linewidth=width, label=name, zorder=z)
                    else:
                        ax.plot(x, y, color=curve.color, linewidth=width, label=name, zorder=z,
                                marker="o" if len(y) <= 25 else None, markersize=3)
                smoothed = any(len(xy[1]) > 40 for _, xy in series)
                missing = len(curves) - len(series)
                title = label_of(column) + (" — smoothed, raw values faint" if smoothed else "")
                entry = BY_NAME.get(column)
                style_axes(ax, title, entry.unit if entry is not None and entry.unit else column)
                if missing:
                    ax.text(1.0, 1.01, f"not logged by {missing} run(s)", transform=ax.transAxes,
                            ha="right", va="bottom", fontsize=7.5, color="#5f6b7a")
                ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                          handlelength=1.8, borderaxespad=0.0)
                lay_out(fig)
                buf = io.BytesIO()
                fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
            except (ValueError, OverflowError):  # values matplotlib cannot scale (e.g. ~1e308)
                continue
            finally:
                plt.close(fig)
            name = "compare-" + column.replace("/", "-")
            plots.append(Plot(name, label_of(column), buf.getvalue(), None, (column,)))
    return plots
