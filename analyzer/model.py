"""Value objects passed between the analyzer's stages: ingest → metrics → drift → detectors → report.

Frames are Polars DataFrames with the canonical columns of ``analyzer.columns``. Polars is only
imported for type checking here, so importing this module stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import polars as pl


# What ``--fail-on`` may be set to (``analyzer.verdict`` decides what each one fails).
FailOn = Literal["info", "warning", "critical", "limited", "never"]


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "critical": 2}[self.value]


@dataclass(frozen=True, slots=True)
class Alert:
    """One finding: ``step`` is the first step at which the evidence held.

    ``evidence`` holds plain JSON-able numbers/strings (values, baselines, slopes, thresholds) and
    ``sample_ids``: a list of ``generations.sample_id`` values that show the problem.
    """

    kind: str
    severity: Severity
    step: int | None
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity.value,
            "step": self.step,
            "message": self.message,
            "evidence": self.evidence,
        }


@dataclass(frozen=True, slots=True)
class IngestIssue:
    """A located problem met while reading: ``file:line`` and why it was skipped or flagged."""

    file: str
    line: int | None
    reason: str
    kind: str = "malformed"  # torn_line | malformed | wrong_type | unknown_column | empty | resume | gap | dropped | ...

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "reason": self.reason, "kind": self.kind}

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.reason}"


@dataclass(frozen=True, slots=True)
class SourceRead:
    """One source of a run that ingest read (a run folder may hold several, merged on step).

    ``kind`` is a source kind of ``analyzer.ingest.sources.FORMATS``; ``data`` says what it gave:
    ``scalars`` (the trainer's logged metrics), ``completions``, or ``scalars+completions``.
    ``step_shift`` was added to its (train) steps to put them on the trainer's step (docs/formats.md).
    """

    kind: str
    name: str  # display name of the format
    data: str  # scalars | completions | scalars+completions
    files: list[str]
    records: int
    steps: int  # distinct steps it covers (after alignment)
    first_step: int | None
    last_step: int | None
    step_shift: int = 0
    alignment: str = ""  # how its steps were put on the run's step, and why
    note: str = ""  # e.g. "all 12 completions duplicate those of logscan run folder"

    @property
    def has_scalars(self) -> bool:
        return "scalars" in self.data

    @property
    def has_completions(self) -> bool:
        return "completions" in self.data

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "name": self.name, "data": self.data, "files": self.files,
            "records": self.records, "steps": self.steps, "first_step": self.first_step,
            "last_step": self.last_step, "step_shift": self.step_shift, "alignment": self.alignment,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class NotRead:
    """A file (or folder, name ending in ``/``) of the run folder that ingest did not read, and why."""

    file: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "reason": self.reason}


@dataclass(slots=True)
class IngestReport:
    """What ingest read, what it skipped and why. Filled in by ``analyzer.ingest``."""

    source_kind: str  # logscan | seed_csv | hf_trainer_state | trl_completions | ... ; several joined by "+"
    files_read: list[str] = field(default_factory=list)
    issues: list[IngestIssue] = field(default_factory=list)
    records_read: int = 0
    records_skipped: int = 0
    resumes: list[dict[str, Any]] = field(default_factory=list)  # {"file", "line", "from_step", "to_step"}
    unknown_keys: list[str] = field(default_factory=list)  # logged keys kept under their own name
    notes: list[str] = field(default_factory=list)
    sources: list[SourceRead] = field(default_factory=list)  # every source read, in precedence order
    not_read: list[NotRead] = field(default_factory=list)  # every file of the folder not read, with why

    def to_dict(self) -> dict[str, Any]:
        return {
            "source_kind": self.source_kind,
            "files_read": self.files_read,
            "records_read": self.records_read,
            "records_skipped": self.records_skipped,
            "issues": [i.to_dict() for i in self.issues],
            "resumes": self.resumes,
            "unknown_keys": self.unknown_keys,
            "notes": self.notes,
            "sources": [s.to_dict() for s in self.sources],
            "not_read": [n.to_dict() for n in self.not_read],
        }


def completion_keys(gens: pl.DataFrame) -> pl.DataFrame:
    """``gens`` with the keys every later stage relies on, checked once, when a ``RunData`` is
    built (ingest's frames already have them; a frame built by hand gets them here):

    - ``step`` Int64; ``split`` a non-null string (a missing split is ``train``);
    - ``sample_id`` Int64 (the row number when absent);
    - ``group_id`` a non-null string: **the** GRPO group — one prompt's completions at one step.
      When the input names no group it is ``"{step}:{question_id}"`` (``"{step}:?"`` without a
      question id), as ingest fills it. Stages group by ``(step, group_id)`` and nothing else.

    Cheap when nothing is missing (dtype and null-count checks only)."""
    import polars as pl

    from analyzer import columns as C

    schema = gens.schema
    exprs: list[pl.Expr] = []
    if C.STEP in schema and schema[C.STEP] != pl.Int64:
        exprs.append(pl.col(C.STEP).cast(pl.Int64, strict=False))
    if C.SPLIT not in schema:
        exprs.append(pl.lit("train", dtype=pl.String).alias(C.SPLIT))
    elif schema[C.SPLIT] != pl.String or gens[C.SPLIT].null_count():
        exprs.append(pl.col(C.SPLIT).cast(pl.String).fill_null("train"))
    if C.SAMPLE_ID in schema and schema[C.SAMPLE_ID] != pl.Int64:
        exprs.append(pl.col(C.SAMPLE_ID).cast(pl.Int64))
    if C.GROUP_ID not in schema or schema[C.GROUP_ID] != pl.String or gens[C.GROUP_ID].null_count():
        step = pl.col(C.STEP).cast(pl.Int64, strict=False).cast(pl.String) if C.STEP in schema else pl.lit(None, dtype=pl.String)
        qid = pl.col(C.QUESTION_ID).cast(pl.String) if C.QUESTION_ID in schema else pl.lit(None, dtype=pl.String)
        default = pl.concat_str([step.fill_null("?"), qid.fill_null("?")], separator=":")
        given = pl.col(C.GROUP_ID).cast(pl.String) if C.GROUP_ID in schema else pl.lit(None, dtype=pl.String)
        exprs.append(pl.coalesce(given, default).alias(C.GROUP_ID))
    if exprs:
        gens = gens.with_columns(exprs)
    if C.SAMPLE_ID not in schema:
        gens = gens.with_row_index(C.SAMPLE_ID).with_columns(pl.col(C.SAMPLE_ID).cast(pl.Int64))
    return gens


@dataclass(slots=True)
class RunData:
    """Everything ingest produced for one run.

    ``steps``: one row per step, column ``step`` (Int64) + logged scalars (canonical names, eval
    ones prefixed ``eval/``), sorted by step, unique step. ``generations``: one row per completion
    with the canonical generation columns, or None when the input has no completions; its keys
    (``split``, ``sample_id``, ``group_id``) are complete from construction on
    (``completion_keys``), so no later stage refills them.
    """

    path: str
    steps: pl.DataFrame
    generations: pl.DataFrame | None
    report: IngestReport
    info: dict[str, Any] = field(default_factory=dict)  # run_id, algorithm, model, config, status, reward_names, world_size ...

    def __post_init__(self) -> None:
        if self.generations is not None:
            self.generations = completion_keys(self.generations)

    @property
    def sources(self) -> list[SourceRead]:
        """Every source read into this run (kind, what data it gave, files, steps covered)."""
        return self.report.sources

    @property
    def data_kinds(self) -> set[str]:
        """What kinds of data the run has: ``{"scalars", "completions"}`` or a part of it."""
        kinds = {k for s in self.report.sources for k in s.data.split("+")}
        if not self.report.sources:  # built by hand (tests): judge from the frames
            if self.steps.width > 1 and self.steps.height:
                kinds.add("scalars")
            if self.generations is not None and self.generations.height:
                kinds.add("completions")
        return kinds

    @property
    def reward_names(self) -> list[str]:
        from analyzer.columns import REWARD_PREFIX

        if self.generations is None:
            return list(self.info.get("reward_names") or [])
        return [c[len(REWARD_PREFIX) :] for c in self.generations.columns if c.startswith(REWARD_PREFIX)]


@dataclass(frozen=True, slots=True)
class SampleDiff:
    """One prompt's completion early vs later (the seed's SampleComparator)."""

    question_id: str
    question: str
    split: str
    early_step: int
    late_step: int
    early_sample_id: int
    late_sample_id: int
    early_text: str
    late_text: str
    early_reward: float | None
    late_reward: float | None
    similarity: float  # difflib ratio, 0..1
    chars_changed: int
    lines_changed: int
    unified_diff: str  # difflib line diff, plain text (escape when rendering)
    semantic_distance: float | None = None  # cosine distance of the embeddings, when computed


@dataclass(slots=True)
class DriftResult:
    """What ``analyzer.drift`` scored. ``per_step`` has ``step`` + ``drift_*`` columns (joined into metrics)."""

    method: str  # "embeddings" | "tfidf" | "none"
    model: str | None
    per_step: pl.DataFrame | None
    top_drifting: list[dict[str, Any]] = field(default_factory=list)  # {question_id, question, split, distance, early_step, late_step}
    outliers: list[dict[str, Any]] = field(default_factory=list)  # {sample_id, step, distance}
    sample_diffs: list[SampleDiff] = field(default_factory=list)
    embedded: int = 0  # texts embedded this run (cache misses)
    cached: int = 0  # texts served from the cache
    sampled_from: int = 0  # completions considered before sampling
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DetectorStatus:
    """Whether a detector ran, and if not, why (e.g. ``kl`` absent because TRL's beta = 0)."""

    name: str
    ran: bool
    reason: str | None = None
    alerts: int = 0


@dataclass(slots=True)
class Analysis:
    """The complete result of ``analyze``; ``analysis.json`` and the reports are rendered from it."""

    run: RunData
    metrics: pl.DataFrame  # one row per step: logged scalars + gen_* + drift_* columns
    alerts: list[Alert] = field(default_factory=list)
    detectors: list[DetectorStatus] = field(default_factory=list)
    drift: DriftResult | None = None
    config: dict[str, Any] = field(default_factory=dict)  # the effective configuration
    verdict: str = "healthy"  # critical | warnings | too_short | limited | healthy (analyzer.verdict)
    fail_on: FailOn = "critical"  # resolved once, from --fail-on or the config (analyzer.verdict)
    timings: dict[str, float] = field(default_factory=dict)
    # Set by analyzer.pipeline: where the results went, which files, and stages skipped (and why).
    output_dir: str | None = None
    outputs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # How the completions' answers and format were read (analyzer.features.Conventions.as_dict()),
    # set by analyzer.pipeline; None without completions.
    conventions: dict[str, Any] | None = None
    # The answer read from each completion that way (row for row with run.generations; what the
    # accuracy judged), set by analyzer.pipeline; None when not computed (a report from analysis.json).
    answers: pl.Series | None = None
