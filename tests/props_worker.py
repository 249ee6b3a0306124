"""The child process of tests/test_properties.py: builds models and evaluates them from plain
specifications, so that a crash (a signal) or a hang in fastvi's C++ core fails one test example
instead of killing the test run.

Run as ``python props_worker.py``: it reads length-prefixed pickles ``(function, kwargs)`` from
stdin and answers on the original stdout (fd 1 is pointed at stderr, so stray output from C++ or
Python cannot corrupt the protocol). Every fastvi call's outcome is returned as data:
``("ok", value)`` or ``("error", exception type name, message)``.

The array helpers (`materialize`, `reference_payload`) are plain numpy and are imported by the
test module too.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
import warnings
from typing import Any, Dict, List

import numpy as np

# ---- data payloads: the values a strategy drew, and the memory layout to present them in -------

LAYOUTS = ("C", "F", "strided", "reversed", "broadcast", "scalar", "list", "0d")


def materialize(payload: Dict[str, Any]) -> Any:
    """The object handed to fastvi: ``base`` (an array of the drawn dtype) in ``layout``.

    C / F: contiguous copies; strided: every other element of a larger array; reversed: negative
    strides; broadcast: ``np.broadcast_to(base, shape)`` (zero strides, read-only); scalar: the
    Python scalar (``base.item()``); list: nested lists; 0d: a 0-d array; raw: ``base`` itself
    (any object: a masked array, a string, ...).
    """
    base, layout = payload["base"], payload["layout"]
    if layout == "raw":
        return base
    base = np.asarray(base)
    if layout == "C":
        return np.ascontiguousarray(base)
    if layout == "F":
        return np.asfortranarray(base)
    if layout == "strided":
        if base.ndim == 0:
            return base.copy()
        big = np.zeros(tuple(2 * n + 1 for n in base.shape), dtype=base.dtype)
        idx = tuple(slice(1, None, 2) for _ in base.shape)
        big[idx] = base
        out = big[idx]
        assert out.base is not None
        return out
    if layout == "reversed":
        if base.ndim == 0:
            return base.copy()
        flipped = np.ascontiguousarray(base[(slice(None, None, -1),) * base.ndim])
        return flipped[(slice(None, None, -1),) * base.ndim]
    if layout == "broadcast":
        return np.broadcast_to(base, payload["shape"])
    if layout == "scalar":
        return base.item()
    if layout == "list":
        return base.tolist()
    if layout == "0d":
        return np.array(base.item(), dtype=base.dtype)
    raise ValueError(f"unknown layout {layout!r}")


def reference_payload(payload: Dict[str, Any]) -> Dict[str, Any]:
    """The same values as a float64, C-contiguous array (the layout/dtype-independence reference)."""
    return {"base": np.array(materialize(payload), dtype=np.float64, order="C"), "layout": "C"}


# ---- what the worker does ----------------------------------------------------------------------

_fv = None
_python_kernels: set = set()


def _fastvi():
    global _fv
    if _fv is None:
        import fastvi

        # every GLM with more than one row chunk runs in parallel (threads=2 vs 1 bit-identity)
        fastvi._core._set_glm_parallel_work(0.0)
        _fv = fastvi
    return _fv


def _outcome(fn, *args, **kwargs):
    try:
        return ("ok", fn(*args, **kwargs))
    except Exception as exc:  # every exception is data for the test to judge
        return ("error", type(exc).__name__, str(exc))


def _py_normal(y, loc, scale, params):
    z = (y - loc) / scale
    lp = -0.5 * z * z - np.log(scale) - 0.5 * np.log(2 * np.pi)
    return lp, {"y": -z / scale, "loc": z / scale, "scale": (z * z - 1) / scale}


def register_python_kernel(name: str) -> None:
    """A Python version of the normal kernel (for the models that use one)."""
    fv = _fastvi()
    if name not in _python_kernels:
        fv.register_kernel(
            name, ["y", "loc", "scale"], _py_normal, supports={"scale": "positive"}, defaults={"loc": 0.0, "scale": 1.0}
        )
        _python_kernels.add(name)


def _build(spec: Dict[str, Any]):
    """Builds a model from spec; returns (model, outcomes) where outcomes lists each step's."""
    fv = _fastvi()
    for name in spec.get("python_kernels", ()):
        register_python_kernel(name)
    m = fv.Model()
    steps: List = []
    for name, shape, lower, upper in spec.get("params", ()):
        out = _outcome(m.param, name, shape, lower=lower, upper=upper)
        steps.append(("param", name, ("ok", None) if out[0] == "ok" else out))
        if out[0] != "ok":
            return m, steps
    for kernel, variate, inputs in spec.get("factors", ()):

        def resolve(ref):
            if ref[0] == "param":
                return m.params[ref[1]]
            if ref[0] == "param_times":
                return m.params[ref[1]] * ref[2]
            return materialize(ref[1])

        args = {k: resolve(v) for k, v in inputs.items()}
        out = _outcome(m.add, kernel, resolve(variate), **args)
        steps.append(("factor", kernel, out))
        if out[0] != "ok":
            return m, steps
    return m, steps


