"""Memory a GLM model costs beyond its data (issue 13, items 1 and 3): a logistic regression on an
N x K design matrix X in float32 and in float64, built and fitted for 50 steps.

Each case runs in a fresh process, which first makes X and y (X drawn in its own dtype, so that no
float64 temporary inflates the float32 case), then reads its peak resident memory (VmHWM), builds
the model, fits it (50 steps, tol=None, the default preconditioning and PSIS diagnostic) and reads
the peak again. The table gives the growth of the peak in MB and as a multiple of X's bytes: what
the model and the fit cost on top of the caller's own copy of the data. A third case maps X from a
float32 file on disk (numpy.memmap) after dropping it from memory: its peak shows what reading a
mapped X in place costs: that process never holds X in memory itself (another process writes the
file), and the file's pages that the steps read count as resident, but they are the page cache's,
not copies.

    python bench/data_memory.py                 # N = 10^6, K = 100
    python bench/data_memory.py --rows 200000   # smaller
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile


def peak_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(rows: int, cols: int, case: str, path: str) -> dict:
    import fastvi as fv
    import numpy as np
    from logistic_model import logistic_model

    rng = np.random.default_rng(0)
    dtype = np.float64 if case == "float64" else np.float32
    X = np.empty((0, cols), dtype) if case == "memmap" else rng.standard_normal((rows, cols), dtype=dtype)
    X *= dtype(1.0 / np.sqrt(cols))
    y = (rng.random(rows) < 0.5).astype(np.float64)
    nbytes = rows * cols * np.dtype(dtype).itemsize
    if case == "make":  # writes the memmap case's file, in a process of its own
        mm = np.memmap(path, dtype=np.float32, mode="w+", shape=X.shape)
        mm[:] = X
        mm.flush()
        return {}
    if case == "memmap":
        del X
        X = np.memmap(path, dtype=np.float32, mode="r", shape=(rows, cols))
    before = peak_mb()
    m = logistic_model(X, y, prior_scale=1.0)
    built = peak_mb()
    fv.fit(m, steps=50, tol=None, seed=0, progress=False)
    after = peak_mb()
    return {"case": case, "x_mb": nbytes / 2**20, "build_mb": built - before, "fit_mb": after - before}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--cols", type=int, default=100)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.rows, args.cols, args.child, args.path)))
        return
    import fastvi

    print(f"fastvi {fastvi.__version__} from {os.path.dirname(fastvi.__file__)}; X {args.rows} x {args.cols}\n")
    print("| X | X's bytes (MB) | peak growth: build (MB) | build + 50 steps (MB) | ÷ X's bytes |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for case in ("float64", "float32", "make", "memmap"):
            out = subprocess.run(
                [sys.executable, __file__, "--rows", str(args.rows), "--cols", str(args.cols), "--child", case,
                 "--path", os.path.join(tmp, "X.f32")],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            r = json.loads(out.stdout.strip().splitlines()[-1])
            if case == "make":
                continue
            label = {"memmap": "float32 memmap"}.get(case, case)
            print(
                f"| {label} | {r['x_mb']:.0f} | {r['build_mb']:.0f} | {r['fit_mb']:.0f} | "
                f"{r['fit_mb'] / r['x_mb']:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
