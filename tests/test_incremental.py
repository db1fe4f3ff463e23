"""Incremental analysis (analyzer.ingest.tail): an analysis that reads only what was appended since
the last one gives what a from-scratch analysis of the same files gives — metrics.parquet, the
completions, the alerts and the ingest report — over random append splits, resumes, torn tails,
malformed lines and files that are rewritten, shrink or are replaced."""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.errors import InputError
from analyzer.ingest.tail import STATE_DIR, STATE_FILE, TailCache
from analyzer.pipeline import AnalyzeOptions, analyze

TEXT = st.text(alphabet=st.sampled_from(list("ab 7,.\"\n\r<>/é😀\\{}:")), max_size=30)


@st.composite
def records(draw: st.DrawFn) -> list[dict]:
    """Completions of a few steps: steps mostly growing, sometimes going back (a resume)."""
    n_steps = draw(st.integers(3, 14))
    out: list[dict] = []
    step = 1
    for _ in range(n_steps):
        if draw(st.integers(0, 9)) == 0 and step > 2:
            step -= draw(st.integers(1, 2))  # resumed from an earlier checkpoint
        for q in range(draw(st.integers(1, 3))):
            for _k in range(draw(st.integers(1, 3))):
                answer = draw(st.sampled_from(["4", "5", "x"]))
                reward = draw(st.one_of(st.floats(-1, 2, allow_nan=False), st.just(float("nan"))))
                out.append({
                    "timestamp": 1.7e9 + len(out),
                    "global_step": step,
                    "question": f"q{q}",
                    "ground_truth_answer": "4",
                    "model_output": f"<reasoning>{draw(TEXT)}</reasoning><answer>{answer}</answer>",
                    "total_reward": reward,
                    "rewards": {"correct": float(answer == "4"), "fmt": 0.5},
                    "split": draw(st.sampled_from(["train", "train", "eval"])),
                })
        step += 1
    return out


def jsonl_bytes(recs: list[dict], bad: set[int]) -> bytes:
    lines = []
    for i, r in enumerate(recs):
        if i in bad:
            lines.append(b"{not json at all\n")
        lines.append(json.dumps({**r, "total_reward": r["total_reward"] if r["total_reward"] == r["total_reward"] else "NaN"}).encode() + b"\n")
    return b"".join(lines)


def csv_bytes(recs: list[dict]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["timestamp", "global_step", "question_id", "question", "ground_truth_answer", "model_output",
                "reasoning", "model_answer", "total_reward", "correct_reward", "fmt_reward", "split"])
    for r in recs:
        w.writerow([r["timestamp"], r["global_step"], "", r["question"], r["ground_truth_answer"], r["model_output"],
                    "", "", r["total_reward"], r["rewards"]["correct"], r["rewards"]["fmt"], r["split"]])
    return buf.getvalue().encode()


def _options(out: Path, *, full: bool = False) -> AnalyzeOptions:
    return AnalyzeOptions(output_dir=out, no_embeddings=True, no_plots=True, no_html=True, write_reports=False, full=full)


def assert_same(run: Path, inc_out: Path, ref_out: Path) -> list[str]:
    """Analyze ``run`` through its state (incremental) and from scratch; everything must agree."""
    try:
        ref = analyze(run, _options(ref_out, full=True))
    except InputError as exc:  # nothing readable yet (a torn first record): the same error
        with pytest.raises(InputError) as got:
            analyze(run, _options(inc_out))
        assert str(got.value) == str(exc)
        return []
    inc = analyze(run, _options(inc_out))
    assert pl.read_parquet(inc_out / "metrics.parquet").equals(pl.read_parquet(ref_out / "metrics.parquet"))
    gi, gr = inc.run.generations, ref.run.generations
    assert (gi is None) == (gr is None)
    if gi is not None and gr is not None:
        assert gi.equals(gr)
    assert [a.to_dict() for a in inc.alerts] == [a.to_dict() for a in ref.alerts]
    assert inc.run.report.to_dict() == ref.run.report.to_dict()
    assert inc.verdict == ref.verdict
    return inc.notes


