"""Plots: the figures that exist are drawn (non-blank, labelled), absent columns skip a figure with
a reason, alert onsets are marked, KL limits come from the alert or the config."""

from __future__ import annotations

import io

import numpy as np
import polars as pl
import pytest
import render_fixture

from analyzer.model import Alert, Analysis, IngestReport, RunData, Severity
from analyzer.report.plots import kl_thresholds, render_plots, write_plots


def _pixels(png: bytes) -> np.ndarray:
    import matplotlib.image as mpimg

    return mpimg.imread(io.BytesIO(png), format="png")


@pytest.fixture(scope="module")
def rendered():
    return render_plots(render_fixture.analysis(), svg=True)


def _analysis(metrics: pl.DataFrame, alerts=(), config=None, algorithm="grpo") -> Analysis:
    run = RunData(
        path="runs/p",
        steps=metrics,
        generations=None,
        report=IngestReport(source_kind="logscan"),
        info={"algorithm": algorithm},
    )
    return Analysis(run=run, metrics=metrics, alerts=list(alerts), config=config or {})


def test_every_figure_is_drawn_and_not_blank(rendered):
    plots, skipped = rendered
    assert [p.name for p in plots] == [
        "reward",
        "quality",
        "kl",
        "length",
        "entropy",
        "losses",
        "mechanics",
    ]
    assert skipped == []
    for p in plots:
        assert p.png.startswith(b"\x89PNG")
        img = _pixels(p.png)
        assert img.shape[0] >= 250 and img.shape[1] >= 700, (p.name, img.shape)
        assert float(img[..., :3].var()) > 1e-3, p.name  # something was drawn


def test_figures_report_their_columns_and_alert_marks(rendered):
    plots = {p.name: p for p in rendered[0]}
    assert plots["kl"].alerts == ("kl_explosion",)
    assert set(plots["reward"].alerts) == {"reward_hacking", "length_hacking"}
    assert plots["entropy"].alerts == ()
    assert (
        "gen_reward/correctness_mean" in plots["reward"].columns
        and "reward" in plots["reward"].columns
    )
    assert plots["length"].columns == ("completion_length", "gen_accuracy")
    assert {"clip_fraction", "grad_norm", "learning_rate", "gen_frac_zero_spread_groups"} <= set(
        plots["mechanics"].columns
    )


def test_svg_is_written_without_a_date(rendered, tmp_path):
    plots, _ = rendered
    paths = write_plots(plots, tmp_path)
    assert sorted(p.name for p in paths if p.suffix == ".svg") == sorted(
        f"{p.name}.svg" for p in plots
    )
    svg = (tmp_path / "kl.svg").read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<?xml") and "<dc:date>" not in svg


def test_absent_columns_skip_figures_with_a_reason():
    metrics = pl.DataFrame(
        {
            "step": pl.Series(range(20), dtype=pl.Int64),
            "kl": [0.01 * i for i in range(20)],
            "loss": [None] * 20,
        }
    )
    plots, skipped = render_plots(_analysis(metrics.with_columns(pl.col("loss").cast(pl.Float64))))
    assert [p.name for p in plots] == ["kl"]
    reasons = {s.name: s.reason for s in skipped}
    assert set(reasons) == {"reward", "quality", "length", "entropy", "losses", "mechanics"}
    assert reasons["losses"] == "no loss, policy_loss or value_loss column"


def test_no_metrics_at_all():
    plots, skipped = render_plots(_analysis(pl.DataFrame({"step": pl.Series([], dtype=pl.Int64)})))
    assert plots == [] and skipped[0].reason == "no per-step metrics"


def test_single_point_and_nan_series_still_draw():
    metrics = pl.DataFrame(
        {"step": pl.Series([3], dtype=pl.Int64), "reward": [float("nan")], "entropy": [0.7]}
    )
    plots, _ = render_plots(_analysis(metrics))
    assert [p.name for p in plots] == ["entropy"]


