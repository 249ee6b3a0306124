"""A logistic regression on a design matrix larger than memory (issue 13, item 3), read in place
from a ``numpy.memmap`` file.

The script writes a float32 design matrix X of ``--rows`` x ``--cols`` (default 64,000,000 x 50 =
12.8 GB, more than half of a 24 GB machine) to a file, block of rows by block of rows (never the
whole matrix in memory), simulates y from a logistic regression with known coefficients into a
second file (float64), builds ``bernoulli_logit_glm`` with both given as read-only memmaps (X is
read in place by the core, float32 widened in registers; y, like any input but a GLM's X, is
copied by the core as float64: 8 bytes a row), fits it, and reports:

- wall times: writing the files, building the model (the core reads X once, to check that it is
  finite), the fit;
- memory, from /proc/self/status: the peak resident set (VmHWM) and, after the build and at the
  end, RssAnon (the process's own memory) and RssFile (pages of the mapped files: the page
  cache's, which the kernel reclaims under pressure, not the process's);
- the fitted means and sds against the true coefficients.

The fit: ``fv.fit(model, batch_size=B, precondition=None, psis_draws=0, tol=None,
precision=None, ...)``, minibatch VI with ``--batch-size`` rows a step (``--batch-size 0``: full
batch, every step reads all of X; ``batch_size`` needs a fastvi that has it), for exactly
``--steps`` steps, or with ``--converge`` to convergence (the stopping rule, ``precision`` 0.05; the
minibatch's control variate then re-reads X at each of its full passes). The files are deleted at
the end unless ``--keep``.

    python bench/out_of_core.py                                   # 12.8 GB, minibatch fit
    python bench/out_of_core.py --rows 2000000 --batch-size 0 --steps 300   # a quick check
    python bench/out_of_core.py --converge --path /work/ooc       # 12.8 GB, to convergence
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import fastvi as fv
import numpy as np
from logistic_model import logistic_model

ALPHA = -0.5
BLOCK_ROWS = 250_000  # rows written at a time (50 MB of float32 at K = 50)


def status(*keys: str) -> dict:
    """Fields of /proc/self/status, in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in keys:
                out[name] = int(value.split()[0]) * 1024
    return out


