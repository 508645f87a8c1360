"""The code stays ruff-clean (lint and format), as the conventions ask."""

import os
import shutil
import subprocess

import pytest

from conftest import REPO_ROOT


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]])
def test_ruff(command):
    ruff = shutil.which("ruff")
    if ruff is None:
        reason = "ruff is not installed (pip install -e '.[test]')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must have it: {reason}")
        pytest.skip(reason)
    result = subprocess.run(
        [ruff, *command], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
