"""Many small fits on Dask (issue 13, item 4): throughput of ``fv.fit_many`` on a LocalCluster of
1 and of 2 worker processes, against a serial loop of ``fv.fit`` in this process.

The workload: ``--fits`` (1,000) groups, each a Bayesian linear regression with N = 50 rows and
D = 3 coefficients and a noise scale (``normal_id_glm``; beta ~ Normal(0, 2), sigma ~
Exponential(1); data simulated from a fixed numpy seed), fitted with ``family="fullrank"`` and
otherwise fv.fit's defaults (the refinement and the PSIS diagnostic included). Each cluster has
one thread per worker (the cluster fit_many starts without a client) and is started, and every
worker has imported fastvi and run one fit, before the timing starts: the figures are the fits'
throughput, and the start-up is reported apart. CPU ms per fit adds up the workers' and this
process's CPU time (this process hosts the scheduler): what the fits cost whatever share of the
cores the machine's other work left them. A run is one ``fit_many`` call over all groups (or one
serial loop); the table gives the median of ``--runs`` runs in fits per second. The target of
issue 13: 2 workers >= 1.8x 1 worker.

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


def cpu_seconds() -> float:
    """This process's CPU time (run in each worker by client.run)."""
    return time.process_time()


def timed(run, fits: int, clients: list) -> tuple:
    """Runs ``run()``; returns its result, fits per second of wall time and CPU ms per fit (the
    workers' and this process's, which hosts the scheduler: the CPU the fits cost, whatever share
    of the cores the machine's other work left them)."""
    before = [client.run(cpu_seconds) for client in clients], time.process_time()
    start = time.perf_counter()
    result = run()
    wall = time.perf_counter() - start
    after = [client.run(cpu_seconds) for client in clients], time.process_time()
    cpu = after[1] - before[1] + sum(a[w] - b[w] for a, b in zip(after[0], before[0]) for w in a)
    return result, fits / wall, 1e3 * cpu / fits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fits", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-serial", action="store_true", help="skip the serial loop")
    args = parser.parse_args()

    import distributed

    # the LocalCluster fit_many starts without a client, with a chosen number of workers
    from fastvi._many import _embedded_cluster

    groups = simulate(args.fits)
    print(f"load average before: {load()}", flush=True)
    warm_up()
    names = ([] if args.no_serial else ["serial loop (this process)"]) + [
        f"LocalCluster, {w} worker{'s' if w > 1 else ''}" for w in args.workers
    ]
    rates: dict = {name: [] for name in names}
    cpu_ms: dict = {name: [] for name in names}
    startups: dict = {name: [] for name in names}
    results = {}
    # the runs go round the settings, so that a change in the machine's load falls on all alike;
    # one cluster at a time (an idle cluster costs CPU too: its scheduler here, its workers'
    # event loops), started and warmed up before its timed run
    for run in range(args.runs):
        for name in names:
            if name.startswith("serial"):
                fits, rate, cpu = timed(lambda: serial(groups), args.fits, [])
            else:
                start = time.perf_counter()
                with _embedded_cluster(distributed, int(name.split()[1])) as cluster:
                    with distributed.Client(cluster, set_as_default=False) as client:
                        client.run(warm_up)
                        startups[name].append(time.perf_counter() - start)
                        fits, rate, cpu = timed(
                            lambda: fv.fit_many(build, groups, client=client, seed=0, **FIT_KWARGS), args.fits, [client]
                        )
            rates[name].append(rate)
            cpu_ms[name].append(cpu)
            results[name] = moments(fits)
            print(f"run {run + 1}: {name}: {rate:.1f} fits/s, {cpu:.1f} CPU ms per fit ({load()})", flush=True)
    print(f"load average after: {load()}\n")
    reference = next(iter(results.values()))
    for name, result in results.items():
        if not np.array_equal(result, reference):
            raise SystemExit(f"{name}: the fits differ from the first setting's")

    one_worker = next((statistics.median(r) for name, r in rates.items() if name.endswith(" 1 worker")), None)
    print("| setting | fits/s (median) | runs | vs 1 worker | CPU ms per fit (median) | cluster start-up (median) |")
    print("|---|---|---|---|---|---|")
    for name in names:
        median = statistics.median(rates[name])
        ratio = f"{median / one_worker:.2f}x" if one_worker else "-"
        runs = ", ".join(f"{r:.1f}" for r in rates[name])
        start_up = f"{statistics.median(startups[name]):.1f} s" if startups[name] else "-"
        print(f"| {name} | {median:.1f} | {runs} | {ratio} | {statistics.median(cpu_ms[name]):.1f} | {start_up} |")
    print("\nresults identical (means and sds) in every setting: yes")


if __name__ == "__main__":
    main()
