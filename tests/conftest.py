"""Shared pytest fixtures. Area-specific helpers live in their own test modules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from analyzer.model import RunData

REPO_ROOT = Path(__file__).resolve().parent.parent
# Real logs from public runs, kept beside the repository (never copied into it).
REALDATA = REPO_ROOT.parent / "shared" / "realdata"


@pytest.fixture
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip("../shared/realdata is not present")
    return REALDATA


@pytest.fixture
def real_run(realdata: Path) -> Callable[[str], RunData]:
    """Reads the real log at a path under ../shared/realdata; the test is skipped when it is absent."""

    def load(rel: str) -> RunData:
        from analyzer.ingest import load_run

        path = realdata / rel
        if not path.exists():
            pytest.skip(f"{path} is not present")
        return load_run(path)

    return load


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT
