"""Semantic drift: read the completions, not only the curves.

``score_drift`` embeds a bounded, stratified sample of a run's completions (``analyzer.embeddings``)
and scores, per step:

- **prompt drift**: for every prompt seen at more than one step (same ``question_id``), the cosine
  distance of its completions' mean embedding at a step from the mean embedding at its earliest
  step (the baseline); train and eval/probe prompts separately;
- **diversity**: mean pairwise cosine similarity of completions within a GRPO group and within a
  step (higher = less diverse; near 1 = collapsed);
- **distribution shift and outliers**: how far a step's completions moved from the run's early
  completions, and the share that are far from every early completion;

plus the prompts that drifted most, with difflib before/after comparisons (``SampleDiff``).
Column names and defaults are documented in docs/drift.md.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analyzer import columns as C
from analyzer import embeddings
from analyzer.errors import DeviceUnavailableError, ModelUnavailableError
from analyzer.model import DriftResult, RunData, SampleDiff
from analyzer.values import finite_or_none

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

    from analyzer.embeddings import EncoderLike

# ~20-40 s of embedding on two idle CPU cores (≈ 50-150 completions/s, depending on length) plus
# ~5 s to load the model; --max-embed changes it, 0 = all (the default on a GPU).
DEFAULT_MAX_EMBED = 2000
DEFAULT_PER_GROUP = 8  # completions of one GRPO group kept in the sample
MIN_PER_STEP = 4  # below this many per step, fewer steps are sampled instead (``growth_stable``)
OUTLIER_MIN_DISTANCE = 0.2  # never call a completion an outlier closer than this to an early one
OUTLIER_QUANTILE = 0.99  # ... nor closer than this quantile of early completions' own NN distances
MAX_OUTLIER_REFERENCE = 1000  # early completions kept as the outlier reference (evenly spaced)
MIN_EARLY_REFERENCE = 100  # completions in the "early" reference (extended over more steps if needed)
DIFF_MAX_CHARS = 5000  # difflib's character matching is quadratic: compare at most this much
DIFF_MAX_LINES = 200

# Thresholds calibrated with all-MiniLM-L6-v2 (see docs/drift.md and tests/test_drift.py). The
# detectors own the real thresholds; these are the documented starting points they may import.
SUGGESTED_THRESHOLDS: dict[str, float] = {
    C.DRIFT_EVAL_MEAN: 0.25,  # eval/probe answers mean-embedding moved this far from baseline
    C.DRIFT_TRAIN_MEAN: 0.30,
    C.DRIFT_DIVERSITY_GROUP: 0.95,  # completions of one prompt near-identical
    C.DRIFT_OUTLIER_FRAC: 0.25,
    C.DRIFT_STEP_SHIFT: 0.25,  # the step's mean completion moved away from the early ones
}

DRIFT_COLUMNS: tuple[str, ...] = C.DRIFT_COLUMNS  # kept importable here: the names live in analyzer.columns


@dataclass(frozen=True, slots=True)
class DriftOptions:
    """How drift is scored. ``max_embed``: None = default (``DEFAULT_MAX_EMBED`` on CPU, all on
    a GPU), 0 = every completion, N = at most N completions (stratified sample)."""

    no_embeddings: bool = False
    embedding_model: str | None = None
    max_embed: int | None = None
    device: str | None = None
    cache_dir: Path | None = None
    per_group: int = DEFAULT_PER_GROUP
    baseline_steps: int = 1  # a prompt's baseline pools its completions at its first N steps
    early_fraction: float = 0.1  # "early" = the first 10% of sampled steps (at least one)
    top_k: int = 10
    max_diffs: int = 5
    max_outliers: int = 20


# --- text comparison (also used by `logscan samples`) -------------------------------------------


@dataclass(frozen=True, slots=True)
class TextComparison:
    similarity: float  # difflib ratio over characters, 0..1
    chars_changed: int
    lines_changed: int
    unified_diff: str


def compare_texts(a: str, b: str, *, from_label: str = "before", to_label: str = "after") -> TextComparison:
    """difflib character- and line-level change counts, ratio and a unified line diff of a → b."""
    a_cut, b_cut = a[:DIFF_MAX_CHARS], b[:DIFF_MAX_CHARS]
    sm = difflib.SequenceMatcher(None, a_cut, b_cut, autojunk=False)
    chars = sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in sm.get_opcodes() if tag != "equal")
    chars += abs((len(a) - len(a_cut)) - (len(b) - len(b_cut)))
    a_lines, b_lines = a.splitlines(), b.splitlines()
    lm = difflib.SequenceMatcher(None, a_lines, b_lines, autojunk=False)
    lines = sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in lm.get_opcodes() if tag != "equal")
    diff = list(difflib.unified_diff(a_lines, b_lines, fromfile=from_label, tofile=to_label, lineterm="", n=2))
    if len(diff) > DIFF_MAX_LINES:
        diff = [*diff[:DIFF_MAX_LINES], f"... ({len(diff) - DIFF_MAX_LINES} more diff lines)"]
    return TextComparison(sm.ratio(), chars, lines, "\n".join(diff))


# --- sampling ----------------------------------------------------------------------------------------


def evenly_spaced(n: int, k: int) -> list[int]:
    """At most ``k`` (>= 2) indices of ``range(n)``: the first, the last and evenly spaced ones between."""
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def growth_stable(steps: pl.Series, keep: int) -> pl.Series:
    """At most ``keep`` of the sorted, distinct ``steps``: the first, the last, and the others with
    the smallest hash of their step number. As a run grows, a step that was left out is never
    taken later (the hashes of the old steps do not change; new steps can only push old ones out),
    so a grown run's sample is the earlier one's minus some picks plus new steps': a re-analysis
    finds them in the embedding cache."""
    import polars as pl

    n = steps.len()
    if keep >= n:
        return steps
    if keep < 2:
        return steps.head(1)
    inner = steps.slice(1, n - 2)
    picked = inner.to_frame("step").with_columns(h=pl.col("step").hash(seed=29)).sort("h", "step").head(keep - 2)
    return pl.concat([steps.head(1), picked.get_column("step"), steps.tail(1)]).sort()


def effective_max_embed(options: DriftOptions) -> int:
    """0 = all. None: all on a GPU (``--device cuda`` or an NVIDIA device visible), else the default."""
    if options.max_embed is not None:
        return options.max_embed
    dev = (options.device or "auto").lower()
    if dev.startswith("cuda") or (dev == "auto" and embeddings.nvidia_visible()):
        return 0
    return DEFAULT_MAX_EMBED


def _frame(gens: pl.DataFrame) -> pl.DataFrame:
    """The columns drift needs and a ``_row`` index. ``gens`` is a ``RunData.generations``: its
    split, sample id and GRPO group are complete (``analyzer.model.completion_keys``)."""
    import polars as pl

    cols = gens.columns
    exprs = [
        pl.col(C.STEP).fill_null(-1).alias("step"),
        pl.col(C.SPLIT).alias("split"),
        pl.col(C.SAMPLE_ID).alias("sample_id"),
        (pl.col(C.QUESTION_ID).cast(pl.String) if C.QUESTION_ID in cols else pl.lit(None, pl.String)).alias("qid"),
        pl.col(C.GROUP_ID).alias("gkey"),  # the GRPO group, one definition (model.completion_keys)
    ]
    df = gens.with_row_index("_row").select(pl.col("_row"), *exprs)
    return df.with_columns(is_eval=pl.col("split") != "train")


def select_sample(gens: pl.DataFrame, max_embed: int, *, per_group: int = DEFAULT_PER_GROUP) -> pl.DataFrame:
    """Rows to embed (the ``_frame`` columns), bounded by ``max_embed`` (0 = all), deterministic.

    Eval/probe completions come first (they carry the forgetting signal), up to half the budget
    (or all of it when there is no train split), whole prompts at a time. The rest is spread
    over the train steps (every step; when the budget is too small for every step, the first, the
    last and others chosen by a hash of their number: ``growth_stable``, so a grown run's sample is
    the old one's minus some picks plus the new steps'); within a step whole GRPO groups (at most ``per_group`` of each)
    are taken, preferring prompts that recur at other steps (only those can drift) and then the
    same prompts at every step (by a hash of ``question_id``), so the sample follows prompts over time.
    """
    import polars as pl

    df = _frame(gens)
    if max_embed <= 0 or df.height <= max_embed:
        return df
    df = df.with_columns(
        qhash=pl.col("qid").hash(seed=17),
        ghash=pl.col("gkey").hash(seed=17),
        r=pl.int_range(pl.len()).over(["step", "gkey"], order_by="sample_id"),
    )
    ev = df.filter(pl.col("is_eval"))
    tr = df.filter(~pl.col("is_eval"))
    ev_budget = max_embed if tr.height == 0 else max_embed // 2
    if ev.height > ev_budget:
        ev = ev.filter(pl.col("r") < per_group)
    if ev.height > ev_budget:
        ev = ev.sort(["qhash", "qid", "step", "sample_id"]).head(ev_budget)
    budget = max_embed - ev.height
    if tr.height > budget:
        steps = tr.get_column("step").unique().sort()
        n_steps = steps.len()
        per_step = budget // max(1, n_steps)
        # over every train step, so that which steps are sampled does not change a prompt's rank
        recurring = tr.group_by("qid").agg(nsteps=pl.col("step").n_unique())
        if per_step < MIN_PER_STEP:
            keep = max(1, budget // MIN_PER_STEP)
            chosen = growth_stable(steps, keep)
            tr = tr.filter(pl.col("step").is_in(chosen.implode()))
            per_step = budget // chosen.len()
        tr = (
            tr.filter(pl.col("r") < per_group)
            .join(recurring, on="qid", how="left", nulls_equal=True)
            .with_columns(rec=(pl.col("nsteps") > 1) & pl.col("qid").is_not_null())
            .sort(["step", "rec", "qhash", "ghash", "gkey", "r"], descending=[False, True, False, False, False, False])
            .with_columns(pos=pl.int_range(pl.len()).over("step"))
            .filter(pl.col("pos") < max(1, per_step))
            .drop("nsteps", "rec", "pos")
        )
    out = pl.concat([ev, tr], how="vertical_relaxed")
    return out.drop("qhash", "ghash", "r").sort("_row")


# --- vector helpers ----------------------------------------------------------------------------------


def _group_sums(x: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per distinct code: (code, count, sum of rows, sum of squared row norms), sort-based (fast)."""
    import numpy as np

    order = np.argsort(codes, kind="stable")
    sc = codes[order]
    starts = np.flatnonzero(np.r_[True, sc[1:] != sc[:-1]]) if len(sc) else np.array([], dtype=np.int64)
    xs = x[order]
    sums = np.add.reduceat(xs, starts, axis=0) if len(sc) else np.zeros((0, x.shape[1]), dtype=x.dtype)
    sq = np.add.reduceat((xs * xs).sum(axis=1), starts) if len(sc) else np.zeros(0)
    counts = np.diff(np.r_[starts, len(sc)])
    return sc[starts] if len(sc) else sc, counts, sums, sq


