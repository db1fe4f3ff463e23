"""Per-step metrics kept between analyses: a grown run's metrics cost what was appended.

:class:`StepMetrics` holds what the last computation of a run's metrics built — the
completion-feature frame (``analyzer.features``), the per-step ``gen_*`` metrics
(``analyzer.metrics.generation_metrics``), a hash of each completion's keys, the run's learned
conventions and each split's reward range — and computes the next one from it:

1. the features of the new completions only, when the completions seen before are unchanged
   (their keys — step, rank, split, sample id, group, reward, time, output length — hash the same
   row for row: every completion file only grew) and the run's conventions (tags, where answers
   are read from: ``analyzer.features.learn_conventions``) did not change;
2. the ``gen_*`` metrics of the steps the new completions belong to only, when no other step can
   change (each split's lowest and highest reward, which the zero-spread shares compare to, are the
   same; no split or reward column appeared).

Anything that does not hold is computed over the whole run instead, and ``last_full`` says why:
the result is always what ``compute_metrics`` gives from scratch (tests/test_live.py and
tests/test_incremental.py check it). ``logscan watch`` keeps a ``StepMetrics`` in memory
(``analyzer.live``); ``logscan analyze`` saves it with the analysis state (``OUTPUT/state/steps/``)
and loads it on the next analysis (``save`` / ``load``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from analyzer import columns as C

if TYPE_CHECKING:
    import polars as pl

    from analyzer.features import CompletionFeatures, Conventions
    from analyzer.model import RunData

STEPS_DIR: Final = "steps"
STEPS_FORMAT: Final = "logscan-steps/1"
_META: Final = "steps.json"
_FEATURES: Final = "features.parquet"
_GEN: Final = "gen_metrics.parquet"
_HASHES: Final = "hashes.parquet"
_CARRIED: Final = "carried.json"
# the completion keys compared row for row between computations (a cheap hash of each row)
_KEYS = (C.STEP, C.RANK, C.SPLIT, C.SAMPLE_ID, C.GROUP_ID, C.TOTAL_REWARD, C.TIMESTAMP)
_OUT_LEN = "__out_bytes"

SplitRange = dict[str, tuple[float | None, float | None]]


@dataclass(slots=True)
class _Prev:
    height: int
    hashes: pl.Series
    conventions: Conventions | None
    features: CompletionFeatures
    gen_metrics: pl.DataFrame
    split_range: SplitRange


def row_hashes(gens: pl.DataFrame) -> pl.Series:
    import polars as pl

    cols = [c for c in _KEYS if c in gens.columns]
    frame = gens.select(*cols, pl.col(C.OUTPUT).str.len_bytes().alias(_OUT_LEN))
    return frame.hash_rows(seed=7)


def owned(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` in buffers of its own (an Arrow IPC round trip: O(its rows))."""
    import io

    import polars as pl

    buf = io.BytesIO()
    frame.write_ipc(buf, compression="uncompressed")
    buf.seek(0)
    return pl.read_ipc(buf)


def split_range(rows: pl.DataFrame) -> SplitRange:
    """Per split, the lowest and highest finite reward (what ``metrics._zero_spread`` compares to)."""
    import polars as pl

    from analyzer.features import REWARD

    finite = pl.when(pl.col(REWARD).is_finite()).then(pl.col(REWARD))
    got = rows.group_by(C.SPLIT).agg(finite.min().alias("lo"), finite.max().alias("hi"))
    return {s: (lo, hi) for s, lo, hi in got.iter_rows()}


def widened(old: SplitRange, new: SplitRange) -> SplitRange:
    """The per-split ranges of two sets of rows together (``split_range`` of their union)."""
    out = dict(old)
    for split, (lo, hi) in new.items():
        if split not in out:
            out[split] = (lo, hi)
            continue
        old_lo, old_hi = out[split]
        out[split] = (
            lo if old_lo is None else old_lo if lo is None else min(old_lo, lo),
            hi if old_hi is None else old_hi if hi is None else max(old_hi, hi),
        )
    return out


def growth_stable_grid(steps: pl.Series, keep: int) -> pl.Series:
    """At most ``keep`` of the sorted, distinct ``steps``, evenly spaced: every ``2**k``-th of them
    from the first (the smallest ``k`` that keeps at most ``keep - 1``), and the last. As a run
    grows, ``k`` only grows, and every ``2**(k+1)``-th step is a ``2**k``-th one: the steps chosen
    before stay chosen (but for the last, and for half of them each time ``k`` grows), so a grown
    run's choice finds most of its steps' results where it kept them. Even spacing, unlike
    ``drift.growth_stable``'s hash choice, dates a rise's onset as an evenly spaced choice does,
    at up to twice the spacing (it uses between a half and all of ``keep``)."""
    import polars as pl

    n = steps.len()
    if keep >= n:
        return steps
    if keep < 2:
        return steps.head(1)
    stride = 1
    while (n - 1) // stride + 1 > keep - 1:
        stride *= 2
    grid = steps.gather(pl.int_range(0, n, stride, eager=True))
    return pl.concat([grid, steps.tail(1)]).unique(maintain_order=True).sort()


