"""How many draws should fastvi's PSIS diagnostic take? k-hat's sampling variability against cost.

For every posterior of tests/posteriors.py and each family, fits once with the default settings
(``psis_draws=0``), then runs the PSIS diagnostic (``fit.run_psis(M, seed=s)``) for M in ``--draws``
with ``--reps`` different seeds each, and prints per (posterior, family, M): the mean and sd of
k-hat over the seeds, the mean ESS / M, how often k-hat > 0.7, and the PSIS step's CPU time (median
over the seeds) as a % of the fit's CPU time (the fit timed without PSIS, best of ``--fit-reps``).
Fits and PSIS run on one thread and are timed in process CPU time, so that a busy machine
disturbs the ratio less than it would wall times. Run it with OPENBLAS_NUM_THREADS=1: on a busy
machine, OpenBLAS's threads inside scipy's L-BFGS-B (the Laplace step) can make a small fit's CPU
time 10-30x longer (and the PSIS share look smaller) than on an idle one.

    python bench/psis_draws.py                            # everything
    python bench/psis_draws.py --only kidiq --draws 1000 2000 --reps 10
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the models and reference data

import fastvi as fv  # noqa: E402
import posteriors as P  # noqa: E402
from accuracy import FAMILIES, available  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", metavar="NAME")
    ap.add_argument("--families", nargs="+", choices=list(FAMILIES))
    ap.add_argument("--draws", nargs="+", type=int, default=[500, 1000, 2000, 4000, 8000])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--fit-reps", type=int, default=3)
    args = ap.parse_args(argv)
    names = [n for n in P.NAMES if not args.only or any(s in n for s in args.only)]
    families = [f for f in (args.families or list(FAMILIES)) if available(f)]
    print(
        f"{'posterior':42s} {'family':9s} {'M':>6s} {'khat mean':>9s} {'khat sd':>8s} {'P(k>0.7)':>8s} "
        f"{'ESS/M':>6s} {'fit cpu s':>9s} {'PSIS cpu ms':>11s} {'PSIS %':>7s}"
    )
    summary = {m: [] for m in args.draws}
    for name in names:
        for family in families:
            model, _, _ = P.build(name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit_times = []
                for _ in range(args.fit_reps):
                    t0 = time.process_time()
                    approx = fv.fit(model, seed=0, psis_draws=0, threads=1, **FAMILIES[family])
                    fit_times.append(time.process_time() - t0)
                fit_time = min(fit_times)
                for m in args.draws:
                    ks, ess, secs = [], [], []
                    for s in range(args.reps):
                        r = approx.run_psis(m, seed=1000 + s, threads=1)
                        ks.append(r.khat)
                        ess.append(r.ess / m)
                        secs.append(r.cpu_seconds)
                    ks = np.array(ks)
                    fin = ks[np.isfinite(ks)]
                    pct = 100 * float(np.median(secs)) / fit_time
                    summary[m].append((float(np.std(fin)) if fin.size > 1 else np.nan, pct))
                    print(
                        f"{name:42s} {family:9s} {m:6d} {np.mean(fin) if fin.size else np.nan:9.3f} "
                        f"{np.std(fin) if fin.size > 1 else np.nan:8.3f} {np.mean(ks > 0.7):8.2f} "
                        f"{np.mean(ess):6.3f} {fit_time:9.3f} {1e3 * np.median(secs):11.2f} {pct:7.1f}",
                        flush=True,
                    )
    print()
    print(f"{'M':>6s} {'median khat sd':>14s} {'median PSIS %':>13s} {'max PSIS %':>10s}")
    for m, rows in summary.items():
        sds = np.array([r[0] for r in rows])
        pcts = np.array([r[1] for r in rows])
        print(f"{m:6d} {np.nanmedian(sds):14.3f} {np.median(pcts):13.1f} {np.max(pcts):10.1f}")
    print(f"\nfastvi {fv.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
