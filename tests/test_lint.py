"""Lint, format and type checks (ruff and mypy, configured in pyproject.toml) as tests, so that
`.ci/run` runs them with the rest. Skipped where the tool is not installed, except under CI (CI is
set), where the test extra installs both."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["python", "tests", "bench", "examples"]


def _tool(name):
    try:
        __import__(name)
        return [sys.executable, "-m", name]
    except ImportError:
        exe = shutil.which(name)
        if exe:
            return [exe]
    if os.environ.get("CI"):
        pytest.fail(f"{name} is not installed (pip install '.[test]')")
    pytest.skip(f"{name} is not installed")


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff(command):
    result = subprocess.run(_tool("ruff") + command + PATHS, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy():
    # python/fastvi against the compiled module's stub (python/fastvi/_core.pyi), as pyproject.toml says
    result = subprocess.run(_tool("mypy"), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