class StepMetrics:
    """``compute(run)`` → the run's per-step metrics (``compute_metrics``) and its completion
    features, from what the previous ``compute`` built when only completions were appended."""

    def __init__(self, tags: tuple[str, ...], answer_pattern: str) -> None:
        self.tags = tuple(tags)
        self.answer_pattern = answer_pattern or ""
        self._prev: _Prev | None = None
        self.last_full: str | None = None  # why the last computation was over the whole run
        self.saved_height = 0  # completions whose features are saved (``save`` writes the rest)
        # what detectors carry from one analysis of the run to the next, by detector name (JSON
        # values): each checks what it finds against the run as it is now (``run_detectors``)
        self.carried: dict[str, Any] = {}

    def compute(self, run: RunData, *, files_rewritten: bool = False) -> tuple[pl.DataFrame, CompletionFeatures | None]:
        """``files_rewritten``: a completion file was read in full (the rows before may differ)."""
        import polars as pl

        from analyzer.features import (
            CompletionFeatures,
            build_features,
            completion_features,
            learn_conventions,
        )
        from analyzer.metrics import compute_metrics, generation_metrics, joined_with_steps

        tags, pattern = self.tags, self.answer_pattern
        gens = run.generations
        if gens is None or gens.height == 0 or C.STEP not in gens.columns:
            self._prev = None
            self.last_full = "no completions"
            return compute_metrics(run, tags=tags, answer_pattern=pattern), None
        hashes = row_hashes(gens)
        prev = self._prev
        why = self._why_full(prev, gens, hashes, files_rewritten)
        conv = learn_conventions(gens, tags=tags, answer_pattern=pattern)
        if why is None and prev is not None and conv != prev.conventions:
            why = "the run's conventions (tags, where answers are read from) changed"
        if why is not None or prev is None:
            self.last_full = why or "first computation"
            features = build_features(run, tags=tags, answer_pattern=pattern)
            assert features is not None
            rows = features.frame.filter(pl.col(C.STEP).is_not_null())
            gen_part = generation_metrics(gens, tags=tags, rows=rows)  # as compute_metrics does
            self._prev = _Prev(gens.height, hashes, conv, features, gen_part, split_range(rows))
            self.saved_height = 0
            return joined_with_steps(run, gen_part), features
        assert prev is not None
        # the new rows copied out: a slice would keep the whole run's buffers of this computation
        # alive in the feature frame, and a long watch would hold one copy of the run per refresh
        new = owned(gens.slice(prev.height))
        new_rows = completion_features(new, tags=tags, conventions=conv) if new.height else None
        frame = prev.features.frame if new_rows is None else pl.concat([prev.features.frame, new_rows], how="vertical_relaxed")
        if frame.n_chunks() > 64:  # one chunk per refresh adds up in a long watch
            frame = frame.rechunk()
        features = CompletionFeatures(tags, frame, conv, pattern)
        gen_part = prev.gen_metrics
        ranges = prev.split_range
        if new_rows is not None and new_rows.height:
            touched = new_rows.get_column(C.STEP).drop_nulls().unique()
            rows = frame.filter(pl.col(C.STEP).is_in(touched.implode()))
            # the run's range is the earlier rows' range widened by the new rows': no scan of the run
            ranges = widened(prev.split_range, split_range(new_rows.filter(pl.col(C.STEP).is_not_null())))
            redo = generation_metrics(gens.filter(pl.col(C.STEP).is_in(touched.implode())), tags=tags, rows=rows)
            if ranges != prev.split_range or not set(redo.columns) <= set(prev.gen_metrics.columns):
                self._prev = None
                metrics, features_ = self.compute(run, files_rewritten=True)
                self.last_full = "a split, a reward column or a split's reward range is new"
                return metrics, features_
            kept = prev.gen_metrics.filter(~pl.col(C.STEP).is_in(touched.implode()))
            redo = redo.select([pl.col(c) if c in redo.columns else pl.lit(None).alias(c) for c in prev.gen_metrics.columns])
            gen_part = pl.concat([kept, redo.cast(dict(prev.gen_metrics.schema))], how="vertical").sort(C.STEP)  # type: ignore[arg-type]
        self.last_full = None
        self._prev = _Prev(gens.height, hashes, conv, features, gen_part, ranges)
        return joined_with_steps(run, gen_part), features

    @staticmethod
    def _why_full(prev: _Prev | None, gens: pl.DataFrame, hashes: pl.Series, files_rewritten: bool) -> str | None:
        if prev is None:
            return None
        if files_rewritten:
            return "a completion file was read in full (see the ingest notes)"
        if gens.height < prev.height:
            return "fewer completions than before"
        if not hashes.head(prev.height).equals(prev.hashes):
            return "completions read before changed or moved (a resume, or rows of another rank sorted in)"
        return None

    # --- on disk (the analysis state) ----------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write what the next ``compute`` needs into ``folder`` (the feature frame without the
        completions' text, which the next analysis reads again anyway); the metadata file last."""
        from analyzer import __version__

        prev = self._prev
        folder.mkdir(parents=True, exist_ok=True)
        (folder / _META).unlink(missing_ok=True)
        (folder / _CARRIED).unlink(missing_ok=True)
        if prev is None:  # nothing to keep (no completions): no parts left behind either
            for p in _parts(folder):
                p.unlink(missing_ok=True)
            return
        if self.carried:
            tmp = folder / (_CARRIED + ".tmp")
            tmp.write_text(json.dumps(self.carried), encoding="utf-8")
            tmp.replace(folder / _CARRIED)
        frame = prev.features.frame
        stored = [c for c in frame.columns if c != C.OUTPUT]
        parts = _parts(folder)
        if self.saved_height == 0 or self.saved_height > frame.height or len(parts) >= 16:
            for p in parts:
                p.unlink(missing_ok=True)
            parts, self.saved_height = [], 0
        if frame.height > self.saved_height:
            name = f"features-{os.getpid()}-{len(parts):03d}-{frame.height}.parquet"
            _write(frame.slice(self.saved_height).select(stored), folder / name)
            parts.append(folder / name)
            self.saved_height = frame.height
        _write(prev.gen_metrics, folder / _GEN)
        _write(prev.hashes.to_frame("h"), folder / _HASHES)
        meta = {
            "format": STEPS_FORMAT,
            "logscan_version": __version__,
            "tags": list(self.tags),
            "answer_pattern": self.answer_pattern,
            "height": prev.height,
            "features": [p.name for p in parts],
            "columns": frame.columns,
            "conventions": None if prev.conventions is None else dataclasses.asdict(prev.conventions),
            "split_range": [[k, lo, hi] for k, (lo, hi) in prev.split_range.items()],
            "gen_schema": {k: str(v) for k, v in prev.gen_metrics.schema.items()},
        }
        tmp = folder / (_META + ".tmp")
        tmp.write_text(json.dumps(meta), encoding="utf-8")
        tmp.replace(folder / _META)

    @classmethod
    def load(cls, folder: Path, tags: tuple[str, ...], answer_pattern: str, gens: pl.DataFrame | None) -> StepMetrics:
        """The ``StepMetrics`` saved in ``folder`` for these settings, with the completions' text
        taken back from ``gens`` (the run as read now); an empty one when there is none, it is
        damaged, of another logscan version or settings, or ``gens`` does not start with the
        completions it was built from (``compute`` then says why it went over the whole run)."""
        from analyzer import __version__

        out = cls(tags, answer_pattern)
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AssertionError):
            meta = json.loads((folder / _META).read_text(encoding="utf-8"))
            if (meta.get("format"), meta.get("logscan_version")) != (STEPS_FORMAT, __version__):
                return out
            if (tuple(meta["tags"]), meta["answer_pattern"]) != (out.tags, out.answer_pattern):
                return out
            out._prev = _load_prev(folder, meta, out, gens)
            out.saved_height = out._prev.height if out._prev is not None else 0
            if (folder / _CARRIED).is_file():
                carried = json.loads((folder / _CARRIED).read_text(encoding="utf-8"))
                out.carried = carried if isinstance(carried, dict) else {}
        return out


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.glob("features-*.parquet"), key=lambda p: int(p.stem.rsplit("-", 2)[1]))


