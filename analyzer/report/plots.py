"""matplotlib figures of a run: losses, reward, KL, length vs accuracy, entropy, quality, mechanics.

Each figure is rendered to bytes (PNG, optionally SVG) so the same render serves ``plots/*.png``,
the inline images of ``report.html`` and ``--md-inline-images``. A figure whose columns are absent
is skipped with a reason instead of drawn empty. Alert onsets are vertical lines on the figures
that show the signal the alert read. matplotlib is imported inside the functions (Agg backend),
so importing this module is cheap.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analyzer import columns as C

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
    from matplotlib.axes import Axes

    from analyzer.model import Alert, Analysis


@dataclass(frozen=True, slots=True)
class Plot:
    """One rendered figure. ``columns`` are the metrics it draws; ``alerts`` the kinds marked on it."""

    name: str
    title: str
    png: bytes
    svg: bytes | None
    columns: tuple[str, ...]
    alerts: tuple[str, ...] = ()

    @property
    def filename(self) -> str:
        return f"{self.name}.png"


@dataclass(frozen=True, slots=True)
class SkippedPlot:
    name: str
    reason: str


# Which figures show the signal each alert kind reads: its onset is drawn there.
ALERT_PLOTS: Mapping[str, tuple[str, ...]] = {
    "reward_hacking": ("reward", "quality"),
    "length_hacking": ("length", "reward"),
    "kl_explosion": ("kl",),
    "entropy_collapse": ("entropy",),
    "mode_collapse": ("quality",),
    "reward_std_collapse": ("mechanics", "reward"),
    "repetition": ("quality",),
    "catastrophic_forgetting": ("quality",),
    "semantic_drift": ("quality",),
    "format_regression": ("quality",),
    "truncation": ("length",),
    "nan_values": ("losses", "mechanics"),
    "loss_spike": ("losses", "mechanics"),
    "value_reward_mismatch": ("losses", "mechanics"),
}

SEVERITY_COLORS = {"critical": "#c62828", "warning": "#ef6c00", "info": "#78909c"}
PALETTE = (
    "#1f77b4",
    "#2ca02c",
    "#9467bd",
    "#d62728",
    "#ff7f0e",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
)

# Human labels (with units) of the metric columns the figures draw.
LABELS: Mapping[str, str] = {
    C.LOSS: "total loss",
    C.POLICY_LOSS: "policy loss",
    C.VALUE_LOSS: "value loss",
    C.REWARD: "logged reward",
    C.GEN_REWARD_MEAN: "reward (from completions)",
    C.KL: "KL to reference",
    C.ENTROPY: "entropy",
    C.COMPLETION_LENGTH: "logged completion length (tokens)",
    C.GEN_LEN_TOKENS: "completion length (whitespace tokens)",
    C.GEN_ACCURACY: "exact-match accuracy",
    C.GEN_FORMAT_OK: "format compliance",
    C.CLIP_FRACTION: "clip fraction",
    C.ADVANTAGE_MEAN: "mean advantage",
    C.GRAD_NORM: "grad norm",
    C.LEARNING_RATE: "learning rate",
    C.GEN_ZERO_SPREAD_GROUPS: "groups with zero reward spread",
    C.FRAC_REWARD_ZERO_STD: "logged share of groups with zero reward std",
    C.CLIPPED_RATIO: "completions cut at max length",
    C.REWARD_STD: "logged reward std",
    C.VALUE_EXPLAINED_VARIANCE: "value explained variance",
    C.GEN_REPEAT_NGRAM: "repeated n-gram rate",
    "drift_train_mean": "drift from baseline (train)",
    "drift_eval_mean": "drift from baseline (eval/probe)",
    # Mean pairwise cosine *similarity*: a rise means completions are getting alike.
    "drift_diversity_group": "within-prompt similarity (↑ = less diverse)",
    "drift_diversity_step": "within-step similarity (↑ = less diverse)",
    "drift_outlier_frac": "share of outlier completions",
    "eval/gen_accuracy": "eval accuracy",
    "eval/gen_format_ok": "eval format compliance",
    "probe/gen_accuracy": "probe accuracy",
    "eval/gen_reward_mean": "eval reward",
    "eval/reward": "logged eval reward",
}


def label(column: str) -> str:
    return LABELS.get(column, column)


def finite_series(metrics: pl.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, values) of a column's finite values, or None when it has none."""
    import numpy as np
    import polars as pl

    if metrics is None:
        return None
    # get_column, not ``in metrics.columns`` / ``metrics.schema``: each of those builds the whole
    # list of columns, per plotted column (quadratic on a run with thousands of reward columns)
    steps, values = metrics.get_column(C.STEP, default=None), metrics.get_column(column, default=None)
    if steps is None or values is None or not values.dtype.is_numeric():
        return None
    x = steps.cast(pl.Float64).to_numpy()
    y = values.cast(pl.Float64).to_numpy()
    mask = np.isfinite(x) & np.isfinite(y)
    if not mask.any():
        return None
    return x[mask], y[mask]


