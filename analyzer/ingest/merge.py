"""A run folder's sources, loaded each with its own loader and merged into one ``RunData``.

- **Steps** are put on the trainer's step (``step_basis`` in ``analyzer.ingest.sources``): train
  completions logged before the update move +1 when the run also has after-update sources; when a
  trainer log has a per-step ``reward`` the shift is checked against it (the completions' mean
  total reward must match the logged reward at the shift used).
- **Scalars** are joined on step, sources in ``scalar_rank`` order (the trainer's own log first). A
  metric two sources log at the same step keeps the first source's value; where the first has
  none, the other fills it. Values that differ beyond ``rel_tol``/``abs_tol`` are reported (issue
  kind ``conflict``) and the other source's whole series is kept as ``<kind>:<name>``.
- **Completions** of every source are concatenated, ``completion_rank`` order; a row that repeats
  one an earlier source holds (same split, step, output text, and occurrence) is dropped.
- **Two runs** in one folder are told apart: two scalar sources whose shared metrics disagree at
  most shared steps, or two completion sources that share (almost) no completion text at the steps
  they both cover, are different runs. Among the folder's own files that is refused ("a folder of N
  runs"); a run folder one level down that differs is not read ("a second run's log").
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from analyzer import columns as C
from analyzer.errors import InputError
from analyzer.ingest.sources import FORMATS, Discovery, Found, SourceFormat, discover
from analyzer.model import IngestIssue, IngestReport, NotRead, RunData, SourceRead

if TYPE_CHECKING:
    import polars as pl

REL_TOL: Final = 1e-3
ABS_TOL: Final = 1e-4  # LLaMA-Factory (and older transformers) log the loss rounded to 4 decimals
# metrics set by the schedule, equal in any two runs of one config: no evidence of "same run"
SCHEDULE_KEYS: Final = frozenset({C.LEARNING_RATE, C.EPOCH, "num_tokens", "total_flos", "num_input_tokens_seen"})
MAX_CONFLICT_ISSUES: Final = 20


class _Loaded:
    __slots__ = ("alignment", "found", "note", "prefix", "run", "shift")

    def __init__(self, found: Found, run: RunData, prefix: str) -> None:
        self.found = found
        self.run = run
        self.prefix = prefix
        self.shift = 0
        self.alignment = FORMATS[found.kind].alignment
        self.note = ""

    @property
    def fmt(self) -> SourceFormat:
        return FORMATS[self.found.kind]

    def label(self) -> str:
        files = self.found.files
        if len(files) == 1 or self.found.path.is_file():
            return self.prefix + (files[0].name if files else self.found.path.name)
        if self.prefix:
            return self.prefix.rstrip("/")
        names = [f.name for f in files[:2]]
        return ", ".join(names) + (", …" if len(files) > 2 else "") if names else self.found.path.name


def _prefix(root: Path, found: Found) -> str:
    base = found.path if found.path.is_dir() else found.path.parent
    if found.kind == "trl_completions":
        base = root  # its collector is rooted at the run folder
    try:
        rel = base.resolve().relative_to(root.resolve())
    except ValueError:
        return ""
    return "" if str(rel) == "." else f"{rel.as_posix()}/"


def _load(root: Path, found: Found, reward_names: list[str]) -> RunData:
    report = IngestReport(source_kind=found.kind)
    if found.kind == "logscan":
        mine = [f for f in found.files if f.name.startswith("generations")]
        every = sorted(found.path.glob("generations*.jsonl")) + sorted(found.path.glob("generations*.csv"))
        return FORMATS[found.kind].load(found.path, report, generation_files=None if set(mine) == set(every) else mine)
    if found.kind == "hf_trainer_state":
        return FORMATS[found.kind].load(found.path, report, with_completions=False)
    if found.kind == "trl_completions":
        from analyzer.ingest._common import Collector, empty_steps
        from analyzer.ingest.trl_completions import read_completions

        col = Collector(report, root)
        gens = read_completions(found.files, col, reward_names or None)
        col.finish()
        if gens is None:
            raise InputError(f"{found.path}: no readable TRL completion parquet files")
        names = [c[len(C.REWARD_PREFIX) :] for c in gens.columns if c.startswith(C.REWARD_PREFIX)]
        return RunData(str(found.path), empty_steps(), gens, report, {"reward_names": names, "algorithm": "grpo"})
    if found.kind == "seed_csv" and found.path.is_dir():
        from analyzer.ingest._common import Collector, empty_steps, finalize_generations, why_empty
        from analyzer.ingest.logscan_run import read_generation_files

        col = Collector(report, found.path)
        df = read_generation_files(found.files, col)
        col.finish()
        if df is None:
            raise InputError(f"{found.path}: no readable generations in the CSV ({why_empty(report, 'no rows')})")
        gens = finalize_generations(df, col)
        return RunData(str(found.path), empty_steps(), gens, report, {})
    if found.kind == "verl_rollouts" and found.path.is_dir() and len(found.files) == 1:
        return FORMATS[found.kind].load(found.files[0], report)
    return FORMATS[found.kind].load(found.path, report)


# --- comparing two sources ------------------------------------------------------------------------
def _agree(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= ABS_TOL + REL_TOL * max(abs(a), abs(b))


def _compare_scalars(a: pl.DataFrame, b: pl.DataFrame) -> tuple[int, int, str]:
    """(metrics compared, metrics that agree, one that does not) over the metrics and steps both
    sources log. A metric agrees when at least 90 % of its shared values do; schedule metrics and
    metrics constant in both (a clip ratio that stays 0) are no evidence either way."""
    shared = [c for c in a.columns if c in b.columns and c != C.STEP and c not in SCHEDULE_KEYS]
    if not shared:
        return 0, 0, ""
    j = a.select(C.STEP, *shared).join(b.select(C.STEP, *shared), on=C.STEP, how="inner", suffix="__b")
    n = agree = 0
    differs = ""
    for c in shared:
        pairs = [(x, y) for x, y in zip(j[c].to_list(), j[c + "__b"].to_list(), strict=True) if x is not None and y is not None]
        if len(pairs) < 2 or len({v for p in pairs for v in p if not math.isnan(v)}) < 2:
            continue
        n += 1
        if sum(_agree(x, y) for x, y in pairs) >= 0.9 * len(pairs):
            agree += 1
        elif not differs:
            differs = c
    return n, agree, differs


def _completion_keys(g: pl.DataFrame) -> pl.DataFrame:
    import polars as pl

    return g.select(C.SPLIT, C.STEP, C.OUTPUT).with_columns(
        pl.int_range(pl.len()).over([C.SPLIT, C.STEP, C.OUTPUT]).alias("__k")
    )


def _compare_completions(a: pl.DataFrame, b: pl.DataFrame) -> tuple[int, int]:
    """(rows of the smaller side at the (split, step)s both cover, of which also in the other)."""
    ka, kb = _completion_keys(a), _completion_keys(b)
    common = ka.select(C.SPLIT, C.STEP).unique().join(kb.select(C.SPLIT, C.STEP).unique(), on=[C.SPLIT, C.STEP])
    if common.height == 0:
        return 0, 0
    ka = ka.join(common, on=[C.SPLIT, C.STEP])
    kb = kb.join(common, on=[C.SPLIT, C.STEP])
    both = ka.join(kb, on=[C.SPLIT, C.STEP, C.OUTPUT, "__k"], nulls_equal=True).height
    return min(ka.height, kb.height), both


def _differs(x: _Loaded, y: _Loaded) -> str | None:
    """Why ``x`` and ``y`` are two different runs, or None (same run, or no evidence either way)."""
    n, agree, worst = _compare_scalars(x.run.steps, y.run.steps)
    if n >= 1 and agree < n / 2:
        return f"{n - agree} of the {n} metrics both log differ at the same steps ({worst}, …)"
    gx, gy = x.run.generations, y.run.generations
    if gx is not None and gy is not None:
        m, both = _compare_completions(gx, gy)
        if m >= 2 and both < m / 2:
            return f"at the steps both cover, only {both} of {m} completions are the same"
    return None


# --- step alignment -------------------------------------------------------------------------------
def _shift_train(g: pl.DataFrame, by: int) -> pl.DataFrame:
    import polars as pl

    if by == 0:
        return g
    return g.with_columns(pl.when(pl.col(C.SPLIT) == "train").then(pl.col(C.STEP) + by).otherwise(pl.col(C.STEP)).alias(C.STEP))


def _reward_error(logged: pl.DataFrame, g: pl.DataFrame, by: int) -> tuple[float, int]:
    """Mean |logged reward − mean total_reward of the step's train completions| at shift ``by``."""
    import polars as pl

    per = (
        g.filter(pl.col(C.SPLIT) == "train")
        .group_by(C.STEP)
        .agg(pl.col(C.TOTAL_REWARD).mean().alias("__mean"))
        .with_columns(pl.col(C.STEP) + by)
    )
    j = logged.join(per, on=C.STEP).drop_nulls().filter(pl.col(C.REWARD).is_finite() & pl.col("__mean").is_finite())
    if j.height < 2:
        return math.inf, j.height
    return float((j[C.REWARD] - j["__mean"]).abs().mean()), j.height  # type: ignore[arg-type]


