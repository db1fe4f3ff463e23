"""What the labelled detection suites share (run_suite.py, preference_suite.py): the options, the
header, the stage timer, the noise levels and seeds swept, and the tally of one row — runs, hits, delays from the labelled onset, the other
kinds that warned meanwhile."""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

NOISES = (0.5, 1.0, 2.0)


def suite_parser(doc: str | None, *, labelled_onset: bool = True) -> argparse.ArgumentParser:
    """The options every suite takes: --seeds and --quick; with ``labelled_onset``, the run's
    length (--steps) and where its problem starts (--onset). A suite adds its own after these."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    if labelled_onset:
        ap.add_argument("--steps", type=int, default=200)
        ap.add_argument("--onset", type=float, default=0.5, help="onset as a fraction of the run")
    ap.add_argument("--quick", action="store_true", help="one seed, one noise level")
    return ap


def print_header(what: str) -> None:
    """The first lines of a suite's output: what it runs, then the machine."""
    print(what)
    print(f"# machine: {platform.machine()}, Python {platform.python_version()}")
    print()


@contextmanager
def timed(times: dict[str, float], stage: str) -> Iterator[None]:
    """Adds the seconds the block takes to ``times[stage]``."""
    t = time.perf_counter()
    try:
        yield
    finally:
        times[stage] += time.perf_counter() - t


def sweep(args: argparse.Namespace) -> tuple[range, tuple[float, ...]]:
    """The seeds and noise levels to run: ``--seeds`` × NOISES, or one of each with ``--quick``."""
    return range(1 if args.quick else args.seeds), (1.0,) if args.quick else NOISES


@dataclass
class Tally:
    """One row of a suite: a scenario (kind, trainer, …) over its seeds and noise levels."""

    runs: int = 0
    hits: int = 0
    delays: list[int] = field(default_factory=list)
    others: set[str] = field(default_factory=set)

    def add(self, alerts: Iterable[Any], expected: str, min_rank: int, onset: int | None) -> None:
        """One labelled run: a hit when an alert of kind ``expected`` is at least ``min_rank``
        severe; its delay is the step of the closest such alert minus ``onset`` (none without an
        onset); other kinds that raised a warning or worse are noted."""
        alerts = list(alerts)
        self.runs += 1
        mine = [a for a in alerts if a.kind == expected and a.severity.rank >= min_rank]
        self.others |= {a.kind for a in alerts if a.kind != expected and a.severity.rank >= 1}
        if mine:
            self.hits += 1
            if onset is not None:
                best = min(mine, key=lambda a: abs((a.step or 0) - onset))
                self.delays.append((best.step or 0) - onset)

    @property
    def missed(self) -> int:
        return self.runs - self.hits
