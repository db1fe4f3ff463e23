"""RunLogger: round trips (JSONL and CSV), manifest, resume, counters, failures, stalls, stop files."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import threading
import uuid
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainer_hooks import (
    RunLogger,
    TrainingEvent,
    TrainingPhase,
    question_id_for,
    request_stop,
    schema,
)
from trainer_hooks.schema import decode_float

REPO_ROOT = Path(__file__).resolve().parent.parent
# model outputs can be longer than the csv module's default 128 KiB field limit
csv.field_size_limit(sys.maxsize)


# --- reading back with the standard library only ---------------------------------------------
def read_jsonl(path: Path) -> list[dict[str, Any]]:
    # split on "\n" only, as NDJSON readers do (the writer also escapes U+2028, so splitlines works too)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def read_csv_parts(run_dir: Path, rank: int = 0) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    part = 1
    while (p := run_dir / schema.generations_part_file(rank, part)).exists():
        with open(p, newline="", encoding="utf-8") as f:
            rows.extend(csv.DictReader(f))
        part += 1
    return rows


def same_float(a: float | None, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    b = float(b)
    return (math.isnan(a) and math.isnan(b)) or a == b


def events(run_dir: Path, rank: int = 0) -> list[dict[str, Any]]:
    return read_jsonl(run_dir / schema.events_file(rank))


def manifest(run_dir: Path, rank: int = 0) -> dict[str, Any]:
    return json.loads((run_dir / schema.manifest_file(rank)).read_text(encoding="utf-8"))


# --- strategies ----------------------------------------------------------------------------------
TRICKY = [
    "\n",
    "\r",
    "\r\n",
    '"',
    ",",
    "\\",
    "\x00",
    "\u2028",
    "\ufeff",
    "é",
    "😀",
    "<answer>",
    "</answer>",
    "\t",
    '""',
]
# lone surrogates only: a high+low pair of separate code units is, in JSON, the astral character
SURROGATES = ["\ud800x", "\udfff", "\udc80"]
char_csv = st.one_of(st.characters(exclude_categories=["Cs"]), st.sampled_from(TRICKY))
char_json = st.one_of(char_csv, st.sampled_from(SURROGATES))  # lone surrogates too (JSON only)


def short(
    chars: st.SearchStrategy[str], min_size: int = 0, max_size: int = 30
) -> st.SearchStrategy[str]:
    """Strings made of characters and tricky fragments (CRLF, quotes, tags, …)."""
    return st.lists(chars, min_size=min_size, max_size=max_size).map("".join)


def texts(chars: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    huge = st.builds(lambda c, n: c * n, chars, st.integers(50_000, 200_000))
    return st.one_of(short(chars, max_size=60), huge)


floats = st.floats(allow_nan=True, allow_infinity=True)
finite = st.floats(allow_nan=False, allow_infinity=False)
json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63), finite, short(char_json, max_size=20)
)
nested = st.recursive(
    json_leaf,
    lambda c: st.one_of(
        st.lists(c, max_size=4), st.dictionaries(short(char_json, max_size=10), c, max_size=4)
    ),
    max_leaves=12,
)
RESERVED = {
    "step", "question", "model_output", "rewards", "ground_truth_answer", "question_id", "split",
    "group_id", "self", "reasoning", "model_answer", "total_reward",
}  # fmt: skip
extra_keys = short(char_json, min_size=1, max_size=10).filter(lambda k: k not in RESERVED)
reward_names = st.text(
    st.characters(categories=("Ll", "Lu", "Nd")) | st.sampled_from(["_", ",", '"', " "]),
    min_size=1,
    max_size=8,
)


def gen_record(chars: st.SearchStrategy[str], csv_mode: bool) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "step": st.integers(0, 10**9),
            "question": texts(chars),
            "model_output": texts(chars),
            "rewards": st.dictionaries(reward_names, floats, max_size=3),
            "ground_truth_answer": st.one_of(st.none(), short(chars, max_size=30)),
            "question_id": st.one_of(st.none(), short(chars, min_size=1, max_size=20)),
            "split": st.sampled_from(schema.SPLITS),
            "group_id": st.one_of(st.none(), short(chars, min_size=1, max_size=12)),
            "extra": st.dictionaries(extra_keys, nested, max_size=3)
            if not csv_mode
            else st.dictionaries(
                short(char_csv, min_size=1, max_size=8).filter(lambda k: k not in RESERVED),
                short(char_csv, max_size=10),
                max_size=2,
            ),
        }
    )


def fresh_dir(base: Path) -> Path:
    d = base / uuid.uuid4().hex
    return d


HYP = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _log_all(lg: RunLogger, records: list[dict[str, Any]]) -> None:
    for r in records:
        r = dict(r)
        extra = r.pop("extra")
        lg.log_generation(**r, **extra)


def _expected_total(rewards: dict[str, float]) -> float | None:
    vals = [v for v in rewards.values() if not math.isnan(v)]
    if vals:
        return sum(vals)
    return math.nan if rewards else None


@HYP
@given(
    records=st.lists(gen_record(char_json, csv_mode=False), min_size=1, max_size=4),
    metrics=st.dictionaries(short(char_json, max_size=12), floats, max_size=5),
    meta=st.dictionaries(short(char_json, max_size=8), nested, max_size=4),
)
def test_jsonl_round_trip(
    tmp_path: Path, records: list[dict[str, Any]], metrics: dict[str, float], meta: dict[str, Any]
) -> None:
    run = fresh_dir(tmp_path)
    with RunLogger(run) as lg:
        _log_all(lg, records)
        lg.log_metrics(7, metrics)
        lg.log_event(TrainingPhase.CHECKPOINT, 8, metrics=metrics, meta=meta)
    got = read_jsonl(run / "generations.jsonl")
    assert len(got) == len(records)
    for want, row in zip(records, got, strict=True):
        assert row[schema.G_STEP] == want["step"]
        assert row[schema.G_QUESTION] == want["question"]
        assert row[schema.G_OUTPUT] == want["model_output"]
        assert row[schema.G_GROUND_TRUTH] == want["ground_truth_answer"]
        assert row[schema.G_SPLIT] == want["split"]
        assert row[schema.G_GROUP_ID] == want["group_id"]
        assert row[schema.G_RANK] == 0
        assert row[schema.G_EXTRA] == want["extra"]
        qid = want["question_id"] or question_id_for(want["question"], want["ground_truth_answer"])
        assert row[schema.G_QUESTION_ID] == qid
        assert set(row[schema.G_REWARDS]) == set(want["rewards"])
        for name, v in want["rewards"].items():
            assert same_float(v, decode_float(row[schema.G_REWARDS][name]))
        assert same_float(
            _expected_total(want["rewards"]), decode_float(row[schema.G_TOTAL_REWARD])
        )
    evs = events(run)
    assert [e[schema.E_PHASE] for e in evs] == ["run_start", "metrics", "checkpoint", "run_end"]
    for ev in (evs[1], evs[2]):
        assert set(ev[schema.E_METRICS]) == set(metrics)
        for k, v in metrics.items():
            assert same_float(v, decode_float(ev[schema.E_METRICS][k]))
    assert evs[2][schema.E_META] == meta
    assert evs[2][schema.E_STEP] == 8


@HYP
@given(records=st.lists(gen_record(char_csv, csv_mode=True), min_size=1, max_size=4))
def test_csv_round_trip(tmp_path: Path, records: list[dict[str, Any]]) -> None:
    run = fresh_dir(tmp_path)
    names = list(dict.fromkeys(n for r in records for n in r["rewards"]))
    collide = {f"{n}{schema.CSV_REWARD_SUFFIX}" for n in names} & set(
        schema.CSV_BASE_COLUMNS + schema.CSV_TAIL_COLUMNS
    )
    if collide:
        return  # a reward called "total" cannot have its own "total_reward" column
    with RunLogger(run, generations_format="csv") as lg:
        _log_all(lg, records)
    rows = read_csv_parts(run)
    assert len(rows) == len(records)
    for want, row in zip(records, rows, strict=True):
        assert int(row[schema.G_STEP]) == want["step"]
        assert row[schema.G_QUESTION] == want["question"]
        assert row[schema.G_OUTPUT] == want["model_output"]
        assert row[schema.G_GROUND_TRUTH] == (want["ground_truth_answer"] or "")
        assert row[schema.G_SPLIT] == want["split"]
        assert row[schema.G_GROUP_ID] == (want["group_id"] or "")
        qid = want["question_id"] or question_id_for(want["question"], want["ground_truth_answer"])
        assert row[schema.G_QUESTION_ID] == qid
        for name in names:
            cell = row[f"{name}{schema.CSV_REWARD_SUFFIX}"]
            assert same_float(want["rewards"].get(name), decode_float(cell))
        assert same_float(
            _expected_total(want["rewards"]), decode_float(row[schema.G_TOTAL_REWARD])
        )
        extra = json.loads(row[schema.CSV_EXTRA_COLUMN]) if row[schema.CSV_EXTRA_COLUMN] else {}
        assert extra == want["extra"]


def test_nonfinite_encoding_is_strict_json(tmp_path: Path) -> None:
    with RunLogger(tmp_path) as lg:
        lg.log_metrics(1, {"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "ok": 1.5})
        lg.log_generation(
            step=1, question="q", model_output="o", rewards={"r": math.nan}, meta_nan=math.nan
        )
    raw = (tmp_path / "events.jsonl").read_text() + (tmp_path / "generations.jsonl").read_text()

    def reject(token: str) -> None:
        raise AssertionError(f"non-JSON literal {token}")

    for line in raw.splitlines():
        json.loads(line, parse_constant=reject)  # NaN/Infinity literals would be rejected here
    m = events(tmp_path)[1][schema.E_METRICS]
    assert m == {"nan": "NaN", "inf": "Infinity", "ninf": "-Infinity", "ok": 1.5}
    g = read_jsonl(tmp_path / "generations.jsonl")[0]
    assert g[schema.G_REWARDS] == {"r": "NaN"} and g[schema.G_TOTAL_REWARD] == "NaN"
    assert g[schema.G_EXTRA] == {"meta_nan": "NaN"}


def test_tags_extracted_and_question_id_stable(tmp_path: Path) -> None:
    out = "<reasoning>\n2 plus 3\n</reasoning>\n<answer> 5 </answer>"
    with RunLogger(tmp_path) as lg:
        lg.log_generation(
            step=3,
            question="What is 2+3?",
            model_output=out,
            rewards={"a": 1, "b": 0.5},
            ground_truth_answer="5",
        )
        lg.log_generation(step=3, question="q", model_output="no tags", rewards={})
    g1, g2 = read_jsonl(tmp_path / "generations.jsonl")
    assert g1[schema.G_REASONING] == "2 plus 3" and g1[schema.G_ANSWER] == "5"
    assert g1[schema.G_TOTAL_REWARD] == 1.5
    # sha256("What is 2+3?" + "\x1f" + "5")[:16]: fixed forever, any process, any Python
    assert g1[schema.G_QUESTION_ID] == "df093d767fa0545a" == question_id_for("What is 2+3?", "5")
    assert (
        g2[schema.G_REASONING] is None
        and g2[schema.G_ANSWER] is None
        and g2[schema.G_TOTAL_REWARD] is None
    )
    code = "from trainer_hooks import question_id_for; print(question_id_for('What is 2+3?', '5'))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    assert (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        ).stdout.strip()
        == "df093d767fa0545a"
    )


def test_manifest_lifecycle_and_crash_status(tmp_path: Path) -> None:
    run = tmp_path / "run"
    lg = RunLogger(
        run,
        run_id="abc",
        algorithm="grpo",
        model="m",
        config={"lr": 1e-5, "nan": math.nan},
        reward_names=["x"],
    )
    m = manifest(run)
    assert m[schema.M_FORMAT] == schema.FORMAT and m[schema.M_STATUS] == "running"
    assert m[schema.M_RUN_ID] == "abc" and m[schema.M_CONFIG] == {"lr": 1e-5, "nan": "NaN"}
    assert m[schema.M_ENDED] is None
    lg.log_generation(step=1, question="q", model_output="o", rewards={"x": 1.0, "y": 2.0})
    assert lg.close() is True
    m = manifest(run)
    assert m[schema.M_STATUS] == "finished" and m[schema.M_ENDED]
    assert m[schema.M_COUNTERS] == {
        "records_written": 3,
        "records_dropped": 0,
        "records_failed": 0,
        "blocked_waits": 0,
        "write_errors": 0,
    }
    assert m[schema.M_REWARD_NAMES] == ["x", "y"]
    assert not list(run.glob(".*tmp"))  # atomic rewrite leaves no temp files

    run2 = tmp_path / "run2"
    with pytest.raises(RuntimeError), RunLogger(run2) as lg2:
        lg2.log_metrics(1, {"loss": 1.0})
        raise RuntimeError("training blew up")
    assert manifest(run2)[schema.M_STATUS] == "crashed"
    assert events(run2)[-1][schema.E_META] == {"status": "crashed"}


@pytest.mark.parametrize("crash", [False, True])
def test_atexit_closes_a_forgotten_logger(tmp_path: Path, crash: bool) -> None:
    code = (
        "import sys; from trainer_hooks import RunLogger\n"
        "lg = RunLogger(sys.argv[1], flush_interval_s=60)\n"
        "for i in range(100): lg.log_metrics(i, {'loss': i})\n"
        + ("raise SystemExit(0)\n" if not crash else "raise ValueError('boom')\n")
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == (1 if crash else 0)
    m = manifest(tmp_path)
    assert m[schema.M_STATUS] == ("crashed" if crash else "finished")
    assert m[schema.M_COUNTERS]["records_written"] == 102
    assert len(events(tmp_path)) == 102


def test_resume_appends_and_records_it(tmp_path: Path) -> None:
    with RunLogger(tmp_path, run_id="first") as lg:
        lg.log_generation(step=1, question="q", model_output="a", rewards={"r": 1})
    # a crash leaves a torn last line; the resumed logger must not glue its first record to it
    with open(tmp_path / "generations.jsonl", "ab") as f:
        f.write(b'{"timestamp": 1, "glob')
    first_created = manifest(tmp_path)[schema.M_CREATED]
    with RunLogger(tmp_path, run_id="ignored") as lg:
        lg.log_generation(step=2, question="q", model_output="b", rewards={"r": 2})
    lines = (tmp_path / "generations.jsonl").read_text().splitlines()
    assert len(lines) == 3 and lines[1] == '{"timestamp": 1, "glob'
    assert json.loads(lines[0])["global_step"] == 1 and json.loads(lines[2])["global_step"] == 2
    m = manifest(tmp_path)
    assert m[schema.M_RUN_ID] == "first" and m[schema.M_CREATED] == first_created
    assert len(m[schema.M_RESUMES]) == 1 and m[schema.M_RESUMES][0]["previous_status"] == "finished"
    assert m[schema.M_COUNTERS]["records_written"] == 6  # both sessions: 3 + 3
    phases = [e[schema.E_PHASE] for e in events(tmp_path)]
    assert phases == ["run_start", "run_end", "run_resume", "run_end"]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_new_reward_name_is_in_run_json_before_its_records_are_on_disk(tmp_path: Path, fmt: str) -> None:
    """A reward function that first appears mid-run is listed in run.json by the time a record
    carrying it can be read back — without close(), as after a crash — so readers learn every
    reward name from the manifest instead of scanning every record for it."""
    lg = RunLogger(tmp_path, generations_format=fmt, reward_names=["acc"])
    try:
        lg.log_generation(step=1, question="q", model_output="a", rewards={"acc": 1.0})
        assert lg.flush()
        assert json.loads((tmp_path / "run.json").read_text())["reward_names"] == ["acc"]
        before = (tmp_path / "run.json").stat().st_mtime_ns
        # what run.json says at the moment the batch carrying "judge" is handed to the file
        seen_at_write: list[list[str]] = []
        real_write = lg._write_stream

        def spying_write(stream: str, lines: list[str]) -> None:
            if any('"judge"' in line or "judge_reward" in line for line in lines):
                seen_at_write.append(json.loads((tmp_path / "run.json").read_text())["reward_names"])
            real_write(stream, lines)

        lg._write_stream = spying_write  # type: ignore[method-assign]
        if fmt == "csv":
            real_bytes = lg._write_bytes

            def spying_bytes(stream: str, payload: bytes, n: int, *rest: Any) -> bool:
                if b"judge" in payload:
                    seen_at_write.append(json.loads((tmp_path / "run.json").read_text())["reward_names"])
                return real_bytes(stream, payload, n, *rest)

            lg._write_bytes = spying_bytes  # type: ignore[method-assign]
        lg.log_generation(step=2, question="q", model_output="b", rewards={"acc": 0.0, "judge": 0.5})
        assert lg.flush()
        assert seen_at_write and seen_at_write[0] == ["acc", "judge"]  # listed before the record was written
        manifest = json.loads((tmp_path / "run.json").read_text())
        assert manifest["reward_names"] == ["acc", "judge"] and manifest["status"] == "running"
        # known names cost no manifest write
        lg.log_generation(step=3, question="q", model_output="c", rewards={"judge": 1.0})
        assert lg.flush()
        after = (tmp_path / "run.json").stat().st_mtime_ns
        lg.log_generation(step=4, question="q", model_output="d", rewards={"acc": 1.0})
        assert lg.flush()
        assert (tmp_path / "run.json").stat().st_mtime_ns == after >= before
    finally:
        lg.close()


def test_csv_new_reward_mid_run_starts_a_part(tmp_path: Path) -> None:
    with RunLogger(tmp_path, generations_format="csv", reward_names=["acc"]) as lg:
        lg.log_generation(step=1, question="q", model_output="a,b", rewards={"acc": 1.0})
        assert lg.flush()
        lg.log_generation(
            step=2, question="q", model_output='say "hi"\nbye', rewards={"acc": 0.0, "fmt": 0.5}
        )
        lg.log_generation(step=3, question="q", model_output="c", rewards={"fmt": 1.0})
    with RunLogger(
        tmp_path, generations_format="csv"
    ) as lg:  # resume: a fresh part, never a rewrite
        lg.log_generation(step=4, question="q", model_output="d", rewards={"acc": 1.0})
    files = sorted(p.name for p in tmp_path.glob("generations*.csv"))
    assert files == ["generations.csv", "generations.part2.csv", "generations.part3.csv"]
    with open(tmp_path / "generations.csv", newline="") as f:
        r1 = list(csv.reader(f))
    assert (
        r1[0][-5:] == ["total_reward", "acc_reward", "split", "group_id", "extra"] and len(r1) == 2
    )
    with open(tmp_path / "generations.part2.csv", newline="") as f:
        r2 = list(csv.DictReader(f))
    assert [r["global_step"] for r in r2] == ["2", "3"]
    assert r2[0]["model_output"] == 'say "hi"\nbye' and r2[0]["fmt_reward"] == "0.5"
    assert r2[1]["acc_reward"] == "" and r2[1]["total_reward"] == "1.0"
    assert [r["global_step"] for r in read_csv_parts(tmp_path)] == ["1", "2", "3", "4"]


def test_rank_files_and_manifests(tmp_path: Path) -> None:
    for rank in (0, 1, 2):
        with RunLogger(tmp_path, rank=rank, world_size=3) as lg:
            lg.log_generation(step=1, question="q", model_output=str(rank), rewards={"r": rank})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "events.jsonl", "events.rank1.jsonl", "events.rank2.jsonl",
        "generations.jsonl", "generations.rank1.jsonl", "generations.rank2.jsonl",
        "run.json", "run.rank1.json", "run.rank2.json",
    ]  # fmt: skip
    assert (
        manifest(tmp_path, 2)[schema.M_RANK] == 2 and manifest(tmp_path)[schema.M_WORLD_SIZE] == 3
    )
    assert read_jsonl(tmp_path / "generations.rank1.jsonl")[0][schema.G_RANK] == 1
    assert all(not m.get(schema.M_RESUMES) for m in (manifest(tmp_path, r) for r in (0, 1, 2)))


# --- sinks that stall or fail ----------------------------------------------------------------------
class StalledSink:
    """A disk that hangs inside write() until ``gate`` is set."""

    def __init__(self, gate: threading.Event, entered: threading.Event) -> None:
        self.gate, self.entered = gate, entered

    def write(self, data: bytes) -> None:
        self.entered.set()
        self.gate.wait()

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass


class FailingSink:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    def sync(self) -> None:
        raise OSError(28, "No space left on device")

    def close(self) -> None:
        pass


def _in_thread(fn: Any) -> threading.Thread:
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


def _stuck_logger(
    tmp_path: Path, entered: threading.Event, sink_factory: Any, **kwargs: Any
) -> RunLogger:
    """A RunLogger whose writer thread is inside the sink's write() (with run_start) and stays there."""
    lg = RunLogger(tmp_path, sink_factory=sink_factory, **kwargs)
    lg.flush(timeout=0)  # wakes the writer, which then hangs in write()
    assert entered.wait(10)
    return lg


