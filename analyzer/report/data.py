"""The analysis as plain data: ``analysis.json`` (format ``logscan-analysis/1``) and the per-metric
summary (first / best / last / trend) the reports show.

Kept apart from ``render`` so the pipeline can write ``analysis.json`` without loading Jinja or
matplotlib. The JSON Schema of the output is ``analyzer/analysis.schema.json``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analyzer import __version__, catalogue
from analyzer import columns as C
from analyzer.values import finite_or_none

if TYPE_CHECKING:
    import polars as pl

    from analyzer.model import Analysis

ANALYSIS_FORMAT = "logscan-analysis/1"
SCHEMA_FILE = "analysis.schema.json"

# The ``[tool.logscan.report]`` config section (read by ``analyzer.report.render``): a user template
# folder searched before the packaged templates, and whether plots are also written as SVG.
# Registered with ``analyzer.config.register_section("report", REPORT_CONFIG_DEFAULTS)`` before
# the config is loaded; kept here because this module is cheap to import.
REPORT_CONFIG_DEFAULTS: dict[str, Any] = {"template_dir": "", "svg": False}

def metric_direction(name: str) -> int:
    """+1 when higher is better, -1 when lower is better, 0 when neither (no "best"): the metric
    catalogue's direction (``analyzer.catalogue.direction_of``)."""
    return int(catalogue.direction_of(name))


def summarize_metrics(metrics: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """``{column: {first, last, min, max, mean, best, trend_slope, n}}`` over the finite values.

    ``trend_slope`` is the least-squares slope per step; ``best`` follows ``metric_direction``.
    Columns with no finite value are left out (the reports list them as absent).
    """
    import numpy as np
    import polars as pl

    if metrics is None or C.STEP not in metrics.columns or metrics.height == 0:
        return {}
    # All columns at once, as one (steps × columns) array: a run can log tens of thousands of
    # metric columns (10,000 reward functions), where a Python pass per column (and reading the
    # frame's schema per column, as this did) took minutes.
    names = [n for n, dtype in metrics.schema.items() if n != C.STEP and dtype.is_numeric()]
    if not names:
        return {}
    steps = metrics.get_column(C.STEP).cast(pl.Float64).to_numpy()
    values = np.asfortranarray(metrics.select(pl.col(names).cast(pl.Float64)).to_numpy())
    mask = np.isfinite(values) & np.isfinite(steps)[:, None]
    n = mask.sum(axis=0)
    kept = np.flatnonzero(n)  # columns with no finite value are left out
    if kept.size == 0:
        return {}
    values, mask, n = values[:, kept], mask[:, kept], n[kept]
    cols = np.arange(kept.size)
    first_i = mask.argmax(axis=0)
    last_i = mask.shape[0] - 1 - mask[::-1].argmax(axis=0)
    y = np.where(mask, values, 0.0)
    x = np.where(mask, steps[:, None], 0.0)
    with np.errstate(all="ignore"):
        y_min = np.where(mask, values, np.inf).min(axis=0)
        y_max = np.where(mask, values, -np.inf).max(axis=0)
        # the mean of values near the float maximum, scaled so that their sum does not overflow
        scale = np.maximum(np.abs(y_min), np.abs(y_max))
        scale[scale == 0] = 1.0
        mean = (y / scale).sum(axis=0) / n * scale
        x_span = np.where(mask, steps[:, None], -np.inf).max(axis=0) - np.where(mask, steps[:, None], np.inf).min(axis=0)
        xc = np.where(mask, x - x.sum(axis=0) / n, 0.0)
        yc = np.where(mask, y - y.sum(axis=0) / n, 0.0)
        slope = (xc * yc).sum(axis=0) / (xc * xc).sum(axis=0)
    has_slope = (n >= 2) & (x_span > 0)
    rows = zip(
        [names[i] for i in kept],
        values[first_i, cols].tolist(), values[last_i, cols].tolist(), y_min.tolist(), y_max.tolist(),
        mean.tolist(), np.where(has_slope, slope, np.nan).tolist(), n.tolist(),
        steps[first_i].tolist(), steps[last_i].tolist(),
        strict=True,
    )
    out: dict[str, dict[str, Any]] = {}
    for name, first, last, lo, hi, avg, trend, count, first_step, last_step in rows:
        direction = metric_direction(name)
        out[name] = {
            "first": first,
            "last": last,
            "min": lo,
            "max": hi,
            "mean": avg,
            "best": hi if direction > 0 else lo if direction < 0 else None,
            "trend_slope": finite_or_none(trend),
            "n": count,
            "first_step": int(first_step),
            "last_step": int(last_step),
        }
    return out


def run_summary(analysis: Analysis) -> dict[str, Any]:
    """Steps, completions and completions per split."""
    metrics = analysis.metrics
    steps_frame = (
        metrics if metrics is not None and C.STEP in metrics.columns else analysis.run.steps
    )
    steps: list[int] = []
    if steps_frame is not None and C.STEP in steps_frame.columns:
        steps = [int(s) for s in steps_frame.get_column(C.STEP).drop_nulls().to_list()]
    gens = analysis.run.generations
    splits: dict[str, int] = {}
    if gens is not None and gens.height:  # split is complete (analyzer.model.completion_keys)
        counts = gens.get_column(C.SPLIT).value_counts(sort=True)
        splits = {str(row[0]): int(row[1]) for row in counts.iter_rows()}
    return {
        "steps": len(steps),
        "first_step": min(steps) if steps else None,
        "last_step": max(steps) if steps else None,
        "completions": int(gens.height) if gens is not None else 0,
        "splits": splits,
        "answers": answer_summary(analysis),
    }


def answer_summary(analysis: Analysis) -> dict[str, Any] | None:
    """How the recomputed accuracy was read and how far it reaches: the run's answer and format
    conventions and the coverage of ``gen_accuracy`` (``gen_answer_coverage``: share of the train
    completions with a ground truth whose answer could be read) — mean over steps, lowest with its
    step, first and last. None for a run without completions."""
    import polars as pl

    conv = analysis.conventions
    m = analysis.metrics
    cov: dict[str, Any] = {}
    if m is not None and C.GEN_ANSWER_COVERAGE in m.columns and C.STEP in m.columns:
        f = m.select(C.STEP, pl.col(C.GEN_ANSWER_COVERAGE).cast(pl.Float64)).drop_nulls()
        f = f.filter(pl.col(C.GEN_ANSWER_COVERAGE).is_finite()).sort(C.STEP)
        if f.height:
            v = f.get_column(C.GEN_ANSWER_COVERAGE)
            low = int(v.arg_min() or 0)
            cov = {
                "coverage": float(v.mean()),  # type: ignore[arg-type]
                "coverage_first": float(v[0]),
                "coverage_last": float(v[-1]),
                "coverage_min": float(v[low]),
                "coverage_min_step": int(f.get_column(C.STEP)[low]),
            }
    if conv is None and not cov:
        return None
    return {"conventions": conv, **cov}


def coverage_note(answers: Mapping[str, Any] | None) -> str | None:
    """The caveat shown wherever the recomputed accuracy is: ``"answers read from 62 % of the
    completions with a ground truth (lowest 6 % at step 30)"``; None when there is no coverage."""
    if not answers or answers.get("coverage") is None:
        return None
    note = f"answers read from {answers['coverage']:.0%} of the completions with a ground truth"
    if answers["coverage_min"] < answers["coverage"] - 0.05:
        note += f" (lowest {answers['coverage_min']:.0%} at step {answers['coverage_min_step']})"
    return note


def jsonable(obj: Any) -> Any:
    """Plain JSON values: non-finite floats → null, numpy scalars → Python, paths → str."""
    if isinstance(obj, Enum):
        return jsonable(obj.value)
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return jsonable(dataclasses.asdict(obj))
    if hasattr(obj, "item"):  # numpy scalar
        return jsonable(obj.item())
    if hasattr(obj, "tolist"):  # numpy array
        return jsonable(obj.tolist())
    return str(obj)


def run_info(analysis: Analysis) -> dict[str, Any]:
    info = analysis.run.info or {}
    return {
        "path": str(analysis.run.path),
        "source_kind": analysis.run.report.source_kind,
        "run_id": info.get("run_id"),
        "algorithm": info.get("algorithm"),
        "model": info.get("model"),
        "status": info.get("status"),
        "reward_names": list(analysis.run.reward_names),
        "world_size": info.get("world_size"),
        "config": info.get("config") or {},
    }


def drift_to_dict(analysis: Analysis) -> dict[str, Any] | None:
    drift = analysis.drift
    if drift is None:
        return None
    return {
        "method": drift.method,
        "model": drift.model,
        "embedded": drift.embedded,
        "cached": drift.cached,
        "sampled_from": drift.sampled_from,
        "top_drifting": list(drift.top_drifting),
        "outliers": list(drift.outliers),
        "sample_diffs": [dataclasses.asdict(d) for d in drift.sample_diffs],
        "notes": list(drift.notes),
    }


def analysis_to_dict(
    analysis: Analysis,
    *,
    generated_at: str | None = None,
    metrics_summary: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The whole analysis as ``analysis.json`` holds it (validated by ``analysis.schema.json``).

    ``metrics_summary`` is ``summarize_metrics(analysis.metrics)`` when the caller already has it
    (the pipeline computes it once for the reports and ``analysis.json``: on a run with 50,000
    metric columns it takes about a second)."""
    if generated_at is None:
        generated_at = (
            _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        )
    data = {
        "format": ANALYSIS_FORMAT,
        "logscan_version": __version__,
        "generated_at": generated_at,
        "run": run_info(analysis),
        "ingest": analysis.run.report.to_dict(),
        "verdict": analysis.verdict,
        "summary": run_summary(analysis),
        "metrics": {},  # below
        "alerts": [a.to_dict() for a in analysis.alerts],
        "detectors": [
            {"name": d.name, "ran": d.ran, "reason": d.reason, "alerts": d.alerts}
            for d in analysis.detectors
        ],
        "drift": drift_to_dict(analysis),
        "coverage": _coverage(analysis),
        # the effective config, plus the resolved fail_on at top level
        "config": {**analysis.config, "fail_on": analysis.fail_on},
        "timings": analysis.timings,
    }
    result: dict[str, Any] = jsonable(data)
    # plain JSON values already (finite floats, ints, None; see summarize_metrics): a wide run has
    # hundreds of thousands of them, not worth walking again
    result["metrics"] = (
        summarize_metrics(analysis.metrics) if metrics_summary is None else metrics_summary
    )
    return result


def _coverage(analysis: Analysis) -> dict[str, Any]:
    from analyzer.coverage import coverage_of

    return coverage_of(analysis).to_dict()


def load_schema() -> dict[str, Any]:
    """The JSON Schema of ``analysis.json``, read from the installed package."""
    import json
    from importlib import resources

    text = resources.files("analyzer").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
