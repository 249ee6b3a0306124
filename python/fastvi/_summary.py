"""Posterior summaries of draws: mean, sd and the 3% / 97% quantiles per scalar."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import psis as _psis


class Summary:
    """A table with one row per scalar (``w``, ``beta[0]``, ``L[1, 0]``) and statistics as columns.

    ``str(summary)`` prints the table (and, for a fitted approximation, a line with its PSIS
    k-hat and its status: ``notes``); ``summary[row]`` gives one row as ``{column: value}``;
    ``summary.to_dict()`` gives ``{row: {column: value}}``; ``summary.to_dataframe()`` needs
    pandas. Made by :func:`summary`.

    Attributes
    ----------
    rows : list of str
        One name per scalar: ``w``, ``beta[0]``, ``L[1, 0]`` (C order within a block).
    columns : list of str
        The statistics: ``mean``, ``sd`` and one column per quantile (``3%``, ``97%``).
    values : ndarray
        The table, shape ``(len(rows), len(columns))``.
    notes : list of str
        Lines printed below the table.

    See Also
    --------
    summary

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> s = fv.summary({"w": np.arange(101.0), "b": np.arange(202.0).reshape(101, 2)})
    >>> print(s)
               mean         sd         3%        97%
    w            50       29.3          3         97
    b[0]        100       58.6          6        194
    b[1]        101       58.6          7        195
    >>> s.rows, s.values.shape
    (['w', 'b[0]', 'b[1]'], (3, 4))
    >>> s["b[1]"]["97%"]
    195.0
    """

    def __init__(self, rows: List[str], columns: List[str], values: np.ndarray, notes: Sequence[str] = ()):
        self.rows = rows
        self.columns = columns
        self.values = values  # (len(rows), len(columns))
        self.notes: List[str] = list(notes)  # printed below the table

    def to_dict(self) -> Dict[str, Dict[str, float]]:
        """The table as ``{row: {column: value}}``, with Python floats.

        Returns
        -------
        dict of str to dict of str to float
            One entry per row, each ``{column: value}``.

        Examples
        --------
        >>> import numpy as np, fastvi as fv
        >>> fv.summary({"w": np.arange(101.0)}).to_dict()["w"]["mean"]
        50.0
        """
        return {r: {c: float(v) for c, v in zip(self.columns, row)} for r, row in zip(self.rows, self.values)}

    def to_dataframe(self):
        """The table as a pandas DataFrame: rows as its index, statistics as its columns.

        Returns
        -------
        pandas.DataFrame
            Indexed by the rows, with the statistics as columns.

        Raises
        ------
        ImportError
            If pandas is not installed (it is an optional dependency).

        Examples
        --------
        >>> import numpy as np, fastvi as fv
        >>> df = fv.summary({"w": np.arange(101.0)}).to_dataframe()
        >>> list(df.index), list(df.columns), float(df.loc["w", "mean"])
        (['w'], ['mean', 'sd', '3%', '97%'], 50.0)
        """
        import pandas as pd  # optional dependency

        return pd.DataFrame(self.values, index=self.rows, columns=self.columns)

    def __getitem__(self, row: str) -> Dict[str, float]:
        """One row as ``{column: value}`` (ValueError if there is no such row)."""
        return dict(zip(self.columns, map(float, self.values[self.rows.index(row)])))

    def __str__(self) -> str:
        width = max([len(r) for r in self.rows] + [4])
        head = " " * width + "".join(f"{c:>11}" for c in self.columns)
        lines = [head] + [
            f"{r:<{width}}" + "".join(f"{v:>11.4g}" for v in row) for r, row in zip(self.rows, self.values)
        ]
        return "\n".join(lines + self.notes)

    __repr__ = __str__


def summary(draws: Any, quantiles: Sequence[float] = (0.03, 0.97), importance: Optional[str] = None) -> Summary:
    """Summarises draws by mean, sd (ddof=1) and quantiles, one row per scalar.

    For a fitted approximation the summary's notes give its PSIS k-hat and ESS (see
    ``fastvi.psis``: below 0.5 q is fine, 0.5 to 0.7 the PSIS-corrected draws are usually better,
    above 0.7 neither is reliable) and its status (``fit.status``).

    Parameters
    ----------
    draws : dict of str to array_like, or Approximation
        Arrays with a leading draw axis (at least 2 draws), as ``fit.sample(n)`` returns them;
        or a fitted approximation, from which 4,000 draws are taken with seed 0
        (``fit.sample(4000, seed=0)``); its rows show the labels of the model's ``coords`` for
        the axes declared with ``dims`` (``theta[Choate]`` rather than ``theta[0]``).
    quantiles : sequence of float, default (0.03, 0.97)
        The quantiles to report, each in [0, 1]; the columns are named ``"3%"``, ``"97%"``, ...
    importance : {None, "psis"}, default None
        For a fitted approximation only: ``"psis"`` summarises draws resampled with the PSIS
        weights (``fit.sample(4000, seed=0, importance="psis")``) instead of draws from q.

    Returns
    -------
    Summary
        The table; ``print`` it, index it by row (``s["w"]["mean"]``) or convert it
        (``to_dict``, ``to_dataframe``).

    Raises
    ------
    TypeError
        If ``draws`` is neither a dict of arrays nor a fitted approximation.
    ValueError
        If a quantile is outside [0, 1], an array has no leading draw axis of at least 2 draws,
        ``importance`` is given with a dict of draws, or is not None or "psis".

    See Also
    --------
    Approximation.sample, Approximation.mean, Approximation.std

    Examples
    --------
    >>> import numpy as np, fastvi as fv
    >>> s = fv.summary({"w": np.arange(101.0)})
    >>> s["w"]["mean"], s["w"]["3%"]
    (50.0, 3.0)

    A fitted approximation (posterior Normal(1.5, 0.5)), with its PSIS diagnostic in the notes:

    >>> m = fv.Model()
    >>> w = m.param("w")
    >>> m.add("normal", w, loc=0.0, scale=1.0)
    >>> m.add("normal", np.array([1.9, 2.1, 2.0]), loc=w, scale=1.0)
    >>> s = fv.summary(fv.fit(m, seed=0))
    >>> s.rows, s.columns
    (['w'], ['mean', 'sd', '3%', '97%'])
    >>> bool(abs(s["w"]["mean"] - 1.5) < 0.05 and abs(s["w"]["sd"] - 0.5) < 0.05)
    True
    >>> print(s.notes[0])    # doctest: +ELLIPSIS
    draws from q; PSIS k-hat = ... (< 0.5: q is close to the posterior), ESS = ... of 1000
    """
    notes: List[str] = []
    labels: Dict[str, List[Optional[Sequence[Any]]]] = {}
    if hasattr(draws, "sample") and callable(draws.sample):
        notes = _psis_notes(draws, importance) if hasattr(draws, "psis") else []
        labels = axis_labels(draws.model) if hasattr(draws, "model") else {}
        draws = draws.sample(4000, seed=0) if importance is None else draws.sample(4000, seed=0, importance=importance)
    elif importance is not None:
        raise ValueError("importance applies only to a fitted approximation, not to a dict of draws")
    if not isinstance(draws, Mapping):
        raise TypeError("draws must be a dict of arrays (leading axis = draws) or a fitted approximation")
    qs = [float(q) for q in quantiles]
    if any(not 0 <= q <= 1 for q in qs):
        raise ValueError(f"quantiles must lie in [0, 1], got {quantiles!r}")
    rows: List[str] = []
    stats: List[np.ndarray] = []
    for name, value in draws.items():
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim == 0 or arr.shape[0] < 2:
            raise ValueError(
                f"draws[{name!r}] must have a leading draw axis with at least 2 draws, got shape {arr.shape}"
            )
        flat = arr.reshape(arr.shape[0], -1)
        cols = [flat.mean(axis=0), flat.std(axis=0, ddof=1)] + [np.quantile(flat, q, axis=0) for q in qs]
        stats.append(np.stack(cols, axis=1))
        rows.extend(_scalar_names(name, arr.shape[1:], labels.get(name)))
    columns = ["mean", "sd"] + [f"{100 * q:g}%" for q in qs]
    return Summary(rows, columns, np.concatenate(stats, axis=0) if stats else np.empty((0, len(columns))), notes)


def _psis_notes(fit: Any, importance: Optional[str]) -> List[str]:
    """The line about a fit's PSIS diagnostic below its summary."""
    result = getattr(fit, "psis", None)
    if result is None:
        return ["PSIS diagnostic not run (psis_draws=0 or an interrupted fit)"]
    k = result.khat
    verdict = (
        f" ({result.note})"
        if math.isnan(k)
        else " (< 0.5: q is close to the posterior)"
        if _psis.shape(result) == "good"
        else f" (< 0.5 but ESS below {_psis.ESS_GOOD:.0%}: q is somewhat off; importance='psis' is usually better)"
        if k <= 0.5
        else " (0.5-0.7: q is somewhat off; importance='psis' is usually better)"
        if k <= 0.7
        else " (> 0.7 from heavy tails only: the weights hardly vary, q's moments are usable)"
        if _psis.tails_only(result)
        else " (> 0.7: q is a poor approximation; neither q nor PSIS is reliable)"
    )
    source = "PSIS-resampled draws" if importance == "psis" else "draws from q"
    notes = [f"{source}; PSIS k-hat = {k:.2f}{verdict}, ESS = {result.ess:.0f} of {result.draws}"]
    status = getattr(fit, "status", None)
    if status is not None:
        notes.append(str(status))
    return notes


def axis_labels(model: Any) -> Dict[str, List[Optional[Sequence[Any]]]]:
    """For each variable of the model declared with ``dims``, the labels of each axis from the
    model's coords (None for an axis whose dimension has none)."""
    coords = model.coords
    return {name: [coords.get(d) for d in dims] for name, dims in model.dims.items()}


def _scalar_names(
    name: str, shape: Tuple[int, ...], labels: Optional[Sequence[Optional[Sequence[Any]]]] = None
) -> List[str]:
    """One name per element in C order: ``beta[0]``, ``L[1, 0]``; an axis with labels (the
    model's coords) shows the label instead of the index, as ArviZ does: ``theta[Choate]``."""
    if not shape:
        return [name]
    per_axis: List[List[str]] = []
    for axis, n in enumerate(shape):
        on_axis = labels[axis] if labels is not None else None
        per_axis.append([str(v) for v in on_axis] if on_axis is not None else [str(i) for i in range(n)])
    return [f"{name}[{', '.join(per_axis[a][i] for a, i in enumerate(idx))}]" for idx in np.ndindex(*shape)]
