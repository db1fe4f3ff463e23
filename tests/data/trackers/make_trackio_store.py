"""Writes ``trackio/logscan-test.db`` with the real Trackio, as transformers' TrackioCallback and
TRL's GRPOTrainer log: ``{train/<key>: v, "train/global_step": step}`` per step and a
``completions`` table every 25 steps. Trackio cannot be installed beside logscan's test
dependencies (it caps pillow < 13), so tests/test_ingest_trackers.py reads this store; regenerate
it in a separate environment that has trackio and logscan (Trackio 0.43.0 made the stored one):

    TRACKIO_DIR=tests/data/trackers/trackio HF_HUB_OFFLINE=1 PYTHONPATH=tests \\
        python tests/data/trackers/make_trackio_store.py
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

PROJECT = "logscan-test"


def write_trackio(folder: Path, runs: list[tuple[str, Any]], *, table_every: int = 25) -> Path:
    """Each ``(name, steps frame)`` logged as one run of project ``PROJECT`` under ``folder`` (or
    where Trackio's folder already is); returns the store's path."""
    os.environ["TRACKIO_DIR"] = str(folder)  # read when trackio is imported
    import trackio
    from test_ingest_trackers import trl_logs

    for name, steps in runs:
        trackio.init(project=PROJECT, name=name, config={"learning_rate": 1e-6, "beta": 0.04})
        for row in steps.to_dicts():
            s = row["step"]
            trackio.log({**{f"train/{k}": v for k, v in trl_logs(row).items()}, "train/global_step": s})
            if table_every and s % table_every == 0:
                rows = [[s, f"q{i}", f"answer {i} at {s}", float(i % 2), math.nan] for i in range(4)]
                trackio.log({"completions": trackio.Table(columns=["step", "prompt", "completion", "accuracy", "advantage"], data=rows)})
        trackio.finish()
    # where Trackio really wrote it: TRACKIO_DIR is read once, when trackio is first imported (an
    # earlier test in the same process may have imported it with another folder)
    from trackio.sqlite_storage import SQLiteStorage

    return Path(SQLiteStorage.get_project_db_path(PROJECT))


if __name__ == "__main__":
    from detector_scenarios import make_scenario

    out = Path(os.environ.get("TRACKIO_DIR", Path(__file__).resolve().parent / "trackio"))
    for p in out.glob(f"{PROJECT}.*"):
        p.unlink()
    store = write_trackio(out, [
        ("healthy", make_scenario(None, with_generations=False, n_steps=20).run.steps),
        ("blowup", make_scenario("kl_explosion", with_generations=False).run.steps),
    ])
    (out / f"{PROJECT}.lock").unlink(missing_ok=True)
    print(store, store.stat().st_size, file=sys.stderr)
