"""Seed-schema CSVs that a writer left broken: a stray quote in the middle of the file, and the
torn last row every CSV has while its run is still writing (or after a kill)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import polars as pl
import pytest

from analyzer.ingest import load_run, seed_csv
from analyzer.ingest._common import Dirty
from analyzer.pipeline import AnalyzeOptions, analyze

HEADER = ["global_step", "question", "model_output", "correct_reward"]


def _rows(steps: range, per_step: int = 4) -> list[str]:
    return [f"{s},q{k},<answer>{k}</answer>,1" for s in steps for k in range(per_step)]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join([",".join(HEADER), *lines]) + "\n")
    return path


def test_an_unclosed_quote_loses_only_its_own_row(tmp_path: Path) -> None:
    rows = _rows(range(1, 21))
    rows.insert(4, '1,q,"unclosed quote')  # line 6 of the file; nothing closes it
    csv_path = _write(tmp_path / "generations.csv", rows)
    run = load_run(csv_path)
    g = run.generations
    assert g is not None and g.height == 80
    assert g["step"].to_list() == [s for s in range(1, 21) for _ in range(4)]
    assert [str(i) for i in run.report.issues] == [
        "generations.csv:6: unclosed quote? (unexpected end of data); row skipped, the rows after it are read"
    ]
    assert run.report.records_read == 80 and run.report.records_skipped == 1
    # the lost share log_integrity reports is the true one: 1 record of 81
    result = analyze(csv_path, AnalyzeOptions(no_embeddings=True, write_outputs=False))
    integrity = [a for a in result.alerts if a.kind == "log_integrity"]
    assert len(integrity) == 1 and "(1.2% of the records lost)" in integrity[0].message


def test_an_unclosed_quote_closed_by_a_later_field_swallows_no_rows(tmp_path: Path) -> None:
    """A later quoted field closes the stray quote: read leniently, the rows in between became one
    field of a row of the right width and vanished without an issue."""
    rows = [*_rows(range(1, 6)), '6,q,"x, y",1']
    rows.insert(2, '1,q,"unclosed quote')
    run = load_run(_write(tmp_path / "generations.csv", rows))
    g = run.generations
    assert g is not None and g.height == 21
    assert g["model_output"].to_list()[-1] == "x, y"
    assert [(i.line, i.kind) for i in run.report.issues] == [(4, "malformed")]


def test_a_bad_row_spanning_lines_is_one_issue_when_it_swallowed_nothing(tmp_path: Path) -> None:
    """A quoted field with line breaks in a row with one field too many: one malformed row, its
    continuation lines are not read as rows of their own."""
    rows = _rows(range(1, 3))
    rows.insert(2, '1,q,"<reasoning>a\nb, c, d\ne</reasoning>",1,extra')
    run = load_run(_write(tmp_path / "generations.csv", rows))
    g = run.generations
    assert g is not None and g.height == 8
    assert [str(i) for i in run.report.issues] == ["generations.csv:4: expected 4 fields, found 5; row skipped"]


def _seed_csv_text(n: int) -> str:
    """What trainer_hooks' CSV writer makes of n completions: multi-line quoted outputs with quotes
    and commas, CRLF line ends."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["timestamp", "global_step", "question", "model_output", "total_reward", "correct_reward", "extra"])
    for i in range(n):
        w.writerow([1.7e9 + i, i // 8, f'q{i % 8}, "quoted"', f"<reasoning>step {i},\nthen \"more\"</reasoning>\n<answer>{i % 3}</answer>",
                    float(i % 2), float(i % 2), '{"note": "n"}' if i % 5 == 0 else ""])
    return buf.getvalue()


TEXT = _seed_csv_text(400)
# where a kill can cut the last record: inside a quoted field (before / after one of its line
# breaks, right after a doubled quote), in an unquoted field, after a comma, or only its line end
LAST = TEXT.rindex("\r\n", 0, len(TEXT) - 2) + 2
CUTS = {
    "in-quoted-field": TEXT.index("step", LAST) + 3,
    "after-a-break-in-quoted-field": TEXT.index("then", LAST) + 2,
    "after-a-doubled-quote": TEXT.index('""more', LAST) + 2,
    "in-unquoted-field": LAST + 5,
    "after-a-comma": TEXT.index(",", LAST) + 1,
    "only-the-line-end": len(TEXT) - 2,
}


