"""Shared fixtures. Real third-party data lives beside the checkout in ../shared/realdata
(never inside the repository); tests that need it skip with a reason where it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("MEFNET_REALDATA", REPO_ROOT.parent / "shared" / "realdata"))
# CI sets MEFNET_REQUIRE_REALDATA=1 (.ci/run): there a test whose real data is missing
# fails instead of skipping, so that a moved folder cannot silently turn tests off.
REQUIRE_REALDATA = os.environ.get("MEFNET_REQUIRE_REALDATA", "") not in ("", "0")


def missing_realdata(reason: str):
    """Skip (or, under MEFNET_REQUIRE_REALDATA=1, fail) a test whose real data is absent."""
    if REQUIRE_REALDATA:
        pytest.fail(f"{reason} (MEFNET_REQUIRE_REALDATA is set, so this is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def realdata() -> Path:
    """Path of ../shared/realdata; skips the test where it is not there."""
    if not REALDATA.is_dir():
        missing_realdata(f"real third-party data not found at {REALDATA} (set MEFNET_REALDATA)")
    return REALDATA


@pytest.fixture(scope="session")
def annotations(realdata: Path) -> Path:
    path = realdata / "annotations"
    if not path.is_dir():
        missing_realdata(f"{path} is absent")
    return path
