"""The detector registry and the context every detector reads from.

A detector is a plain function ``fn(ctx, cfg) -> list[Alert]`` registered with ``@register``:
built-ins register exactly the way a third-party plugin would. ``cfg`` is the detector's own
config table (its defaults merged with the user's ``[tool.logscan.<name>]``). A detector whose
inputs are absent raises ``Skip(reason)`` — it is then reported as skipped, never as healthy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from analyzer import columns as C
from analyzer.model import Alert, DetectorStatus, DriftResult, RunData, Severity
from analyzer.verdict import alert_order

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

    from analyzer.features import CompletionFeatures

DetectorFn = Callable[["DetectorContext", dict[str, Any]], list[Alert]]

# Settings every detector shares, under ``[tool.logscan.general]``.
GENERAL_DEFAULTS: dict[str, Any] = {
    # Nothing fires on the first max(warmup_min_points, warmup_fraction × points) logged points:
    # they are the baseline the rest of the run is judged against.
    "warmup_fraction": 0.1,
    "warmup_min_points": 5,
    # Trend detectors need at least this many logged steps; shorter runs are "too short to judge".
    "min_steps": 10,
    # One severity policy for spikes (loss_spike, kl_explosion): an event back to its level within
    # this many logged points is transient (warning); one still elevated is sustained (critical) ...
    "spike_recover_points": 3,
    # ... and this many separate transient events are repeated (critical).
    "spike_repeats": 5,
    # At most this many sample ids are attached to an alert's evidence.
    "max_sample_ids": 5,
    # XML-ish tags that delimit the reasoning and the answer in a completion. A run that does not
    # use them is read with its own tags (learned from its prompts and completions: analyzer.features).
    "tags": ["reasoning", "answer"],
    # A regular expression whose capture group (the one named "answer", else the first) is a
    # completion's answer; the last match counts. Empty: the run's own conventions (analyzer.features).
    "answer_pattern": "",
}


class Skip(Exception):
    """Raised by a detector whose inputs are absent; the message is the reason shown to users."""


@dataclass(frozen=True, slots=True)
class DetectorSpec:
    """One registered detector: what it reads, its config defaults, and the function."""

    name: str
    kind: str
    fn: DetectorFn
    signals: str  # the signal it reads and why, one or two sentences (shown by `logscan detectors`)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()  # human-readable inputs, e.g. ("kl",) or ("completions",)
    severity: str = ""  # the severity rules, one line
    # Kinds of run (``analyzer.coverage.KINDS``) this detector is a core check of, beyond the
    # built-in table: e.g. ("preference",) for a DPO/ORPO check, which lets such runs be healthy.
    core_for: tuple[str, ...] = ()

    @property
    def summary(self) -> str:
        """The first line of the detector function's docstring (what it finds)."""
        doc = (self.fn.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


REGISTRY: dict[str, DetectorSpec] = {}


def register(
    name: str,
    *,
    kind: str | None = None,
    signals: str,
    defaults: Mapping[str, Any] | None = None,
    requires: Iterable[str] = (),
    severity: str = "",
    core_for: Iterable[str] = (),
) -> Callable[[DetectorFn], DetectorFn]:
    """Register ``fn`` as detector ``name`` (alerts of ``kind``, default: the name).

    ``core_for`` names the kinds of run it is a core check of (docs/detectors.md, "What was
    checked"), in addition to the built-in table of ``analyzer.coverage``.

    Every detector gets an ``enabled`` switch in addition to ``defaults``. Registering a name
    twice replaces the earlier detector (a plugin may override a built-in).
    """

    def deco(fn: DetectorFn) -> DetectorFn:
        merged = {"enabled": True, **dict(defaults or {})}
        REGISTRY[name] = DetectorSpec(
            name=name,
            kind=kind or name,
            fn=fn,
            signals=signals,
            defaults=merged,
            requires=tuple(requires),
            severity=severity,
            core_for=tuple(core_for),
        )
        return fn

    return deco


def default_config() -> dict[str, dict[str, Any]]:
    """Built-in defaults: ``{"general": {...}, "<detector>": {...}, ...}`` (fresh copies)."""
    out: dict[str, dict[str, Any]] = {"general": copy_section(GENERAL_DEFAULTS)}
    for name, spec in REGISTRY.items():
        out[name] = copy_section(spec.defaults)
    return out


def copy_section(d: Mapping[str, Any]) -> dict[str, Any]:
    """A config section's copy that shares no list with ``d``."""
    return {k: (list(v) if isinstance(v, list) else v) for k, v in d.items()}


# --------------------------------------------------------------------------------------------
# The context: typed, cached access to the inputs, shared by all detectors of one run.
# --------------------------------------------------------------------------------------------


@dataclass
class DetectorContext:
    """What detectors read: the run, the metrics frame (drift columns joined) and the drift result."""

    run: RunData
    metrics: pl.DataFrame
    drift: DriftResult | None
    general: dict[str, Any]
    # the run's completion-feature frame (analyzer.features), when the pipeline built it
    features: CompletionFeatures | None = None
    # (column, finite) -> (steps, values): ``has`` and every detector read the same few columns
    _series: dict[tuple[str, bool], tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict, init=False, repr=False
    )
    # what several detectors derive from the same inputs (``_common.component_columns``: a pass
    # over every column, ~0.2 s on a run with 10,000 reward functions, asked for by five detectors)
    memo: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    # what each detector kept from the previous analysis of this run (``StepMetrics.carried``),
    # by detector name, and where it keeps what the next analysis may reuse (None: nowhere)
    previous: dict[str, Any] = field(default_factory=dict, repr=False)
    carry: dict[str, Any] | None = field(default=None, repr=False)

    def carried_over(self, name: str) -> Any:
        """What detector ``name`` kept at the previous analysis (JSON values), or None. It must
        check it against the run as it is now: it is a hint, never a result."""
        return self.previous.get(name)

    def keep(self, name: str, value: Any) -> None:
        """Keep ``value`` (JSON values) for detector ``name``'s next analysis of this run."""
        if self.carry is not None:
            self.carry[name] = value

    # ---- scalar series -------------------------------------------------------------------
    @property
    def n_steps(self) -> int:
        return int(self.metrics.height)

    def has(self, column: str) -> bool:
        """True when ``column`` exists and holds at least one finite value."""
        if self.metrics.get_column(column, default=None) is None:
            return False
        x, _ = self.series(column)
        return len(x) > 0

    def first_present(self, columns: Iterable[str]) -> str | None:
        """The first of ``columns`` with enough points to judge, else the first with any.

        A folder merges sources: a trainer log every few steps beside completions at every step.
        A logged column too sparse to judge must not hide a denser signal listed after it."""
        present = [c for c in columns if self.has(c)]
        for c in present:
            if self.judgeable(c):
                return c
        return present[0] if present else None

    def min_points(self) -> int:
        """Points a series needs before a trend detector judges it."""
        return max(int(self.general["min_steps"]), int(self.general["warmup_min_points"]) + 3)

    def judgeable(self, column: str) -> bool:
        """True when ``column`` holds enough finite points for a trend detector to judge it."""
        return len(self.series(column)[0]) >= self.min_points()

    def prefetch(self, columns: Iterable[str]) -> None:
        """Read many metric columns into the ``series`` cache (finite values) in one pass.

        A run logging thousands of reward functions is judged column by column; reading them one
        Polars call each costs more than the judging."""
        import numpy as np
        import polars as pl

        cols = [
            c
            for c in dict.fromkeys(columns)
            if (c, True) not in self._series and self.metrics.get_column(c, default=None) is not None
        ]
        steps = self.metrics.get_column(C.STEP)
        if not cols or steps.null_count():
            return
        x = steps.to_numpy().astype(np.int64)
        x.setflags(write=False)
        frame = pl.DataFrame([self.metrics.get_column(c) for c in cols]).cast(pl.Float64, strict=False)
        block = np.asfortranarray(frame.to_numpy())  # a null reads as NaN: both are dropped below
        block.setflags(write=False)
        finite = np.isfinite(block)
        dense = finite.all(axis=0)
        for j, c in enumerate(cols):
            if dense[j]:
                self._series[c, True] = (x, block[:, j])
            else:
                keep = finite[:, j]
                xs, ys = x[keep], block[keep, j]
                xs.setflags(write=False)
                ys.setflags(write=False)
                self._series[c, True] = (xs, ys)

    def series(self, column: str, *, finite: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of one metrics column, nulls dropped, non-finite dropped unless asked.

        Read once per context and shared: the arrays are read-only."""
        import numpy as np
        import polars as pl

        if (column, finite) in self._series:
            return self._series[column, finite]
        values = self.metrics.get_column(column, default=None)
        if values is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        # the column by name, not a select over the frame: detectors read thousands of columns of
        # a wide run, and a select's cost grows with the frame
        steps = self.metrics.get_column(C.STEP)
        y_all = values.cast(pl.Float64, strict=False)
        if y_all.null_count() == 0 and steps.null_count() == 0:
            x, y = steps.to_numpy().astype(np.int64), y_all.to_numpy().astype(float)
        else:
            keep = (y_all.is_not_null() & steps.is_not_null()).to_numpy()
            x = steps.to_numpy()[keep].astype(np.int64)
            y = y_all.to_numpy()[keep].astype(float)
        if finite:
            keep = np.isfinite(y)
            x, y = x[keep], y[keep]
        x.setflags(write=False)
        y.setflags(write=False)
        self._series[column, finite] = (x, y)
        return x, y

    def numeric_columns(self) -> list[str]:
        import polars as pl

        return [
            name
            for name, dtype in self.metrics.schema.items()
            if name != C.STEP and dtype.is_numeric() and dtype != pl.Boolean
        ]

    # ---- warm-up ---------------------------------------------------------------------------
    def warmup_points(self, n: int) -> int:
        """How many of ``n`` points form the warm-up (baseline); never all of them."""
        least = int(self.general["warmup_min_points"])
        if n < 2 * least:
            # a sparse series (eval every N steps): a short baseline, or nothing would be left
            return min(max(1, round(n * 0.3)), max(n - 1, 0))
        w = max(least, round(n * float(self.general["warmup_fraction"])))
        return min(w, max(n - 1, 0))

    def too_short(self) -> str | None:
        return too_short_reason(self.metrics, {"general": self.general})

    def skip_if_too_short(self) -> None:
        """Raise ``Skip`` when the run has fewer logged steps than ``general.min_steps``."""
        if (why := self.too_short()) is not None:
            raise Skip(why)

    def require_length(self, n_points: int, what: str) -> None:
        need = self.min_points()
        if n_points < need:
            raise Skip(f"too few points of {what} to judge ({n_points} < {need})")

    # ---- completions -------------------------------------------------------------------------
    @property
    def has_generations(self) -> bool:
        g = self.run.generations
        return g is not None and g.height > 0 and C.OUTPUT in g.columns

    def require_generations(self, what: str = "completions") -> None:
        if not self.has_generations:
            raise Skip(f"needs {what}; the run has none (scalar logs only)")

    @cached_property
    def samples(self) -> pl.DataFrame:
        """One row per completion with per-sample features (see ``analyzer.detectors.text``)."""
        from analyzer.detectors.text import sample_features

        assert self.run.generations is not None
        tags = tuple(self.general["tags"])
        pattern = str(self.general.get("answer_pattern") or "")
        return sample_features(self.run.generations, tags=tags, features=self.features, answer_pattern=pattern)

    def train_samples(self) -> pl.DataFrame:
        import polars as pl

        s = self.samples
        return s.filter(pl.col(C.SPLIT) == "train")

    def pick_samples(
        self, frame: pl.DataFrame, *, order_by: str | None = None, descending: bool = True
    ) -> list[int]:
        """Up to ``general.max_sample_ids`` sample ids of ``frame`` (optionally the most extreme)."""
        if frame.height == 0 or C.SAMPLE_ID not in frame.columns:
            return []
        if order_by is not None and order_by in frame.columns:
            frame = frame.sort(order_by, descending=descending, nulls_last=True)
        k = int(self.general["max_sample_ids"])
        return [int(v) for v in frame[C.SAMPLE_ID].head(k).to_list() if v is not None]


def alert(
    kind: str,
    severity: Severity,
    step: int | None,
    message: str,
    **evidence: Any,
) -> Alert:
    """An Alert with JSON-safe evidence (numpy scalars → Python, floats rounded, NaN → None)."""
    return Alert(
        kind=kind,
        severity=severity,
        step=None if step is None else int(step),
        message=message,
        evidence={k: _jsonable(v) for k, v in evidence.items()},
    )


def _jsonable(v: Any) -> Any:
    import math

    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, str | bytes):
        v = v.item()
    if isinstance(v, float):
        if not math.isfinite(v):
            return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return float(f"{v:.6g}")
    return v


# --------------------------------------------------------------------------------------------
# Running them
# --------------------------------------------------------------------------------------------


def join_drift(metrics: pl.DataFrame, drift: DriftResult | None) -> pl.DataFrame:
    """Metrics with the drift per-step columns joined on ``step`` (if the pipeline has not already)."""
    import polars as pl

    if drift is None or drift.per_step is None or drift.per_step.height == 0:
        return metrics
    new = [c for c in drift.per_step.columns if c != C.STEP and c not in metrics.columns]
    if not new:
        return metrics
    right = drift.per_step.select(pl.col(C.STEP).cast(pl.Int64), *new)
    if C.STEP not in metrics.columns:
        return right
    return (
        metrics.with_columns(pl.col(C.STEP).cast(pl.Int64))
        .join(right, on=C.STEP, how="full", coalesce=True)
        .sort(C.STEP)
    )


def run_detectors(
    run: RunData,
    metrics: pl.DataFrame | None,
    drift: DriftResult | None,
    config: Mapping[str, Any] | None = None,
    *,
    features: CompletionFeatures | None = None,
    carried: dict[str, Any] | None = None,
) -> tuple[list[Alert], list[DetectorStatus]]:
    """Run every enabled detector; return the alerts (most severe first) and one status per detector.
    ``features``: the run's completion-feature frame (``analyzer.features.build_features``), read
    instead of computed again when it was built with the configured tags. ``carried``: what the
    detectors kept at the previous analysis of this run (``StepMetrics.carried``), emptied and
    refilled with what they keep now.

    A detector that raises ``Skip`` is reported with ``ran=False`` and the reason. A detector that
    crashes on odd input is reported the same way (reason starts with ``internal error``) so one
    bad detector never loses the others' findings.
    """
    import polars as pl

    cfg = default_config()
    for section, values in (config or {}).items():
        if isinstance(values, Mapping) and section in cfg:
            cfg[section].update(values)
    if metrics is None:
        metrics = run.steps
    if metrics is None or C.STEP not in metrics.columns:
        metrics = pl.DataFrame({C.STEP: pl.Series([], dtype=pl.Int64)})
    metrics = join_drift(metrics.sort(C.STEP), drift)
    previous = dict(carried) if carried else {}
    if carried is not None:
        carried.clear()
    ctx = DetectorContext(
        run=run, metrics=metrics, drift=drift, general=cfg["general"], features=features,
        previous=previous, carry=carried,
    )

    alerts: list[Alert] = []
    statuses: list[DetectorStatus] = []
    for name, spec in REGISTRY.items():
        dcfg = cfg[name]
        if not dcfg.get("enabled", True):
            statuses.append(
                DetectorStatus(
                    name=name, ran=False, reason=f"disabled in config ({name}.enabled = false)"
                )
            )
            continue
        try:
            found = spec.fn(ctx, dcfg)
        except Skip as skip:
            statuses.append(DetectorStatus(name=name, ran=False, reason=str(skip)))
            continue
        except Exception as exc:  # a detector bug must not hide the other detectors' findings
            statuses.append(
                DetectorStatus(
                    name=name, ran=False, reason=f"internal error: {type(exc).__name__}: {exc}"
                )
            )
            continue
        alerts.extend(found)
        statuses.append(DetectorStatus(name=name, ran=True, reason=None, alerts=len(found)))
    alerts.sort(key=alert_order)  # the one alert order (analyzer.verdict)
    return alerts, statuses


def too_short_reason(
    metrics: pl.DataFrame | None, config: Mapping[str, Any] | None = None
) -> str | None:
    """Why the run is too short to judge (fewer logged steps than ``general.min_steps``), or None."""
    general = dict(GENERAL_DEFAULTS)
    if config and isinstance(config.get("general"), Mapping):
        general.update(config["general"])
    n = 0 if metrics is None else int(metrics.height)
    need = int(general["min_steps"])
    if n < need:
        return f"run too short to judge trends ({n} logged steps < general.min_steps = {need})"
    return None


def describe_detectors() -> str:
    """Plain-text documentation of every registered detector; ``logscan detectors`` adds the core
    checks per kind of run (``analyzer.coverage.describe_checks``)."""
    lines = [
        "Detectors (config: [tool.logscan.<name>] in pyproject.toml or logscan.toml, or --set name.key=value)",
        "",
    ]
    lines.append("general")
    for k, v in GENERAL_DEFAULTS.items():
        lines.append(f"    general.{k} = {_fmt(v)}")
    lines.append("")
    for name, spec in REGISTRY.items():
        head = name if spec.kind == name else f"{name} (kind: {spec.kind})"
        lines.append(f"{head}: {spec.summary}" if spec.summary else head)
        lines.append(f"    reads:    {spec.signals}")
        if spec.requires:
            lines.append(f"    requires: {', '.join(spec.requires)}")
        if spec.severity:
            lines.append(f"    severity: {spec.severity}")
        for k, v in spec.defaults.items():
            lines.append(f"    {name}.{k} = {_fmt(v)}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return repr(v)