def _stalled_logger(tmp_path: Path, **kwargs: Any) -> tuple[RunLogger, threading.Event]:
    """A RunLogger behind a StalledSink, its writer already hung; set the returned gate to free it."""
    gate, entered = threading.Event(), threading.Event()
    return _stuck_logger(tmp_path, entered, lambda p: StalledSink(gate, entered), **kwargs), gate


def _log_metrics_in_thread(lg: RunLogger, n: int) -> tuple[threading.Thread, threading.Event]:
    """Log steps 0..n-1 from another thread; the event is set once every call returned."""
    done = threading.Event()

    def produce() -> None:
        for i in range(n):
            lg.log_metrics(i, {"i": i})
        done.set()

    return _in_thread(produce), done


@pytest.mark.filterwarnings("ignore:logscan:RuntimeWarning")
def test_stalled_sink_drop_mode_never_blocks_and_close_respects_timeout(tmp_path: Path) -> None:
    lg, gate = _stalled_logger(tmp_path, max_queue_size=50, on_full="drop")

    def produce() -> None:
        for i in range(1000):
            lg.log_generation(step=i, question="q", model_output="o", rewards={"r": i})

    t = _in_thread(produce)
    t.join(30)
    assert not t.is_alive(), "log_generation blocked behind a stalled disk"
    assert lg.records_dropped >= 1000 - 50
    assert lg.flush(timeout=0.05) is False
    closer = _in_thread(lambda: lg.close(timeout=0.2))
    closer.join(30)
    assert not closer.is_alive(), "close(timeout=0.2) did not return"
    c = manifest(tmp_path)[schema.M_COUNTERS]
    # nothing reached the disk: every record (run_start, 1000 generations, run_end) is accounted as lost
    assert c["records_written"] == 0 and c["records_dropped"] == 1002
    assert manifest(tmp_path)[schema.M_STATUS] == "finished"
    gate.set()