def _align(loaded: list[_Loaded]) -> None:
    """Set each completion source's shift (docs/formats.md, "Several sources in one folder")."""
    bases = {x.fmt.step_basis for x in loaded}
    trainer = next((x for x in sorted(loaded, key=lambda x: x.fmt.scalar_rank) if C.REWARD in x.run.steps.columns), None)
    for x in loaded:
        g = x.run.generations
        if g is None or x.fmt.step_basis not in ("before_update", "after_update"):
            continue
        default = 1 if x.fmt.step_basis == "before_update" and "after_update" in bases - {"before_update"} and _has_after(loaded, x) else 0
        shift = default
        why = x.fmt.alignment
        if trainer is not None and trainer is not x:
            logged = trainer.run.steps.select(C.STEP, C.REWARD)
            errs = {by: _reward_error(logged, g, by) for by in (0, 1)}
            e0, e1 = errs[default][0], errs[1 - default][0]
            if math.isfinite(e1) and e1 * 2 < e0:
                shift = 1 - default
                why = (
                    f"the completions' mean reward matches {trainer.label()}'s logged reward at shift {shift:+d} "
                    f"(mean error {e1:.3g}, against {e0 if math.isfinite(e0) else 'no overlap'} at {default:+d})"
                )
            elif math.isfinite(e0):
                why += f"; checked: the mean reward matches {trainer.label()}'s logged reward (mean error {e0:.3g} over {errs[default][1]} steps)"
        x.shift = shift
        if shift:
            x.alignment = f"train steps {shift:+d}: {why}"
            x.run.generations = _shift_train(g, shift)
        else:
            x.alignment = why


