"""Accuracy of fastvi against posteriordb reference posteriors and the gallery of harder models.

Fits every posterior of tests/posteriors.py, and of tests/gallery.py and tests/gallery_applied.py
whose NUTS reference is in tests/data/gallery (bench/nuts_reference.py and
bench/nuts_reference_applied.py write them), with every Gaussian family, with fastvi's **default
settings** (only ``seed`` is set), and prints, per (posterior, family, seed):

- max |mean err|: the largest |fitted mean − reference mean| / reference sd over the compared
  quantities (every reference parameter, plus log(sigma) / log(tau) in unconstrained space; for
  non-centred eight schools also theta_trans), and which quantity it is;
- max |log sd ratio|: the largest |log(fitted sd / reference sd)|, and which quantity;
- MF-sd ratio: log of the README's mean-field sd ratio, i.e. the worst log sd ratio a KL-optimal
  mean-field Gaussian *should* show on a Gaussian posterior with the reference covariance.
  Mean-field rows are expected to sit near it, not near 0;
- use: ``fit.status.use`` ("q", "psis" or "none"); PSIS target: whether the PSIS-corrected means
  and sds meet the target (every mean within 0.1 sd, every sd within 10 %);
- PSIS k-hat and importance ESS of the fit's PSIS diagnostic (``fit.khat``, ``fit.ess``, from
  the default number of draws), and the PSIS-corrected max |mean err| (the same quantities with
  ``mean(importance="psis")``), i.e. whether importance weighting q's draws moves the means towards
  the reference;
- wall time of ``fv.fit`` without the PSIS step, and the PSIS step's CPU time as a % of the fit's
  (CPU time: less disturbed by a busy machine; run with OPENBLAS_NUM_THREADS=1, or OpenBLAS's
  threads inside scipy's L-BFGS-B can make a small fit's times 10-30x longer on a busy machine);
- steps taken, converged?;
- target: for full-rank (and low-rank), whether max |mean err| <= 0.1 and every sd is within 10 %
  of the reference (the accuracy target); "n/a" on posteriordb posteriors not close to Gaussian;
- flagged: whether fastvi told the user something is wrong: converged=False, any fastvi warning
  (``fv.ConvergenceWarning`` and its subclasses) during the fit, or ``fit.status.use`` other than
  "q" (its shape verdict from k-hat and the ESS: "psis" = use the corrected results, "none");
- silent miss: a result outside the tolerance (the target's) that is not flagged. Counted for
  full-rank and low-rank; for mean-field (whose optimum is not the reference even on a Gaussian
  posterior) only when its max |mean err| exceeds 0.5 sd.

    python bench/accuracy.py                       # everything, seed 0
    python bench/accuracy.py --only kidiq --families fullrank --seeds 0 1 2
    python bench/accuracy.py --markdown            # the table for bench/README.md
    python bench/accuracy.py --detail --only arK   # every compared quantity
    python bench/accuracy.py --gallery --families meanfield fullrank --seeds 0 1   # the gallery only
    python bench/accuracy.py --families meanfield fullrank --per-model --only ar1 eight_schools_non  # + a row per model

A family is one line in FAMILIES below: its fv.fit arguments. Families this build of fastvi does not
know (e.g. low-rank before it is merged) are skipped with a note.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the models and reference data

import fastvi as fv  # noqa: E402
import gallery as G  # noqa: E402
import gallery_applied as GA  # noqa: E402
import posteriors as P  # noqa: E402

# name -> fv.fit arguments. Adding a family is one line here.
FAMILIES: Dict[str, dict] = {
    "meanfield": dict(family="meanfield"),
    "fullrank": dict(family="fullrank"),
    "lowrank": dict(family="lowrank", rank=2),
}

MEAN_TOL = 0.1  # target: |mean error| <= 0.1 reference sd
SD_TOL = 0.10  # target: |sd / reference sd − 1| <= 10 %
TARGET_FAMILIES = ("fullrank", "lowrank")
MF_SILENT_MEAN = 0.5  # mean-field: a silent miss only when max |mean err| > 0.5 sd


def build(name: str, info: dict):
    """(model, targets, info) from the gallery, the applied gallery or posteriordb."""
    if name in GA.SPECS:
        return GA.build(name, info)
    return G.build(name, info) if name in G.SPECS else P.build(name, info)


def load(name: str) -> dict:
    if name in GA.SPECS:
        return GA.load(name)
    return G.load(name) if name in G.SPECS else P.load(name)


def applied_available() -> List[str]:
    """Applied-gallery models with a reference that this fastvi can build (gp_regression needs
    fv.cholesky)."""
    return [n for n in GA.available() if n != "gp_regression" or GA.gp_available()]


def available(family: str) -> bool:
    """Whether this fastvi build fits ``family`` (tried on a three-parameter model: a rank-2
    low-rank family does not fit a one-parameter model, rank must be <= the dimension)."""
    m = fv.Model()
    w = m.param("w", shape=(3,))
    m.add("normal", w)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fv.fit(m, steps=1, seed=0, **FAMILIES[family])
    except (ValueError, TypeError):
        return False
    return True


def meets_target(rows: List[P.Row]) -> bool:
    return all(abs(r.mean_err) <= MEAN_TOL and abs(r.sd / r.ref_sd - 1.0) <= SD_TOL for r in rows)


def run_one(name: str, family: str, seed: int, info: dict) -> dict:
    model, targets, info = build(name, info)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0, c0 = time.perf_counter(), time.process_time()
        approx = fv.fit(model, seed=seed, **FAMILIES[family])
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rows = _compare(approx, targets, info)
    wm, ws = P.worst(rows)
    psis = approx.psis
    psis_rows = _compare(approx, targets, info, importance="psis") if psis is not None and psis.ess > 0 else None
    psis_time = psis.seconds if psis is not None else 0.0
    psis_cpu = psis.cpu_seconds if psis is not None else 0.0
    fv_warnings = [str(w.message) for w in caught if issubclass(w.category, fv.ConvergenceWarning)]
    status = approx.status
    reasons = (
        ([] if approx.converged else ["unconverged"])
        + (["warning"] if fv_warnings else [])
        + ([f"status: use {status.use}"] if status.use != "q" else [])
    )
    target = meets_target(rows)
    miss = (
        not target if family in TARGET_FAMILIES else abs(wm.mean_err) > MF_SILENT_MEAN or not math.isfinite(wm.mean_err)
    )
    return dict(
        use=status.use,
        flag_reasons=reasons,
        silent_miss=miss and not reasons,
        fv_warnings=fv_warnings,
        name=name,
        family=family,
        seed=seed,
        rows=rows,
        worst_mean=wm,
        worst_sd=ws,
        wall=wall - psis_time,
        psis_time=psis_time,
        cpu=cpu - psis_cpu,
        psis_cpu=psis_cpu,
        khat=approx.khat,
        ess=approx.ess,
        psis_rows=psis_rows,
        psis_worst_mean=P.worst(psis_rows)[0] if psis_rows else None,
        steps=approx.steps,
        converged=approx.converged,
        skipped=approx.n_skipped,
        warnings=[str(w.message) for w in caught],
        target=target,
    )


def _compare(approx, targets, info, importance=None) -> List[P.Row]:
    """P.compare, or rows of NaN where q's moments are not finite numbers (a failed fit: fastvi
    raises FloatingPointError rather than return them)."""
    try:
        return P.compare(approx, targets, info, importance=importance)
    except FloatingPointError:
        return [P.Row(k, math.nan, math.nan, *P.reference_moments(info, k)) for k in targets]


def _target_cell(r: dict) -> str:
    if r["family"] not in TARGET_FAMILIES:
        return "-"
    if r["name"] in P.NOT_GAUSSIAN:
        return "n/a" if not r["target"] else "n/a (met)"
    return "yes" if r["target"] else "**no**"


def _fmt(x: float, spec: str) -> str:
    return format(x, spec) if math.isfinite(x) else str(x)


def table(results: List[dict], infos: Dict[str, dict], markdown: bool) -> str:
    head = [
        "posterior",
        "family",
        "seed",
        "max \\|mean err\\| (sd)",
        "max \\|log sd ratio\\|",
        "log MF-sd ratio",
        "k-hat",
        "ESS",
        "PSIS max \\|mean err\\|",
        "PSIS target",
        "use",
        "time (s)",
        "PSIS %",
        "steps",
        "converged",
        "target",
        "flagged",
        "silent miss",
    ]
    if not markdown:
        head = [h.replace("\\|", "|") for h in head]
    lines = []
    for r in results:
        wm, ws = r["worst_mean"], r["worst_sd"]
        mf = math.log(P.mf_sd_ratio(infos[r["name"]]))
        sd_cell = f"{_fmt(ws.log_sd_ratio, '+.3f')} ({ws.key})"
        lines.append(
            [
                r["name"],
                r["family"],
                str(r["seed"]),
                f"{_fmt(abs(wm.mean_err), '.3f')} ({wm.key})",
                sd_cell,
                f"{mf:+.3f}" if r["family"] == "meanfield" else "",
                "-" if r["khat"] is None else f"{r['khat']:.2f}",
                "-" if r["ess"] is None else f"{r['ess']:.0f}",
                "-"
                if r["psis_worst_mean"] is None
                else f"{_fmt(abs(r['psis_worst_mean'].mean_err), '.3f')} ({r['psis_worst_mean'].key})",
                "-" if r["psis_rows"] is None else ("yes" if meets_target(r["psis_rows"]) else "no"),
                r["use"],
                f"{r['wall']:.2f}",
                f"{100 * r['psis_cpu'] / r['cpu']:.1f}",
                str(r["steps"]),
                "yes" if r["converged"] else "**no**" if markdown else "no",
                _target_cell(r),
                ("yes (" + ", ".join(r["flag_reasons"]) + ")") if r["flag_reasons"] else "no",
                ("**yes**" if markdown else "YES") if r["silent_miss"] else "no",
            ]
        )
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in lines]
        return "\n".join(out)
    widths = [max(len(h), *(len(row[i]) for row in lines)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths))] + [fmt.format(*row) for row in lines])


def per_model(results: List[dict]) -> str:
    """One Markdown row per posterior, the families side by side (``--per-model``, the applied
    gallery's table in bench/README.md): fit time, worst |mean err| in reference sds, the range of
    fitted sd / reference sd over the compared quantities, k-hat and status.use."""
    names = list(dict.fromkeys(r["name"] for r in results))
    fams = list(dict.fromkeys(r["family"] for r in results))
    by = {(r["name"], r["family"]): r for r in results}

    def cells(r: dict) -> List[str]:
        ratios = [row.sd / row.ref_sd for row in r["rows"]]
        return [
            f"{r['wall']:.2f}",
            f"{_fmt(abs(r['worst_mean'].mean_err), '.3f')}",
            f"{_fmt(min(ratios), '.2f')}-{_fmt(max(ratios), '.2f')}",
            f"{r['khat']:.2f} / {r['use']}" + ("" if r["converged"] else " (unconverged)"),
        ]

    head = ["posterior"] + [
        f"{c} ({f})" for c in ("time (s)", "max \\|mean err\\| (sd)", "sd ratio range", "k-hat / use") for f in fams
    ]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for n in names:
        per = [cells(by[(n, f)]) if (n, f) in by else ["-"] * 4 for f in fams]
        out.append("| " + " | ".join([n] + [per[j][i] for i in range(4) for j in range(len(fams))]) + " |")
    return "\n".join(out)


def detail(r: dict) -> str:
    out = [
        f"{r['name']} / {r['family']} / seed {r['seed']}: {r['steps']} steps, "
        f"{'converged' if r['converged'] else 'NOT converged'}, {r['wall']:.2f} s; PSIS k-hat {r['khat']}, "
        f"ESS {r['ess']}, {r['psis_time']:.3f} s"
    ]
    out.append(f"  flagged: {', '.join(r['flag_reasons']) or 'no'}; silent miss: {'yes' if r['silent_miss'] else 'no'}")
    out += [f"  warning: {w}" for w in r["warnings"]]
    out.append(
        f"  {'quantity':16s} {'mean':>12s} {'ref mean':>12s} {'err (sd)':>9s} {'sd':>11s} {'ref sd':>11s} {'log ratio':>9s}"
    )
    psis_rows = r["psis_rows"] or [None] * len(r["rows"])
    if r["psis_rows"]:
        out[-1] += f" {'PSIS mean':>12s} {'err (sd)':>9s} {'PSIS sd':>11s}"
    for row, prow in zip(r["rows"], psis_rows):
        line = (
            f"  {row.key:16s} {row.mean:12.5g} {row.ref_mean:12.5g} {row.mean_err:+9.3f} "
            f"{row.sd:11.4g} {row.ref_sd:11.4g} {row.log_sd_ratio:+9.3f}"
        )
        if prow is not None:
            line += f" {prow.mean:12.5g} {prow.mean_err:+9.3f} {prow.sd:11.4g}"
        out.append(line)
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", help="posteriors whose name contains any of these substrings")
    ap.add_argument("--families", nargs="+", choices=list(FAMILIES), help="default: every family this build has")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--per-model", action="store_true", help="also a Markdown table with one row per posterior")
    ap.add_argument("--detail", action="store_true", help="also print every compared quantity")
    which = ap.add_mutually_exclusive_group()
    which.add_argument(
        "--gallery", action="store_true", help="only the galleries (tests/gallery.py, tests/gallery_applied.py)"
    )
    which.add_argument("--posteriordb", action="store_true", help="only the posteriordb posteriors")
    args = ap.parse_args(argv)

    pool = ([] if args.gallery else P.NAMES) + ([] if args.posteriordb else G.available() + applied_available())
    missing = [n for n in G.NAMES if n not in G.available()]
    if missing and not args.posteriordb:
        print(f"gallery references not found (run bench/nuts_reference.py): {', '.join(missing)}", file=sys.stderr)
    names = [n for n in pool if not args.only or any(s in n for s in args.only)]
    if not names:
        ap.error(f"--only matched none of {pool}")
    families = args.families or list(FAMILIES)
    skipped = [f for f in families if not available(f)]
    families = [f for f in families if f not in skipped]

    infos = {n: load(n) for n in names}
    results = []
    for name in names:
        for family in families:
            for seed in args.seeds:
                r = run_one(name, family, seed, infos[name])
                results.append(r)
                if args.detail:
                    print(detail(r), flush=True)
                else:
                    print(f"  {name} / {family} / seed {seed}: {r['wall']:.2f} s", file=sys.stderr, flush=True)

    print(table(results, infos, args.markdown))
    if args.per_model:
        print("\n" + per_model(results))
    print()
    fit_cpu = sum(r["cpu"] for r in results)
    psis_cpu = sum(r["psis_cpu"] for r in results)
    shares = sorted(100 * r["psis_cpu"] / r["cpu"] for r in results)
    wall_shares = sorted(100 * r["psis_time"] / r["wall"] for r in results)
    print(
        f"PSIS step (default {fv.psis.DEFAULT_DRAWS} draws), CPU time: {psis_cpu:.3f} s in all, "
        f"{100 * psis_cpu / fit_cpu:.1f} % of the fits' {fit_cpu:.2f} s; per fit median {shares[len(shares) // 2]:.1f} %, "
        f"at most {shares[-1]:.1f} % (wall time: median {wall_shares[len(wall_shares) // 2]:.1f} %, "
        f"at most {wall_shares[-1]:.1f} %)"
    )
    print(
        f"fastvi {fv.__version__}; normal likelihood via "
        f"{'fused normal_id_glm' if P.has_glm() else 'expression normal(y | X @ beta, sigma)'}; "
        f"threads: {os.environ.get('OMP_NUM_THREADS', 'all cores')}"
    )
    if skipped:
        print(f"families not in this build (skipped): {', '.join(skipped)}")
    target_rows = [r for r in results if r["family"] in TARGET_FAMILIES and r["name"] not in P.NOT_GAUSSIAN]
    if target_rows:
        print(f"target (every mean within {MEAN_TOL} sd, every sd within {SD_TOL:.0%}), fits meeting it:")
        for family in [f for f in families if f in TARGET_FAMILIES]:
            counts = []
            for name in names:
                rs = [r for r in target_rows if r["name"] == name and r["family"] == family]
                if rs:
                    counts.append(f"{name} {sum(r['target'] for r in rs)}/{len(rs)}")
            total = [r for r in target_rows if r["family"] == family]
            print(f"  {family}: {sum(r['target'] for r in total)}/{len(total)} ({', '.join(counts)})")
    silent = [r for r in results if r["silent_miss"]]
    print(
        f"silent misses (outside {MEAN_TOL} sd / {SD_TOL:.0%} for full-rank and low-rank, max |mean err| > "
        f"{MF_SILENT_MEAN} sd for mean-field, and not flagged): {len(silent)} of {len(results)}"
        + "".join(
            f"\n  {r['name']} / {r['family']} / seed {r['seed']}: max |mean err| "
            f"{abs(r['worst_mean'].mean_err):.3f} ({r['worst_mean'].key}), worst log sd ratio "
            f"{r['worst_sd'].log_sd_ratio:+.3f} ({r['worst_sd'].key}), k-hat {r['khat']}"
            for r in silent
        )
    )
    # What status.use recommends, and whether it delivers: "q" -> q's results meet the target,
    # "psis" -> the corrected ones do (full-rank and low-rank fits).
    for use in ("q", "psis"):
        rec = [r for r in results if r["family"] in TARGET_FAMILIES and r["use"] == use]
        good = [
            r
            for r in rec
            if (r["target"] if use == "q" else r["psis_rows"] is not None and meets_target(r["psis_rows"]))
        ]
        print(
            f"status.use == {use!r} (full-rank, low-rank): {len(rec)} fits, the recommended results meet the target "
            f"in {len(good)}"
            + "".join(f"\n  not: {r['name']} / {r['family']} / seed {r['seed']}" for r in rec if r not in good)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
