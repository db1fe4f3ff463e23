"""Detectors: small documented functions that turn a run's frames into alerts.

Each family lives in its own module and registers with ``@register`` exactly as a third-party
plugin would (``from analyzer.detectors import register``). ``run_detectors`` runs every enabled
one; ``describe_detectors`` documents them for ``logscan detectors``. See docs/detectors.md.
"""

from __future__ import annotations

from analyzer.detectors.base import (
    GENERAL_DEFAULTS,
    REGISTRY,
    DetectorContext,
    DetectorSpec,
    Skip,
    default_config,
    describe_detectors,
    register,
    run_detectors,
    too_short_reason,
)

# Built-in detectors register on import, in report order.
from analyzer.detectors import numeric as _numeric  # noqa: F401  isort: skip
from analyzer.detectors import levels as _levels  # noqa: F401  isort: skip
from analyzer.detectors import integrity as _integrity  # noqa: F401  isort: skip
from analyzer.detectors import reward as _reward  # noqa: F401  isort: skip
from analyzer.detectors import regression as _regression  # noqa: F401  isort: skip
from analyzer.detectors import kl as _kl  # noqa: F401  isort: skip
from analyzer.detectors import collapse as _collapse  # noqa: F401  isort: skip
from analyzer.detectors import generation as _generation  # noqa: F401  isort: skip
from analyzer.detectors import coherence as _coherence  # noqa: F401  isort: skip
from analyzer.detectors import ppo as _ppo  # noqa: F401  isort: skip
from analyzer.detectors import preference as _preference  # noqa: F401  isort: skip
from analyzer.detectors import drift as _drift  # noqa: F401  isort: skip

__all__ = [
    "GENERAL_DEFAULTS",
    "REGISTRY",
    "DetectorContext",
    "DetectorSpec",
    "Skip",
    "default_config",
    "describe_detectors",
    "register",
    "run_detectors",
    "too_short_reason",
]