def _mean_pairwise(counts: np.ndarray, sums: np.ndarray, sq: np.ndarray) -> np.ndarray:
    """Mean cosine similarity over distinct pairs of unit rows: (|Σx|² − Σ|x|²) / (n(n−1)); NaN if n < 2."""
    import numpy as np

    n = counts.astype(np.float64)
    num = (sums.astype(np.float64) ** 2).sum(axis=1) - sq
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(n >= 2, num / (n * (n - 1)), np.nan)
    return out


def _nn_distance(x: np.ndarray, ref: np.ndarray, self_index: np.ndarray | None = None) -> np.ndarray:
    """1 − max cosine similarity of each row of ``x`` to ``ref`` (chunked; ``self_index[i]`` excluded)."""
    import numpy as np

    out = np.empty(len(x), dtype=np.float64)
    for start in range(0, len(x), 4096):
        sims = x[start : start + 4096] @ ref.T
        if self_index is not None:
            rows = np.arange(sims.shape[0])
            own = self_index[start : start + 4096]
            mask = own >= 0
            sims[rows[mask], own[mask]] = -np.inf
        out[start : start + 4096] = 1.0 - sims.max(axis=1) if ref.shape[0] else np.nan
    return out


# --- scoring -------------------------------------------------------------------------------------------