def _has_after(loaded: list[_Loaded], x: _Loaded) -> bool:
    return any(y is not x and y.fmt.step_basis == "after_update" for y in loaded)


# --- merging --------------------------------------------------------------------------------------
def _merge_steps(loaded: list[_Loaded], report: IngestReport) -> pl.DataFrame:
    import polars as pl

    from analyzer.ingest._common import empty_steps

    out: pl.DataFrame | None = None
    first_label: dict[str, str] = {}
    conflicts = 0
    for x in sorted(loaded, key=lambda x: x.fmt.scalar_rank):
        f = x.run.steps
        if f.height == 0 or f.width < 2:
            continue
        if out is None:
            out = f
            first_label.update(dict.fromkeys(f.columns, x.label()))
            continue
        clash = [c for c in f.columns if c in out.columns and c != C.STEP]
        j = out.join(f, on=C.STEP, how="full", coalesce=True, suffix="__new")
        keep: list[pl.Expr] = []
        for c in clash:
            both = j.select(c, c + "__new").drop_nulls()
            bad = [(s, a, b) for s, a, b in zip(
                j.filter(pl.col(c).is_not_null() & pl.col(c + "__new").is_not_null())[C.STEP].to_list(),
                both[c].to_list(), both[c + "__new"].to_list(), strict=True) if not _agree(a, b)]
            if bad:
                qualified = f"{x.found.kind}:{c}"
                keep.append(pl.col(c + "__new").alias(qualified))
                conflicts += 1
                if conflicts <= MAX_CONFLICT_ISSUES:
                    s, a, b = bad[0]
                    report.issues.append(IngestIssue(
                        x.label(), None,
                        f"{c} differs from {first_label.get(c, 'the first source')} at {len(bad)} of {both.height} shared "
                        f"steps (first at step {s}: {a:.6g} vs {b:.6g}); the first source's value is used, this one is kept as {qualified}",
                        "conflict",
                    ))
        j = j.with_columns(*keep, *[pl.coalesce(c, c + "__new").alias(c) for c in clash]).drop([c + "__new" for c in clash])
        for c in f.columns:
            first_label.setdefault(c, x.label())
        out = j.sort(C.STEP)
    if conflicts > MAX_CONFLICT_ISSUES:
        report.issues.append(IngestIssue("(merge)", None, f"{conflicts - MAX_CONFLICT_ISSUES} more conflicting metrics not listed", "truncated_report"))
    return out if out is not None else empty_steps()