def test_kl_limits_prefer_the_alert_then_the_config():
    metrics = pl.DataFrame({"step": pl.Series(range(10), dtype=pl.Int64), "kl": [0.1] * 10})
    cfg = {
        "kl_explosion": {
            "unit": "auto",
            "budget_per_token": 0.5,
            "budget_per_sequence": 20.0,
            "critical_factor": 4.0,
        }
    }
    assert kl_thresholds(_analysis(metrics, config=cfg)) == [
        ("budget per token", 0.5),
        ("critical level", 2.0),
    ]
    ppo = kl_thresholds(_analysis(metrics, config=cfg, algorithm="ppo"))
    assert ppo == [("budget per sequence", 20.0), ("critical level", 80.0)]
    fired = Alert(
        "kl_explosion",
        Severity.WARNING,
        4,
        "m",
        {"unit": "token", "budget": 0.05, "critical_level": 0.2},
    )
    assert kl_thresholds(_analysis(metrics, [fired], cfg)) == [
        ("budget per token", 0.05),
        ("critical level", 0.2),
    ]
    assert kl_thresholds(_analysis(metrics, config={"kl_explosion.budget": 0.3})) == [
        ("budget", 0.3)
    ]
    assert kl_thresholds(_analysis(metrics)) == []


def test_legends_sit_below_the_axes_and_alerts_are_labelled_on_the_lines():
    """Legends never cover data (they sit under the axes) and alert onsets are named by text at the
    line, not by one legend entry per alert."""
    import matplotlib.pyplot as plt

    from analyzer.report.plots import FIGURES, _alerts_for

    analysis = render_fixture.analysis()
    kinds = {al.kind for al in analysis.alerts}
    with_legend = labelled = 0
    for name, _title, draw in FIGURES:
        result = draw(analysis)
        if isinstance(result, str):
            continue
        fig = result[0]
        try:
            fig.tight_layout()
            fig.canvas.draw()
            renderer = fig.canvas.get_renderer()
            for ax in fig.axes:
                legend = ax.get_legend()
                if legend is not None and ax.get_visible():
                    with_legend += 1
                    assert legend.get_window_extent(renderer).y1 <= ax.bbox.y0 + 1
                    assert not any("@" in t.get_text() for t in legend.get_texts())
                marks = [t for t in ax.texts if t.get_text().split(" ")[-1] in kinds]
                if not marks or not ax.get_visible():
                    continue
                labelled += 1
                from matplotlib.text import Text

                boxes = [Text.get_window_extent(t, renderer) for t in marks]  # the text, not its leader
                # in the strip above the axes, under the panel's title, never over the data
                assert all(b.y0 >= ax.bbox.y1 for b in boxes)
                title = ax._left_title.get_window_extent(renderer)
                assert all(b.y1 <= title.y0 + 1 for b in boxes)
                for i, a in enumerate(boxes):  # no two labels overlap
                    for b in boxes[i + 1 :]:
                        assert a.x1 <= b.x0 + 1 or b.x1 <= a.x0 + 1 or a.y1 <= b.y0 + 1 or b.y1 <= a.y0 + 1
                # a leader, straight up from its line, crosses no label below its own
                for t, box in zip(marks, boxes, strict=True):
                    line_x = ax.transData.transform((float(t.get_text().split(" ", 1)[0]), 0))[0]
                    for other in boxes:
                        if other.y1 <= box.y0 + 1 and other is not box:
                            assert not other.x0 + 1 < line_x < other.x1 - 1, t.get_text()
                # every onset line is named exactly once, by its step
                steps = sorted({float(al.step) for al in _alerts_for(analysis, name) if al.step is not None})
                named = sorted(float(t.get_text().split(" ", 1)[0]) for t in marks)
                assert named == steps
        finally:
            plt.close(fig)
    assert with_legend >= 3
    assert labelled >= 1


def test_close_alert_onsets_each_get_their_own_label():
    """Onsets one step apart (a first-time user saw the line at step 33 without a label)."""
    import dataclasses

    import matplotlib.pyplot as plt

    from analyzer.report.plots import _draw_quality

    analysis = render_fixture.analysis()
    analysis.alerts[:] = [
        Alert("semantic_drift", Severity.INFO, 32, "m", {}),
        Alert("reward_hacking", Severity.CRITICAL, 33, "m", {}),
        Alert("mode_collapse", Severity.WARNING, 33, "m", {}),
        Alert("repetition", Severity.WARNING, 34, "m", {}),
    ]
    result = _draw_quality(dataclasses.replace(analysis))
    assert not isinstance(result, str)
    fig = result[0]
    try:
        for ax in fig.axes:
            if not ax.get_visible() or not ax.lines:
                continue
            texts = sorted(t.get_text() for t in ax.texts if t.get_text()[:1].isdigit())
            assert texts == ["32 semantic_drift", "33 reward_hacking, mode_collapse", "34 repetition"]
    finally:
        plt.close(fig)


