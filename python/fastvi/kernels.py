"""The kernel registry, as seen from Python."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from . import _core


@dataclass(frozen=True)
class InputSpec:
    """One named input of a kernel."""

    name: str
    support: str  # "real", "positive", "nonnegative", "unit_interval", "binary" or "count"
    data_only: bool  # True if the input cannot be a parameter (a design matrix, a count outcome)
    default: Optional[float]  # value used when the input is omitted; None if required
    doc: str


@dataclass(frozen=True)
class KernelSpec:
    """A registered log-density kernel: its name, inputs (variate first) and documentation."""

    name: str
    doc: str
    inputs: Tuple[InputSpec, ...]
    elementwise: bool  # inputs broadcast together with numpy's rules

    @property
    def variate(self) -> InputSpec:
        """The input passed as the first argument of ``Model.add``."""
        return self.inputs[0]

    def __str__(self) -> str:
        args = ", ".join(
            i.name if i.default is None else f"{i.name}={i.default:g}" for i in self.inputs[1:]
        )
        return f"{self.name}({self.variate.name} | {args}): {self.doc}"


def kernel_spec(name: str) -> KernelSpec:
    """The specification of the kernel registered as ``name`` (ValueError if there is none)."""
    if not isinstance(name, str):
        raise TypeError(f"kernel name must be a str, got {type(name).__name__}")
    info = _core.kernel_info(name)
    return KernelSpec(
        name=info["name"],
        doc=info["doc"],
        inputs=tuple(InputSpec(**i) for i in info["inputs"]),
        elementwise=info["elementwise"],
    )


def kernels() -> Dict[str, KernelSpec]:
    """All registered kernels by name.

    >>> import fastvi as fv
    >>> print(fv.kernels()["normal"])
    normal(y | loc=0, scale=1): Normal(y | loc, scale)
    """
    return {name: kernel_spec(name) for name in _core.kernel_names()}