def _write(frame: pl.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    frame.write_parquet(tmp, compression="lz4", statistics=False)
    tmp.replace(path)


def _load_prev(folder: Path, meta: dict[str, Any], out: StepMetrics, gens: pl.DataFrame | None) -> _Prev | None:
    import polars as pl

    from analyzer.features import CompletionFeatures, Conventions

    height = int(meta["height"])
    if gens is None or gens.height < height or C.OUTPUT not in gens.columns:
        return None
    names = [folder / n for n in meta["features"]]
    stored = pl.concat([pl.read_parquet(p) for p in names], how="vertical") if names else None
    if stored is None or stored.height != height:
        return None
    columns: list[str] = meta["columns"]
    if C.OUTPUT in columns:  # the text, as the run holds it (the rows are checked by their hashes)
        stored = stored.insert_column(columns.index(C.OUTPUT), gens.get_column(C.OUTPUT).head(height).cast(pl.Utf8))
    frame = stored.select(columns)
    conv_d = meta["conventions"]
    conv = None
    if conv_d is not None:
        fields = {f.name for f in dataclasses.fields(Conventions)}
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in conv_d.items() if k in fields}
        conv = Conventions(**values)
    gen_metrics = pl.read_parquet(folder / _GEN)
    if {k: str(v) for k, v in gen_metrics.schema.items()} != meta["gen_schema"]:
        return None
    hashes = pl.read_parquet(folder / _HASHES).get_column("h")
    ranges: SplitRange = {k: (lo, hi) for k, lo, hi in meta["split_range"]}
    features = CompletionFeatures(out.tags, frame, conv, out.answer_pattern)
    return _Prev(height, hashes, conv, features, gen_metrics, ranges)


__all__ = ["STEPS_DIR", "StepMetrics", "growth_stable_grid", "owned", "row_hashes", "split_range", "widened"]
