"""The logistic regression the large-data benchmarks share (bench/minibatch.py, float32_step.py,
out_of_core.py, data_memory.py): alpha, beta ~ Normal(0, prior_scale), y ~ bernoulli_logit_glm(X)."""

from __future__ import annotations

import fastvi as fv
import numpy as np


def logistic_model(X: np.ndarray, y: np.ndarray, prior_scale: float = 1.0) -> fv.Model:
    m = fv.Model()
    alpha, beta = m.param("alpha"), m.param("beta", X.shape[1])
    m.add("normal", alpha, loc=0.0, scale=prior_scale)
    m.add("normal", beta, loc=0.0, scale=prior_scale)
    m.add("bernoulli_logit_glm", y, X=X, alpha=alpha, beta=beta)
    return m
