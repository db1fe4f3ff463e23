"""Crash safety: a child process logging flat out is SIGKILLed at random moments.

After each kill: every complete line parses, at most one torn last line per file, and every record
acknowledged by ``flush()`` before the kill is on disk.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from trainer_hooks import schema

csv.field_size_limit(sys.maxsize)

CHILD = r"""
import sys
from trainer_hooks import RunLogger
run_dir, fmt = sys.argv[1], sys.argv[2]
lg = RunLogger(run_dir, generations_format=fmt, flush_interval_s=0.005, max_queue_size=5000)
print("READY", flush=True)
i = 0
while True:
    # quotes, commas, newlines and non-ASCII in every record, of varying length
    out = ('é,"x"\n' * (i % 37)) + "<answer>%d</answer>" % i
    lg.log_generation(step=i, question="q%d" % (i % 7), model_output=out, rewards={"r": i * 0.5, "nan": float("nan")})
    lg.log_metrics(i, {"loss": 1.0 / (i + 1), "i": i})
    if i % 40 == 39 and lg.flush(timeout=30):
        print("ACK", i, flush=True)  # everything up to step i is on disk
    i += 1
"""

TRIALS = 24


def _check_jsonl(path: Path) -> list[dict]:
    data = path.read_bytes()
    parts = data.split(b"\n")
    complete, tail = parts[:-1], parts[-1]
    records = [json.loads(p) for p in complete]  # every complete line must parse
    # the one allowed torn last line: a prefix of a record, or (killed right before the newline)
    # a whole record
    if tail:
        try:
            records.append(json.loads(tail))
        except ValueError:
            pass
    return records


def _check_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:  # keep \r\n: it ends a CSV row
        text = f.read()
    rows = list(csv.reader(text.splitlines(keepends=True)))
    header, body = rows[0], rows[1:]
    complete = text.endswith("\r\n")
    for i, row in enumerate(body):
        if i == len(body) - 1 and not complete:
            break  # the torn last row
        assert len(row) == len(header), f"corrupt row {i} in {path.name}"
    if not complete and body:
        body = body[:-1]
    return [dict(zip(header, r, strict=True)) for r in body]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_sigkill_at_random_moments(tmp_path: Path, fmt: str) -> None:
    rng = random.Random(20251121 + len(fmt))
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(repo)}
    for trial in range(TRIALS // 2):
        run = tmp_path / f"{fmt}-{trial}"
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(run), fmt], stdout=subprocess.PIPE, text=True, env=env
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        acked = -1
        want_acks = rng.randint(1, 12)
        for line in proc.stdout:
            acked = int(line.split()[1])
            want_acks -= 1
            if want_acks == 0:
                break
        # kill at a random point between two acknowledgements (the child keeps writing meanwhile)
        for _ in range(rng.randint(0, 3000)):
            pass
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
        for line in rest.splitlines():  # acks printed before the kill count too
            acked = max(acked, int(line.split()[1]))
        assert proc.returncode == -signal.SIGKILL
        assert acked >= 0

        events = _check_jsonl(run / "events.jsonl")
        steps = {e[schema.E_STEP] for e in events if e[schema.E_PHASE] == "metrics"}
        assert set(range(acked + 1)) <= steps, f"trial {trial}: acknowledged metrics missing"
        if fmt == "jsonl":
            gens = _check_jsonl(run / "generations.jsonl")
            gsteps = [g[schema.G_STEP] for g in gens]
            for g in gens:
                assert g[schema.G_ANSWER] == str(g[schema.G_STEP])
                assert g[schema.G_REWARDS]["nan"] == "NaN"
        else:
            gens_csv = _check_csv(run / "generations.csv")
            gsteps = [int(r[schema.G_STEP]) for r in gens_csv]
            for r in gens_csv:
                assert r[schema.G_ANSWER] == r[schema.G_STEP] and r["nan_reward"] == "NaN"
        assert gsteps == sorted(gsteps) and len(set(gsteps)) == len(gsteps)
        assert set(range(acked + 1)) <= set(gsteps), (
            f"trial {trial}: acknowledged generations missing"
        )
        manifest = json.loads((run / "run.json").read_text())
        assert manifest[schema.M_STATUS] == "running"  # killed: never closed

        # a resumed logger appends after the torn tail without corrupting anything
        from trainer_hooks import RunLogger

        with RunLogger(run, generations_format=fmt) as lg:  # type: ignore[arg-type]
            lg.log_metrics(10**9, {"resumed": 1})
        lines = (run / "events.jsonl").read_bytes().split(b"\n")
        assert lines[-1] == b""
        parsed, bad = [], 0
        for ln in lines[:-1]:
            try:
                parsed.append(json.loads(ln))
            except ValueError:
                bad += 1
        assert bad <= 1  # only the old torn tail, now on its own line
        assert parsed[-1][schema.E_PHASE] == "run_end" and parsed[-2][schema.E_STEP] == 10**9
        assert (
            json.loads((run / "run.json").read_text())[schema.M_RESUMES][0]["previous_status"]
            == "running"
        )