def _both_paths(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[object, object]:
    """The run read by the fast path (the careful one forbidden), then by the careful path."""

    def forbidden(*args: object) -> None:
        raise AssertionError("the whole file went down the careful path")

    def dirty(*args: object) -> None:
        raise Dirty

    with monkeypatch.context() as m:
        m.setattr(seed_csv, "_careful", forbidden)
        fast = load_run(path)
    with monkeypatch.context() as m:
        m.setattr(seed_csv, "_fast", dirty)
        careful = load_run(path)
    return fast, careful


@pytest.mark.parametrize("cut", list(CUTS))
def test_a_torn_last_row_costs_only_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut: str) -> None:
    path = tmp_path / "generations.csv"
    path.write_bytes(TEXT[: CUTS[cut]].encode())
    fast, careful = _both_paths(path, monkeypatch)
    g = fast.generations  # type: ignore[attr-defined]
    assert g is not None
    complete = 400 if cut == "only-the-line-end" else 399
    assert g.height == complete
    assert g.equals(careful.generations)  # type: ignore[attr-defined]
    issues = [str(i) for i in fast.report.issues]  # type: ignore[attr-defined]
    assert issues == [str(i) for i in careful.report.issues]  # type: ignore[attr-defined]
    if cut == "only-the-line-end":  # a whole row without its line end: kept, with a note
        assert issues == [] and any("the last row has no line end" in n for n in fast.report.notes)  # type: ignore[attr-defined]
    else:
        assert issues == [f"generations.csv:{1 + 3 * 399 + 1}: torn last row (the writer was interrupted); skipped"]
    assert fast.report.records_read == careful.report.records_read == complete  # type: ignore[attr-defined]


def test_a_torn_run_folder_csv_with_a_resume_is_read_on_the_fast_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A logscan run's CSV, killed mid-row: the rows before the tear are the Polars-read ones."""
    from trainer_hooks import RunLogger

    with RunLogger(tmp_path, generations_format="csv") as lg:
        for s in range(1, 6):
            for k in range(3):
                lg.log_generation(step=s, question=f"q{k}", model_output=f"<reasoning>a\nb</reasoning><answer>{k}</answer>", rewards={"r": 1.0})
    path = tmp_path / "generations.csv"
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex(b"\nb</reasoning>") + 2])  # cut inside the last row's output
    fast, careful = _both_paths(tmp_path, monkeypatch)
    assert fast.generations is not None and fast.generations.height == 14  # type: ignore[attr-defined]
    assert fast.generations.equals(careful.generations)  # type: ignore[attr-defined]
    assert [i.kind for i in fast.report.issues] == ["torn_line"]  # type: ignore[attr-defined]
    assert pl.Series(fast.generations["step"]).to_list()[-2:] == [5, 5]  # type: ignore[attr-defined]


def test_a_stray_quote_in_a_live_runs_csv_loses_one_row_and_the_torn_one(tmp_path: Path) -> None:
    """Still being written (torn last row) and a stray quote mid-file: every other row is read."""
    rows = _rows(range(1, 11))
    rows.insert(10, '3,q,"unclosed quote')  # line 12
    path = tmp_path / "generations.csv"
    path.write_text("\n".join([",".join(HEADER), *rows, '11,q0,"<answer>0</ans']))
    run = load_run(path)
    g = run.generations
    assert g is not None and g.height == 40
    assert [(i.line, i.kind) for i in run.report.issues] == [(12, "malformed"), (43, "torn_line")]
    assert run.report.records_read == 40 and run.report.records_skipped == 2


@pytest.mark.parametrize(
    ("cell", "fast"),
    [
        ("0.5", True),  # every text a number: no text is counted at all
        ("", True),  # an empty field is null: nothing was there to lose
        ('""', True),  # an empty quoted text is not null: counted, and it is no value either
        ('"  "', True),  # nor is a blank one
        ("oops", False),  # not a number: the careful path says which row
        ("true", True),  # a bool's text is a number (1)
        ("NaN", True),
    ],
)
def test_the_fast_path_keeps_every_value_or_hands_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cell: str, fast: bool) -> None:
    """The fast path's check that no value was lost in a cast (non-empty texts = numbers, per
    column) counts texts only in the columns where a non-null text did not become a number; the
    decision is the same as counting every column: a clean column stays on the fast path and any
    other hands the file to the careful path."""
    rows = _rows(range(1, 11))
    rows[7] = f"2,q3,<answer>3</answer>,{cell}"
    path = _write(tmp_path / "generations.csv", rows)
    fast_calls: list[bool] = []
    real_fast = seed_csv._fast

    def spy_fast(*args, **kwargs):
        try:
            out = real_fast(*args, **kwargs)
        except Dirty:
            fast_calls.append(False)
            raise
        fast_calls.append(True)
        return out

    monkeypatch.setattr(seed_csv, "_fast", spy_fast)
    run = load_run(path)
    assert fast_calls == [fast], (cell, fast_calls)
    g = run.generations
    assert g is not None and g.height == 40  # nothing lost either way
    value = g.filter((pl.col("step") == 2) & (pl.col("question") == "q3"))["reward/correct"].to_list()
    assert value == {"0.5": [0.5], "true": [1.0], "oops": [None], "": [None], '""': [None], '"  "': [None]}.get(cell, value)
    assert [i.kind for i in run.report.issues] == (["wrong_type"] if cell == "oops" else [])
