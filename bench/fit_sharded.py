"""One model, its rows sharded across Dask workers (issue 13, item 4): the per-step cost of
``fv.fit_sharded``'s reduction on a LocalCluster of 2 worker processes, the per-row cost of the
step's log density, and a paper model of 10-100 workers at N = 10^9 rows.

What is timed: a step's evaluation, ``fit.options["seconds_evaluating"] / evaluations`` (sending
zeta to every shard, the shards' log densities, the answers back and their sum in shard order),
for fits of ``--steps`` (200) steps with ``tol=None``, ``precondition=None`` and
``psis_draws=0``, so that every evaluation is one step. The optimiser's own work on the client
(Adam on 2 x dim numbers) is the same in both modes and is left out.

- **Overhead of the reduction**: a logistic regression (``bernoulli_logit_glm``, K = 10
  predictors, 100 rows per shard, where the log density takes a few microseconds) in 1, 2 and 4
  shards, on the cluster (shards round-robin on its 2 workers, one actor per worker: 1, 2 and 2
  actors) and in process (the shards one after another): Dask's time per step minus the in-process
  time per step is the overhead; from 1 to 2 workers called, its growth is the client's cost per
  worker.
- **Compute**: the same model with ``--rows`` (200,000) rows in 2 shards, on the cluster (the two
  shards at once) and in process (one after another).
- **Per-row cost**: ``model.log_density`` of the model with ``--rows`` rows at one draw (S = 1) and
  at 4, on one thread (median of 20 calls): what a worker's core spends per row and step.

Each figure is the median of ``--runs`` (5) runs; the runs alternate the settings. All shard
models run on one thread (``threads=1``).

    python bench/fit_sharded.py                 # ~2 minutes here
    python bench/fit_sharded.py --runs 3 --rows 100000
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings

import fastvi as fv
import numpy as np

K = 10
SMALL_ROWS = 100


def simulate(rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, K))
    eta = 0.3 + X @ rng.normal(scale=0.5, size=K)
    y = (rng.random(rows) < 1 / (1 + np.exp(-eta))).astype(float)
    return X, y


def build(data) -> fv.Model:
    X, y = data
    model = fv.Model()
    alpha, beta = model.param("alpha"), model.param("beta", shape=X.shape[1])
    model.add("normal", alpha, loc=0.0, scale=2.5)
    model.add("normal", beta, loc=0.0, scale=2.5)
    model.add("bernoulli_logit_glm", y, X=X, alpha=alpha, beta=beta)
    return model


def split(data, parts: int):
    X, y = data
    return list(zip(np.array_split(X, parts), np.array_split(y, parts)))


def seconds_per_step(shards, client, steps: int) -> tuple:
    """(wall seconds per step spent evaluating, the client process's CPU seconds per step over the
    whole call: its event loop's work for the actor calls, the sums, Adam, and the set-up, which
    main() takes out by difference with a shorter fit)."""
    c0 = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fv.fit_sharded(
            build, shards, client=client, steps=steps, tol=None, precondition=None, psis_draws=0, threads=1, seed=0
        )
    assert fit.options["evaluations"] == steps
    return fit.options["seconds_evaluating"] / steps, (time.process_time() - c0) / steps


def per_row(rows: int, draws: int) -> float:
    model = build(simulate(rows))
    zeta = np.asfortranarray(np.random.default_rng(1).normal(scale=0.1, size=(model.dim, draws)))
    model.log_density(zeta)
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        model.log_density(zeta, threads=1)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / rows


def main() -> None:
    import distributed

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()

    settings = [("overhead", m) for m in (1, 2, 4)] + [("compute", 2)]
    data = {("overhead", m): [(X, y) for X, y in split(simulate(SMALL_ROWS * m), m)] for m in (1, 2, 4)}
    data[("compute", 2)] = split(simulate(args.rows), 2)
    times: dict = {(s, where): [] for s in settings for where in ("dask", "in-process")}
    cpu: dict = {(s, where): [] for s in settings for where in ("dask", "in-process")}
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            scheduler_kwargs={"dashboard": False},
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        seconds_per_step(data[("overhead", 2)], client, 20)  # warm-up: imports on the workers
        for _ in range(args.runs):
            for s in settings:
                for where, c in (("dask", client), ("in-process", None)):
                    wall, used = seconds_per_step(data[s], c, args.steps)
                    # the client's CPU per step without the set-up: against a fit of a quarter the steps
                    _, used_short = seconds_per_step(data[s], c, args.steps // 4)
                    times[(s, where)].append(wall)
                    cpu[(s, where)].append(
                        (used * args.steps - used_short * (args.steps // 4)) / (args.steps - args.steps // 4)
                    )
    med = {key: statistics.median(v) for key, v in times.items()}
    med_cpu = {key: statistics.median(v) for key, v in cpu.items()}

    print(
        f"steps per run {args.steps}, median of {args.runs} runs; ms per step (evaluation: send, log densities, sum)\n"
    )
    print("| setting | in process | Dask, 2 workers | Dask - in process | client CPU per step, Dask |")
    print("|---|---:|---:|---:|---:|")
    for s in settings:
        kind, m = s
        rows = SMALL_ROWS * m if kind == "overhead" else args.rows
        label = f"{m} shard{'s' if m > 1 else ''}, {rows:,} rows"
        here, there = med[(s, "in-process")] * 1e3, med[(s, "dask")] * 1e3
        client_cpu = med_cpu[(s, "dask")] * 1e3
        print(f"| {label} | {here:.3f} | {there:.3f} | {there - here:+.3f} | {client_cpu:.3f} |")
    print()
    overhead = {m: med[(("overhead", m), "dask")] - med[(("overhead", m), "in-process")] for m in (1, 2, 4)}
    # a step calls one actor per worker holding shards: 1 shard = 1 call, 2 shards = 2 calls (one per
    # worker, at the same time), 4 shards = 2 calls of 2 shards each. The client's cost per worker
    # call b: the 2-worker overhead minus the 1-worker one; the fixed part a: the rest of 1 call.
    b = overhead[2] - overhead[1]
    a = overhead[1] - b
    c1, c4 = per_row(args.rows, 1), per_row(args.rows, 4)
    print(f"overhead model: a + b W with a = {a * 1e3:.3f} ms, b = {b * 1e3:.3f} ms per worker called")
    print(f"log density per row, one thread: {c1 * 1e9:.1f} ns at S = 1, {c4 * 1e9:.1f} ns at S = 4\n")
    print("paper model, N = 10^9 rows, one shard per worker, S = 1: step = N/W x per-row cost + overhead")
    print(
        "| workers W | compute per step | overhead a + bW (as built) | step | overhead a + b log2 W (a tree) | step |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for W in (10, 20, 50, 100):
        compute = 1e9 / W * c1
        linear = a + b * W
        tree = a + b * math.log2(W)
        print(
            f"| {W} | {compute * 1e3:.0f} ms | {linear * 1e3:.1f} ms | {(compute + linear) * 1e3:.0f} ms "
            f"| {tree * 1e3:.1f} ms | {(compute + tree) * 1e3:.0f} ms |"
        )
    if b > 0:
        best = math.sqrt(1e9 * c1 / b)
        print(
            f"\nas built, the step is shortest at W = sqrt(N c / b) = {best:.0f} workers: {(2 * math.sqrt(1e9 * c1 * b) + a) * 1e3:.0f} ms"
        )


if __name__ == "__main__":
    main()