def _none_result(reason: str, sampled_from: int = 0) -> DriftResult:
    return DriftResult(method="none", model=None, per_step=None, sampled_from=sampled_from, notes=[reason])


def score_drift(run: RunData, *, encoder: EncoderLike | None = None, options: DriftOptions | None = None) -> DriftResult:
    """Embed a bounded sample of ``run``'s completions and score drift, diversity and outliers.

    ``encoder`` overrides the one chosen from ``options`` (tests pass a fake). Raises
    ``ModelUnavailableError`` only when ``options.embedding_model`` names a model that cannot be
    found; a missing default model falls back to TF-IDF with a note.

    The steps, each its own function: sample the completions (``select_sample``), embed them
    (``_embed``), then diversity (``_diversity``), each prompt's drift from its baseline
    (``_prompt_drift``), the distribution shift and outliers (``_shift_and_outliers``), the
    per-step frame (``_per_step_frame``) and the before/after comparisons (``_top_drifting``).
    """
    options = options or DriftOptions()
    gens = run.generations
    if gens is None or gens.height == 0 or C.OUTPUT not in gens.columns or C.STEP not in gens.columns:
        return _none_result("no completions were logged, so drift was not scored")
    notes: list[str] = []
    max_embed = effective_max_embed(options)
    sample = select_sample(gens, max_embed, per_group=options.per_group)
    if sample.height < gens.height:
        notes.append(
            f"embedded a stratified sample of {sample.height} of {gens.height} completions "
            f"(--max-embed {max_embed}; 0 = all)"
        )
    s = _Sample.of(gens, sample)
    emb = _embed(s.texts, encoder, options, notes)
    s.x = emb.x
    div = _diversity(s)
    drift, per_prompt = _prompt_drift(s, options)
    shift, outlier_frac, outliers, early_cut, threshold = _shift_and_outliers(s, div, options)
    per_step = _per_step_frame(s, drift, div, shift, outlier_frac)
    top_drifting, diffs = _top_drifting(s, per_prompt, options)
    if not per_prompt:
        notes.append(
            "no prompt was seen at more than one step in the sample, so per-prompt drift is empty; "
            "log eval/probe prompts at several steps (or train for more than one epoch)"
        )
    if threshold is not None:
        notes.append(
            f"outliers: farther than {threshold:.3f} (cosine distance) from every completion of the "
            f"early steps (<= {early_cut})"
        )
    return DriftResult(
        method=emb.method,
        model=None if emb.method == "tfidf" else emb.model_name,
        per_step=per_step,
        top_drifting=top_drifting,
        outliers=outliers,
        sample_diffs=diffs,
        embedded=int(emb.embedded),
        cached=int(emb.cached),
        sampled_from=gens.height,
        notes=notes,
    )


