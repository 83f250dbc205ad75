"""Running folds over one column's final rows, so that a check reads each row once instead of its whole history.

A fold keeps how far it has read (``upto``) and advances lazily to the row a check asks for. This is exact
because a run's rows below the one being judged are final and never rewritten (``record/run.py``), and rows
are judged in order (``monitor.py``). A column index never changes meaning (columns only grow), so a fold is
stored per column (and per threshold where the fold depends on one: a changed threshold starts a new fold
from row 0). Every comparison is the one the straightforward whole-column evaluation makes, on the same
float64 values (``tests/test_health_incremental.py`` replays runs against it).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


class _Fold:
    def __init__(self, col: int) -> None:
        self.col = col
        self.upto = 0  # rows [0, upto) are folded

    def advance(self, data: np.ndarray, upto: int) -> None:
        """Fold rows [self.upto, upto) of ``data`` (the run's [rows, columns] matrix)."""
        if upto <= self.upto:
            return
        for r, v in enumerate(data[self.upto:upto, self.col].tolist(), self.upto):
            self._add(r, v)
        self.upto = upto

    def _add(self, row: int, v: float) -> None:
        raise NotImplementedError


class FirstMin(_Fold):
    """The smallest finite value read and the first row holding it (``np.argmin`` over the finite rows)."""

    def __init__(self, col: int) -> None:
        super().__init__(col)
        self.best = math.inf
        self.row: int | None = None  # None: no finite value yet

    def _add(self, row: int, v: float) -> None:
        if math.isfinite(v) and (self.row is None or v < self.best):
            self.best, self.row = v, row


class BestAndPeak(FirstMin):
    """:class:`FirstMin`, and the largest finite value read after that first best row (``peak``; -inf if none)."""

    def __init__(self, col: int) -> None:
        super().__init__(col)
        self.peak = -math.inf

    def _add(self, row: int, v: float) -> None:
        if not math.isfinite(v):
            return
        if self.row is None or v < self.best:
            self.best, self.row, self.peak = v, row, -math.inf
        elif v > self.peak:
            self.peak = v


class FirstFinite(_Fold):
    """The first finite value read and how many finite values there were."""

    def __init__(self, col: int) -> None:
        super().__init__(col)
        self.first = math.nan
        self.count = 0

    def _add(self, row: int, v: float) -> None:
        if math.isfinite(v):
            if self.count == 0:
                self.first = v
            self.count += 1


class Improvements(_Fold):
    """The finite values of a loss column as ``ReduceLROnPlateau`` (mode min) sees them: an epoch improves when it
    is below the best before it, by the relative ``threshold`` (``rel``) or at all (``abs``: used once a value
    <= 0 was seen, where a relative threshold has no meaning). Both modes are followed from the start, so the
    mode may switch at any row without re-reading the column."""

    def __init__(self, col: int, threshold: float) -> None:
        super().__init__(col)
        self.keep = 1 - threshold
        self.count = 0  # finite values
        self.best = math.inf  # smallest finite value so far (the "best before" of the next one)
        self.latest = math.nan
        self.all_positive = True
        # per mode: (index among the finite values of the last improvement, row of the next finite value or None)
        self.rel: tuple[int | None, int | None] = (None, None)
        self.abs: tuple[int | None, int | None] = (None, None)

    def _add(self, row: int, v: float) -> None:
        if not math.isfinite(v):
            return
        self.rel = _step(self.rel, v < self.best * self.keep, self.count, row)
        self.abs = _step(self.abs, v < self.best, self.count, row)
        if v < self.best:
            self.best = v
        if not v > 0:
            self.all_positive = False
        self.latest = v
        self.count += 1


def _step(state: tuple[int | None, int | None], improved: bool, index: int, row: int) -> tuple[int | None, int | None]:
    last, after = state
    if improved:
        return index, None
    return last, row if after is None else after


class LastFinite(_Fold):
    """The last finite value read and its row (None: none yet)."""

    def __init__(self, col: int) -> None:
        super().__init__(col)
        self.last = math.nan
        self.row: int | None = None

    def _add(self, row: int, v: float) -> None:
        if math.isfinite(v):
            self.last, self.row = v, row


class FirstAbove(_Fold):
    """The first row whose value is above ``threshold`` and that value (None: none yet)."""

    def __init__(self, col: int, threshold: float) -> None:
        super().__init__(col)
        self.threshold = threshold
        self.value = math.nan
        self.row: int | None = None

    def _add(self, row: int, v: float) -> None:
        if self.row is None and v > self.threshold:  # NaN compares False
            self.value, self.row = v, row