# The from-scratch comparisons (here and in test_live.py): their hypothesis settings and the runs
# they draw (records, the files' format, malformed lines); each test draws its own append cuts.
COMPARISONS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
RUNS = {
    "recs": records(),
    "fmt": st.sampled_from(["jsonl", "csv", "jsonl2"]),
    "bad": st.sets(st.integers(0, 40), max_size=2),
}


def run_files(recs: list[dict], fmt: str, bad: set[int]) -> dict[str, bytes]:
    """The files a run writes: one CSV, one JSONL (``bad``: indices of malformed lines before
    records), or two ranks' JSONL files (``jsonl2``)."""
    if fmt == "csv":
        return {"generations.csv": csv_bytes(recs)}
    if fmt == "jsonl":
        return {"generations.jsonl": jsonl_bytes(recs, bad)}
    return {  # two ranks, each its own file
        "generations.jsonl": jsonl_bytes(recs[::2], bad),
        "generations.rank1.jsonl": jsonl_bytes([{**r, "rank": 1} for r in recs[1::2]], set()),
    }


def append_in_cuts(run: Path, files: dict[str, bytes], cuts: list[int], *, min_bytes: int = 1) -> Iterator[None]:
    """Append ``files`` to ``run`` as a live run does (never rewritten): up to each cut (a percentage
    of each file, at least ``min_bytes``; a cut below an earlier one appends nothing), then whole;
    yields after each append."""
    written = dict.fromkeys(files, 0)
    for cut in [*cuts, 100]:
        for name, data in files.items():
            end = max(written[name], len(data) if cut == 100 else max(min_bytes, len(data) * cut // 100))
            with (run / name).open("ab") as fh:
                fh.write(data[written[name]:end])
            written[name] = end
        yield


@COMPARISONS
@given(**RUNS, cuts=st.lists(st.integers(1, 99), min_size=1, max_size=4))
def test_incremental_equals_from_scratch(tmp_path_factory: pytest.TempPathFactory, recs: list[dict], fmt: str, cuts: list[int], bad: set[int]) -> None:
    base = tmp_path_factory.mktemp("inc")
    run = base / "run"
    run.mkdir()
    for _ in append_in_cuts(run, run_files(recs, fmt, bad), cuts):
        assert_same(run, base / "inc", base / "ref")


def _seed(run: Path, recs: list[dict]) -> bytes:
    data = csv_bytes(recs)
    (run / "generations.csv").write_bytes(data)
    return data


def _recs(n_steps: int, per: int = 4) -> list[dict]:
    return [
        {"timestamp": 1.7e9 + s * per + k, "global_step": s, "question": f"q{k % 2}", "ground_truth_answer": "4",
         "model_output": f"<reasoning>r {s} \"{k}\"\nline</reasoning><answer>{4 if (s + k) % 3 else 5}</answer>",
         "total_reward": float((s + k) % 3 != 0), "rewards": {"correct": float((s + k) % 3 != 0), "fmt": 0.5}, "split": "train"}
        for s in range(1, n_steps + 1) for k in range(per)
    ]


def test_append_reads_only_the_new_bytes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    recs = _recs(30)
    _seed(run, recs[:60])
    assert_same(run, tmp_path / "inc", tmp_path / "ref")
    assert (tmp_path / "inc" / STATE_DIR / STATE_FILE).is_file()
    state = json.loads((tmp_path / "inc" / STATE_DIR / STATE_FILE).read_text())
    entry = state["files"]["generations.csv"]
    assert entry["offset"] == (run / "generations.csv").stat().st_size and entry["records"] == 60
    before = (run / "generations.csv").stat().st_size
    whole = csv_bytes(recs)
    head = csv_bytes(recs[:60])
    with (run / "generations.csv").open("ab") as fh:
        fh.write(whole[len(head):])
    notes = assert_same(run, tmp_path / "inc", tmp_path / "ref")
    added = (run / "generations.csv").stat().st_size - before
    assert notes[0] == f"incremental read ({added:,} new bytes): generations.csv: {added:,} new bytes read, 60 new rows"
    # the per-step metrics came from the state too: only the new completions' features computed
    assert "per-step metrics from the analysis state: the features of 60 new completions computed, and the metrics of the steps they belong to" in notes
    # the state grew by the new rows only: the first part is kept, one part of 60 rows added
    parts = json.loads((tmp_path / "inc" / STATE_DIR / STATE_FILE).read_text())["files"]["generations.csv"]["rows"]
    assert parts[0] == entry["rows"][0] and len(parts) == 2
    assert pl.read_parquet(tmp_path / "inc" / STATE_DIR / parts[1]).height == 60


@pytest.mark.parametrize("change", ["shrank", "replaced", "rewritten", "rotated"])
def test_a_file_that_did_not_only_grow_is_read_in_full(tmp_path: Path, change: str) -> None:
    run = tmp_path / "run"
    run.mkdir()
    recs = _recs(20)
    data = _seed(run, recs)
    assert_same(run, tmp_path / "inc", tmp_path / "ref")
    path = run / "generations.csv"
    if change == "shrank":
        path.write_bytes(csv_bytes(recs[:40]))
        why = "it shrank from at least"
    elif change == "replaced":  # a new file renamed over the old one: another inode
        other = run / "new.tmp"
        other.write_bytes(data + csv_bytes(recs[:8])[len(csv_bytes([])):])
        os.replace(other, path)
        why = "replaced: another file under the same name"
    elif change == "rewritten":  # same inode and size, other bytes
        flipped = data.replace(b"q0", b"q9", 1)
        with path.open("r+b") as fh:
            fh.write(flipped)
        why = "rewritten: bytes read before have changed"
    else:  # rotated: the old file moved away, a new one started under the name
        os.rename(path, tmp_path / "old.csv")
        path.write_bytes(csv_bytes(recs[:12]))
        why = "replaced: another file under the same name"
    notes = assert_same(run, tmp_path / "inc", tmp_path / "ref")
    assert any(n.startswith("full read of generations.csv: read in full (" + why) for n in notes), notes


def test_full_flag_and_damaged_state(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    _seed(run, _recs(12))
    out = tmp_path / "inc"
    analyze(run, _options(out))
    full = analyze(run, _options(out, full=True))
    assert full.notes[0] == "full read (--full): the analysis state was not used"
    (out / STATE_DIR / STATE_FILE).write_text("{broken", encoding="utf-8")
    again = analyze(run, _options(out))
    assert again.notes[0] == "full read: the analysis state is unreadable (JSONDecodeError)"
    # and it was rewritten: the next analysis reads incrementally again (nothing new: 0 bytes)
    cache, why = TailCache.load(out / STATE_DIR)
    assert why is None and set(cache.entries) == {"generations.csv"}
    for p in (out / STATE_DIR).glob("rows-*.parquet"):
        p.unlink()  # a state whose rows are gone: ignored, never half used
    _, why = TailCache.load(out / STATE_DIR)
    assert why is not None and why.startswith("the analysis state is damaged")


def jsonl_run(tmp_path: Path, n_steps: int) -> tuple[Path, list[dict], bytes, int]:
    """An empty run folder, the records of ``n_steps`` steps, their JSONL bytes and the end of the
    line that crosses the middle of those bytes (where a test cuts the file in two)."""
    run = tmp_path / "run"
    run.mkdir()
    recs = _recs(n_steps)
    whole = jsonl_bytes(recs, set())
    return run, recs, whole, whole.index(b"\n", len(whole) // 2) + 1


def test_torn_tail_is_read_again_until_complete(tmp_path: Path) -> None:
    run, _, whole, line_end = jsonl_run(tmp_path, 15)
    cut = line_end + 40  # inside the record after it
    (run / "generations.jsonl").write_bytes(whole[:cut])
    assert_same(run, tmp_path / "inc", tmp_path / "ref")
    state = json.loads((tmp_path / "inc" / STATE_DIR / STATE_FILE).read_text())
    assert state["files"]["generations.jsonl"]["offset"] == line_end  # the torn line is not cached
    with (run / "generations.jsonl").open("ab") as fh:
        fh.write(whole[cut:])
    assert_same(run, tmp_path / "inc", tmp_path / "ref")


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_file_that_grows_while_it_is_read_in_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    """A live run's file grows while the first, full read runs (18 s on a million completions): the
    records appended meanwhile are not lost — the state keeps only what the read saw, and the next
    analysis reads the rest."""
    from analyzer.ingest import logscan_run

    run = tmp_path / "run"
    run.mkdir()
    recs = _recs(20)
    name = f"generations.{fmt}"
    whole = jsonl_bytes(recs, set()) if fmt == "jsonl" else csv_bytes(recs)
    first = whole[: whole.index(b"\n", len(whole) // 2) + 1]
    (run / name).write_bytes(first)
    attr = "read_generations_jsonl" if fmt == "jsonl" else "read_generations_csv"
    real = getattr(logscan_run, attr)
    grew = False

    def read_then_grow(path: Path, col: object) -> pl.DataFrame | None:
        nonlocal grew
        df = real(path, col)
        if not grew:  # the training process appends while the reader is busy
            grew = True
            with path.open("ab") as fh:
                fh.write(whole[len(first):])
        return df

    monkeypatch.setattr(logscan_run, attr, read_then_grow)
    inc = analyze(run, _options(tmp_path / "inc"))
    assert grew and inc.run.generations is not None and inc.run.generations.height < len(recs)
    monkeypatch.setattr(logscan_run, attr, real)
    assert_same(run, tmp_path / "inc", tmp_path / "ref")  # every record, as a from-scratch read


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.lists(st.sampled_from([b"\n", b"\r", b"\r\n", b",", b'"', b"\x00", b"\xff\xfe", b"a", b"\xc3\xa9", b"\x1f", b"\n\n", b"{}"]), max_size=60))
def test_line_count_of_any_bytes(tmp_path_factory: pytest.TempPathFactory, data: list[bytes]) -> None:
    """The state's multi-threaded line count (Polars) equals counting the line ends, whatever the bytes."""
    from analyzer.ingest.tail import _newlines

    path = tmp_path_factory.mktemp("lines") / "f"
    raw = b"".join(data)
    path.write_bytes(raw)
    assert _newlines(path, path.stat()) == raw.count(b"\n")


def test_per_step_metrics_in_the_state_are_checked_before_use(tmp_path: Path) -> None:
    """The per-step metrics kept in the state (``state/steps/``) are used only for the same run and
    settings: damaged, foreign or built with other tags, they are rebuilt from the whole run — with
    the same results as a from-scratch analysis every time."""
    from analyzer.incremental import STEPS_DIR

    run = tmp_path / "run"
    run.mkdir()
    recs = _recs(30)
    whole = csv_bytes(recs)
    head = csv_bytes(recs[:60])
    (run / "generations.csv").write_bytes(head)
    assert_same(run, tmp_path / "inc", tmp_path / "ref")
    steps = tmp_path / "inc" / STATE_DIR / STEPS_DIR
    meta = json.loads((steps / "steps.json").read_text())
    assert meta["height"] == 60 and meta["features"] and "model_output" in meta["columns"]
    stored = pl.read_parquet(steps / meta["features"][0])
    assert "model_output" not in stored.columns and stored.height == 60  # the text is read again
    (steps / "steps.json").write_text("{damaged")
    with (run / "generations.csv").open("ab") as fh:
        fh.write(whole[len(head):])
    notes = assert_same(run, tmp_path / "inc", tmp_path / "ref")
    assert not any(n.startswith("per-step metrics from the analysis state") for n in notes)
    # rebuilt, and saved again: the next analysis of the same files uses it
    notes = assert_same(run, tmp_path / "inc", tmp_path / "ref")
    assert "per-step metrics from the analysis state: no new completions" in notes


def test_a_state_that_cannot_be_written_is_a_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Polars reports a failed Parquet write (a full disk) with its own error, not OSError: the
    analysis still lands, its notes say the state was not saved, and the next one reads in full."""
    run = tmp_path / "run"
    run.mkdir()
    _seed(run, _recs(12))
    real = pl.DataFrame.write_parquet

    def full_disk(self: pl.DataFrame, file: object, *args: object, **kwargs: object) -> None:
        if STATE_DIR in Path(str(file)).parts:
            raise pl.exceptions.ComputeError("parquet: File out of specification: Invalid thrift: transport error")
        real(self, file, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pl.DataFrame, "write_parquet", full_disk)
    got = analyze(run, _options(tmp_path / "out"))
    assert (tmp_path / "out" / "metrics.parquet").is_file()
    assert any(n.startswith("analysis state not saved (parquet: File out of specification") for n in got.notes)
    monkeypatch.setattr(pl.DataFrame, "write_parquet", real)
    assert_same(run, tmp_path / "out", tmp_path / "ref")


def test_growth_stable_grid_keeps_its_earlier_choice_evenly_spaced() -> None:
    """Every 2**k-th step and the last, at most ``keep``: as the run grows, the steps chosen before
    (but the old last) are the only earlier steps chosen; the spacing is even."""
    from analyzer.incremental import growth_stable_grid

    assert growth_stable_grid(pl.Series([3, 5, 8]), 400).to_list() == [3, 5, 8]
    assert growth_stable_grid(pl.Series(range(10)), 4).to_list() == [0, 4, 8, 9]
    assert growth_stable_grid(pl.Series(range(10)), 1).to_list() == [0]
    for n in range(2, 2500, 41):
        chosen = growth_stable_grid(pl.Series(range(n)), 400).to_list()
        assert 200 <= len(chosen) <= 400 or len(chosen) == n
        gaps = {b - a for a, b in itertools.pairwise(chosen)}
        assert len(gaps - {min(gaps)}) <= 1  # one spacing, and a shorter last one
        for more in (1, 17, 500):
            grown = growth_stable_grid(pl.Series(range(n + more)), 400).to_list()
            assert {s for s in grown if s < n - 1} <= set(chosen), (n, more)


def test_the_state_carries_mode_collapses_steps_to_the_next_analysis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``analyze`` saves what ``mode_collapse`` found per step (``state/steps/carried.json``) and the
    next analysis of the grown run compares only its new steps' completions, with the
    from-scratch result."""
    from analyzer.detectors import collapse

    compared: list[set[int]] = []
    real = collapse._step_rates

    def counting(s: pl.DataFrame, *args: Any, **kwargs: Any) -> Any:
        compared.append(set(s.get_column("step").unique().to_list()))
        return real(s, *args, **kwargs)

    monkeypatch.setattr(collapse, "_step_rates", counting)
    run = tmp_path / "run"
    run.mkdir()
    recs = _recs(30)
    _seed(run, recs[:80])  # steps 1-20
    assert_same(run, tmp_path / "inc", tmp_path / "ref")
    carried = json.loads((tmp_path / "inc" / STATE_DIR / "steps" / "carried.json").read_text())
    assert sorted(int(s) for s in carried["mode_collapse"]["steps"]) == list(range(1, 21))
    (run / "generations.csv").write_bytes(csv_bytes(recs))  # grown to steps 1-30
    compared.clear()
    assert_same(run, tmp_path / "inc", tmp_path / "ref")  # the reference first, then the state's
    assert compared == [set(range(1, 31)), set(range(21, 31))]