@dataclass(slots=True)
class _Sample:
    """The sampled completions drift scores, as parallel columns (row ``i`` everywhere), and
    their embeddings ``x`` once ``_embed`` ran."""

    texts: list[str]
    questions: list[str | None]
    rewards: list[float | None]
    steps: np.ndarray
    is_eval: np.ndarray
    qids: list[str | None]
    gkeys: list[str]
    sample_ids: np.ndarray
    splits: list[str]
    uniq_steps: np.ndarray
    step_pos: dict[int, int]
    x: np.ndarray | None = None

    @classmethod
    def of(cls, gens: pl.DataFrame, sample: pl.DataFrame) -> _Sample:
        import numpy as np
        import polars as pl

        rows = sample.get_column("_row").to_numpy()
        picked = gens[rows].select(
            pl.col(C.OUTPUT).cast(pl.String).fill_null(""),
            (pl.col(C.QUESTION).cast(pl.String) if C.QUESTION in gens.columns else pl.lit(None, pl.String)).alias(
                "q"
            ),
            (
                pl.col(C.TOTAL_REWARD).cast(pl.Float64) if C.TOTAL_REWARD in gens.columns else pl.lit(None, pl.Float64)
            ).alias("reward"),
        )
        steps = sample.get_column("step").to_numpy()
        uniq_steps = np.unique(steps)
        return cls(
            texts=picked.get_column(C.OUTPUT).to_list(),
            questions=picked.get_column("q").to_list(),
            rewards=picked.get_column("reward").to_list(),
            steps=steps,
            is_eval=sample.get_column("is_eval").to_numpy(),
            qids=sample.get_column("qid").to_list(),
            gkeys=sample.get_column("gkey").to_list(),
            sample_ids=sample.get_column("sample_id").to_numpy(),
            splits=sample.get_column("split").to_list(),
            uniq_steps=uniq_steps,
            step_pos={int(s): i for i, s in enumerate(uniq_steps)},
        )

    @property
    def n_steps(self) -> int:
        return len(self.uniq_steps)

    @property
    def emb(self) -> np.ndarray:
        assert self.x is not None, "_embed runs first"
        return self.x

    def per_step_array(self) -> np.ndarray:
        import numpy as np

        return np.full(self.n_steps, np.nan)


