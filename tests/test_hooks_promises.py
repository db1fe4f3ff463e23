"""The promises the training loop relies on: every public call returns within its bound, nothing
raises into training after construction, and the counters say what reached the disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from test_hooks_logger import StalledSink  # a hung disk (an NFS mount that stops answering)

from trainer_hooks import RunLogger, read_stop_request, request_stop, schema


def manifest(run_dir: Path, rank: int = 0) -> dict[str, Any]:
    return json.loads((run_dir / schema.manifest_file(rank)).read_text(encoding="utf-8"))


# --- the stop file ---------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_a_stop_file_that_is_a_fifo_is_ignored_without_blocking(tmp_path: Path) -> None:
    """A FIFO named STOP used to block the check (run after every training step) forever."""
    os.mkfifo(tmp_path / schema.STOP_FILE)
    code = (
        "import sys, warnings\n"
        "from trainer_hooks import RunLogger\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    with RunLogger(sys.argv[1]) as lg:\n"
        "        answers = [lg.stop_requested() for _ in range(3)]\n"
        "print(answers, sum('STOP' in str(w.message) for w in caught))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=15
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[None,", "None,", "None]", "1"]  # ignored, reported once


@pytest.mark.timeout(60)
def test_a_stop_file_linked_to_an_endless_device_is_ignored(tmp_path: Path) -> None:
    """A STOP symlinked to /dev/zero used to be read to the end: memory ran out."""
    (tmp_path / schema.STOP_FILE).symlink_to("/dev/zero")
    code = (
        "import resource, sys, warnings\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
        "warnings.simplefilter('ignore')\n"
        "from trainer_hooks import read_stop_request\n"
        "print(read_stop_request(sys.argv[1]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=15
    )
    assert (out.returncode, out.stdout.strip()) == (0, "None"), out.stderr


def test_a_huge_regular_stop_file_is_read_up_to_its_cap(tmp_path: Path) -> None:
    (tmp_path / schema.STOP_FILE).write_text("reward hacking " + "x" * 10_000_000)
    reason = read_stop_request(tmp_path)
    assert reason is not None and reason.startswith("reward hacking x")
    assert len(reason) <= schema.STOP_MAX_BYTES


def test_a_stop_reason_with_a_lone_surrogate_is_written(tmp_path: Path) -> None:
    request_stop(tmp_path, "bad \udcff byte")
    assert read_stop_request(tmp_path) == "bad \\udcff byte"


# --- wrong argument types --------------------------------------------------------------------------
def _nested(depth: int) -> list[Any]:
    root: list[Any] = []
    cur = root
    for _ in range(depth):
        cur.append([])
        cur = cur[0]
    return root


def test_wrong_argument_types_are_counted_not_raised_into_training(tmp_path: Path) -> None:
    """After construction nothing raises into the training thread, not even a misuse of the API:
    each bad call is one lost record in records_failed, one warning per method, and training goes
    on logging."""
    deep = _nested(5000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("error")  # a warning must not become an exception in training either
        lg = RunLogger(tmp_path, config={"deep": deep})
        lg.log_metrics(1, 0.5)  # type: ignore[arg-type]
        lg.log_metrics(1, [0.5])  # type: ignore[arg-type]
        lg.log_metrics(2, 0.5)  # type: ignore[arg-type]
        lg.log_generation(step=1, question="q", model_output="o", rewards=[1.0])  # type: ignore[arg-type]
        lg.log_event("checkpoint", 1, meta=[1])  # type: ignore[arg-type]
        lg.emit("not an event")  # type: ignore[arg-type]
        lg.log_generations([{"step": 1}, 7])  # type: ignore[list-item]
        lg.log_generations(None)  # type: ignore[arg-type]
        lg.update_manifest(config={"d": deep})
        lg.log_metrics(3, {"deep": deep, "loss": 0.25})
        lg.log_metrics(4, {"loss": 0.5})
        assert lg.close(timeout=30) is False  # records were lost
    failed = lg.counters[schema.C_RECORDS_FAILED]
    assert failed == 9
    assert manifest(tmp_path)[schema.M_COUNTERS][schema.C_RECORDS_FAILED] == 9
    evs = [
        json.loads(line)
        for line in (tmp_path / schema.events_file()).read_text(encoding="utf-8").splitlines()
    ]
    assert [e[schema.E_METRICS].get("loss") for e in evs if e[schema.E_PHASE] == "metrics"] == [
        0.25,
        0.5,
    ]
    assert len(json.dumps(manifest(tmp_path)[schema.M_CONFIG])) < 10_000  # cut at a depth limit
    messages = [str(w.message) for w in caught]
    per_method = {m.split("(")[0] for m in messages if "cannot log" in m}
    assert len([m for m in messages if "cannot log" in m]) == len(per_method)  # once per method


# --- every public call returns within its bound ----------------------------------------------------
def _hung_logger(tmp_path: Path, **kwargs: Any) -> tuple[RunLogger, threading.Event]:
    gate, entered = threading.Event(), threading.Event()
    lg = RunLogger(tmp_path, sink_factory=lambda p: StalledSink(gate, entered), **kwargs)
    lg.flush(timeout=0)  # wakes the writer: it takes run_start and hangs in write()
    assert entered.wait(10)
    return lg, gate


def _returns_within(seconds: float, fn: Any) -> Any:
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    start = time.monotonic()
    t.start()
    t.join(seconds + 10)
    assert not t.is_alive(), f"did not return within {seconds + 10}s"
    return out[0], time.monotonic() - start


@pytest.mark.filterwarnings("ignore:logscan:RuntimeWarning")
def test_close_returns_in_time_with_a_pending_reward_batch_a_full_queue_and_a_hung_disk(
    tmp_path: Path,
) -> None:
    """close() emits the reward wrapper's pending batch; with the queue at its bound and the disk
    hung, that emit used to wait for queue space forever, inside close(timeout=1)."""
    from trainer_hooks import wrap_reward_functions

    lg, gate = _hung_logger(tmp_path, max_queue_size=10)  # on_full="block"
    try:
        f1, _f2 = wrap_reward_functions(
            [lambda completions, **kw: [1.0] * len(completions), lambda completions, **kw: [0.0]],
            lg,
        )
        for i in range(10):
            lg.log_metrics(i, {"loss": 1.0})  # the queue is now exactly full
        f1(prompts=["p"] * 4, completions=["c"] * 4)  # one of two functions scored the batch
        ok, took = _returns_within(1.0, lambda: lg.close(timeout=1.0))
        assert ok is False and took < 3.0
        c = manifest(tmp_path)[schema.M_COUNTERS]
        # run_start (in the hung write), 10 metrics, the 4 completions and run_end: none written
        assert c[schema.C_RECORDS_WRITTEN] == 0 and c[schema.C_RECORDS_DROPPED] == 16
    finally:
        gate.set()


@pytest.mark.filterwarnings("ignore:logscan:RuntimeWarning")
def test_a_producer_blocked_on_a_full_queue_does_not_hold_up_close(tmp_path: Path) -> None:
    lg, gate = _hung_logger(tmp_path, max_queue_size=3)
    try:
        blocked = threading.Thread(
            target=lambda: [lg.log_metrics(i, {"i": i}) for i in range(10)], daemon=True
        )
        blocked.start()
        while lg.blocked_waits == 0:  # the producer waits for space behind the hung disk
            blocked.join(0.01)
        ok, took = _returns_within(0.5, lambda: lg.close(timeout=0.5))
        assert ok is False and took < 2.5
        blocked.join(10)
        assert not blocked.is_alive()
        second, _ = _returns_within(0.5, lambda: lg.close(timeout=0.5))
        assert second is False  # a second close() reports the first one's outcome
    finally:
        gate.set()


def test_flush_racing_close_returns(tmp_path: Path) -> None:
    """flush() used to check 'closed', then append its marker: when close() finished in between,
    nothing was left to answer the marker and flush() (no timeout) waited forever. Here the
    interleaving is forced: flush is held just before its marker enters the queue until close()
    has drained the queue and stopped the writer."""
    import collections

    from trainer_hooks.logger import _FlushMarker

    lg = RunLogger(tmp_path)
    lg.log_metrics(1, {"loss": 1.0})
    entered, gate = threading.Event(), threading.Event()

    class HeldMarkerQueue(collections.deque):  # type: ignore[type-arg]
        def append(self, x: Any) -> None:
            if isinstance(x, _FlushMarker):
                entered.set()
                gate.wait(30)
            super().append(x)

    lg._q = HeldMarkerQueue(lg._q)
    flushed: list[bool] = []
    flusher = threading.Thread(target=lambda: flushed.append(lg.flush()), daemon=True)
    flusher.start()
    assert entered.wait(10)
    closed: list[bool] = []
    closer = threading.Thread(target=lambda: closed.append(lg.close(timeout=10)), daemon=True)
    closer.start()
    lg._thread.join(10)  # close() has stopped the writer: the marker arrives after its last drain
    assert not lg._thread.is_alive()
    gate.set()
    flusher.join(15)
    closer.join(15)
    assert not flusher.is_alive(), "flush() never returned"
    assert not closer.is_alive()
    assert closed == [True] and flushed == [True]
    assert lg.flush() is True and lg.flush(timeout=0) is True  # after close: close's outcome


# --- the counters say what reached the disk --------------------------------------------------------
def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def test_records_logged_after_the_run_folder_was_deleted_are_not_counted_as_written(
    tmp_path: Path,
) -> None:
    """The files stay open after `rm -rf run`: writes to them succeed but reach no folder. They
    used to be counted as written, and flush() and close() returned True."""
    import shutil

    run = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lg = RunLogger(run)
        lg.log_metrics(1, {"loss": 1.0})
        lg.log_generation(step=1, question="q", model_output="o", rewards={"r": 1.0})
        assert lg.flush(timeout=30) is True  # both files open, 3 records on disk
        shutil.rmtree(run)
        for i in range(100):
            lg.log_generation(step=i, question="q", model_output="o", rewards={"r": 1.0})
        assert lg.flush(timeout=30) is False
        assert lg.close(timeout=30) is False  # and run.json could not be written either
    c = lg.counters
    assert c[schema.C_RECORDS_WRITTEN] == 3
    assert c[schema.C_RECORDS_FAILED] == 101  # the 100 completions and run_end
    assert any("deleted" in str(w.message) for w in caught)
    assert not run.exists()  # nothing recreated the folder


def test_a_batch_cut_short_counts_the_records_that_reached_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk: the kernel takes part of a batch, then ENOSPC. The whole lines before the cut
    are on disk and counted written; only the torn one and the rest are failed."""
    lg = RunLogger(tmp_path)
    assert lg.flush(timeout=30)  # run_start written, events.jsonl open
    events_path = tmp_path / schema.events_file()
    before = events_path.read_bytes()
    real_write = os.write
    fd = os.open(events_path, os.O_RDONLY)
    target = os.fstat(fd).st_ino
    os.close(fd)
    state = {"calls": 0}

    def disk_fills(fd: int, data: Any) -> int:
        if os.fstat(fd).st_ino != target:
            return real_write(fd, data)
        state["calls"] += 1
        if state["calls"] == 1:  # 4.5 lines fit
            text = bytes(data)
            cut = [i for i, b in enumerate(text) if b == 0x0A][3] + 1 + 10
            return real_write(fd, text[:cut])
        raise OSError(28, "No space left on device")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for i in range(10):
            lg.log_metrics(i, {"i": i})
        monkeypatch.setattr(os, "write", disk_fills)
        assert lg.flush(timeout=30) is False
        monkeypatch.setattr(os, "write", real_write)
        lg.log_metrics(10, {"i": 10})
        assert lg.close(timeout=30) is False
    c = lg.counters
    assert c[schema.C_RECORDS_WRITTEN] == 1 + 4 + 2  # run_start, 4 whole lines, step 10 + run_end
    assert c[schema.C_RECORDS_FAILED] == 6
    added = events_path.read_bytes()[len(before) :].split(b"\n")
    parsed = []
    for line in added:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pass
    assert [e[schema.E_STEP] for e in parsed] == [0, 1, 2, 3, 10, None]