def _present(
    metrics: pl.DataFrame, columns: Iterable[str]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{column: (steps, values)}`` of the ``columns`` that have a finite value, in their order."""
    return {c: xy for c in columns if (xy := finite_series(metrics, c)) is not None}


def ema_smooth(y: np.ndarray) -> np.ndarray:
    """Exponential moving average whose span grows with the series length (≈ 1/20 of it)."""
    import numpy as np

    alpha = 2.0 / (max(3, len(y) // 20) + 1)
    out = np.empty_like(y)
    acc = y[0]
    for i, v in enumerate(y):
        acc = alpha * v + (1 - alpha) * acc
        out[i] = acc
    return out


def _line(
    ax: Axes,
    xy: tuple[np.ndarray, np.ndarray],
    name: str,
    color: str,
    *,
    smooth: bool = True,
    **kw: Any,
) -> None:
    """A series as a line; long noisy series get a faint raw line under a smoothed one."""
    x, y = xy
    text = kw.pop("label", None) or label(name)
    if len(y) == 1:
        ax.plot(x, y, "o", color=color, label=text, **kw)
    elif smooth and len(y) > 40:
        ax.plot(x, y, color=color, alpha=0.35, linewidth=0.8)
        ax.plot(x, ema_smooth(y), color=color, linewidth=1.8, label=f"{text}, smoothed", **kw)
    else:
        ax.plot(
            x,
            y,
            color=color,
            linewidth=1.6,
            marker="o" if len(y) <= 25 else None,
            markersize=3,
            label=text,
            **kw,
        )


def _accuracy_label(a: Analysis) -> str:
    """The accuracy line's legend: with its coverage (share of completions whose answer could be
    read, ``gen_answer_coverage``), so an accuracy of 0 from unreadable answers cannot pass for one."""
    s = finite_series(a.metrics, C.GEN_ANSWER_COVERAGE)
    if s is None:
        return label(C.GEN_ACCURACY)
    return f"{label(C.GEN_ACCURACY)} (answers read: {float(s[1].mean()):.0%})"


def style_axes(ax: Axes, title: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=11, loc="left")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3, linewidth=0.6)
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)


def _legend(ax: Axes, extra: Iterable[Any] = ()) -> None:
    """A legend under the axes (below the step label), in as many columns as fit: never on the data.

    A single series needs none (the panel title names it)."""
    from matplotlib.transforms import ScaledTranslation

    handles, labels_ = ax.get_legend_handles_labels()
    for other in extra:
        h, lab = other.get_legend_handles_labels()
        handles += h
        labels_ += lab
    seen: dict[str, Any] = {}
    for h, lab in zip(handles, labels_, strict=False):
        seen.setdefault(lab, h)
    if len(seen) < 2:
        return
    fig: Any = ax.get_figure()
    width_pt = ax.get_position().width * fig.get_figwidth() * 72
    longest = max(len(k) for k in seen)
    ncol = max(1, min(len(seen), int(width_pt // (longest * 4.3 + 22))))
    # Anchored in points below the axes' bottom edge, past the tick labels and the "step" label.
    below = ax.transAxes + ScaledTranslation(0, -30 / 72, fig.dpi_scale_trans)
    ax.legend(
        list(seen.values()),
        list(seen.keys()),
        fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        bbox_transform=below,
        ncol=ncol,
        frameon=False,
        columnspacing=1.2,
        handlelength=2.2,
    )


MARK_FONT = 7.0  # points
MARK_ROW = 9.0  # points between two rows of alert labels in the strip above the axes


def _mark_alerts(axes: Sequence[Axes], alerts: Sequence[Alert]) -> tuple[str, ...]:
    """Dashed vertical lines at each alert's first step, coloured by severity. Every line is named
    once, in a strip above the axes (never over the data): its step and kinds in small text joined
    to the line by a short leader; labels that would collide go to another row of the strip, and
    the panel's title moves up above it (not a legend entry each: a run can raise dozens)."""
    from matplotlib.transforms import blended_transform_factory

    kinds: list[str] = []
    onsets: dict[float, tuple[str, list[str]]] = {}  # step -> (worst colour, kinds)
    for alert in sorted(alerts, key=lambda a: (a.step or 0, -a.severity.rank)):
        if alert.step is None:
            continue
        color = SEVERITY_COLORS.get(alert.severity.value, "#555555")
        entry = onsets.setdefault(float(alert.step), (color, []))
        if alert.kind not in entry[1]:
            entry[1].append(alert.kind)
        if alert.kind not in kinds:
            kinds.append(alert.kind)
    for ax in axes:
        for step, (color, _) in onsets.items():
            ax.axvline(step, color=color, linestyle="--", linewidth=1.1, alpha=0.85, zorder=1)
        if not onsets:
            continue
        lo, hi = ax.get_xlim()
        fig: Any = ax.get_figure()
        width_pt = ax.get_position().width * fig.get_figwidth() * 72
        pt_per_step = width_pt / max(hi - lo, 1e-9)
        trans = blended_transform_factory(ax.transData, ax.transAxes)
        rows: list[list[tuple[float, float]]] = []  # per row of the strip: (left, right) in points
        # Right to left: a label that must go up a row then sits left of the ones below it, so
        # its leader (straight up from its line) crosses no other label.
        for step, (color, ks) in sorted(onsets.items(), reverse=True):
            text = f"{step:g} " + ", ".join(ks)
            width = len(text) * MARK_FONT * 0.58 + 4
            x = (step - lo) * pt_per_step
            # always right of its line (a label set left of it would sit under the leaders of the
            # onsets before it); one that runs past the axes gets room from tight_layout
            left = x
            # the first row with room whose leader, straight up from the line, crosses no label below
            row = next(
                (
                    i
                    for i, taken in enumerate(rows)
                    if all(left >= b + 3 or left + width + 3 <= a for a, b in taken)
                    and not any(a - 1 <= x <= b + 1 for below in rows[:i] for a, b in below)
                ),
                len(rows),
            )
            if row == len(rows):
                rows.append([])
            rows[row].append((left, left + width))
            ax.annotate(
                text,
                xy=(step, 1.0),
                xycoords=trans,
                xytext=(0, 3 + row * MARK_ROW),
                textcoords="offset points",
                ha="left",
                va="bottom",
                fontsize=MARK_FONT,
                color=color,
                annotation_clip=False,
                arrowprops={
                    "arrowstyle": "-",
                    "color": color,
                    "lw": 0.8,
                    "shrinkA": 0,
                    "shrinkB": 0,
                    "relpos": (0.0, 0.0),
                },
            )
        ax.set_title(ax.get_title(loc="left"), fontsize=11, loc="left", pad=6 + len(rows) * MARK_ROW)
    return tuple(kinds)


