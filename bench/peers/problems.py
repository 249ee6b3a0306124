"""The peer comparison's problems: their data (identical numpy arrays for every library), the
configurations run on each, and an independent reference posterior for each (bench/peers/run.py)."""

from __future__ import annotations

PROBLEMS = {
    "seed": "w ~ N(0,1), x_i ~ N(w,1), 100 draws at w=2",
    "linreg": "linear regression N=1000 K=10: alpha, beta ~ N(0,1), sigma ~ HalfNormal(1)",
    "logistic": "logistic regression N=10000 K=50: alpha, beta ~ N(0,1)",
}


def configs(problem):
    """(family, draws per step, fastvi thread counts) to run for a problem."""
    if problem == "logistic":
        return [("meanfield", s, (1, 2)) for s in (1, 8, 32)]
    return [("meanfield", 1, (1,)), ("fullrank", 1, (1,))]


def fastvi_jobs(problem, S, threads):
    """fastvi's runs for one configuration: (variant, threads).

    "fused" is the model as fastvi users should write it (the fused GLM kernels for the
    regressions); "expr" writes the regressions' linear predictor as an expression
    (``alpha + X @ beta`` into the element-wise normal / bernoulli_logit kernel), the generic path,
    run at S=1 only and single-threaded, to show what the fused kernels buy.

    Every variant but "auto" runs with ``precondition=None``: plain Adam on the model's own
    unconstrained coordinates from a start at 0 with scale 0.1, the same algorithm the peers run
    (NumPyro's AutoNormal also starts q's scale at 0.1). "auto" is fastvi's default
    (``precondition="auto"``: an L-BFGS mode search and a finite-difference Hessian first, then the
    fit in Laplace-whitened coordinates), run at S=1 to show what the default costs end to end."""
    jobs = [("fused", t) for t in threads]
    if S == 1:
        jobs.append(("auto", 1))
    if problem != "seed" and S == 1:
        jobs.append(("expr", 1))
    return jobs


def make_data(problem):
    import numpy as np

    if problem == "seed":
        np.random.seed(42)
        x = np.random.normal(2.0, 1.0, size=100)
        return {"x": x}
    if problem == "linreg":
        n, k = 1_000, 10
        np.random.seed(1)
        X = np.random.normal(size=(n, k))
        beta = np.random.normal(size=k)
        alpha, sigma = 1.0, 0.5
        y = alpha + X @ beta + sigma * np.random.normal(size=n)
        return {"X": X, "y": y}
    if problem == "logistic":
        n, k = 10_000, 50
        np.random.seed(2)
        X = np.random.normal(size=(n, k))
        beta = np.random.normal(0.0, 0.25, size=k)
        alpha = -0.5
        p = 1.0 / (1.0 + np.exp(-(alpha + X @ beta)))
        y = (np.random.uniform(size=n) < p).astype(np.float64)
        return {"X": X, "y": y}
    raise ValueError(problem)


def coord_names(problem, data):
    if problem == "seed":
        return ["w"]
    k = data["X"].shape[1]
    names = ["alpha"] + [f"beta[{i}]" for i in range(k)]
    return names + (["sigma"] if problem == "linreg" else [])


def reference_posterior(problem, data):
    """(mean, sd, name) of an independent reference posterior, in the workers' coordinate order.

    seed: exact (conjugate). linreg: exact up to quadrature: theta = (alpha, beta) is Gaussian given
    sigma, and sigma's marginal posterior is integrated on a fine grid. logistic: the Laplace
    approximation (Newton's method to the mode; sd from the inverse Hessian), which with N=10,000
    rows is within a small fraction of a posterior sd of the exact mean."""
    import numpy as np

    if problem == "seed":
        x = data["x"]
        n = len(x)
        return np.array([x.sum() / (n + 1)]), np.array([1.0 / np.sqrt(n + 1)]), "exact"
    X, y = data["X"], data["y"]
    Xa = np.column_stack([np.ones(len(y)), X])
    n, d = Xa.shape
    if problem == "linreg":
        A, b, yy = Xa.T @ Xa, Xa.T @ y, y @ y
        eye = np.eye(d)

        def log_post(sig):  # log p(sigma | y) + const, with sigma ~ HalfNormal(1)
            M = A + sig**2 * eye
            quad = (yy - b @ np.linalg.solve(M, b)) / sig**2
            logdet = 2 * (n - d) * np.log(sig) + np.linalg.slogdet(M)[1]
            return -0.5 * (logdet + quad) - 0.5 * sig**2

        coarse = np.exp(np.linspace(np.log(1e-2), np.log(10.0), 2001))
        mode = coarse[np.argmax([log_post(s) for s in coarse])]
        grid = np.linspace(0.7 * mode, 1.3 * mode, 6001)
        lp = np.array([log_post(s) for s in grid])
        w = np.exp(lp - lp.max())
        w /= w.sum()
        means = np.array([np.linalg.solve(A + s**2 * eye, b) for s in grid])
        variances = np.array([s**2 * np.diag(np.linalg.inv(A + s**2 * eye)) for s in grid])
        m = w @ means
        v = w @ (variances + means**2) - m**2
        sig_m = w @ grid
        sig_sd = np.sqrt(w @ grid**2 - sig_m**2)
        return np.append(m, sig_m), np.append(np.sqrt(v), sig_sd), "exact"
    theta = np.zeros(d)
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(Xa @ theta)))
        grad = Xa.T @ (y - p) - theta
        H = (Xa * (p * (1 - p))[:, None]).T @ Xa + np.eye(d)
        step = np.linalg.solve(H, grad)
        theta += step
        if np.max(np.abs(step)) < 1e-12:
            break
    p = 1.0 / (1.0 + np.exp(-(Xa @ theta)))
    H = (Xa * (p * (1 - p))[:, None]).T @ Xa + np.eye(d)
    return theta, np.sqrt(np.diag(np.linalg.inv(H))), "Laplace"