def test_close_is_false_when_the_final_manifest_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every record is on disk, but run.json (status, counters) is not: that is a loss too."""
    import trainer_hooks.logger as logger_module

    lg = RunLogger(tmp_path)
    lg.log_metrics(1, {"loss": 1.0})
    assert lg.flush(timeout=30)

    def read_only(path: Path, tmp: Path, data: bytes) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(logger_module, "_write_atomic", read_only)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert lg.close(timeout=30) is False
    assert lg.counters[schema.C_WRITE_ERRORS] == 1
    assert manifest(tmp_path)[schema.M_STATUS] == "running"  # the old one, intact


def test_a_csv_batch_cut_short_counts_its_whole_rows(tmp_path: Path) -> None:
    from trainer_hooks.logger import FileSink, PartialWrite

    class FullAfterTwoRows(FileSink):
        def write(self, data: bytes) -> None:
            if self.path.suffix == ".csv" and b"third" in data:
                cut = data.index(b"third") + 3  # header and two rows (é: 2 bytes) fit
                os.write(self._fd, data[:cut])
                raise PartialWrite(28, "No space left on device", cut)
            super().write(data)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lg = RunLogger(tmp_path, generations_format="csv", sink_factory=FullAfterTwoRows)
        for text in ('é "one"\nline', "two", "third", "fourth"):
            lg.log_generation(step=1, question="q", model_output=text, rewards={"r": 1.0})
        assert lg.close(timeout=30) is False
    c = lg.counters
    assert c[schema.C_RECORDS_FAILED] == 2
    assert c[schema.C_RECORDS_WRITTEN] == 2 + 2  # run_start and run_end, two rows


def test_the_analyzer_says_what_the_writer_counters_mean(tmp_path: Path) -> None:
    """records_failed used to be reported as records that 'failed to serialise'; they are records
    that did not reach the disk (mostly write errors)."""
    from analyzer.ingest import load_run
    from trainer_hooks.logger import FileSink

    class GenerationsDiskFull(FileSink):
        def write(self, data: bytes) -> None:
            if self.path.name.startswith("generations"):
                raise OSError(28, "No space left on device")
            super().write(data)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with RunLogger(tmp_path, sink_factory=GenerationsDiskFull) as lg:
            lg.log_metrics(1, {"loss": 1.0})
            lg.log_generation(step=1, question="q", model_output="o", rewards={"r": 1.0})
    issues = [str(i) for i in load_run(tmp_path).report.issues]
    assert "run.json: the writer reports 1 records that did not reach the disk" in " ".join(issues)
    assert any("1 failed write/fsync calls" in i for i in issues)
    assert not any("serialise" in i for i in issues)


@pytest.mark.timeout(60)
def test_flush_returns_when_the_writer_hits_an_unexpected_error(tmp_path: Path) -> None:
    """A bug in a sink (or in the writer) used to swallow the flush markers of the batch it broke:
    flush() without a timeout then waited forever."""

    class Buggy:
        def __init__(self, path: Path) -> None:
            pass

        def write(self, data: bytes) -> None:
            raise ValueError("a bug, not an OSError")

        def sync(self) -> None:
            pass

        def close(self) -> None:
            pass

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lg = RunLogger(tmp_path, sink_factory=Buggy)
        lg.log_metrics(1, {"loss": 1.0})
        ok, _ = _returns_within(5, lg.flush)
        assert ok is False
        assert lg.close(timeout=10) is False
    assert lg.counters[schema.C_RECORDS_FAILED] == 3 and lg.counters[schema.C_RECORDS_WRITTEN] == 0


# --- one live writer per folder and rank ----------------------------------------------------------
def test_a_second_live_writer_on_the_same_folder_and_rank_is_refused(tmp_path: Path) -> None:
    """Two live RunLoggers on one folder and rank used to interleave their sessions in one file
    (analyze then saw false resumes) and overwrite each other's run.json counters."""
    from trainer_hooks.logger import RunFolderBusyError

    first = RunLogger(tmp_path, algorithm="grpo")
    first.log_metrics(1, {"loss": 1.0})
    assert first.flush(timeout=30)
    events_before = (tmp_path / schema.events_file()).read_bytes()
    manifest_before = manifest(tmp_path)
    with pytest.raises(RunFolderBusyError, match=rf"pid {os.getpid()}\b.*rank 0|rank 0.*pid {os.getpid()}\b"):
        RunLogger(tmp_path)
    # the refused logger touched nothing of the live one's
    assert (tmp_path / schema.events_file()).read_bytes() == events_before
    assert manifest(tmp_path) == manifest_before
    with RunLogger(tmp_path, rank=1, world_size=2) as other_rank:  # another rank is another file
        other_rank.log_metrics(1, {"loss": 2.0})
    assert first.close(timeout=30) is True
    with RunLogger(tmp_path) as resumed:  # once closed, the folder can be resumed
        resumed.log_metrics(2, {"loss": 0.5})
    m = manifest(tmp_path)
    assert len(m[schema.M_RESUMES]) == 1 and m[schema.M_COUNTERS][schema.C_RECORDS_WRITTEN] == 6


