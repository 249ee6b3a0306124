#!/usr/bin/env python
"""Peer comparison: fastvi vs NumPyro (SVI) vs PyMC (ADVI) on the same problems and data.

Run from the venv made by ``bench/peers/setup_venv.sh``::

    bench/peers/.venv/bin/python bench/peers/run.py --repeats 3

Every measurement runs in a fresh Python subprocess (a *worker*), so that "end to end" really
includes everything a user pays for a first fit in a session: building the model, tracing and
compiling (JAX / PyTensor), and the 10,000 steps. Imports are done before the clock starts, and for
JAX the CPU backend is initialised before it too (``jax.devices()`` and one tiny op), since a user
pays that once per process, not per fit.

What each worker measures (all wall clock, ``time.perf_counter``):

* ``e2e cold``: the first fit in the process, from the Python call that starts building the model
  to the fit's result being on the host (``block_until_ready`` for JAX). For PyMC, PyTensor's
  on-disk cache of compiled C modules (``~/.pytensor``) is warm after the very first run on a
  machine; the first run ever pays several seconds more of g++ (see bench/README.md).
* ``e2e warm``: the same fit again, with the model, guide and SVI / inference objects built anew in
  the same process. NumPyro's ``svi.run`` re-traces and re-compiles its ``lax.scan`` on every call,
  so this is what a second fit in a notebook costs. Skipped ("-") when the cold fit took longer
  than ``--budget`` seconds: the steps dominate then, and PyMC at S=32 would need minutes more.
* ``per step``: steady state, with all compilation done:
    - fastvi: ``fv.fit`` on an already built model with ``psis_draws=0`` (the loop alone, as for
      the peers: the PSIS diagnostic after the last step, ~330 ms on the logistic problem, is in
      the end-to-end times), divided by the number of steps (there is no compilation step in
      fastvi; the loop runs in C++ with the GIL released).
    - NumPyro: ``jax.jit`` of the same ``lax.scan`` over ``svi.update`` that ``svi.run`` runs (the
      per-step losses are collected, as ``svi.run`` does), compiled by a first call and timed on a
      second call. This is the fastest way to run NumPyro's SVI loop (faster than a Python loop of
      jitted ``svi.update`` calls, which pays ~50-100 us dispatch per step).
    - PyMC: the compiled PyTensor step function that ``pm.fit`` builds
      (``inference.objective.step_function(score=True, ...)``, the same one ``pm.fit`` calls), called
      in a Python loop exactly as ``pm.fit``'s own loop does. A second ``pm.fit`` call would rebuild
      and re-optimise the graph (~0.2-0.5 s), which is not per-step cost.
  The steady-state loop is timed in 5 equal chunks and the median chunk counts (a burst of load
  from another process then does not land in the result); the chunks cover all ``--steps`` steps
  unless that would take more than ``--budget`` seconds (estimated from the cold fit), in which
  case they cover fewer (at least 200).

Noise: this is meant for a shared machine. Before each worker the driver waits (``--wait-idle``)
until other processes use fewer than ``--quiet-load`` cores (from /proc/stat), measures how much
CPU others used while the worker ran, and re-runs a worker that shared the machine
(``--retries``, only for workers shorter than ``--retry-max-wall``), keeping the quietest run.
The table is the median over ``--repeats`` such runs.

Equal work: every library runs Adam with learning rate 0.01 for exactly ``--steps`` steps
(fastvi ``tol=None``; PyMC is given ``obj_optimizer=pm.adam(learning_rate=0.01)`` instead of its
default adagrad_window) from the same data, with S Monte Carlo draws per step. The table's last
columns check that they land on the same posterior: the largest |mean difference| over all
coordinates, in units of fastvi's posterior sd, and the range of sd ratios (peer / fastvi).
fastvi's moments are exact moments of q; the peers' come from 10,000 draws of their q.

Threads (defaults; see --peer-threads): fastvi threads=1 (and threads=2 for the logistic problem);
NumPyro / JAX on CPU (``JAX_PLATFORMS=cpu``) with XLA's default intra-op thread pool (all cores);
PyMC's C backend with OpenBLAS's default threads (all cores). OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE are removed from the workers' environment (this machine sets them for old OpenBLAS
builds; they slow the OpenBLAS in current numpy, which PyMC's dot products call); pass
``--keep-openblas-env`` to keep them. NumPyro runs in float32 (JAX's default; ``--x64`` for
float64), fastvi and PyMC in float64 (``--fastvi-float32``: fastvi's design matrix X in float32).
"""

