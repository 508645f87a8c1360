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


# ---- hypothesis ----------------------------------------------------------------------------
# No clock decides a test (hypothesis's deadline is one), and CI draws the same examples on
# every run (a fixed seed, no example database), so that a failure there reproduces here.
# HYPOTHESIS_PROFILE=ci (or CI=true) picks the CI profile. SEGANYPET_HYPOTHESIS_SCALE=50 draws
# fifty times as many examples, to hunt for bugs longer (tests/test_properties.py reads it too).
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_EXAMPLES = max(1, round(100 * float(os.environ.get("SEGANYPET_HYPOTHESIS_SCALE", "1"))))
_hypothesis_settings.register_profile("dev", deadline=None, max_examples=_EXAMPLES)
_hypothesis_settings.register_profile(
    "ci", deadline=None, derandomize=True, database=None, print_blob=True, max_examples=_EXAMPLES
)
_hypothesis_settings.load_profile(
    os.environ.get(
        "HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI", "").lower() == "true" else "dev"
    )
)