CALLBACKS = {  # callbacks for fv.fit, by token (a lambda cannot be pickled to the worker)
    "none": lambda step, total, elbo, skipped: None,
    "stop": lambda step, total, elbo, skipped: step < 100,
    "truthy": lambda step, total, elbo, skipped: 1,
}


def run(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Builds the model in ``spec`` and runs its log-density evaluations and fits.

    spec: params [(name, shape, lower, upper)], factors [(kernel, variate ref, {input: ref})]
    with refs ("param", name) or ("data", payload); evals [{"zeta": payload, "threads": t}];
    fits [{settings for fv.fit}]; python_kernels [names to register first].
    """
    m, steps = _build(spec)
    result: Dict[str, Any] = {"build": steps, "dim": None, "evals": [], "fits": []}
    if any(s[-1][0] != "ok" for s in steps):
        return result
    result["dim"] = m.dim
    for ev in spec.get("evals", ()):
        zeta = materialize(ev["zeta"])
        out = _outcome(m.log_density, zeta, threads=ev.get("threads", 1))
        if out[0] == "ok":
            lp, grad = out[1]
            out = ("ok", (np.asarray(lp), np.asarray(grad)))
        result["evals"].append(out)
    for zp in spec.get("constrain", ()):
        out = _outcome(m.constrain, materialize(zp))
        result["constrain"] = result.get("constrain", []) + [out]
    for settings in spec.get("fits", ()):
        settings = dict(settings)
        if isinstance(settings.get("callback"), tuple) and settings["callback"][0] == "token":
            settings["callback"] = CALLBACKS[settings["callback"][1]]

        def do_fit():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                a = _fastvi().fit(m, **settings)
            return {
                "phi": a.phi,
                "elbo": a.elbo,
                "steps": a.steps,
                "message": a.message,
                "mean": a.mean(),
                "n_skipped": a.n_skipped,
            }

        result["fits"].append(_outcome(do_fit))
    return result


def call(code: str, setup: str = "") -> Any:
    """Runs ``setup`` and evaluates ``code`` with numpy as np and fastvi as fv (for the
    reproducers of known failures); returns the outcome."""
    env = {"np": np, "fv": _fastvi(), "register_python_kernel": register_python_kernel}
    exec(setup, env)
    out = _outcome(eval, code, env)
    return out if out[0] != "ok" else ("ok", repr(out[1])[:200])


FUNCTIONS = {"run": run, "call": call}


def main() -> None:
    import faulthandler

    faulthandler.enable()  # a fatal signal prints the Python stack on stderr, for the test to show
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    proto_in = sys.stdin.buffer
    while True:
        header = proto_in.read(8)
        if len(header) < 8:
            return
        (n,) = struct.unpack("<Q", header)
        name, kwargs = pickle.loads(proto_in.read(n))
        try:
            reply = ("ok", FUNCTIONS[name](**kwargs))
        except BaseException as exc:  # a bug in the harness, not in fastvi: reported as such
            import traceback

            reply = ("harness", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        proto_out.write(struct.pack("<Q", len(data)) + data)
        proto_out.flush()


if __name__ == "__main__":
    if os.environ.get("FASTVI_PROPS_RLIMIT_AS") and "asan" not in os.environ.get("LD_PRELOAD", ""):
        # An address-space cap turns a runaway allocation into MemoryError instead of swapping
        # the (shared) machine; ASan needs terabytes of virtual address space for its shadow.
        import resource

        cap = int(os.environ["FASTVI_PROPS_RLIMIT_AS"])
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    main()
