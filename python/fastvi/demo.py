"""The main job, end to end: ``python -m fastvi.demo``.

Fits the textbook model of the README (w ~ Normal(0, 1), x_i ~ Normal(w, 1), 100 draws at w = 2
with numpy seed 42) with both Gaussian families, prints each fit's summary beside the exact
posterior Normal(sum(x) / 101, 1 / sqrt(101)), and, where matplotlib is installed, saves a figure
of the ELBO trace and of q's density over the exact one (``--figure``, default
``fastvi-demo.png``; ``--no-figure`` to skip it). Exits with status 1 if a fit misses the exact
posterior by more than its stated precision, so that the command is also a smoke test of an
install.

Examples
--------
>>> from fastvi import demo
>>> rows = demo.run(figure=None, quiet=True)
>>> [r["family"] for r in rows]
['meanfield', 'fullrank']
>>> all(r["ok"] for r in rows)
True
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any, Dict, List, Optional

import numpy as np

import fastvi as fv

# A fit's mean and sd are compared with the exact ones to this fraction of the posterior sd: the
# Monte Carlo error of a converged fit's Adam iterates (tests/test_fit.py finds 0.1-3 %).
TOLERANCE_SD = 0.05


def textbook_data() -> np.ndarray:
    """The README's data: 100 draws of Normal(2, 1) with numpy's legacy seed 42."""
    np.random.seed(42)
    return np.random.normal(2.0, 1.0, size=100)


def textbook_model(x: np.ndarray) -> fv.Model:
    """w ~ Normal(0, 1), x_i ~ Normal(w, 1)."""
    model = fv.Model()
    w = model.param("w")
    model.add("normal", w, loc=0.0, scale=1.0, name="prior")
    model.add("normal", x, loc=w, scale=1.0, name="likelihood")
    return model


def exact_posterior(x: np.ndarray) -> Dict[str, float]:
    """The conjugate posterior of w: Normal(sum(x) / (n + 1), 1 / sqrt(n + 1))."""
    return {"mean": float(x.sum() / (x.size + 1)), "sd": 1.0 / math.sqrt(x.size + 1)}


def run(figure: Optional[str] = "fastvi-demo.png", quiet: bool = False, seed: int = 0) -> List[Dict[str, Any]]:
    """Fit the textbook model with both families; print and (optionally) plot the results.

    Parameters
    ----------
    figure : str or None
        Where to save the figure (needs matplotlib; skipped with a note without it). None: no
        figure.
    quiet : bool
        Print nothing.
    seed : int
        The fits' seed.

    Returns
    -------
    list of dict
        One row per family: ``family``, ``mean``, ``sd``, ``exact_mean``, ``exact_sd``, ``steps``,
        ``seconds``, ``converged``, ``ok`` (mean and sd within 5 % of the exact sd).

    Examples
    --------
    >>> from fastvi import demo
    >>> row = demo.run(figure=None, quiet=True)[0]
    >>> abs(row["mean"] - row["exact_mean"]) < 0.05 * row["exact_sd"]
    True
    """
    x = textbook_data()
    exact = exact_posterior(x)
    say = (lambda *a: None) if quiet else print
    say("fastvi", fv.__version__, "- the textbook model: w ~ Normal(0, 1), x_i ~ Normal(w, 1), 100 draws at w = 2")
    say(f"exact posterior: Normal({exact['mean']:.5f}, {exact['sd']:.6f})\n")
    rows, fits = [], []
    for family in ("meanfield", "fullrank"):
        start = time.perf_counter()
        fit = fv.fit(textbook_model(x), family=family, seed=seed)
        seconds = time.perf_counter() - start
        mean, sd = float(fit.mean()["w"]), float(fit.std()["w"])
        mean_err, sd_err = abs(mean - exact["mean"]) / exact["sd"], abs(sd - exact["sd"]) / exact["sd"]
        ok = mean_err <= TOLERANCE_SD and sd_err <= TOLERANCE_SD
        rows.append(
            {
                "family": family,
                "mean": mean,
                "sd": sd,
                "exact_mean": exact["mean"],
                "exact_sd": exact["sd"],
                "steps": int(fit.steps),
                "seconds": seconds,
                "converged": bool(fit.converged),
                "ok": ok,
            }
        )
        fits.append(fit)
        say(f"{family}: {fit.steps} steps in {1e3 * seconds:.1f} ms, converged={fit.converged}")
        say(fv.summary(fit.sample(4000, seed=1)))
        say(
            f"  mean {mean:.5f} (exact {exact['mean']:.5f}, error {mean_err:.2%} of sd); "
            f"sd {sd:.5f} (exact {exact['sd']:.5f}, error {sd_err:.2%})"
            f"  {'OK' if ok else 'MISSED'}\n"
        )
    if figure is not None:
        _save_figure(figure, fits, exact, say)
    return rows


def _save_figure(path: str, fits: list, exact: Dict[str, float], say: Any) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")  # a file, never a window (also on machines without a display)
        import matplotlib.pyplot as plt
    except ImportError:
        say("(matplotlib is not installed: no figure; pip install matplotlib)")
        return
    fig, (trace, density) = plt.subplots(1, 2, figsize=(10, 3.8))
    grid = np.linspace(exact["mean"] - 4 * exact["sd"], exact["mean"] + 4 * exact["sd"], 400)
    normal_pdf = lambda m, s: np.exp(-0.5 * ((grid - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))
    density.plot(grid, normal_pdf(exact["mean"], exact["sd"]), "k-", lw=3, alpha=0.3, label="exact posterior")
    for fit, style in zip(fits, ("C0--", "C1:")):
        trace.plot(fit.elbo_steps, fit.elbo, style[:2], label=fit.family)
        density.plot(grid, normal_pdf(float(fit.mean()["w"]), float(fit.std()["w"])), style, label=f"q ({fit.family})")
    trace.set(xlabel="step", ylabel="ELBO (windowed estimate)", title="ELBO trace")
    trace.set_ylim(np.percentile(np.concatenate([f.elbo for f in fits]), [5, 100]) + np.array([-1.0, 1.0]))
    density.set(xlabel="w", ylabel="density", title="posterior of w")
    for ax in (trace, density):
        ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    say(f"figure: {path}")


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fastvi.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--figure", default="fastvi-demo.png", help="where to save the figure (needs matplotlib)")
    ap.add_argument("--no-figure", action="store_true", help="save no figure")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rows = run(figure=None if args.no_figure else args.figure, seed=args.seed)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