def _trend(ax: Axes, xy: tuple[np.ndarray, np.ndarray]) -> None:
    import numpy as np

    x, y = xy
    if len(y) < 3 or float(np.ptp(x)) == 0:
        return
    slope, intercept = np.polyfit(x, y, 1)
    span = x.max() - x.min()
    ax.plot(
        [x.min(), x.max()],
        [intercept + slope * x.min(), intercept + slope * x.max()],
        color="#444444",
        linestyle=":",
        linewidth=1.4,
        label=f"trend ({slope * span:+.3g} over run)",
    )


def config_get(config: Mapping[str, Any], dotted: str) -> Any:
    """``config["a"]["b"]`` or ``config["a.b"]``, whichever exists."""
    if dotted in config:
        return config[dotted]
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def kl_thresholds(analysis: Analysis) -> list[tuple[str, float]]:
    """KL limits to draw: from a kl_explosion alert's evidence when one fired (the numbers the
    detector really used), else what the detector publishes for this run and its ``kl_explosion``
    config (``analyzer.detectors.kl.kl_limits``: the budget for the run's KL unit and the critical
    level), or a plain ``budget``. Never worked out here: the plot shows the detector's limits."""
    for al in analysis.alerts:
        if al.kind == "kl_explosion" and isinstance(al.evidence.get("budget"), int | float):
            unit = al.evidence.get("unit")
            out = [(f"budget{f' per {unit}' if unit else ''}", float(al.evidence["budget"]))]
            if isinstance(al.evidence.get("critical_level"), int | float):
                out.append(("critical level", float(al.evidence["critical_level"])))
            return out
    section = config_get(analysis.config, "kl_explosion")
    if not isinstance(section, Mapping):
        section = {
            k.split(".", 1)[1]: v
            for k, v in analysis.config.items()
            if k.startswith("kl_explosion.")
        }

    def number(key: str) -> float | None:
        v = section.get(key)
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        return float(v) if ok else None

    budget = number("budget")
    if budget is not None:
        return [("budget", budget)]
    if number("budget_per_token") is None and number("budget_per_sequence") is None:
        return []
    from analyzer.detectors.base import REGISTRY
    from analyzer.detectors.kl import kl_limits

    try:
        unit, budget, critical = kl_limits(analysis.run, {**REGISTRY["kl_explosion"].defaults, **section})
    except (KeyError, TypeError, ValueError):  # a config the detector itself would refuse
        return []
    return [(f"budget per {unit}", budget), ("critical level", critical)]


