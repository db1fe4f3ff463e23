"""The completions a report shows, picked with Polars: the HTML table's rows (every alert's evidence
samples and the diffed samples first, then a stratified sample per step and split) and the
completions an alert's evidence names. Model text is left raw here; the templates escape it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from analyzer import columns as C
from analyzer.values import finite_or_none

if TYPE_CHECKING:
    from analyzer.model import Alert, Analysis

TABLE_ROW_LIMIT = 2000  # completions embedded in report.html
TABLE_TEXT_LIMIT = 1500  # characters of each completion kept in the table
TABLE_QUESTION_LIMIT = 400
TABLE_REWARD_COLUMNS = 12  # reward functions shown per completion
_JUDGED = "__judged_answer"  # the answer the accuracy judged (Analysis.answers), in the table's frame


def sample_ids(alert: Alert) -> list[int]:
    ids = alert.evidence.get("sample_ids") or []
    out: list[int] = []
    for v in ids if isinstance(ids, list | tuple) else [ids]:
        try:
            out.append(int(v))
        except (TypeError, ValueError):
            continue
    return out


def lookup_samples(analysis: Analysis, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    import polars as pl

    gens = analysis.run.generations
    wanted = sorted(set(ids))
    if gens is None or not wanted or C.SAMPLE_ID not in gens.columns:
        return {}
    cols = [
        c
        for c in (C.SAMPLE_ID, C.STEP, C.SPLIT, C.QUESTION_ID, C.OUTPUT, C.TOTAL_REWARD)
        if c in gens.columns
    ]
    rows = gens.lazy().select(cols).filter(pl.col(C.SAMPLE_ID).is_in(wanted)).collect().to_dicts()
    return {int(r[C.SAMPLE_ID]): r for r in rows}



def completions_table(
    analysis: Analysis, *, limit: int = TABLE_ROW_LIMIT
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows of the HTML completions table, sampled to ``limit``: every alert's evidence samples,
    the diffed samples, then a stratified sample per (step, split). Returns (rows, info)."""
    import polars as pl

    gens = analysis.run.generations
    if gens is None or gens.height == 0:
        return [], {"total": 0, "shown": 0, "sampled": False}
    linked: dict[int, list[str]] = {}
    for a in analysis.alerts:
        for sid in sample_ids(a):
            kinds = linked.setdefault(sid, [])
            if a.kind not in kinds:
                kinds.append(a.kind)
    forced = set(linked)
    if analysis.drift is not None:
        for d in analysis.drift.sample_diffs:
            forced.update((d.early_sample_id, d.late_sample_id))
    frame = gens.lazy()  # sample_id and split are complete (analyzer.model.completion_keys)
    # the answer shown is the one the accuracy judged (the run's own answer convention), not the
    # first <answer> ingest filled model_answer with; model_answer only for an Analysis built
    # without answers (the CLI always has them: html-report analyses the run afresh)
    judged = analysis.answers is not None and analysis.answers.len() == gens.height
    if judged:
        assert analysis.answers is not None
        frame = frame.with_columns(analysis.answers.alias(_JUDGED))
    total = gens.height
    if total > limit:
        forced_list = sorted(forced)[: limit // 2]
        strata = [c for c in (C.STEP, C.SPLIT) if c in gens.columns]
        budget = limit - len(forced_list)
        n_groups = gens.select(strata).n_unique() if strata else 1
        per_group = max(1, budget // max(1, n_groups))
        # A hash of the id is a deterministic "random" order: the same run samples the same rows.
        key = pl.col(C.SAMPLE_ID).hash(seed=7)
        rank = (key.rank("ordinal").over(strata) if strata else key.rank("ordinal")) - 1
        picked = (
            frame.with_columns(_rank=rank, _key=key)
            .filter((pl.col("_rank") < per_group) & ~pl.col(C.SAMPLE_ID).is_in(forced_list))
            .sort(["_rank", "_key"])
            .head(budget)
            .drop(["_rank", "_key"])
        )
        chosen = pl.concat(
            [frame.filter(pl.col(C.SAMPLE_ID).is_in(forced_list)), picked], how="vertical_relaxed"
        )
    else:
        chosen = frame
    reward_cols = [c for c in gens.columns if c.startswith(C.REWARD_PREFIX)][:TABLE_REWARD_COLUMNS]
    want = [
        c
        for c in (
            C.SAMPLE_ID,
            C.STEP,
            C.SPLIT,
            C.QUESTION_ID,
            C.QUESTION,
            C.OUTPUT,
            _JUDGED if judged else C.ANSWER,
            C.GROUND_TRUTH,
            C.TOTAL_REWARD,
        )
        if c in gens.columns or c == _JUDGED
    ] + reward_cols
    sort_cols = [c for c in (C.STEP, C.SAMPLE_ID) if c in want]
    df = chosen.select(want).sort(sort_cols).collect()
    rows = []
    truncated = 0
    for r in df.iter_rows(named=True):
        out_text = r.get(C.OUTPUT) or ""
        if len(out_text) > TABLE_TEXT_LIMIT:
            out_text = out_text[:TABLE_TEXT_LIMIT]
            truncated += 1
        sid = int(r[C.SAMPLE_ID])
        rows.append(
            {
                "id": sid,
                "step": r.get(C.STEP),
                "split": r.get(C.SPLIT) or "train",
                "qid": r.get(C.QUESTION_ID) or "",
                "q": (r.get(C.QUESTION) or "")[:TABLE_QUESTION_LIMIT],
                "out": out_text,
                "cut": len(r.get(C.OUTPUT) or "") > TABLE_TEXT_LIMIT,
                "ans": r.get(_JUDGED if judged else C.ANSWER),
                "gt": r.get(C.GROUND_TRUTH),
                "r": finite_or_none(r.get(C.TOTAL_REWARD)),
                "rw": {c[len(C.REWARD_PREFIX) :]: finite_or_none(r.get(c)) for c in reward_cols},
                "al": linked.get(sid, []),
            }
        )
    info = {
        "total": total,
        "shown": len(rows),
        "sampled": total > len(rows),
        "truncated_texts": truncated,
        "text_limit": TABLE_TEXT_LIMIT,
        "alert_linked": sum(1 for r in rows if r["al"]),
    }
    return rows, info