@dataclass(frozen=True, slots=True)
class _Embedded:
    x: np.ndarray
    method: str
    model_name: str | None
    embedded: int
    cached: int


def _embed(texts: list[str], encoder: EncoderLike | None, options: DriftOptions, notes: list[str]) -> _Embedded:
    """The texts' embeddings; the encoder chosen from ``options`` unless one is given, TF-IDF when
    the default model cannot run here (with a note); notes on what was embedded and cached."""
    import numpy as np

    from analyzer.embeddings import TfidfEncoder, load_encoder

    chosen_here = encoder is None
    if encoder is None:
        encoder, why = load_encoder(
            no_embeddings=options.no_embeddings,
            model=options.embedding_model,
            device=options.device,
            cache_dir=options.cache_dir,
        )
        if why:
            notes.append(why)
    try:
        x = np.asarray(encoder.encode(texts), dtype=np.float32)
    except ModelUnavailableError as exc:
        # the default model was found but cannot run here (e.g. sentence-transformers missing):
        # still score drift, lexically, and say why; a model or a device the user named stays an error
        if not chosen_here or options.embedding_model or isinstance(exc, DeviceUnavailableError):
            raise
        encoder = TfidfEncoder()
        notes.append(f"lexical drift (TF-IDF) because the embedding model could not be loaded: {exc}")
        x = np.asarray(encoder.encode(texts), dtype=np.float32)
    embedded, cached = encoder.last_embedded, encoder.last_cached
    method, model_name = encoder.method, encoder.name
    backend = getattr(encoder, "backend", None)
    if method == "embeddings" and embedded and backend in ("onnx", "torch"):
        runtime = "onnxruntime" if backend == "onnx" else f"PyTorch ({getattr(encoder, 'device', None) or 'cpu'})"
        notes.append(f"embedded {embedded} new completions with {model_name} on {runtime}; {cached} came from the cache")
    elif method == "embeddings" and cached and not embedded:
        notes.append(f"all {cached} embeddings came from the cache ({model_name}): nothing new to embed")
    backend_note = getattr(encoder, "backend_note", None)
    if backend_note:
        notes.append(str(backend_note))
    return _Embedded(x, method, model_name, embedded, cached)


@dataclass(slots=True)
class _Diversity:
    """Within-prompt and within-step similarity per step, and the per-step sums of the primary
    rows (train; all rows without a train split) that the distribution shift reuses."""

    p_idx: np.ndarray
    div_group: np.ndarray
    div_step: np.ndarray
    p_steps: np.ndarray | None = None
    p_counts: np.ndarray | None = None
    p_sums: np.ndarray | None = None