# A drawer returns (figure, columns drawn, alert kinds marked), or why it drew nothing.
DrawResult = tuple[Any, tuple[str, ...], tuple[str, ...]] | str


def _figure(ncols: int, *, width: float = 10.0, height: float = 3.8) -> tuple[Any, list[Axes]]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, ncols, figsize=(width if ncols == 1 else max(width, 5.2 * ncols), height), squeeze=False
    )
    return fig, list(axes[0])


def _reward_components(metrics: pl.DataFrame) -> list[str]:
    # reward/<fn> only: TRL also logs reward/<fn>/std, which is a spread, not a component.
    logged = [
        c
        for c in metrics.columns
        if c.startswith(C.REWARD_PREFIX) and "/" not in c[len(C.REWARD_PREFIX) :]
    ]
    rebuilt = [c for c in metrics.columns if c.startswith("gen_reward/") and c.endswith("_mean")]
    # Prefer the rebuilt means (one per function, same scale as the rebuilt total).
    return rebuilt or logged


def _draw_losses(a: Analysis) -> DrawResult:
    cols = _present(a.metrics, (C.LOSS, C.POLICY_LOSS, C.VALUE_LOSS))
    if not cols:
        return "no loss, policy_loss or value_loss column"
    # Value loss is often orders of magnitude above the policy loss: separate panels.
    fig, axes = _figure(len(cols), height=3.4)
    for i, (ax, (col, xy)) in enumerate(zip(axes, cols.items(), strict=True)):
        _line(ax, xy, col, PALETTE[i])
        style_axes(ax, label(col).capitalize(), "loss")
    kinds = _mark_alerts(axes, _alerts_for(a, "losses"))
    for ax in axes:
        _legend(ax)
    return fig, tuple(cols), kinds


