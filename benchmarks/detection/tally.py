"""What the labelled detection suites share (run_suite.py, preference_suite.py): the noise levels
and seeds swept, and the tally of one row — runs, hits, delays from the labelled onset, the other
kinds that warned meanwhile."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

NOISES = (0.5, 1.0, 2.0)


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
