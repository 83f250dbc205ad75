"""What earlier rows of a run say about the cause of a later finding (running folds, ``scans.py``).

A check judges one row, but a cause can lie in the past: units that died after steps far too large look calm
afterwards (dead units pass no gradient, so their update ratio is small again); a ratio that turned NaN with
the weights still has the value it had when last measured. These helpers read the run's final rows up to the one
being judged, each once.
"""

from __future__ import annotations

import functools

import numpy as np

from .config import HealthConfig
from .rows import UPDATE_NORM, UPDATE_RATIO, WEIGHT_NORM, RowView
from .scans import FirstAbove, LastFinite


def overshoot(view: RowView, cfg: HealthConfig) -> tuple[float, str, float] | None:
    """(epoch, layer, mean ratio) of the first row, up to this one, in which some layer's mean per-step
    update-to-weight ratio was above ``update_ratio_high`` (update_ratio's "learning rate too high"; the largest
    such layer of that row); None when none was, or the run records no per-step ratio (``UPDATE_RATIO``)."""
    if not view.has(UPDATE_RATIO):
        return None
    high = cfg.update_ratio_high
    found: tuple[int, float, str] | None = None
    for layer, col, _ in view.layers(UPDATE_RATIO, "mean"):
        seen = view.scan(("above", col, high), functools.partial(FirstAbove, col, high))
        seen.advance(view.data, view.row + 1)
        if seen.row is not None and (found is None or (seen.row, -seen.value) < (found[0], -found[1])):
            found = (seen.row, seen.value, layer)
    return None if found is None else (view.epoch_of(found[0]), found[2], found[1])


def last_ratio(view: RowView, layer: str) -> tuple[int, float, float] | None:
    """(row, mean, max) of ``layer``'s update-to-weight ratio at the last earlier row where it was finite; the
    monitorch-lens approximation (update norm over weight norm at the tick) where no per-step ratio is recorded
    (max NaN). None when it never was."""
    if view.has(UPDATE_RATIO):
        cols = {key: {g: i for g, i, _ in view.layers(UPDATE_RATIO, key)} for key in ("mean", "max")}
        if layer not in cols["mean"]:
            return None
        seen = view.scan(("last", cols["mean"][layer]), lambda: LastFinite(cols["mean"][layer]))
        seen.advance(view.data, view.row)
        top = cols["max"].get(layer)
        return None if seen.row is None else (
            seen.row, seen.last, float(view.data[seen.row, top]) if top is not None else np.nan)
    u_col, w_col = view.first_line(UPDATE_NORM).get(layer), view.first_line(WEIGHT_NORM).get(layer)
    if u_col is None or w_col is None:
        return None
    u = view.scan(("last", u_col), lambda: LastFinite(u_col))
    w = view.scan(("last", w_col), lambda: LastFinite(w_col))
    u.advance(view.data, view.row)
    w.advance(view.data, view.row)
    if u.row is None or u.row != w.row or not w.last > 0:
        return None
    return u.row, u.last / w.last, np.nan