@pytest.mark.filterwarnings("ignore:logscan:RuntimeWarning")
def test_stalled_sink_block_mode_counts_waits_and_close_releases(tmp_path: Path) -> None:
    lg, gate = _stalled_logger(tmp_path, max_queue_size=10, on_full="block")
    t, done = _log_metrics_in_thread(lg, 100)
    assert not done.wait(0.2)  # blocked: the queue is full and the disk hangs
    assert lg.blocked_waits >= 1
    assert lg.close(timeout=0.2) is False  # close releases the blocked producer
    t.join(30)
    assert done.is_set()
    c = manifest(tmp_path)[schema.M_COUNTERS]
    assert c["blocked_waits"] >= 1 and c["records_written"] == 0 and c["records_dropped"] == 102
    gate.set()


def test_block_mode_waits_then_writes_everything(tmp_path: Path) -> None:
    gate, entered = threading.Event(), threading.Event()

    class GatedFile:
        def __init__(self, path: Path) -> None:
            from trainer_hooks import FileSink

            self.inner = FileSink(path)

        def write(self, data: bytes) -> None:
            entered.set()
            gate.wait()
            self.inner.write(data)

        def sync(self) -> None:
            self.inner.sync()

        def close(self) -> None:
            self.inner.close()

    lg = _stuck_logger(tmp_path, entered, GatedFile, max_queue_size=5, on_full="block")
    t, done = _log_metrics_in_thread(lg, 50)
    assert not done.wait(0.1)
    gate.set()
    t.join(30)
    assert done.is_set() and lg.close(timeout=30)
    c = manifest(tmp_path)[schema.M_COUNTERS]
    assert c["blocked_waits"] >= 1 and c["records_dropped"] == 0 and c["records_written"] == 52
    assert [e[schema.E_STEP] for e in events(tmp_path)][1:-1] == list(range(50))