def _diversity(s: _Sample) -> _Diversity:
    import numpy as np

    x, steps, uniq_steps, n_steps = s.emb, s.steps, s.uniq_steps, s.n_steps
    primary = ~s.is_eval if (~s.is_eval).any() else np.ones(len(steps), dtype=bool)
    p_idx = np.flatnonzero(primary)
    out = _Diversity(p_idx, s.per_step_array(), s.per_step_array())
    if len(p_idx):
        gcodes = np.unique([f"{steps[i]}\x00{s.gkeys[i]}" for i in p_idx], return_inverse=True)[1]
        codes, counts, sums, sq = _group_sums(x[p_idx], gcodes)
        sims = _mean_pairwise(counts, sums, sq)
        # the step of each group: every member shares it, take it from any member
        group_step = np.empty(len(codes), dtype=np.int64)
        group_step[gcodes] = steps[p_idx]
        ok = ~np.isnan(sims)
        gpos = np.searchsorted(uniq_steps, group_step[ok])
        n_groups = np.bincount(gpos, minlength=n_steps)
        total = np.bincount(gpos, weights=sims[ok], minlength=n_steps)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.div_group = np.where(n_groups > 0, total / np.maximum(n_groups, 1), np.nan)
        # per step (sorted), reused for the distribution shift below
        out.p_steps, out.p_counts, out.p_sums, p_sq = _group_sums(x[p_idx], steps[p_idx])
        for st, v in zip(out.p_steps, _mean_pairwise(out.p_counts, out.p_sums, p_sq), strict=True):
            out.div_step[s.step_pos[int(st)]] = v
    return out


def _prompt_drift(s: _Sample, options: DriftOptions) -> tuple[dict[str, list[list[float]]], list[dict[str, Any]]]:
    """Each prompt's distance from its baseline (its first ``baseline_steps`` steps) per later
    step, collected per step and class (train / eval), and one record per prompt that drifted."""
    x, steps, is_eval, step_pos = s.emb, s.steps, s.is_eval, s.step_pos
    drift: dict[str, list[list[float]]] = {
        "train": [[] for _ in range(s.n_steps)],
        "eval": [[] for _ in range(s.n_steps)],
    }
    prompt_rows: dict[tuple[str, str], dict[int, list[int]]] = {}
    for i, q in enumerate(s.qids):
        if q is None:
            continue
        cls = "eval" if is_eval[i] else "train"
        prompt_rows.setdefault((cls, q), {}).setdefault(int(steps[i]), []).append(i)
    per_prompt: list[dict[str, Any]] = []
    for (cls, q), by_step in prompt_rows.items():
        if len(by_step) < 2:
            continue
        ordered = sorted(by_step)
        k = min(max(1, options.baseline_steps), len(ordered) - 1)
        base_rows = [i for st in ordered[:k] for i in by_step[st]]
        base = embeddings.unit_rows(x[base_rows].mean(axis=0))
        if not base.any():
            continue
        dists: dict[int, float] = {}
        for st in ordered[k:]:
            c = embeddings.unit_rows(x[by_step[st]].mean(axis=0))
            if not c.any():
                continue
            d = float(max(0.0, 1.0 - float(c @ base)))
            dists[st] = d
            drift[cls][step_pos[st]].append(d)
        if dists:
            last = ordered[-1] if ordered[-1] in dists else max(dists)
            per_prompt.append(
                {
                    "cls": cls,
                    "question_id": q,
                    "distance": dists[last],
                    "max_distance": max(dists.values()),
                    "early_step": ordered[0],
                    "late_step": last,
                    "steps": len(ordered),
                    "base_rows": base_rows,
                    "late_rows": by_step[last],
                    "base_centroid": base,
                }
            )
    return drift, per_prompt


