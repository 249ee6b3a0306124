"""The driver of bench/peers/run.py: runs each worker in a fresh Python process on a machine that
is as quiet as it can wait for, and records the load other processes put on it meanwhile."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import time

from problems import PROBLEMS, configs, fastvi_jobs
from report import build_rows, fmt_step, fmt_time, job_label, print_rows

RUN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "run.py")  # the workers run as run.py --worker


def versions():
    out = {"python": platform.python_version()}
    for mod in ("fastvi", "numpy", "jax", "jaxlib", "numpyro", "pymc", "pytensor"):
        try:
            m = __import__(mod)
            out[mod] = getattr(m, "__version__", "?")
        except Exception as exc:  # pragma: no cover
            out[mod] = f"missing ({type(exc).__name__})"
    return out


def worker_env(lib, args):
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    env.setdefault("PYTHONWARNINGS", "ignore")
    if not args.keep_openblas_env:
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    if args.peer_threads == "1" and lib != "fastvi":
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = "1"
    return env


def _cpu_times():
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat (None if unreadable)."""
    try:
        with open("/proc/stat") as fh:
            vals = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    total = sum(vals[:8])
    return (total - idle) / hz, total / hz


def _children_cpu():
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def wait_quiet(max_wait, threshold):
    """Waits (up to max_wait s) until other processes use less than `threshold` cores."""
    waited, load = 0.0, 0.0
    while True:
        a = _cpu_times()
        time.sleep(0.5)
        b = _cpu_times()
        if a is None or b is None:
            return 0.0
        load = (b[0] - a[0]) / 0.5
        if load < threshold or waited >= max_wait:
            return load
        time.sleep(2.0)
        waited += 2.5


def run_worker_once(cfg, args):
    c0, u0, t0 = _cpu_times(), _children_cpu(), time.perf_counter()
    proc = subprocess.run(
        [sys.executable, RUN, "--worker", json.dumps(cfg)],
        env=worker_env(cfg["lib"], args),
        capture_output=True,
        text=True,
    )
    c1, u1, wall = _cpu_times(), _children_cpu(), time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
        return {"error": " | ".join(tail) or f"exit code {proc.returncode}"}
    res = json.loads(lines[-1][len("RESULT ") :])
    res["wall"] = wall
    if c0 and c1:
        # cores used by processes other than this benchmark while the worker ran
        res["others_load"] = max(0.0, ((c1[0] - c0[0]) - (u1 - u0)) / wall)
    return res


def run_worker(cfg, args):
    """Runs a worker on a quiet machine if it can: waits for other processes to go quiet, and
    re-runs (up to --retries times) a measurement during which they did not; keeps the run with the
    least load from others."""
    best = None
    for attempt in range(args.retries + 1):
        wait_quiet(args.wait_idle, args.quiet_load)
        res = run_worker_once(cfg, args)
        res["attempts"] = attempt + 1
        if best is None or res.get("others_load", 0.0) < best.get("others_load", 0.0):
            best = res
        if (
            "e2e_cold" not in res
            or res.get("others_load", 0.0) < args.quiet_load
            or res.get("wall", 0.0) > args.retry_max_wall
        ):
            break
    best["attempts"] = attempt + 1
    return best


def measure(args, problems, peers):
    """Runs every configuration of ``problems`` (fastvi's jobs and the ``peers``), ``args.repeats``
    times, interleaved; prints the header, each configuration's table as it completes, and progress
    on stderr; writes the raw results to ``args.json`` as it goes. Returns the raw results."""
    started = datetime.datetime.now().astimezone()
    print(f"# fastvi peer comparison, {started:%Y-%m-%d %H:%M %Z}")
    print(f"# command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    print(
        f"# {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores; "
        f"steps={args.steps}, repeats={args.repeats} (medians), peer threads={args.peer_threads}, "
        f"fastvi X {'float32' if getattr(args, 'fastvi_float32', False) else 'float64'}, "
        f"NumPyro {'float64' if args.x64 else 'float32'}"
    )
    vers = versions()
    print("# versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()), flush=True)

    raw = []
    for problem in problems:
        print(f"\n## {problem}: {PROBLEMS[problem]}", flush=True)
        for family, S, fv_threads in configs(problem):
            if args.draws and S not in args.draws:
                continue
            jobs = [("fastvi", v, t) for v, t in fastvi_jobs(problem, S, fv_threads)] + [(p, None, None) for p in peers]
            first = len(raw)
            heavy = set()  # jobs whose cold fit took longer than --heavy-seconds run only once
            for rep in range(args.repeats):
                for lib, variant, thr in jobs:  # interleave libraries so machine noise hits all alike
                    if (lib, variant, thr) in heavy:
                        continue
                    cfg = {
                        "lib": lib,
                        "variant": variant,
                        "problem": problem,
                        "family": family,
                        "draws": S,
                        "steps": args.steps,
                        "threads": thr or 1,
                        "budget": args.budget,
                        "x64": args.x64,
                        "float32": getattr(args, "fastvi_float32", False),
                        "repeat": rep,
                    }
                    res = run_worker(cfg, args)
                    raw.append({"config": cfg, "result": res})
                    if (res.get("e2e_cold") or 0.0) > args.heavy_seconds:
                        heavy.add((lib, variant, thr))
                    status = (
                        res.get("error")
                        or res.get("skipped")
                        or (
                            f"cold {fmt_time(res['e2e_cold'])}, warm {fmt_time(res.get('e2e_warm'))}, "
                            f"step {fmt_step(res['per_step'])}; others' load {res.get('others_load', 0):.2f} cores, "
                            f"attempt {res['attempts']}"
                        )
                    )
                    print(
                        f"  [{problem} {family} S={S} {job_label(lib, variant, thr)}{'' if thr is None else f' t={thr}'} "
                        f"rep {rep + 1}/{args.repeats}] {status}",
                        file=sys.stderr,
                        flush=True,
                    )
            print_rows(build_rows(raw[first:]))
            if args.json:  # after every configuration, so an interrupted run keeps what it measured
                with open(args.json, "w") as fh:
                    json.dump(
                        {"started": started.isoformat(), "argv": sys.argv, "versions": vers, "runs": raw}, fh, indent=1
                    )
    return raw