def _merge_generations(loaded: list[_Loaded], report: IngestReport) -> pl.DataFrame | None:
    import polars as pl

    from analyzer.ingest._common import Collector, finalize_generations

    have = sorted((x for x in loaded if x.run.generations is not None and x.run.generations.height), key=lambda x: x.fmt.completion_rank)
    if not have:
        return None
    if len(have) == 1:
        return have[0].run.generations
    frames: list[pl.DataFrame] = []
    seen: pl.DataFrame | None = None
    for x in have:
        g = x.run.generations
        assert g is not None
        keys = _completion_keys(g)
        if seen is not None:
            dup = keys.with_row_index("__row").join(seen, on=[C.SPLIT, C.STEP, C.OUTPUT, "__k"], nulls_equal=True)["__row"]
            if dup.len():
                mask = pl.Series([True] * g.height)
                mask = mask.scatter(dup, False)
                x.note = f"{dup.len()} of {g.height} completions repeat those of an earlier source; counted once"
                g = g.filter(mask)
        seen = keys if seen is None else pl.concat([seen, keys])
        if g.height:
            frames.append(g.drop(C.SAMPLE_ID))
    try:
        merged = pl.concat(frames, how="diagonal_relaxed")
    except Exception:  # an extra column typed differently by two sources: keep it as text
        typed = {C.STEP, C.RANK, C.TOTAL_REWARD, C.TIMESTAMP, C.ADVANTAGE}
        fixed = [
            f.with_columns(
                pl.col(c).cast(pl.String)
                for c, t in f.schema.items()
                if c not in typed and not c.startswith(C.REWARD_PREFIX) and t != pl.String
            )
            for f in frames
        ]
        merged = pl.concat(fixed, how="diagonal_relaxed")
    return finalize_generations(merged, Collector(report, Path(".")))


def source_read(kind: str, run: RunData, *, shift: int = 0, alignment: str | None = None, note: str = "") -> SourceRead:
    """What one loaded source gave: its data kinds, files, records and the steps it covers."""
    import polars as pl

    steps: set[int] = set()
    data = []
    if run.steps.height and run.steps.width > 1:
        steps.update(run.steps[C.STEP].to_list())
        data.append("scalars")
    g = run.generations
    if g is not None and g.height:
        steps.update(g.select(pl.col(C.STEP).unique())[C.STEP].to_list())
        data.append("completions")
    fmt = FORMATS.get(kind)
    return SourceRead(
        kind=kind,
        name=fmt.display if fmt else kind,
        data="+".join(data) or "nothing",
        files=list(run.report.files_read),
        records=run.report.records_read,
        steps=len(steps),
        first_step=min(steps) if steps else None,
        last_step=max(steps) if steps else None,
        step_shift=shift,
        alignment=(fmt.alignment if fmt else "") if alignment is None else alignment,
        note=note,
    )


def _source_read(x: _Loaded) -> SourceRead:
    return source_read(x.found.kind, x.run, shift=x.shift, alignment=x.alignment, note=x.note)


def _prefixed(x: _Loaded) -> None:
    """Name the source's files relative to the run folder (a loader names them from its own root)."""
    rep = x.run.report
    if not x.prefix:
        return
    p = x.prefix
    rep.files_read = [p + f for f in rep.files_read]
    rep.issues = [IngestIssue(p + i.file, i.line, i.reason, i.kind) for i in rep.issues]
    rep.resumes = [{**r, "file": p + str(r.get("file"))} for r in rep.resumes]


def load_folder(root: Path) -> RunData | None:
    """Every source of the run folder ``root`` merged into one run; None when the folder has no
    source of its own (the caller explains: a folder of runs, logscan's output, nothing readable)."""
    disc = discover(root)
    if not any(f.nested is None for f in disc.found):
        return None
    return merge(root, disc)