def reset_peak() -> bool:
    """Resets VmHWM to the current RSS (Linux 4.0+), so that the peak measured is the build's and
    the fit's, not the writing's; False if it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def mem_total() -> int:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal:"))


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def true_coefficients(k: int) -> np.ndarray:
    return np.random.default_rng(1).normal(scale=1.0, size=k)


def write_data(x_path: Path, y_path: Path, rows: int, k: int, seed: int) -> None:
    """X (float32, rows of Normal(0, 1) / sqrt(k)) and y ~ Bernoulli(inv_logit(ALPHA + X beta)),
    written block by block: at most one block of rows is in memory."""
    beta = true_coefficients(k)
    rng = np.random.default_rng(seed)
    scale = np.float32(1 / np.sqrt(k))
    with open(x_path, "wb") as fx, open(y_path, "wb") as fy:
        for start in range(0, rows, BLOCK_ROWS):
            n = min(BLOCK_ROWS, rows - start)
            X = rng.standard_normal((n, k), dtype=np.float32)
            X *= scale
            eta = ALPHA + X.astype(np.float64) @ beta  # the float32 values, as the model reads them
            y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(np.float64)
            fx.write(X.data)
            fy.write(y.data)


def build(X: np.ndarray, y: np.ndarray) -> fv.Model:
    return logistic_model(X, y, prior_scale=5.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=64_000_000)
    parser.add_argument("--cols", type=int, default=50)
    parser.add_argument("--path", type=Path, default=Path("/tmp/fastvi-out-of-core"), help="folder for the files")
    parser.add_argument("--keep", action="store_true", help="keep the files (and reuse them when their size fits)")
    parser.add_argument("--batch-size", type=int, default=10_000, help="rows a step; 0 for full batch")
    parser.add_argument("--steps", type=int, default=5_000)
    parser.add_argument(
        "--converge",
        action="store_true",
        help="fit to convergence: fv.fit's stopping rule and precision (tol, precision and steps at their defaults)",
    )
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--family", default="meanfield", choices=["meanfield", "fullrank", "lowrank"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rows, k = args.rows, args.cols
    x_bytes, y_bytes = rows * k * 4, rows * 8
    args.path.mkdir(parents=True, exist_ok=True)
    x_path, y_path = args.path / f"X-{rows}x{k}.f32", args.path / f"y-{rows}.f64"
    print(f"X: {rows:,} x {k} float32 = {gb(x_bytes)} ({x_bytes / mem_total():.0%} of {gb(mem_total())} of RAM)")
    print(f"y: {rows:,} float64 = {gb(y_bytes)}; files in {args.path}")

    reuse = args.keep and x_path.exists() and x_path.stat().st_size == x_bytes and y_path.exists()
    t = time.perf_counter()
    if reuse:
        print("write: reusing the files kept by an earlier run")
    else:
        free = shutil.disk_usage(args.path).free
        if x_bytes + y_bytes > free:
            raise SystemExit(f"{args.path} has {gb(free)} free; the files need {gb(x_bytes + y_bytes)}")
        write_data(x_path, y_path, rows, k, args.seed)
    t_write = time.perf_counter() - t
    peak_reset = reset_peak()
    try:
        X = np.memmap(x_path, dtype=np.float32, mode="r", shape=(rows, k))
        y = np.memmap(y_path, dtype=np.float64, mode="r", shape=(rows,))
        t = time.perf_counter()
        model = build(X, y)
        t_build = time.perf_counter() - t
        after_build = status("RssAnon", "RssFile", "VmHWM")

        kwargs = dict(
            family=args.family,
            steps=args.steps,
            lr=args.lr,
            seed=args.seed,
            threads=args.threads,
            precondition=None,
            psis_draws=0,
            tol=None,
            precision=None,
        )
        if args.converge:
            for key in ("steps", "tol", "precision"):
                del kwargs[key]
        if args.batch_size > 0:
            kwargs["batch_size"] = args.batch_size
        t = time.perf_counter()
        fit = fv.fit(model, **kwargs)
        t_fit = time.perf_counter() - t
        end = status("RssAnon", "RssFile", "VmHWM")

        print(f"\nwall time: write {t_write:.1f} s, build {t_build:.1f} s, fit {t_fit:.1f} s "
              f"({fit.steps} steps, {'full batch' if args.batch_size <= 0 else f'batch {args.batch_size:,} rows'}, "
              f"{t_fit / max(fit.steps, 1) * 1e3:.1f} ms a step)")  # fmt: skip
        since = "build and fit" if peak_reset else "whole run"
        print(f"memory:    peak RSS (VmHWM, {since}) {gb(end['VmHWM'])}; after the build RssAnon {gb(after_build['RssAnon'])}, "
              f"RssFile {gb(after_build['RssFile'])}; at the end RssAnon {gb(end['RssAnon'])}, RssFile {gb(end['RssFile'])}")  # fmt: skip

        mean, sd = fit.mean(), fit.std()
        truth = np.concatenate([[ALPHA], true_coefficients(k)])
        est = np.concatenate([[mean["alpha"]], mean["beta"]])
        err = np.concatenate([[sd["alpha"]], sd["beta"]])
        z = (est - truth) / err
        print(f"fit:       converged {fit.converged} ({fit.message}); {fit.full_evaluations} full passes")
        print(f"fit:       {fit.steps} steps, last ELBO estimate {fit.elbo[-1] if fit.elbo.size else float('nan'):.6g}")
        print(f"estimates: max |mean - true| {np.abs(est - truth).max():.4f}, median sd {np.median(err):.4f}, "
              f"max |z| {np.abs(z).max():.2f} over {k + 1} coefficients, mean z^2 {np.mean(z**2):.2f}")  # fmt: skip
        print("\n| coefficient | true | mean | sd |\n|---|---|---|---|")
        for i in range(min(k + 1, 6)):
            name = "alpha" if i == 0 else f"beta[{i - 1}]"
            print(f"| {name} | {truth[i]:.4f} | {est[i]:.4f} | {err[i]:.4f} |")
    finally:
        if not args.keep:
            for p in (x_path, y_path):
                p.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
