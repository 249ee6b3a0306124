"""Writes tests/data/refine_reference.json: the KL-optimal full-rank Gaussian (unconstrained means
and sds) of the correlated logistic regression in tests/test_refinement.py, from one long fit with
many draws and a small constant step size (100,000 steps of 32 draws at lr = 0.002: its own bias
and Monte Carlo error are below 0.005 sd, a tenth of what the test checks).

    python tests/make_refine_reference.py        # about 10 s
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fastvi as fv  # noqa: E402
from test_refinement import build_logistic  # noqa: E402


def main() -> None:
    model = build_logistic()
    ref = fv.fit(model, "fullrank", seed=11, steps=100_000, draws=32, lr=0.002, tol=None, precision=None, psis_draws=0)
    out = {
        "command": "python tests/make_refine_reference.py",
        "fit": "fv.fit(model, 'fullrank', seed=11, steps=100_000, draws=32, lr=0.002, tol=None, precision=None)",
        "fastvi": fv.__version__,
        "mean": ref.unconstrained_mean().tolist(),
        "sd": np.sqrt(np.diag(ref.unconstrained_cov())).tolist(),
    }
    path = Path(__file__).resolve().parent / "data" / "refine_reference.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