HOLDER = r"""
import sys
from trainer_hooks import RunLogger
lg = RunLogger(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
if sys.argv[2] == "close":
    lg.close()
    print("closed", flush=True)
    sys.stdin.readline()
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["close", "kill"])
def test_a_live_writer_in_another_process_is_detected_until_it_ends(tmp_path: Path, how: str) -> None:
    from trainer_hooks.logger import RunFolderBusyError

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path), how],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(RunFolderBusyError, match=rf"pid {holder.pid}\b"):
            RunLogger(tmp_path)
        if how == "close":
            holder.stdin.write("\n")
            holder.stdin.flush()
            assert holder.stdout.readline().strip() == "closed"  # closed, process still alive
        else:
            holder.kill()  # a killed writer holds nothing: the next session resumes
            holder.wait(timeout=30)
        with RunLogger(tmp_path) as lg:
            lg.log_metrics(1, {"loss": 1.0})
        assert manifest(tmp_path)[schema.M_RESUMES][-1]["pid"] == os.getpid()
    finally:
        holder.kill()
        holder.wait(timeout=30)


# --- keys that JSON would repeat -------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_keys_that_become_equal_as_json_text_are_kept_apart(tmp_path: Path, fmt: str) -> None:
    """{1: 0.5, "1": 0.7} used to be written as {"1":0.5,"1":0.7}: a duplicate JSON key, which
    readers resolve by silently keeping one of the values."""

    def pairs(text: str) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []

        def hook(items: list[tuple[str, Any]]) -> dict[str, Any]:
            out.extend(items)
            keys = [k for k, _ in items]
            assert len(keys) == len(set(keys)), f"duplicate JSON keys in {text}"
            return dict(items)

        json.loads(text, object_pairs_hook=hook)
        return out

    with RunLogger(tmp_path, generations_format=fmt) as lg:  # type: ignore[arg-type]
        lg.log_metrics(1, {1: 0.5, "1": 0.7})  # type: ignore[dict-item]
        lg.log_event("checkpoint", 1, meta={"a": {2: "x", "2": "y"}})
        lg.log_generation(
            step=1, question="q", model_output="o", rewards={1: 0.5, "1": 0.7}, info={3: 1, "3": 2}  # type: ignore[dict-item]
        )
    evs = _lines(tmp_path / schema.events_file())
    metrics = next(json.loads(e) for e in evs if '"phase":"metrics"' in e)[schema.E_METRICS]
    assert sorted(metrics.values()) == [0.5, 0.7] and metrics["1"] == 0.7
    for line in evs:
        pairs(line)
    ckpt = next(json.loads(e) for e in evs if '"phase":"checkpoint"' in e)
    assert sorted(ckpt[schema.E_META]["a"].values()) == ["x", "y"]
    if fmt == "jsonl":
        (line,) = _lines(tmp_path / schema.generations_file())
        pairs(line)
        g = json.loads(line)
        assert sorted(g[schema.G_REWARDS].values()) == [0.5, 0.7] and g[schema.G_TOTAL_REWARD] == 1.2
        assert sorted(g[schema.G_EXTRA]["info"].values()) == [1, 2]
    else:
        import csv

        with open(tmp_path / "generations.csv", newline="", encoding="utf-8") as f:
            (header, row) = list(csv.reader(f))
        assert len(header) == len(set(header))
        rewards = {h: v for h, v in zip(header, row, strict=True) if h.endswith("_reward") and h != "total_reward"}
        assert sorted(float(v) for v in rewards.values()) == [0.5, 0.7]
        pairs(row[header.index("extra")])
    assert manifest(tmp_path)[schema.M_REWARD_NAMES] == ["1 (int)", "1"]


def test_records_an_fsync_could_not_make_durable_are_counted_as_failed(tmp_path: Path) -> None:
    """A network file system may accept every write and report the loss only at fsync (Linux then
    drops the unwritten pages). The records written since the last good fsync are not on disk."""
    from trainer_hooks.logger import FileSink

    class SyncFails(FileSink):
        fail = False

        def sync(self) -> None:
            if SyncFails.fail:
                raise OSError(5, "Input/output error")
            super().sync()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lg = RunLogger(tmp_path, sink_factory=SyncFails)
        lg.log_metrics(1, {"loss": 1.0})
        assert lg.flush(timeout=30) is True  # run_start and step 1: durable
        SyncFails.fail = True
        for i in range(5):
            lg.log_metrics(2 + i, {"loss": 1.0})
        assert lg.flush(timeout=30) is False
        SyncFails.fail = False
        lg.log_metrics(7, {"loss": 1.0})
        assert lg.close(timeout=30) is False
    c = lg.counters
    assert c[schema.C_RECORDS_WRITTEN] == 2 + 2  # before the failed fsync; step 7 and run_end
    assert c[schema.C_RECORDS_FAILED] == 5 and c[schema.C_WRITE_ERRORS] == 1


def test_update_manifest_does_not_wait_for_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The TRL callback calls update_manifest in on_train_begin, on the training thread: it used to
    rewrite run.json right there, so a hung disk hung training. The writer thread rewrites it now;
    flush() covers it."""
    import trainer_hooks.logger as logger_module

    lg = RunLogger(tmp_path)
    gate, entered = threading.Event(), threading.Event()
    real = logger_module._write_atomic

    def hung(path: Path, tmp: Path, data: bytes) -> None:
        entered.set()
        gate.wait(30)
        real(path, tmp, data)

    monkeypatch.setattr(logger_module, "_write_atomic", hung)
    try:
        _, took = _returns_within(1.0, lambda: lg.update_manifest(model="m", config={"lr": 0.1}))
        assert took < 1.0
        assert entered.wait(10)  # the writer thread is the one waiting for the disk
    finally:
        gate.set()
    assert lg.flush(timeout=30)
    m = manifest(tmp_path)
    assert (m[schema.M_MODEL], m[schema.M_CONFIG]) == ("m", {"lr": 0.1})
    assert lg.close(timeout=30)


def test_close_never_raises_and_answers_waiting_flushes_even_when_it_breaks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lg = RunLogger(tmp_path)

    def broken(deadline: Any) -> bool:
        raise RuntimeError("a bug in close")

    monkeypatch.setattr(lg, "_write_final_manifest", broken)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert lg.close(timeout=10) is False
    assert lg.close(timeout=1) is False and lg.flush() is False
    with RunLogger(tmp_path):  # and the folder is free again
        pass
