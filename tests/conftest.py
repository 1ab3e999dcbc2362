"""Shared fixtures. Real third-party data lives beside the checkout in ../shared/realdata
(never inside the repository); tests that need it skip with a reason where it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("MEFNET_REALDATA", REPO_ROOT.parent / "shared" / "realdata"))


@pytest.fixture(scope="session")
def realdata() -> Path:
    """Path of ../shared/realdata; skips the test where it is not there."""
    if not REALDATA.is_dir():
        pytest.skip(f"real third-party data not found at {REALDATA} (set MEFNET_REALDATA)")
    return REALDATA


@pytest.fixture(scope="session")
def annotations(realdata: Path) -> Path:
    path = realdata / "annotations"
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path
