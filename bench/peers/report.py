"""The tables of bench/peers/run.py: medians over repeats, ratios to fastvi, and the check that
every library lands on the same posterior as fastvi and the reference posterior."""

from __future__ import annotations

import statistics

from problems import make_data, reference_posterior


def fmt_time(s):
    if s is None:
        return "-"
    if s >= 1.0:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} us"


def fmt_step(s):
    if s is None:
        return "-"
    us = s * 1e6
    return f"{us:.1f} us" if us < 100 else f"{us:.0f} us"


def fmt_ratio(peer, ref):
    if peer is None or ref is None or ref <= 0:
        return "-"
    r = peer / ref
    return f"{r:.0f}x" if r >= 100 else (f"{r:.1f}x" if r >= 1 else f"{r:.2f}x")


def aggregate(results):
    ok = [r for r in results if "e2e_cold" in r]
    if not ok:
        return results[0] if results else {"error": "no result"}

    def med(key):
        vals = [r[key] for r in ok if r.get(key) is not None]
        return statistics.median(vals) if vals else None

    out = dict(ok[-1])
    out.update(
        e2e_cold=med("e2e_cold"),
        e2e_warm=med("e2e_warm"),
        per_step=med("per_step"),
        n=len(ok),
        others_load_max=max(r.get("others_load", 0.0) for r in ok),
    )
    return out


def posterior_check(res, ref_mean, ref_sd):
    """max |mean - ref_mean| / ref_sd over coordinates, and the range of sd / ref_sd."""
    if "mean" not in res or ref_mean is None:
        return "-", "-"
    import numpy as np

    m, s = np.asarray(res["mean"]), np.asarray(res["sd"])
    m0, s0 = np.asarray(ref_mean), np.asarray(ref_sd)
    dm = np.max(np.abs(m - m0) / s0)
    ratio = s / s0
    lo, hi = ratio.min(), ratio.max()
    return f"{dm:.2f}", (f"{lo:.2f}" if abs(hi - lo) < 0.005 else f"{lo:.2f}-{hi:.2f}")


def build_rows(raw):
    """Table rows from raw worker results: medians per (problem, family, S) and job, with the
    fastvi references and the reference posterior attached."""
    groups = {}
    for item in raw:
        c = item["config"]
        key = (c["problem"], c["family"], c["draws"])
        job = (
            c["lib"],
            c.get("variant") if c["lib"] == "fastvi" else None,
            c["threads"] if c["lib"] == "fastvi" else None,
        )
        groups.setdefault(key, {}).setdefault(job, []).append(item["result"])
    rows = []
    refs = {}
    for (problem, family, S), jobs in groups.items():
        if problem not in refs:
            refs[problem] = reference_posterior(problem, make_data(problem))
        agg = {job: aggregate(v) for job, v in jobs.items()}
        ref1 = agg.get(("fastvi", "fused", 1), {})
        if "e2e_cold" not in ref1:
            ref1 = agg.get(("fastvi", "expr", 1), {})
        ref2 = agg.get(("fastvi", "fused", 2))
        rows += [
            Row(problem, family, S, lib, variant, thr, res, ref1, ref2, refs[problem])
            for (lib, variant, thr), res in agg.items()
        ]
    return rows


def report(raw, quiet_load):
    rows = build_rows(raw)
    print_markdown(rows)
    names = sorted({f"{r.problem}: {r.exact[2]}" for r in rows})
    print(f"\nReference posteriors ({', '.join(names)}): see reference_posterior() in problems.py.")
    noisy = [(r, r.res.get("others_load_max", 0.0)) for r in rows if r.res.get("others_load_max", 0.0) >= quiet_load]
    if noisy:
        print(
            f"Note: other processes used >= {quiet_load} cores during some kept runs of: "
            + "; ".join(
                f"{r.problem} {r.family} S={r.S} {job_label(r.lib, r.variant, r.thr)}"
                f"{'' if r.thr is None else f' t={r.thr}'} ({load:.2f})"
                for r, load in noisy
            )
        )


class Row:
    def __init__(self, problem, family, S, lib, variant, thr, res, ref1, ref2, exact):
        self.problem, self.family, self.S, self.lib, self.variant, self.thr = problem, family, S, lib, variant, thr
        self.res, self.ref1, self.ref2, self.exact = res, ref1, ref2, exact


def job_label(lib, variant, thr):
    if lib != "fastvi":
        return lib
    return "fastvi" + {"expr": " (X @ beta expression)", "auto": " (precondition='auto')"}.get(variant, "")


HEADER = [
    "problem",
    "family",
    "S",
    "library",
    "threads",
    "e2e cold",
    "e2e warm",
    "per step",
    "time / fastvi: e2e",
    "time / fastvi: per step",
    "dmean vs fastvi",
    "dmean vs exact",
    "sd / exact sd",
]


def row_cells(row):
    """dmean columns: max over coordinates of |mean - reference mean| / reference sd, against
    fastvi's reference run and against the reference posterior (exact, or Laplace for logistic)."""
    res, ref1, ref2 = row.res, row.ref1, row.ref2
    label = job_label(row.lib, row.variant, row.thr)
    threads = str(row.thr) if row.thr is not None else res.get("threads", "")
    head = [row.problem, row.family, str(row.S), label, threads]
    if "e2e_cold" not in res:
        msg = res.get("skipped") or res.get("error", "?")
        return head + [msg[:90]] + [""] * (len(HEADER) - len(head) - 1)
    if res is ref1:
        e2e_r, step_r, dm = "(ref)", "(ref)", "(ref)"
    else:
        # how many times longer this row takes than fastvi (threads=1; "/ threads=2" when run)
        e2e_r = fmt_ratio(res["e2e_cold"], ref1.get("e2e_cold"))
        step_r = fmt_ratio(res["per_step"], ref1.get("per_step"))
        if row.lib != "fastvi" and ref2 and "e2e_cold" in ref2:
            e2e_r += f" / {fmt_ratio(res['e2e_cold'], ref2['e2e_cold'])}"
            step_r += f" / {fmt_ratio(res['per_step'], ref2['per_step'])}"
        dm = posterior_check(res, ref1.get("mean"), ref1.get("sd"))[0]
    dm_exact, sd_ratio = posterior_check(res, row.exact[0], row.exact[1])
    return head + [
        fmt_time(res["e2e_cold"]),
        fmt_time(res.get("e2e_warm")),
        fmt_step(res["per_step"]),
        e2e_r,
        step_r,
        dm,
        dm_exact,
        sd_ratio,
    ]


def print_rows(rows):
    cells = [row_cells(r) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(HEADER)]
    print("  ".join(h.ljust(w) for h, w in zip(HEADER, widths)))
    for c in cells:
        print("  ".join(x.ljust(w) for x, w in zip(c, widths)), flush=True)


def print_markdown(rows):
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER))
    for r in rows:
        print("| " + " | ".join(c.replace("|", "\\|") for c in row_cells(r)) + " |")
