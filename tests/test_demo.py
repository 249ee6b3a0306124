"""`python -m fastvi.demo`, the README's main job: it fits the textbook model with both families
and must land on the exact posterior (tolerance: fastvi.demo.TOLERANCE_SD of the posterior sd)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from fastvi import demo


def test_the_demo_recovers_the_exact_posterior(tmp_path):
    rows = demo.run(figure=None, quiet=True)
    x = demo.textbook_data()
    assert [r["family"] for r in rows] == ["meanfield", "fullrank"]
    for r in rows:
        # the exact posterior computed here independently of demo.exact_posterior
        assert r["exact_mean"] == pytest.approx(np.sum(x) / 101, rel=1e-12)
        assert r["exact_sd"] == pytest.approx(1 / math.sqrt(101), rel=1e-12)
        assert abs(r["mean"] - r["exact_mean"]) < demo.TOLERANCE_SD * r["exact_sd"]
        assert abs(r["sd"] - r["exact_sd"]) < demo.TOLERANCE_SD * r["exact_sd"]
        assert r["ok"] and r["converged"]


def test_the_command_prints_the_comparison_and_saves_the_figure(tmp_path):
    pytest.importorskip("matplotlib")
    figure = tmp_path / "demo.png"
    out = subprocess.run(
        [sys.executable, "-m", "fastvi.demo", "--figure", str(figure)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert "exact posterior: Normal(1.87738, 0.099504)" in out.stdout
    assert out.stdout.count("OK") == 2
    assert figure.stat().st_size > 10_000  # a PNG with two panels


def test_a_missed_posterior_fails_the_command(monkeypatch):
    monkeypatch.setattr(demo, "TOLERANCE_SD", -1.0)  # nothing can be within a negative tolerance
    assert demo.main(["--no-figure"]) == 1