from __future__ import annotations

import argparse
import json

import worker_fastvi
import worker_numpyro
import worker_pymc
from driver import measure
from problems import PROBLEMS, make_data
from report import report

# The pieces, all in bench/peers: problems.py (the problems, their data and reference posteriors),
# worker_fastvi.py / worker_numpyro.py / worker_pymc.py (one fit, timed, in a fresh process; the
# shared timing in timing.py), driver.py (runs the workers on a quiet machine), report.py (tables).
WORKERS = {"fastvi": worker_fastvi, "numpyro": worker_numpyro, "pymc": worker_pymc}


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=3, help="runs per configuration; the table shows medians")
    ap.add_argument("--only", choices=sorted(PROBLEMS), action="append", help="run only this problem (repeatable)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 500 steps, 1 repeat")
    ap.add_argument(
        "--draws",
        type=lambda v: [int(x) for x in v.split(",")],
        help="only these draws per step, e.g. 8,32 (the logistic problem runs 1, 8 and 32)",
    )
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--peers", default="numpyro,pymc", help="comma-separated: numpyro, pymc (or empty)")
    ap.add_argument(
        "--peer-threads",
        choices=["all", "1"],
        default="all",
        help="'all' (default): peers use every core as they do out of the box; '1': XLA and OpenBLAS single-threaded",
    )
    ap.add_argument("--x64", action="store_true", help="run NumPyro in float64 (default: JAX's float32)")
    ap.add_argument(
        "--fastvi-float32",
        action="store_true",
        help="give fastvi the design matrix as float32 (read in place; sums in float64); default float64",
    )
    ap.add_argument(
        "--keep-openblas-env",
        action="store_true",
        help="keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE in the workers' environment",
    )
    ap.add_argument(
        "--budget",
        type=float,
        default=20.0,
        help="max seconds for one steady-state timing loop (fewer steps if longer)",
    )
    ap.add_argument(
        "--wait-idle",
        type=float,
        default=120.0,
        help="before each measurement, wait up to this many seconds for other processes "
        "to go quiet (this machine is shared)",
    )
    ap.add_argument(
        "--quiet-load", type=float, default=0.25, help="'quiet' means other processes use fewer cores than this"
    )
    ap.add_argument(
        "--retries",
        type=int,
        default=2,
        help="re-run a measurement during which others used more than --quiet-load cores",
    )
    ap.add_argument(
        "--retry-max-wall",
        type=float,
        default=90.0,
        help="never re-run a measurement that took longer than this many seconds",
    )
    ap.add_argument(
        "--heavy-seconds",
        type=float,
        default=60.0,
        help="a job whose 10,000-step fit takes longer than this runs only once, not "
        "--repeats times (PyMC at S=8 and S=32)",
    )
    ap.add_argument("--json", help="also write all raw results to this file")
    ap.add_argument(
        "--from-json", metavar="FILE", help="run nothing: print the table again from the raw results a --json run saved"
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.from_json:
        with open(args.from_json) as fh:
            saved = json.load(fh)
        print(f"# from {args.from_json}: run started {saved['started']}, command: {' '.join(saved['argv'])}")
        print("# versions: " + ", ".join(f"{k} {v}" for k, v in saved["versions"].items()))
        report(saved["runs"], args.quiet_load)
        return

    if args.worker:
        cfg = json.loads(args.worker)
        res = WORKERS[cfg["lib"]].run(cfg, make_data(cfg["problem"]))
        print("RESULT " + json.dumps(res), flush=True)
        return

    if args.quick:
        args.steps, args.repeats = min(args.steps, 500), 1
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    for p in peers:
        if p not in ("numpyro", "pymc"):
            ap.error(f"unknown peer {p!r}")
    problems = args.only or list(PROBLEMS)

    raw = measure(args, problems, peers)
    print()
    report(raw, args.quiet_load)


if __name__ == "__main__":
    main()
