"""Shared test fixtures: where the real PET data lives, and how to behave when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SEGANYPET_SHARED", REPO_ROOT.parent / "shared"))
DATA = SHARED / "data"
REFERENCE = SHARED / "reference"


def shared_path(*parts: str) -> Path:
    """A path under ../shared. Outside CI a missing one skips the test; in CI it fails it."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        reason = (
            f"real test data not found at {path}; it lives in ../shared beside the checkout "
            "(set SEGANYPET_SHARED to point elsewhere)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must have its fixtures: {reason}")
        pytest.skip(reason)
    return path


@pytest.fixture(autouse=True)
def _state_in_tmp(tmp_path_factory, monkeypatch):
    """Keep per-user state (server journals) out of the home folder during tests."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
