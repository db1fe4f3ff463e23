"""Shared pytest fixtures. Area-specific helpers live in their own test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# Real logs from public runs, kept beside the repository (never copied into it).
REALDATA = REPO_ROOT.parent / "shared" / "realdata"


@pytest.fixture
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip("../shared/realdata is not present")
    return REALDATA


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT
