"""Console logs: what a training job printed, captured to a file.

- verl: ``step:N - key:value - key:value …`` lines (``verl.utils.logger.LocalLogger``), usually
  prefixed by Ray's ``(TaskRunner pid=…)`` and ANSI colour codes;
- TRL / transformers: the ``{'loss': …, 'reward': …}`` dict the Trainer prints every
  ``logging_steps``, possibly with values as strings. The dict carries no step: it is taken from
  the tqdm progress bar printed since the previous dict, or, when the bars do not say, from the
  line order (1, 2, 3…), which the report notes.

Dicts are parsed with ``ast.literal_eval`` (literals only, never evaluated code).
"""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path
from typing import Any, Final

from analyzer import columns as C
from analyzer.errors import InputError
from analyzer.ingest._common import (
    ORDER_COL,
    Collector,
    empty_steps,
    finalize_generations,
    iter_lines,
    metric_values,
    short,
    steps_frame,
    to_float,
    utf8_safe,
)
from analyzer.ingest.hf_trainer_state import SUMMARY_KEYS
from analyzer.model import IngestReport, RunData

ANSI_RE: Final = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
VERL_STEP_RE: Final = re.compile(r"(?:^|\s)step:(\d+) - ")
VERL_RESUME_RE: Final = re.compile(r"Resuming from \S*?global_step_(\d+)")
TQDM_RE: Final = re.compile(r"(\d+)/(\d+) \[")
MAX_DICT_CHARS: Final = 1 << 20  # a metrics dict is a few KB; bigger "dicts" are something else
ROLLOUT_MD_RE: Final = re.compile(r"^## === Rollout Step \d+ ===", re.MULTILINE)


def _console_kind(text: str) -> str | None:
    """``verl_console`` | ``trl_console`` | None for a stretch of a console log."""
    clean = ANSI_RE.sub("", text)
    if VERL_STEP_RE.search(clean):
        return "verl_console"
    for seg in re.split(r"[\r\n]", clean):
        s = seg.strip()
        if s.startswith("{'") and s.endswith("}"):
            return "trl_console"
    return None


def sniff(path: Path) -> str | None:
    """``verl_console`` | ``trl_console`` | ``rollout_markdown`` | None, from the first 4 MB (and
    the last 4 MB of a bigger file)."""
    with path.open("rb") as fh:
        raw = fh.read(4 << 20)
        head = raw.decode("utf-8", errors="replace")
        if ROLLOUT_MD_RE.search(head):
            return "rollout_markdown"
        kind = _console_kind(head)
        if kind is None and path.stat().st_size > len(raw):
            fh.seek(-(4 << 20), 2)
            kind = _console_kind(fh.read().decode("utf-8", errors="replace"))
    return kind


def load_verl_console(path: Path, report: IngestReport) -> RunData:
    col = Collector(report, path.parent)
    col.read(path)
    rows: dict[int, dict[str, float | None]] = {}
    prev: int | None = None
    for lineno, text, _ in iter_lines(path, col):
        clean = ANSI_RE.sub("", text)
        resume = VERL_RESUME_RE.search(clean)
        if resume:
            col.resume(path, lineno, prev, int(resume.group(1)))
            continue
        m = VERL_STEP_RE.search(clean)
        if not m:
            continue
        report.records_read += 1
        step = int(m.group(1))
        pairs: dict[str, Any] = {}
        for seg in clean[m.end() :].split(" - "):
            seg = seg.strip()
            if not seg:
                continue
            key, sep, value = seg.rpartition(":")
            if not sep or not key:
                col.issue(path, lineno, f"not a key:value pair: {short(seg)}", "malformed", skipped=False)
                continue
            pairs[key] = value
        if prev is not None and step < prev:
            col.resume(path, lineno, prev, step)
        prev = step
        rows.setdefault(step, {}).update(metric_values(pairs, path, lineno, col))
    col.finish()
    if not rows:
        raise InputError(f"{path}: no verl 'step:N - key:value' lines")
    info = {"run_id": path.stem}
    return RunData(path=str(path), steps=steps_frame(rows), generations=None, report=report, info=info)


def load_trl_console(path: Path, report: IngestReport) -> RunData:
    col = Collector(report, path.parent)
    col.read(path)
    # (line, the last value each progress bar (by its total) showed before this dict, dict)
    found: list[tuple[int, dict[int, int], dict[str, Any]]] = []
    info: dict[str, Any] = {"run_id": path.stem}
    seen: dict[int, int] = {}
    for lineno, text, _ in iter_lines(path, col):
        for seg in text.split("\r"):
            clean = ANSI_RE.sub("", seg).strip()
            if clean.startswith("{'") and not clean.endswith("}"):
                col.issue(path, lineno, "a metrics dict line without its closing brace (cut short?); skipped", "malformed")
                continue
            if clean.startswith("{'"):
                if len(clean) > MAX_DICT_CHARS:
                    col.issue(path, lineno, f"a {len(clean)}-character dict line; skipped", "malformed")
                    continue
                try:
                    obj = utf8_safe(ast.literal_eval(clean))
                except (ValueError, SyntaxError, MemoryError, RecursionError):
                    col.issue(path, lineno, "a dict-like line that is not a Python literal; skipped", "malformed")
                    continue
                if not isinstance(obj, dict) or not obj:
                    continue
                report.records_read += 1
                if SUMMARY_KEYS & obj.keys():
                    info["train_summary"] = obj
                    continue
                found.append((lineno, dict(seen), obj))
                continue
            for m in TQDM_RE.finditer(clean):
                seen[int(m.group(2))] = int(m.group(1))
    # Several progress bars interleave (training, evaluation loops, dataset maps); bars are told
    # apart by their total. The training bar is the one whose last value before each dict gives
    # every dict a step that never goes back (an eval dict shares its train step) with the most
    # distinct steps; the largest total breaks a tie. Without one, steps follow line order.
    bar_steps: list[int | None] = [None] * len(found)
    best: tuple[int, int] | None = None
    for total in {t for _, bars, _ in found for t in bars}:
        cand = [bars.get(total) for _, bars, _ in found]
        if any(c is None for c in cand) or any(a > b for a, b in itertools.pairwise(cand)):  # type: ignore[operator]
            continue
        score = (len(set(cand)), total)
        if best is None or score > best:
            best, bar_steps = score, cand
    use_bar = best is not None and best[0] > 1
    if found and not use_bar:
        col.note(f"{col.rel(path)}: metric lines carry no step; steps numbered 1..{len(found)} in line order")
    rows: dict[int, dict[str, float | None]] = {}
    for i, ((lineno, _, obj), bar) in enumerate(zip(found, bar_steps, strict=True)):
        step = bar if use_bar and bar is not None else i + 1
        rows.setdefault(step, {}).update(metric_values(obj, path, lineno, col))
    col.finish()
    if not rows:
        raise InputError(f"{path}: no metric dict lines ({{'loss': ...}}) found")
    return RunData(path=str(path), steps=steps_frame(rows), generations=None, report=report, info=info)


# --- Markdown rollout dumps ----------------------------------------------------------------------
_MD_ROLLOUT_RE: Final = re.compile(r"^## === Rollout Step (\d+) ===\s*$")
_MD_STEP_RE: Final = re.compile(r"^Step: (\d+)/\d+")
_MD_SAMPLE_RE: Final = re.compile(r"^### Sample (\d+)\s*$")
_MD_FIELD_RE: Final = re.compile(r"^\*\*(Prompt|Completion|Solution|Rewards|Detailed Metrics):\*\* ?(.*)$")
_MD_FIELDS: Final = {"Prompt": "question", "Completion": "model_output", "Solution": "ground_truth_answer"}


def load_rollout_markdown(path: Path, report: IngestReport) -> RunData:
    """A Markdown dump of rollouts (``## === Rollout Step N ===`` / ``### Sample k`` /
    ``**Prompt:**`` / ``**Completion:**`` / ``**Solution:**`` / ``**Rewards:** a=1.0, total=2.0``),
    as some GRPO scripts write next to their console log. ``Step: X/N`` gives the step."""
    import polars as pl

    col = Collector(report, path.parent)
    col.read(path)
    rows: list[dict[str, Any]] = []
    step: int | None = None
    sample: dict[str, Any] | None = None
    field: str | None = None
    buf: list[str] = []

    def flush_field() -> None:
        if sample is not None and field is not None:
            sample[field] = "\n".join(buf).strip("\n")

    def flush_sample() -> None:
        nonlocal sample
        flush_field()
        if sample is not None:
            if C.OUTPUT in sample:
                rows.append(sample)
                report.records_read += 1
            else:
                col.issue(path, sample["__line"], "a sample without **Completion:**; skipped", "malformed")
        sample = None

    for lineno, text, _ in iter_lines(path, col):
        line = text.rstrip("\r\n")
        if m := _MD_ROLLOUT_RE.match(line):
            flush_sample()
            field, step = None, int(m.group(1))
            continue
        if (m := _MD_STEP_RE.match(line)) and sample is None:
            step = int(m.group(1))
            continue
        if m := _MD_SAMPLE_RE.match(line):
            flush_sample()
            sample, field, buf = {C.STEP: step, "__line": lineno}, None, []
            continue
        if sample is None:
            continue
        if m := _MD_FIELD_RE.match(line):
            flush_field()
            name, rest = m.group(1), m.group(2)
            field, buf = _MD_FIELDS.get(name), [rest]
            if name == "Rewards":
                for pair in rest.split(","):
                    key, sep, value = pair.strip().partition("=")
                    f, ok = to_float(value)
                    if not sep or not ok:
                        col.issue(path, lineno, f"reward {pair.strip()!r} is not name=number; ignored", "wrong_type", skipped=False)
                        continue
                    sample[C.TOTAL_REWARD if key == "total" else C.REWARD_PREFIX + key] = f
            continue
        if field is not None:
            buf.append(line)
    flush_sample()
    col.finish()
    usable = [r for r in rows if r.get(C.STEP) is not None]
    if not usable:
        raise InputError(f"{path}: no rollout samples found in the Markdown dump")
    names = sorted({k for r in usable for k in r if k.startswith(C.REWARD_PREFIX)})
    data: dict[str, pl.Series] = {C.STEP: pl.Series(C.STEP, [r[C.STEP] for r in usable], dtype=pl.Int64)}
    for name in (C.QUESTION, C.OUTPUT, C.GROUND_TRUTH):
        data[name] = pl.Series(name, [r.get(name) for r in usable], dtype=pl.String)
    for name in [C.TOTAL_REWARD, *names]:
        data[name] = pl.Series(name, [r.get(name) for r in usable], dtype=pl.Float64)
    gens = finalize_generations(pl.DataFrame(data).with_row_index(ORDER_COL), col)
    info: dict[str, Any] = {"run_id": path.stem, "reward_names": [n[len(C.REWARD_PREFIX):] for n in names]}
    return RunData(path=str(path), steps=empty_steps(), generations=gens, report=report, info=info)