# At most this many reward functions get a line in the reward plot.
MAX_REWARD_COMPONENTS = 12


def _draw_reward(a: Analysis) -> DrawResult:
    import numpy as np

    m = a.metrics
    main, xy = next(iter(_present(m, (C.GEN_REWARD_MEAN, C.REWARD)).items()), (None, None))
    comps = _present(m, _reward_components(m))
    if main is None and not comps:
        return "no reward column (logged reward or rebuilt gen_reward_mean)"
    fig, axes = _figure(2 if (main and comps) else 1)
    used: list[str] = []
    if main and xy is not None:
        ax = axes[0]
        p10, p90 = finite_series(m, C.GEN_REWARD_P10), finite_series(m, C.GEN_REWARD_P90)
        if (
            main == C.GEN_REWARD_MEAN
            and p10 is not None
            and p90 is not None
            and len(p10[0]) == len(p90[0])
        ):
            ax.fill_between(
                p10[0], p10[1], p90[1], color=PALETTE[0], alpha=0.12, label="p10–p90 of completions"
            )
        _line(ax, xy, main, PALETTE[0])
        _trend(ax, xy)
        used.append(main)
        other = C.REWARD if main == C.GEN_REWARD_MEAN else None
        if other and (oxy := finite_series(m, other)) is not None:
            _line(ax, oxy, other, PALETTE[4], smooth=False, alpha=0.8)
            used.append(other)
        for j, ev in enumerate(("eval/gen_reward_mean", "eval/reward")):
            if (exy := finite_series(m, ev)) is not None:
                _line(ax, exy, ev, PALETTE[2 + j], smooth=False, linestyle="--")
                used.append(ev)
                break
        style_axes(ax, "Reward per step", "reward")
    title = "Reward per function (mean per step)"
    if len(comps) > MAX_REWARD_COMPONENTS:
        # thousands of lines and legend entries are unreadable, and laying the legend out took
        # minutes: the components that moved most are drawn, the title says how many are not
        widest = sorted(comps, key=lambda c: -float(np.ptp(comps[c][1])))[:MAX_REWARD_COMPONENTS]
        title = f"Reward per function: the {MAX_REWARD_COMPONENTS} of {len(comps):,} that moved most"
        comps = {c: comps[c] for c in comps if c in set(widest)}
    if comps:
        ax = axes[-1]
        for i, (col, cxy) in enumerate(comps.items()):
            name = (
                col[len("gen_reward/") : -len("_mean")]
                if col.startswith("gen_reward/")
                else col[len(C.REWARD_PREFIX) :]
            )
            x, y = cxy
            ax.plot(
                x,
                ema_smooth(y) if len(y) > 40 else y,
                color=PALETTE[(i + 1) % len(PALETTE)],
                linewidth=1.5,
                label=name,
            )
            used.append(col)
        style_axes(ax, title, "reward")
    kinds = _mark_alerts(axes, _alerts_for(a, "reward"))
    for ax in axes:
        _legend(ax)
    return fig, tuple(used), kinds


def _one_panel(
    a: Analysis, columns: Sequence[str], color: str, missing: str
) -> tuple[Any, Axes, str, Any] | str:
    """The first of ``columns`` with a value, drawn as a line on a one-panel figure:
    (figure, its axes, the column, its series); or ``missing`` when none has a value."""
    for column in columns:
        xy = finite_series(a.metrics, column)
        if xy is not None:
            fig, axes = _figure(1)
            _line(axes[0], xy, column, color)
            return fig, axes[0], column, xy
    return missing