def test_drop_mode_counts_drops(tmp_path: Path) -> None:
    lg, gate = _stalled_logger(tmp_path, max_queue_size=3, on_full="drop")
    for i in range(10):
        lg.log_metrics(i, {"i": i})
    assert lg.records_dropped == 7
    gate.set()
    assert lg.close(timeout=30) is False  # dropped records are a loss: close() says so
    assert manifest(tmp_path)[schema.M_COUNTERS]["records_dropped"] == 7


def test_writer_failure_warns_once_and_never_raises(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lg = RunLogger(tmp_path, sink_factory=FailingSink)
        for i in range(20):
            lg.log_generation(step=i, question="q", model_output="o", rewards={"r": 1.0})
            lg.log_metrics(i, {"x": 1.0})
        assert lg.flush(timeout=30) is False
        assert lg.close(timeout=30) is False
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert msgs and all("No space left" in m or "fsync" in m for m in msgs)
    assert len([m for m in msgs if "cannot write" in m]) == 2  # once per stream, not per record
    c = manifest(tmp_path)[schema.M_COUNTERS]
    assert c["records_written"] == 0 and c["records_failed"] == 42 and c["write_errors"] >= 2


def test_unwritable_run_dir_warns_and_logging_still_returns(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with RunLogger(blocker / "run") as lg:
            lg.log_metrics(1, {"loss": 1.0})
            assert lg.flush(timeout=30) is False
    assert any("cannot" in str(w.message) for w in caught)
    assert lg.counters["records_failed"] == 3


def test_partial_write_failure_keeps_later_lines_parseable(tmp_path: Path) -> None:
    from trainer_hooks import FileSink

    class HalfWrite(FileSink):
        fail_next = True

        def write(self, data: bytes) -> None:
            if HalfWrite.fail_next:
                HalfWrite.fail_next = False
                os.write(self._fd, data[: len(data) // 2])
                self._needs_newline = True
                raise OSError(5, "I/O error")
            super().write(data)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with RunLogger(tmp_path, sink_factory=HalfWrite) as lg:
            lg.log_metrics(1, {"a": 1})
            lg.flush()
            lg.log_metrics(2, {"a": 2})
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    parsed = []
    for ln in lines:
        try:
            parsed.append(json.loads(ln))
        except ValueError:
            pass
    assert [p[schema.E_STEP] for p in parsed if p[schema.E_PHASE] == "metrics"] == [2]
    assert len(lines) - len(parsed) == 1  # exactly the torn fragment


def test_stop_request_round_trip(tmp_path: Path) -> None:
    with RunLogger(tmp_path) as lg:
        assert lg.stop_requested() is None
        path = request_stop(tmp_path, "reward hacking detected at step 40\n")
        assert path == tmp_path / schema.STOP_FILE
        assert lg.stop_requested() == "reward hacking detected at step 40"
        (tmp_path / schema.STOP_FILE).write_text("")
        assert lg.stop_requested() == "stop requested"
    assert not list(tmp_path.glob(".STOP*"))


def test_emit_training_event_and_log_after_close(tmp_path: Path) -> None:
    lg = RunLogger(tmp_path)
    ev = TrainingEvent(
        time=1.0, step=5, phase=TrainingPhase.POLICY_UPDATE, metrics={"loss": 0.1}, meta={"k": [1]}
    )
    with pytest.raises(AttributeError):
        ev.step = 6  # type: ignore[misc]
    lg.emit(ev)
    lg.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lg.log_metrics(6, {"late": 1})
    assert any("closed" in str(w.message) for w in caught)
    assert lg.records_dropped == 1
    e = events(tmp_path)[1]
    assert e == {
        "time": 1.0,
        "step": 5,
        "phase": "policy_update",
        "split": "train",
        "metrics": {"loss": 0.1},
        "meta": {"k": [1]},
        "rank": 0,
    }
    assert ev.to_dict() == e


def test_flush_interval_bounds_latency_without_explicit_flush(tmp_path: Path) -> None:
    seen = threading.Event()

    class Watch:
        def __init__(self, path: Path) -> None:
            from trainer_hooks import FileSink

            self.inner = FileSink(path)

        def write(self, data: bytes) -> None:
            self.inner.write(data)
            if b'"step":42' in data:
                seen.set()

        def sync(self) -> None:
            self.inner.sync()

        def close(self) -> None:
            self.inner.close()

    with RunLogger(tmp_path, flush_interval_s=0.05, sink_factory=Watch) as lg:
        lg.log_metrics(42, {"x": 1})
        assert seen.wait(30)  # written by the periodic wake-up alone


@settings(max_examples=200, deadline=None)
@given(
    text=short(
        st.sampled_from(["<answer>", "</answer>", "a", " ", "\n", "<", ">", "/"]), max_size=25
    )
)
def test_tag_extraction_matches_the_regex_definition(text: str) -> None:
    import re

    from trainer_hooks import extract_tag

    m = re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)
    assert extract_tag(text, "answer") == (m.group(1).strip() if m else None)


def test_unicode_line_separators_stay_inside_one_line(tmp_path: Path) -> None:
    out = "a\u2028b\u2029c\x85d"
    with RunLogger(tmp_path) as lg:
        lg.log_generation(step=1, question="q", model_output=out, rewards={})
    raw = (tmp_path / "generations.jsonl").read_text(encoding="utf-8")
    assert len(raw.splitlines()) == 1 and "\\u2028" in raw
    assert json.loads(raw)[schema.G_OUTPUT] == out


@pytest.mark.parametrize("failing_write", [1, 2], ids=["header-batch", "later-batch"])
def test_a_csv_write_cut_short_ends_its_part(tmp_path: Path, failing_write: int) -> None:
    """Found by a bug hunt: a CSV batch written halfway (a full disk) left a fragment — inside a
    quoted field or the header — that corrupted the rows after it. The writer now ends that part
    and starts the next one with its own header: only the failed batch is lost (and counted)."""
    import os

    from analyzer.ingest import load_run
    from trainer_hooks.logger import FileSink

    class Flaky(FileSink):
        writes = 0

        def write(self, data: bytes) -> None:
            if self.path.name.startswith("generations"):
                Flaky.writes += 1
                if Flaky.writes == failing_write:  # half of the batch reaches the disk, then ENOSPC
                    os.write(self._fd, data[: len(data) // 2])
                    self._needs_newline = True
                    raise OSError(28, "No space left on device")
            super().write(data)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with RunLogger(tmp_path, generations_format="csv", sink_factory=Flaky) as lg:
            for s in (1, 2, 3):
                lg.log_generation(step=s, question="q", model_output=f'say "hi"\nout{s}', rewards={"acc": 1.0})
                assert lg.flush() is (s != failing_write)
    run = load_run(tmp_path)
    g = run.generations
    assert g is not None
    kept = [s for s in (1, 2, 3) if s != failing_write]
    assert g.select("step", "model_output").rows() == [(s, f'say "hi"\nout{s}') for s in kept]
    assert json.loads((tmp_path / "run.json").read_text())["counters"]["records_failed"] == 1
    assert sorted(p.name for p in tmp_path.glob("generations*.csv")) == ["generations.csv", "generations.part2.csv"]