def merge(root: Path, disc: Discovery) -> RunData:
    def rel(p: Path) -> str:
        try:
            r = p.relative_to(root).as_posix()
        except ValueError:
            r = p.name
        return r + ("/" if p.is_dir() else "")

    not_read = [NotRead(rel(p), why) for p, why in disc.not_read]
    loaded: list[_Loaded] = []
    errors: list[InputError] = []
    reward_names: list[str] = []
    # scalar sources first: TRL's completion files need the trainer's reward names
    order = sorted(disc.found, key=lambda f: (f.nested is not None, f.kind == "trl_completions"))
    for f in order:
        try:
            run = _load(root, f, reward_names)
        except InputError as exc:
            errors.append(exc)
            not_read.append(NotRead(rel(f.path), f"nothing usable: {str(exc).split(': ', 1)[-1]}"))
            continue
        x = _Loaded(f, run, _prefix(root, f))
        _prefixed(x)
        if f.note:
            run.report.notes.insert(0, f.note)
        loaded.append(x)
        reward_names += [n for n in run.info.get("reward_names") or [] if n not in reward_names]
    if not loaded:
        raise errors[0]
    _align(loaded)  # before comparing: the same completions, logged one step apart, are the same
    # the folder's own sources must be one run; a run folder one level down that is not is left out
    own = [x for x in loaded if x.found.nested is None]
    if not own:
        raise errors[0] if errors else InputError(f"{root}: nothing logscan can read in this folder")
    for a_i, a in enumerate(own):
        for b in own[a_i + 1 :]:
            if (why := _differs(a, b)) is not None:
                raise InputError(
                    f"{root}: a folder of 2 runs ({a.label()}, {b.label()}), not a run; analyze one of them "
                    f"(logscan analyze {a.found.path if a.found.path != root else a.found.files[0]}) or compare them (logscan compare RUN_A RUN_B …); "
                    f"told apart by: {why}"
                )
    kept = list(own)
    for name in dict.fromkeys(x.found.nested for x in loaded if x.found.nested is not None):
        group = [x for x in loaded if x.found.nested == name]
        why = next((w for x in group for y in own if (w := _differs(x, y)) is not None), None)
        if why is not None:
            not_read.append(NotRead(f"{name}/", f"a second run's log: {why}"))
        else:
            kept += group
    report = IngestReport(source_kind="")
    steps = _merge_steps(kept, report)
    gens = _merge_generations(kept, report)
    ordered = sorted(kept, key=lambda x: (x.fmt.scalar_rank if x.run.steps.width > 1 else 99, x.fmt.completion_rank))
    info: dict[str, Any] = {}
    for x in sorted(kept, key=lambda x: (x.found.kind != "logscan", x.fmt.scalar_rank)):
        for k, v in x.run.info.items():
            if v is not None and info.get(k) is None:
                info[k] = v
    names: list[str] = []
    for x in kept:
        names += [n for n in x.run.info.get("reward_names") or [] if n not in names]
    info["reward_names"] = names
    if len(kept) > 1 or info.get("run_id") is None:
        info["run_id"] = root.resolve().name
    if info.get("model") is None:
        from analyzer.ingest.hf_trainer_state import _model_name

        info["model"] = _model_name(root)
    unknown: dict[str, None] = {}
    for x in ordered:
        r = x.run.report
        report.files_read += [f for f in r.files_read if f not in report.files_read]
        report.issues = report.issues + r.issues if x is not ordered[0] else r.issues + report.issues
        report.records_read += r.records_read
        report.records_skipped += r.records_skipped
        report.resumes += r.resumes
        unknown.update(dict.fromkeys(r.unknown_keys))
        for n in r.notes:
            if n not in report.notes:
                report.notes.append(n)
    report.unknown_keys = list(unknown)
    report.source_kind = "+".join(dict.fromkeys(x.found.kind for x in ordered))
    report.sources = [_source_read(x) for x in ordered]
    report.not_read = not_read
    if len(kept) > 1:
        shifted = [x for x in kept if x.shift]
        for x in shifted:
            report.notes.append(f"{x.label()}: {x.alignment}")
    if gens is not None and steps.height:
        import polars as pl

        gsteps = set(gens.select(pl.col(C.STEP).unique())[C.STEP].to_list())
        if gsteps and not gsteps & set(steps[C.STEP].to_list()):
            report.notes.append("the completions and the logged scalars share no step: check that they are from the same run")
    return RunData(path=str(root), steps=steps, generations=gens, report=report, info=info)


__all__ = ["load_folder", "merge", "source_read"]
