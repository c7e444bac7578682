"""Shared fixtures. Real recordings live in ../shared/data/real beside the checkout; tests needing them skip."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_REAL = REPO.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def shared_real() -> Path:
    """Path to the real recordings; skips the test when they are absent (a fresh clone has none)."""
    if not (SHARED_REAL / "README.md").is_file():
        pytest.skip("real recordings not present at ../shared/data/real")
    return SHARED_REAL
