"""Epoch-level aggregation methods, named as monitorch names them.

Point methods reduce the per-batch values of one epoch to one number; range methods to a (low, high)
pair drawn as a band. Running statistics (count, sum, sum of squares, min, max) answer 'mean', 'std',
'min', 'max' and the 'std'/'min-max' ranges; quantile methods need every per-batch value, so a lens
that is asked for one keeps them (see ``needs_all_values``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

POINT_METHODS = ("mean", "median", "std", "min", "max", "Q1", "Q2", "Q3", "IQR")
RANGE_METHODS = ("std", "Q1-Q3", "min-max")
RANGE_NAMES = {"std": ("-σ", "+σ"), "Q1-Q3": ("Q1", "Q3"), "min-max": ("min", "max")}
_QUANTILE_METHODS = {"median", "Q1", "Q2", "Q3", "IQR", "Q1-Q3"}


def as_method_list(value: str | Iterable[str] | None, *, argument: str, ranges: bool) -> list[str]:
    """Normalise a lens' aggregation argument to a list and validate every entry."""
    if value is None:
        return []
    methods = [value] if isinstance(value, str) else list(value)
    allowed = RANGE_METHODS if ranges else POINT_METHODS
    for m in methods:
        if not isinstance(m, str) or m not in allowed:
            raise ValueError(f"{argument}={value!r}: unknown aggregation {m!r}; accepted: {', '.join(allowed)}")
    return methods


def needs_all_values(methods: Iterable[str]) -> bool:
    return any(m in _QUANTILE_METHODS for m in methods)


def closest_observation(values: np.ndarray, p: float) -> float:
    """The ``p`` quantile of ``values`` (non-empty) by Hyndman & Fan's definition 3, monitorch's rule (its
    ``np.quantile(..., method='closest_observation')``): with n·p − 1/2 = j + g, the j-th smallest value when
    g = 0 and j is even, else the (j+1)-th (1-based, clamped to the sample). Written out because numpy 1.24 (the
    project's floor) picks another observation under that name (the median of [1, 3, 100] is 1 there)."""
    k = len(values) * p - 0.5
    j = math.floor(k)
    order = min(max(j if (k == j and j % 2 == 0) else j + 1, 1), len(values))
    return float(np.partition(values, order - 1)[order - 1])


class Summary:
    """Per-batch statistics of one quantity over one epoch, on the host.

    Built from running moments (always) and, when kept, every finite per-batch value.
    ``count`` excludes non-finite batches, which are counted separately in ``nonfinite``.
    """

    __slots__ = ("_raw", "_values", "count", "maximum", "minimum", "nonfinite", "total", "total_sq")

    def __init__(self, count: float, nonfinite: float, total: float, total_sq: float,
                 minimum: float, maximum: float, values: np.ndarray | None = None, raw: np.ndarray | None = None):
        """``values``: the finite per-batch values, or ``raw``: the kept per-batch values with batches left out
        as NaN, filtered when first needed (a quantile: most ticks never ask)."""
        # counts are sums of 0/1 in float64: exact integers
        self.count = int(count)
        self.nonfinite = int(nonfinite)
        self.total = total
        self.total_sq = total_sq
        self.minimum = minimum
        self.maximum = maximum
        self._values = values
        self._raw = raw

    @property
    def values(self) -> np.ndarray | None:
        """The finite per-batch values (None when they were not kept)."""
        if self._values is None and self._raw is not None:
            self._values = self._raw[np.isfinite(self._raw)]
            self._raw = None
        return self._values

    @classmethod
    def of(cls, values: Iterable[float], keep: bool = True) -> Summary:
        arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64)
        finite = arr[np.isfinite(arr)]
        if finite.size == 0:
            return cls(0, arr.size, 0.0, 0.0, np.nan, np.nan, finite if keep else None)
        return cls(finite.size, arr.size - finite.size, float(finite.sum()), float((finite * finite).sum()),
                   float(finite.min()), float(finite.max()), finite if keep else None)

    def point(self, method: str) -> float:
        if self.count == 0:
            return float("nan")
        if method == "mean":
            return self.total / self.count
        if method == "std":
            return self._std()
        if method == "min":
            return self.minimum
        if method == "max":
            return self.maximum
        # The quantile rules of monitorch 0.1.0.7 (numerical/running_value.py, extract_point / extract_range): the
        # median, the IQR and the Q1-Q3 band take the closest observation, Q1 interpolates linearly. Its Q3 point
        # returns the 0.25 quantile and its 'min' point the maximum: those two we do not copy (README "Differences
        # from monitorch"); Q3 interpolates linearly, as its Q1.
        values = self._all(method)
        if method in ("median", "Q2"):
            return closest_observation(values, 0.5)
        if method == "Q1":
            return float(np.quantile(values, 0.25))
        if method == "Q3":
            return float(np.quantile(values, 0.75))
        if method == "IQR":
            return closest_observation(values, 0.75) - closest_observation(values, 0.25)
        raise ValueError(f"unknown aggregation {method!r}; accepted: {', '.join(POINT_METHODS)}")

    def _std(self) -> float:
        """The population standard deviation (ddof 0, monitorch's uncorrected variance). From the kept values
        when there are any (numpy's two-pass formula): the moments' E[x²] − E[x]² cancels when std/mean is
        near the float64 epsilon's square root, which float64 values can reach (pushed numbers: 300 pushed
        losses around 100 with a std of 1e-7 gave 3e-6). Per-batch values stored as float32 (every hook row)
        cannot: their spacing bounds std/mean below by ~6e-8 unless they are equal, where the moments give an
        exact 0, and at that spacing the formula errs by at most ~2% of the std (1e-4 at std/mean = 1e-6)."""
        values = self.values
        if values is not None and values.size == self.count:
            return float(values.std())
        mean = self.total / self.count
        return float(np.sqrt(max(self.total_sq / self.count - mean * mean, 0.0)))

    def range(self, method: str) -> tuple[float, float]:
        if method == "std":
            mean, std = self.point("mean"), self.point("std")
            return (mean - std, mean + std)
        if method == "min-max":
            return (self.point("min"), self.point("max"))
        if method == "Q1-Q3":
            values = self._all(method)
            return (closest_observation(values, 0.25), closest_observation(values, 0.75))
        raise ValueError(f"unknown range aggregation {method!r}; accepted: {', '.join(RANGE_METHODS)}")

    def _all(self, method: str) -> np.ndarray:
        values = self.values
        if values is None:
            raise RuntimeError(f"aggregation {method!r} needs every per-batch value, which this lens did not keep")
        return values