def _shift_and_outliers(
    s: _Sample, div: _Diversity, options: DriftOptions
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]], int | None, float | None]:
    """Per step: how far its mean completion moved from the early ones, and the share of its
    completions farther than a threshold from every early one; the most distant late ones as
    examples; the early cut and the threshold (None without primary rows)."""
    import numpy as np

    x, steps, uniq_steps, step_pos, p_idx = s.emb, s.steps, s.uniq_steps, s.step_pos, div.p_idx
    shift, outlier_frac = s.per_step_array(), s.per_step_array()
    outliers: list[dict[str, Any]] = []
    early_cut = None
    threshold = None
    if len(p_idx):
        assert div.p_steps is not None and div.p_counts is not None and div.p_sums is not None
        p_steps, p_counts, p_sums = div.p_steps, div.p_counts, div.p_sums
        n_early = max(1, math.ceil(len(p_steps) * options.early_fraction))
        # a reference of a handful of completions makes everything look new: extend it to at
        # least MIN_EARLY_REFERENCE completions, but never beyond the first half of the run
        while n_early < max(1, len(p_steps) // 2) and p_counts[:n_early].sum() < MIN_EARLY_REFERENCE:
            n_early += 1
        early_cut = int(p_steps[n_early - 1])
        early_idx = p_idx[steps[p_idx] <= early_cut]
        early_centroid = embeddings.unit_rows(x[early_idx].mean(axis=0))
        for st, ssum in zip(p_steps, p_sums, strict=True):
            c = embeddings.unit_rows(ssum)
            if c.any() and early_centroid.any():
                shift[step_pos[int(st)]] = max(0.0, 1.0 - float(c @ early_centroid))
        ref_idx = early_idx
        if len(ref_idx) > MAX_OUTLIER_REFERENCE:
            ref_idx = ref_idx[np.linspace(0, len(ref_idx) - 1, MAX_OUTLIER_REFERENCE).round().astype(int)]
        ref = x[ref_idx]
        pos_in_ref = np.full(len(x), -1, dtype=np.int64)
        pos_in_ref[ref_idx] = np.arange(len(ref_idx))
        if len(ref_idx) >= 2:
            own = _nn_distance(ref, ref, np.arange(len(ref_idx)))
            threshold = max(OUTLIER_MIN_DISTANCE, float(np.quantile(own, OUTLIER_QUANTILE)))
        else:
            threshold = OUTLIER_MIN_DISTANCE
        dist = _nn_distance(x[p_idx], ref, pos_in_ref[p_idx])
        dist = np.where(np.isinf(dist) | np.isnan(dist), 0.0, dist)  # a lone reference row vs itself
        flagged = dist > threshold
        ppos = np.searchsorted(uniq_steps, steps[p_idx])
        n_rows = np.bincount(ppos, minlength=s.n_steps)
        n_flag = np.bincount(ppos, weights=flagged.astype(np.float64), minlength=s.n_steps)
        outlier_frac = np.where(n_rows > 0, n_flag / np.maximum(n_rows, 1), np.nan)
        late = flagged & (steps[p_idx] > early_cut)
        seen_texts: set[str] = set()
        for j in np.flatnonzero(late)[np.argsort(-dist[late], kind="stable")]:
            i = int(p_idx[j])
            if s.texts[i] in seen_texts:  # one example per distinct text is enough evidence
                continue
            seen_texts.add(s.texts[i])
            if len(outliers) >= options.max_outliers:
                break
            outliers.append(
                {
                    "sample_id": int(s.sample_ids[i]),
                    "step": int(steps[i]),
                    "distance": round(float(dist[j]), 4),
                    "split": s.splits[i],
                    "question_id": s.qids[i],
                    "excerpt": s.texts[i][:200],
                }
            )
    return shift, outlier_frac, outliers, early_cut, threshold


def _per_step_frame(
    s: _Sample,
    drift: dict[str, list[list[float]]],
    div: _Diversity,
    shift: np.ndarray,
    outlier_frac: np.ndarray,
) -> pl.DataFrame:
    """``step`` + the ``drift_*`` columns (``analyzer.columns.DRIFT_COLUMNS``); rows of
    completions without a step (-1) left out."""
    import numpy as np
    import polars as pl

    def agg(values: list[list[float]], fn: str) -> list[float | None]:
        out: list[float | None] = []
        for v in values:
            if not v:
                out.append(None)
            elif fn == "mean":
                out.append(float(np.mean(v)))
            elif fn == "max":
                out.append(float(np.max(v)))
            else:
                out.append(float(np.quantile(v, 0.9)))
        return out

    def col(a: np.ndarray) -> list[float | None]:
        return [None if math.isnan(v) else float(v) for v in a]

    uniq_steps = s.uniq_steps
    counts_per_step = np.bincount(np.searchsorted(uniq_steps, s.steps), minlength=s.n_steps)
    per_step = pl.DataFrame(
        {
            "step": pl.Series(uniq_steps.astype(np.int64), dtype=pl.Int64),
            C.DRIFT_N: pl.Series(counts_per_step.astype(np.int64), dtype=pl.Int64),
            C.DRIFT_TRAIN_MEAN: pl.Series(agg(drift["train"], "mean"), dtype=pl.Float64),
            C.DRIFT_TRAIN_P90: pl.Series(agg(drift["train"], "p90"), dtype=pl.Float64),
            C.DRIFT_TRAIN_N: pl.Series([len(v) for v in drift["train"]], dtype=pl.Int64),
            C.DRIFT_EVAL_MEAN: pl.Series(agg(drift["eval"], "mean"), dtype=pl.Float64),
            C.DRIFT_EVAL_MAX: pl.Series(agg(drift["eval"], "max"), dtype=pl.Float64),
            C.DRIFT_EVAL_N: pl.Series([len(v) for v in drift["eval"]], dtype=pl.Int64),
            C.DRIFT_DIVERSITY_GROUP: pl.Series(col(div.div_group), dtype=pl.Float64),
            C.DRIFT_DIVERSITY_STEP: pl.Series(col(div.div_step), dtype=pl.Float64),
            C.DRIFT_STEP_SHIFT: pl.Series(col(shift), dtype=pl.Float64),
            C.DRIFT_OUTLIER_FRAC: pl.Series(col(outlier_frac), dtype=pl.Float64),
        }
    )
    return per_step.filter(pl.col("step") >= 0) if (uniq_steps < 0).any() else per_step


def _top_drifting(
    s: _Sample, per_prompt: list[dict[str, Any]], options: DriftOptions
) -> tuple[list[dict[str, Any]], list[SampleDiff]]:
    """The prompts that drifted most (``options.top_k``) and, for the first ``max_diffs`` of them,
    a before/after comparison of a typical completion of the baseline and of the last step."""
    import numpy as np

    x, steps, texts, questions = s.emb, s.steps, s.texts, s.questions
    per_prompt.sort(key=lambda p: (-p["distance"], p["question_id"]))
    top = per_prompt[: options.top_k]

    def representative(rows_: list[int], centroid: np.ndarray) -> int:
        # the completion closest to the mean: typical of that step, not an accident of sampling
        sims = x[rows_] @ centroid
        best = int(np.argmax(sims))
        return rows_[best]

    diffs: list[SampleDiff] = []
    for p in top[: options.max_diffs]:
        e = representative(p["base_rows"], p["base_centroid"])
        late_rows = p["late_rows"]
        la = representative(late_rows, embeddings.unit_rows(x[late_rows].mean(axis=0)))
        cmp_ = compare_texts(texts[e], texts[la], from_label=f"step {steps[e]}", to_label=f"step {steps[la]}")
        diffs.append(
            SampleDiff(
                question_id=p["question_id"],
                question=questions[e] or "",
                split=s.splits[la],
                early_step=int(steps[e]),
                late_step=int(steps[la]),
                early_sample_id=int(s.sample_ids[e]),
                late_sample_id=int(s.sample_ids[la]),
                early_text=texts[e],
                late_text=texts[la],
                early_reward=finite_or_none(s.rewards[e]),
                late_reward=finite_or_none(s.rewards[la]),
                similarity=round(cmp_.similarity, 4),
                chars_changed=cmp_.chars_changed,
                lines_changed=cmp_.lines_changed,
                unified_diff=cmp_.unified_diff,
                semantic_distance=round(p["distance"], 4),
            )
        )
    top_drifting = [
        {
            "question_id": p["question_id"],
            "question": (questions[p["base_rows"][0]] or "")[:300],
            "split": s.splits[p["late_rows"][0]],
            "distance": round(p["distance"], 4),
            "max_distance": round(p["max_distance"], 4),
            "early_step": p["early_step"],
            "late_step": p["late_step"],
            "steps": p["steps"],
        }
        for p in top
    ]
    return top_drifting, diffs