def test_alert_labels_near_the_right_edge_sit_under_no_leader():
    """A long label at the last steps once went left of its line, under the leaders of the
    onsets just before it."""
    import dataclasses

    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    from analyzer.report.plots import _draw_quality

    analysis = render_fixture.analysis()
    last = render_fixture.STEPS - 1
    analysis.alerts[:] = [
        Alert("repetition", Severity.WARNING, last - 4, "m", {}),
        Alert("catastrophic_forgetting", Severity.WARNING, last - 1, "m", {}),
    ]
    result = _draw_quality(dataclasses.replace(analysis))
    assert not isinstance(result, str)
    fig = result[0]
    try:
        fig.tight_layout()
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in (a for a in fig.axes if a.get_visible() and a.lines):
            marks = [t for t in ax.texts if t.get_text()[:1].isdigit()]
            assert len(marks) == 2
            for t in marks:
                line_x = ax.transData.transform((float(t.get_text().split(" ", 1)[0]), 0))[0]
                box = Text.get_window_extent(t, renderer)
                assert box.x0 >= line_x - 1  # right of its own line
                for other in marks:
                    b = Text.get_window_extent(other, renderer)
                    if other is not t and b.y1 <= box.y0 + 1:
                        assert not b.x0 + 1 < line_x < b.x1 - 1
    finally:
        plt.close(fig)


def test_mechanics_draws_zero_spread_groups_once_with_both_lines():
    import matplotlib.pyplot as plt

    from analyzer import columns as C
    from analyzer.report.plots import _draw_mechanics, label

    analysis = render_fixture.analysis()
    metrics = analysis.metrics
    assert C.GEN_ZERO_SPREAD_GROUPS in metrics.columns
    analysis.metrics = metrics.with_columns(metrics[C.GEN_ZERO_SPREAD_GROUPS].alias(C.FRAC_REWARD_ZERO_STD))
    result = _draw_mechanics(analysis)
    assert not isinstance(result, str)
    fig, columns, _kinds = result
    try:
        assert C.FRAC_REWARD_ZERO_STD in columns
        titles = [ax.get_title(loc="left") for ax in fig.axes if ax.get_visible()]
        assert label(C.GEN_ZERO_SPREAD_GROUPS).capitalize() in titles
        assert label(C.FRAC_REWARD_ZERO_STD).capitalize() not in titles
    finally:
        plt.close(fig)


def test_similarity_is_not_labelled_diversity():
    from analyzer.report.plots import label

    for col in ("drift_diversity_group", "drift_diversity_step"):
        assert "similarity" in label(col) and "less diverse" in label(col)


def test_kl_limits_without_an_alert_are_the_ones_the_detector_publishes(monkeypatch):
    """The plot never works the budget out itself: it asks the KL detector's module."""
    from analyzer.detectors import kl

    metrics = pl.DataFrame({"step": pl.Series(range(10), dtype=pl.Int64), "kl": [0.1] * 10})
    cfg = {"kl_explosion": {"budget_per_token": 0.5}}  # the rest from the detector's defaults
    analysis = _analysis(metrics, config=cfg)
    from analyzer.detectors.base import REGISTRY

    unit, budget, critical = kl.kl_limits(analysis.run, {**REGISTRY["kl_explosion"].defaults, **cfg["kl_explosion"]})
    assert kl_thresholds(analysis) == [(f"budget per {unit}", budget), ("critical level", critical)]
    monkeypatch.setattr(kl, "kl_limits", lambda run, section: ("sequence", 7.0, 21.0))
    assert kl_thresholds(analysis) == [("budget per sequence", 7.0), ("critical level", 21.0)]


def test_each_figure_is_drawn_once_per_format(monkeypatch):
    """tight_layout measures the figure; savefig then draws it once — no second layout pass."""
    from matplotlib.figure import Figure

    draws = 0
    real = Figure.draw

    def counting(self, renderer):
        nonlocal draws
        draws += 1
        return real(self, renderer)

    monkeypatch.setattr(Figure, "draw", counting)
    plots, _ = render_plots(render_fixture.analysis())
    assert plots and draws == len(plots)
    draws = 0
    plots, _ = render_plots(render_fixture.analysis(), svg=True)
    assert draws == 2 * len(plots)  # PNG and SVG