class SlotTable:
    """The moments of every slot of one bank, read at once (a bank that keeps no per-batch values): a row per
    slot, [count, nonfinite, sum_q..., sum of squares_q..., min_q..., max_q...] for its ``width`` quantities
    (extremes already NaN where a slot had no finite batch). A slot's :class:`Summary` objects are made when
    first asked; :meth:`points` gives one point of every slot at once, the numbers ``Summary.point`` gives
    (what the rate lenses read for every layer at every tick: no object per layer)."""

    __slots__ = ("table", "width", "index", "_rows", "_points")

    def __init__(self, table: np.ndarray, width: int, index: dict[int, int]) -> None:
        self.table = table  # [slots, 2 + 4 * width] float64
        self.width = width
        self.index = index  # key (id of the slot) -> its row
        self._rows: list[list[float]] | None = None
        self._points: dict[tuple[str, int], list[float] | None] = {}  # a lens of two sets of sites asks twice

    def summaries(self, row: int) -> list[Summary]:
        if self._rows is None:
            self._rows = self.table.tolist()
        s, w = self._rows[row], self.width
        return [Summary(s[0], s[1], s[2 + q], s[2 + w + q], s[2 + 2 * w + q], s[2 + 3 * w + q]) for q in range(w)]

    def points(self, method: str, q: int) -> list[float] | None:
        """``Summary.point(method)`` of quantity ``q`` for every row (NaN without a counted batch), or None for a
        method that moments alone do not answer with one division or none ('std', quantiles)."""
        found = self._points.get((method, q), ())
        if found != ():
            return found  # type: ignore[return-value]
        out = self._points[(method, q)] = self._compute_points(method, q)
        return out

    def _compute_points(self, method: str, q: int) -> list[float] | None:
        w = self.width
        col = {"mean": 2 + q, "min": 2 + 2 * w + q, "max": 2 + 3 * w + q}.get(method)
        if col is None:
            return None
        count, v = self.table[:, 0], self.table[:, col]
        if method == "mean":  # total / count: the same IEEE division as Summary's (an int count converts exactly)
            return np.divide(v, count, out=np.full(v.shape, math.nan), where=count > 0).tolist()
        return np.where(count > 0, v, math.nan).tolist()

    def observed(self) -> list[bool]:
        """Per row: whether the slot saw any batch (counted, or left out as non-finite)."""
        return ((self.table[:, 0] > 0) | (self.table[:, 1] > 0)).tolist()

    def nonfinite(self) -> list[int]:
        """Each row's ``Summary.nonfinite`` (batches left out)."""
        return self.table[:, 1].astype(np.int64).tolist()