def _draw_kl(a: Analysis) -> DrawResult:
    made = _one_panel(a, (C.KL,), "#6a1b9a", "no kl column (TRL logs none when beta = 0)")
    if isinstance(made, str):
        return made
    fig, ax, _, xy = made
    top = float(xy[1].max())
    hidden = []
    limits = kl_thresholds(a)
    for i, (name, value) in enumerate(limits):
        # A limit far above the curve would squash it flat: name it instead of drawing it.
        if value <= max(1.6 * top, 1e-12):
            ax.axhline(
                value,
                color=("#b71c1c", "#4e342e")[i % 2],
                linestyle="-.",
                linewidth=1.2,
                label=f"kl_explosion {name} = {value:g}",
            )
        else:
            hidden.append(f"{name} {value:g}")
    if hidden:
        ax.text(
            0.99,
            0.03,
            "limits above the plotted range: " + ", ".join(hidden),
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=8,
            color="#4e342e",
        )
    unit = next((u for u in ("token", "sequence") if any(u in n for n, _ in limits)), None)
    style_axes(
        ax, "KL divergence to the reference policy", f"KL (nats{f' per {unit}' if unit else ''})"
    )
    kinds = _mark_alerts([ax], _alerts_for(a, "kl"))
    _legend(ax)
    return fig, (C.KL,), kinds


def _draw_length(a: Analysis) -> DrawResult:
    made = _one_panel(
        a,
        (C.COMPLETION_LENGTH, C.GEN_LEN_TOKENS),
        PALETTE[0],
        "no completion_length or gen_length_tokens_mean column",
    )
    if isinstance(made, str):
        return made
    fig, ax, length, _ = made
    used = [length]
    # Shares on a second axis: accuracy (is the extra length buying anything?) and the share cut
    # at the length limit (truncation).
    shares = _present(a.metrics, (C.GEN_ACCURACY, C.CLIPPED_RATIO))
    twins = []
    if shares:
        tw = ax.twinx()
        for (col, sxy), color in zip(shares.items(), (PALETTE[1], PALETTE[3]), strict=False):
            _line(
                tw,
                sxy,
                col,
                color,
                linestyle="-" if col == C.GEN_ACCURACY else "--",
                label=_accuracy_label(a) if col == C.GEN_ACCURACY else None,
            )
        tw.set_ylabel("share of completions")
        tw.set_ylim(-0.02, 1.02)
        tw.spines["top"].set_visible(False)
        twins.append(tw)
        used += list(shares)
    title = "Completion length" + (" and accuracy" if C.GEN_ACCURACY in shares else "")
    if C.CLIPPED_RATIO in shares:
        title += (", " if C.GEN_ACCURACY in shares else " and ") + "truncation"
    style_axes(ax, title, "tokens per completion")
    kinds = _mark_alerts([ax], _alerts_for(a, "length"))
    _legend(ax, twins)
    return fig, tuple(used), kinds


def _draw_entropy(a: Analysis) -> DrawResult:
    made = _one_panel(a, (C.ENTROPY,), PALETTE[2], "no entropy column")
    if isinstance(made, str):
        return made
    fig, ax, _, _ = made
    style_axes(ax, "Policy entropy", "entropy (nats per token)")
    kinds = _mark_alerts([ax], _alerts_for(a, "entropy"))
    _legend(ax)
    return fig, (C.ENTROPY,), kinds


QUALITY_SHARES = (
    C.GEN_ACCURACY,
    "eval/gen_accuracy",
    "probe/gen_accuracy",
    C.GEN_FORMAT_OK,
    "eval/gen_format_ok",
)
QUALITY_DRIFT = (
    "drift_train_mean",
    "drift_eval_mean",
    "drift_diversity_group",
    "drift_diversity_step",
    "drift_outlier_frac",
    C.GEN_REPEAT_NGRAM,
)


