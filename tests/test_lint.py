"""Lint and format checks (ruff, configured in pyproject.toml) as tests, so that `.ci/run` runs
them with the rest. Skipped where ruff is not installed, except under CI (CI is set), where the
test extra installs it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["python", "tests", "bench", "examples"]


def _ruff():
    try:
        import ruff  # noqa: F401

        return [sys.executable, "-m", "ruff"]
    except ImportError:
        exe = shutil.which("ruff")
        if exe:
            return [exe]
    if os.environ.get("CI"):
        pytest.fail("ruff is not installed (pip install '.[test]')")
    pytest.skip("ruff is not installed")


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff(command):
    result = subprocess.run(_ruff() + command + PATHS, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
