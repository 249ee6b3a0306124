"""Lint, format and type checks (ruff and mypy, configured in pyproject.toml; clang-format, in
.clang-format, for the C++) as tests, so that `.ci/run` runs them with the rest. Skipped where the tool is not installed, except under CI (CI is
set), where the test extra installs all three."""

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


CPP_DIRS = ["cpp", "tests/cpp", "bench/cpp", "examples"]


def _clang_format():
    try:
        import clang_format  # the PyPI wheel: its binary is on PATH of the environment

        exe = os.path.join(os.path.dirname(clang_format.__file__), "data", "bin", "clang-format")
        if os.path.exists(exe):
            return exe
    except ImportError:
        pass
    exe = shutil.which("clang-format")
    if exe:
        return exe
    if os.environ.get("CI"):
        pytest.fail("clang-format is not installed (pip install '.[test]')")
    pytest.skip("clang-format is not installed")


def test_clang_format():
    files = sorted(str(p) for d in CPP_DIRS for ext in ("*.cpp", "*.hpp") for p in (ROOT / d).rglob(ext)
                   if "build" not in p.relative_to(ROOT).parts)  # fmt: skip
    assert files
    result = subprocess.run([_clang_format(), "--dry-run", "-Werror", *files], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-5000:]