def _draw_quality(a: Analysis) -> DrawResult:
    m = a.metrics
    shares = _present(m, QUALITY_SHARES)
    drift = _present(m, QUALITY_DRIFT)
    if not shares and not drift:
        return "no accuracy, format, diversity or drift column"
    fig, axes = _figure(int(bool(shares)) + int(bool(drift)))
    i = 0
    if shares:
        ax = axes[i]
        for j, (col, xy) in enumerate(shares.items()):
            _line(
                ax,
                xy,
                col,
                PALETTE[j],
                linestyle="--" if col.startswith(("eval/", "probe/")) else "-",
                label=_accuracy_label(a) if col == C.GEN_ACCURACY else None,
            )
        ax.set_ylim(-0.03, 1.03)
        style_axes(ax, "Accuracy and format compliance", "share of completions")
        i += 1
    if drift:
        ax = axes[i]
        for j, (col, xy) in enumerate(drift.items()):
            _line(ax, xy, col, PALETTE[(j + 3) % len(PALETTE)])
        style_axes(ax, "Drift, similarity and repetition", "cosine distance / similarity / share")
    kinds = _mark_alerts(axes, _alerts_for(a, "quality"))
    for ax in axes:
        _legend(ax)
    return fig, (*shares, *drift), kinds


MECHANICS = (
    C.CLIP_FRACTION,
    C.ADVANTAGE_MEAN,
    C.GRAD_NORM,
    C.LEARNING_RATE,
    C.GEN_ZERO_SPREAD_GROUPS,
    C.FRAC_REWARD_ZERO_STD,
    C.CLIPPED_RATIO,
    C.VALUE_EXPLAINED_VARIANCE,
)
_MECH_UNITS = {
    C.CLIP_FRACTION: "share of tokens",
    C.ADVANTAGE_MEAN: "advantage",
    C.GRAD_NORM: "L2 norm",
    C.LEARNING_RATE: "learning rate",
    C.GEN_ZERO_SPREAD_GROUPS: "share of groups",
    C.FRAC_REWARD_ZERO_STD: "share of groups",
    C.CLIPPED_RATIO: "share of completions",
    C.VALUE_EXPLAINED_VARIANCE: "explained variance",
}


def _draw_mechanics(a: Analysis) -> DrawResult:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    cols = _present(a.metrics, MECHANICS)
    if not cols:
        return "no clip fraction, advantage, grad norm, learning rate or zero-spread column"
    # The share of zero-spread groups rebuilt from the completions and the one the trainer logged
    # measure the same thing: one panel, both lines.
    logged_zero_spread = cols.pop(C.FRAC_REWARD_ZERO_STD, None) if C.GEN_ZERO_SPREAD_GROUPS in cols else None
    ncols = min(3, len(cols))
    nrows = math.ceil(len(cols) / ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.0 * nrows), squeeze=False)
    axes = [ax for row in grid for ax in row]
    for i, (col, xy) in enumerate(cols.items()):
        ax = axes[i]
        _line(ax, xy, col, PALETTE[i % len(PALETTE)])
        style_axes(ax, label(col).capitalize(), _MECH_UNITS.get(col, col))
        if col == C.GEN_ZERO_SPREAD_GROUPS and logged_zero_spread is not None:
            _line(ax, logged_zero_spread, C.FRAC_REWARD_ZERO_STD, PALETTE[(i + 1) % len(PALETTE)])
            _legend(ax)
        if float(xy[1].max()) == float(xy[1].min()):
            # A flat line alone looks like a rendering bug: say that the value never moved.
            ax.text(
                0.5,
                0.62,
                f"constant {xy[1][0]:g} at every logged step",
                transform=ax.transAxes,
                ha="center",
                fontsize=8,
                color="#555555",
            )
        if col == C.LEARNING_RATE:
            # Tick labels like 2.0e-05 instead of an offset text that collides with the title.
            from matplotlib.ticker import FuncFormatter

            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.1e}"))
    for ax in axes[len(cols) :]:
        ax.set_visible(False)
    used = axes[: len(cols)]
    kinds = _mark_alerts(used, _alerts_for(a, "mechanics"))
    fig.suptitle("Optimisation mechanics", fontsize=12, x=0.01, ha="left")
    drawn = (*cols, C.FRAC_REWARD_ZERO_STD) if logged_zero_spread is not None else tuple(cols)
    return fig, drawn, kinds


