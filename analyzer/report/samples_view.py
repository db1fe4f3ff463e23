"""What ``logscan samples`` prints: how one prompt's completions changed over a run, with diffs and rewards.

The seed's SampleComparator as a terminal view: pick a prompt by ``question_id`` or by a
substring of its text, then print one completion per step (first, last and evenly spaced
steps in between), each compared with the previous one shown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from analyzer import columns as C
from analyzer.drift import compare_texts, evenly_spaced
from analyzer.errors import InputError
from analyzer.report.escape import terminal_safe
from analyzer.report.numbers import fmt_fixed

if TYPE_CHECKING:
    import polars as pl

    from analyzer.model import RunData

MAX_TEXT_CHARS = 3000
MAX_PROMPT_CHARS = 300
DIFF_MIN_SIMILARITY = 0.5  # below this a diff is noisier than the new text itself


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit} more characters)"


def _clip_middle(text: str, limit: int) -> str:
    """Keep both ends: chat prompts start with a shared system prompt and end with the question."""
    if len(text) <= limit:
        return text
    head = limit // 3
    tail = limit - head
    return f"{text[:head]} … ({len(text) - limit} characters) … {text[-tail:]}"


def _some_ids(df: pl.DataFrame, n: int = 5) -> str:
    import polars as pl

    top = (
        df.filter(pl.col("_qid").is_not_null())
        .group_by("_qid")
        .agg(pl.col(C.STEP).n_unique().alias("steps"))
        .sort(["steps", "_qid"], descending=[True, False])
        .head(n)
    )
    ids = [f"{terminal_safe(q)} ({s} steps)" for q, s in top.iter_rows()]
    return ", ".join(ids) if ids else "none (the log has no question_id)"


def _pick_steps(steps: list[int], limit: int) -> list[int]:
    """First, last and evenly spaced steps in between."""
    if len(steps) <= limit:
        return steps
    if limit == 1:
        return [steps[-1]]
    return [steps[i] for i in evenly_spaced(len(steps), limit)]


def format_samples(
    run: RunData,
    *,
    question_id: str | None = None,
    prompt: str | None = None,
    split: str | None = None,
    limit: int = 10,
) -> str:
    """The text ``logscan samples`` prints for one prompt of ``run`` (raises ``InputError``)."""
    import polars as pl

    gens = run.generations
    if gens is None or gens.height == 0 or C.OUTPUT not in gens.columns:
        raise InputError(f"{run.path} has no logged completions; `logscan samples` needs generations records")
    if not question_id and not prompt:
        raise InputError("give --question-id ID or --prompt TEXT")
    df = gens.with_columns(
        (pl.col(C.QUESTION_ID).cast(pl.String) if C.QUESTION_ID in gens.columns else pl.lit(None, pl.String)).alias("_qid"),
        (pl.col(C.QUESTION).cast(pl.String) if C.QUESTION in gens.columns else pl.lit(None, pl.String)).alias("_q"),
        pl.col(C.SPLIT).alias("_split"),  # complete: analyzer.model.completion_keys
    )
    if split:
        present = sorted(df.get_column("_split").unique().to_list())
        df = df.filter(pl.col("_split") == split)
        if df.height == 0:
            raise InputError(f"no completions with split {split!r}; splits in this run: {', '.join(present)}")
    notes: list[str] = []
    if question_id:
        chosen = df.filter(pl.col("_qid") == str(question_id))
        if chosen.height == 0:
            raise InputError(
                f"no completions with question_id {question_id!r}; some valid ids: {_some_ids(df)} "
                f"(or search the prompt text with --prompt)"
            )
    else:
        assert prompt is not None
        chosen = df.filter(pl.col("_q").str.contains(prompt, literal=True))
        if chosen.height == 0:
            chosen = df.filter(pl.col("_q").str.to_lowercase().str.contains(prompt.lower(), literal=True))
        if chosen.height == 0:
            raise InputError(
                f"no prompt contains {prompt!r}; some valid ids: {_some_ids(df)} (use --question-id ID)"
            )
        # several prompts may contain the substring: show the one logged at the most steps
        by_prompt = (
            chosen.group_by(["_qid", "_q"])
            .agg(pl.col(C.STEP).n_unique().alias("steps"))
            .sort(["steps", "_qid", "_q"], descending=[True, False, False], nulls_last=True)
        )
        qid0, q0 = by_prompt.row(0)[0], by_prompt.row(0)[1]
        if by_prompt.height > 1:
            others = [terminal_safe(str(r[0])) for r in by_prompt.rows()[1:6]]
            notes.append(f"{by_prompt.height} prompts match; showing the one logged at the most steps (others: {', '.join(others)})")
        chosen = chosen.filter(
            (pl.col("_qid") == qid0) if qid0 is not None else (pl.col("_q") == q0)
        )

    sort_cols = [C.STEP] + ([C.SAMPLE_ID] if C.SAMPLE_ID in chosen.columns else [])
    chosen = chosen.sort(sort_cols, nulls_last=True)
    reward_cols = [c for c in chosen.columns if c.startswith(C.REWARD_PREFIX)]
    declared = [f"{C.REWARD_PREFIX}{n}" for n in (run.info.get("reward_names") or [])]
    # the order the run declared its reward functions in, then any others
    reward_cols = [c for c in declared if c in reward_cols] + [c for c in reward_cols if c not in declared]
    all_steps = chosen.get_column(C.STEP).unique().sort().drop_nulls().to_list()
    shown = _pick_steps(all_steps, max(1, limit))

    first = chosen.row(0, named=True)
    splits = sorted(chosen.get_column("_split").unique().to_list())
    lines: list[str] = [
        f"question_id: {terminal_safe(str(first['_qid']))}  ({' · '.join(splits)} · {len(all_steps)} steps · "
        f"{chosen.height} completions)",
        f"prompt: {terminal_safe(_clip_middle(first['_q'] or '', MAX_PROMPT_CHARS))}",
    ]
    truth = first.get(C.GROUND_TRUTH)
    if truth is not None:
        lines.append(f"ground truth: {terminal_safe(_clip(str(truth), MAX_PROMPT_CHARS))}")
    if len(shown) < len(all_steps):
        lines.append(f"showing {len(shown)} of {len(all_steps)} steps (first, last and evenly spaced; --limit to change)")
    lines.extend(notes)

    prev_text: str | None = None
    prev_step: int | None = None
    for step in shown:
        at = chosen.filter(pl.col(C.STEP) == step)
        row = at.row(0, named=True)
        text = row.get(C.OUTPUT) or ""
        parts = [f"step {step}"]
        if len(splits) > 1:
            parts.append(str(row["_split"]))
        if C.SAMPLE_ID in row and row[C.SAMPLE_ID] is not None:
            parts.append(f"sample {row[C.SAMPLE_ID]}")
        reward = f"reward {fmt_fixed(row.get(C.TOTAL_REWARD))}"
        if reward_cols:
            reward += " (" + ", ".join(f"{c[len(C.REWARD_PREFIX):]} {fmt_fixed(row.get(c))}" for c in reward_cols) + ")"
        parts.append(reward)
        if at.height > 1 and C.TOTAL_REWARD in at.columns:
            r = at.get_column(C.TOTAL_REWARD).cast(pl.Float64)
            parts.append(
                f"{at.height} completions at this step, reward mean {fmt_fixed(r.mean())} "
                f"[{fmt_fixed(r.min())}–{fmt_fixed(r.max())}]; showing the first"
            )
        lines.append("")
        lines.append("── " + " · ".join(parts))
        if prev_text is None:
            lines.append(terminal_safe(_clip(text, MAX_TEXT_CHARS)))
        elif text == prev_text:
            lines.append(f"(same text as step {prev_step})")
        else:
            cmp_ = compare_texts(prev_text, text, from_label=f"step {prev_step}", to_label=f"step {step}")
            lines.append(
                f"vs step {prev_step}: similarity {cmp_.similarity:.2f} · {cmp_.chars_changed} chars changed · "
                f"{cmp_.lines_changed} lines changed"
            )
            multi_line = "\n" in prev_text.strip() or "\n" in text.strip()
            if multi_line and cmp_.similarity >= DIFF_MIN_SIMILARITY:
                body = cmp_.unified_diff.split("\n", 2)[2] if cmp_.unified_diff.count("\n") >= 2 else cmp_.unified_diff
                lines.append(terminal_safe(_clip(body, MAX_TEXT_CHARS)))
            else:
                lines.append(terminal_safe(_clip(text, MAX_TEXT_CHARS)))
        prev_text, prev_step = text, step
    return "\n".join(lines)
