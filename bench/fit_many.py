"""Many small fits on Dask (issue 13, item 4): throughput of ``fv.fit_many`` on a LocalCluster of
1 and of 2 worker processes, against a serial loop of ``fv.fit`` in this process.

The workload: ``--fits`` (1,000) groups, each a Bayesian linear regression with N = 50 rows and
D = 3 coefficients and a noise scale (``normal_id_glm``; beta ~ Normal(0, 2), sigma ~
Exponential(1); data simulated from a fixed numpy seed), fitted with ``family="fullrank"`` and
otherwise fv.fit's defaults (the refinement and the PSIS diagnostic included). Each cluster has
one thread per worker and is started, and every worker has imported fastvi and run one fit,
before the timing starts: the figures are the fits' throughput, and the start-up is reported
apart. A run is one ``fit_many`` call over all groups (or one serial loop); the table gives the
median of ``--runs`` runs in fits per second. The target of issue 13: 2 workers >= 1.8x 1 worker.

The results are checked to be identical (means and sds, bit for bit) in every setting.

    python bench/fit_many.py                    # 1,000 fits, 3 runs each: a markdown table
    python bench/fit_many.py --fits 200 --runs 1  # a quicker look
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import fastvi as fv
import numpy as np

N_ROWS, N_COEFS = 50, 3
FIT_KWARGS = {"family": "fullrank"}


def simulate(fits: int) -> list:
    """``fits`` groups of (X, y), from a fixed seed."""
    rng = np.random.default_rng(13)
    groups = []
    for _ in range(fits):
        X = rng.normal(size=(N_ROWS, N_COEFS))
        y = X @ rng.normal(size=N_COEFS) + rng.normal(scale=0.7, size=N_ROWS)
        groups.append((X, y))
    return groups


def build(data) -> fv.Model:
    X, y = data
    model = fv.Model()
    beta = model.param("beta", shape=N_COEFS)
    sigma = model.param("sigma", lower=0.0)
    model.add("normal", beta, loc=0.0, scale=2.0)
    model.add("exponential", sigma, rate=1.0)
    model.add("normal_id_glm", y, X=X, alpha=0.0, beta=beta, scale=sigma)
    return model


def warm_up() -> None:
    """In a worker (and here): import fastvi, scipy and threadpoolctl and run one fit, so that the
    timed runs measure fits, not imports; and silence the fits' warnings for the process (an
    occasional k-hat above 0.7 is not the point here, and printing it is not what is measured)."""
    warnings.simplefilter("ignore")
    fv.fit(build(simulate(1)[0]), **FIT_KWARGS)


def moments(fits: list) -> np.ndarray:
    return np.array([np.concatenate([f.mean()["beta"], [f.mean()["sigma"]], f.std()["beta"]]) for f in fits])


def serial(groups: list) -> list:
    return [fv.fit(build(d), seed=i, **FIT_KWARGS) for i, d in enumerate(groups)]


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fits", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-serial", action="store_true", help="skip the serial loop")
    args = parser.parse_args()

    import distributed

    groups = simulate(args.fits)
    print(f"load average before: {load()}", flush=True)
    rows = []  # (setting, fits/s of each run, start-up s)
    reference = None
    warm_up()
    if not args.no_serial:
        rates = []
        for _ in range(args.runs):
            start = time.perf_counter()
            fits = serial(groups)
            rates.append(args.fits / (time.perf_counter() - start))
        reference = moments(fits)
        rows.append(("serial loop (this process)", rates, None))
        print(rows[-1], flush=True)
    for workers in args.workers:
        start = time.perf_counter()
        with distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            scheduler_kwargs={"dashboard": False},
        ) as cluster:
            with distributed.Client(cluster) as client:
                client.run(warm_up)
                startup = time.perf_counter() - start
                rates = []
                for _ in range(args.runs):
                    start = time.perf_counter()
                    fits = fv.fit_many(build, groups, client=client, seed=0, **FIT_KWARGS)
                    rates.append(args.fits / (time.perf_counter() - start))
        result = moments(fits)
        if reference is None:
            reference = result
        if not np.array_equal(result, reference):
            raise SystemExit(f"{workers} worker(s): the fits differ from the first setting's")
        rows.append((f"LocalCluster, {workers} worker{'s' if workers > 1 else ''}", rates, startup))
        print(rows[-1], flush=True)
    print(f"load average after: {load()}\n")

    one_worker = next((statistics.median(r) for name, r, _ in rows if name.endswith(" 1 worker")), None)
    print("| setting | fits/s (median) | runs | vs 1 worker | cluster start-up |")
    print("|---|---|---|---|---|")
    for name, rates, startup in rows:
        median = statistics.median(rates)
        ratio = f"{median / one_worker:.2f}x" if one_worker else "-"
        runs = ", ".join(f"{r:.1f}" for r in rates)
        print(f"| {name} | {median:.1f} | {runs} | {ratio} | {'-' if startup is None else f'{startup:.1f} s'} |")
    print("\nresults identical (means and sds) in every setting: yes")


if __name__ == "__main__":
    main()