def _alerts_for(a: Analysis, plot: str) -> list[Alert]:
    return [al for al in a.alerts if plot in ALERT_PLOTS.get(al.kind, ())]


# (name, title, drawer) in report order.
FIGURES: tuple[tuple[str, str, Callable[[Analysis], DrawResult]], ...] = (
    ("reward", "Reward", _draw_reward),
    ("quality", "Quality: accuracy, format, diversity, drift", _draw_quality),
    ("kl", "KL divergence", _draw_kl),
    ("length", "Completion length, accuracy and truncation", _draw_length),
    ("entropy", "Entropy", _draw_entropy),
    ("losses", "Losses", _draw_losses),
    ("mechanics", "Optimisation mechanics", _draw_mechanics),
)


def lay_out(fig: Any) -> None:
    """``tight_layout``, once: left with the placeholder layout engine that leaves behind, savefig
    would draw the figure once more to lay it out again (~15 % of the time plots take; the same bytes)."""
    fig.tight_layout()
    fig.set_layout_engine(None)


def render_plots(
    analysis: Analysis, *, svg: bool = False, dpi: int = 100
) -> tuple[list[Plot], list[SkippedPlot]]:
    """Draw every figure whose columns exist; returns the rendered plots and the skipped ones."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plots: list[Plot] = []
    skipped: list[SkippedPlot] = []
    if (
        analysis.metrics is None
        or C.STEP not in analysis.metrics.columns
        or analysis.metrics.height == 0
    ):
        return [], [SkippedPlot("all", "no per-step metrics")]
    with matplotlib.rc_context({"font.size": 9, "axes.titleweight": "bold", "figure.dpi": dpi}):
        for name, title, draw in FIGURES:
            try:
                result = draw(analysis)
            except (ValueError, OverflowError) as exc:  # values matplotlib cannot scale (e.g. ~1e308)
                skipped.append(SkippedPlot(name, f"could not draw: {exc}"))
                continue
            if isinstance(result, str):
                skipped.append(SkippedPlot(name, result))
                continue
            fig, cols, kinds = result
            try:
                # Room for the legends under the axes, so the plots keep their height.
                rows = [
                    math.ceil(len(lg.get_texts()) / max(1, getattr(lg, "_ncols", 1)))
                    for ax in fig.axes
                    if (lg := ax.get_legend()) is not None
                ]
                if rows:
                    w, h = fig.get_size_inches()
                    fig.set_size_inches(w, h + 0.18 * max(rows) + 0.1)
                lay_out(fig)
                buf = io.BytesIO()
                fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
                svg_bytes = None
                if svg:
                    sbuf = io.BytesIO()
                    # No date / random ids in the SVG: stable output for golden files and caches.
                    fig.savefig(sbuf, format="svg", metadata={"Date": None, "Creator": None})
                    svg_bytes = sbuf.getvalue()
            except (ValueError, OverflowError) as exc:  # values matplotlib cannot scale (e.g. ~1e308)
                skipped.append(SkippedPlot(name, f"could not draw: {exc}"))
                continue
            finally:
                plt.close(fig)
            plots.append(Plot(name, title, buf.getvalue(), svg_bytes, cols, kinds))
    return plots, skipped


def write_plots(plots: Sequence[Plot], out_dir: Path) -> list[Path]:
    """Write ``<name>.png`` (and ``.svg`` when rendered) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for plot in plots:
        path = out_dir / plot.filename
        path.write_bytes(plot.png)
        written.append(path)
        if plot.svg is not None:
            spath = out_dir / f"{plot.name}.svg"
            spath.write_bytes(plot.svg)
            written.append(spath)
    return written
