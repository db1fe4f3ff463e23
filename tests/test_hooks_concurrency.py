"""Many threads and several ranks logging at once: no interleaved, torn or lost lines."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from trainer_hooks import RunLogger, schema

THREADS = 8
PER_THREAD = 1500
RANKS = 3


def _lines(path: Path) -> list[dict]:
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    return [json.loads(line) for line in raw.split(b"\n")[:-1]]


def test_threads_and_ranks_in_one_process(tmp_path: Path) -> None:
    # a small queue forces the writer and the producers to contend (blocking, many batches)
    loggers = [
        RunLogger(tmp_path, rank=r, world_size=RANKS, max_queue_size=64) for r in range(RANKS)
    ]
    start = threading.Barrier(THREADS * RANKS)

    def produce(lg: RunLogger, t: int) -> None:
        start.wait()
        for i in range(PER_THREAD):
            text = f"rank{lg.rank}-thread{t}-{i}," + '"\n' * (i % 5) + "x" * (i % 300)
            lg.log_generation(
                step=i, question=f"t{t}", model_output=text, rewards={"r": i}, thread=t
            )
            lg.log_metrics(i, {"thread": t, "i": i})

    workers = [
        threading.Thread(target=produce, args=(lg, t)) for lg in loggers for t in range(THREADS)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for lg in loggers:
        assert lg.close(timeout=60)

    for r in range(RANKS):
        gens = _lines(tmp_path / schema.generations_file(r))
        evs = [
            e for e in _lines(tmp_path / schema.events_file(r)) if e[schema.E_PHASE] == "metrics"
        ]
        assert len(gens) == len(evs) == THREADS * PER_THREAD
        for t in range(THREADS):
            mine = [g for g in gens if g[schema.G_EXTRA]["thread"] == t]
            assert [g[schema.G_STEP] for g in mine] == list(
                range(PER_THREAD)
            )  # per-thread order kept
            for g in mine:
                assert g[schema.G_RANK] == r
                assert g[schema.G_OUTPUT].startswith(f"rank{r}-thread{t}-{g[schema.G_STEP]},")
            assert [
                e[schema.E_METRICS]["i"] for e in evs if e[schema.E_METRICS]["thread"] == t
            ] == list(range(PER_THREAD))
        c = json.loads((tmp_path / schema.manifest_file(r)).read_text())[schema.M_COUNTERS]
        assert c["records_written"] == 2 * THREADS * PER_THREAD + 2 and c["records_dropped"] == 0


RANK_CHILD = r"""
import sys, threading
from trainer_hooks import RunLogger
run_dir, rank = sys.argv[1], int(sys.argv[2])
with RunLogger(run_dir, rank=rank, world_size=4) as lg:
    def go(t):
        for i in range(1000):
            lg.log_generation(step=i, question="q", model_output="o" * (i % 100), rewards={"r": t})
    ts = [threading.Thread(target=go, args=(t,)) for t in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
"""


@pytest.mark.slow
def test_rank_processes_write_their_own_files(tmp_path: Path) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", RANK_CHILD, str(tmp_path), str(r)])
        for r in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    for r in range(4):
        gens = _lines(tmp_path / schema.generations_file(r))
        assert len(gens) == 4000 and {g[schema.G_RANK] for g in gens} == {r}
        m = json.loads((tmp_path / schema.manifest_file(r)).read_text())
        assert (
            m[schema.M_STATUS] == "finished" and m[schema.M_RANK] == r and not m[schema.M_RESUMES]
        )
