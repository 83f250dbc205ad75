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


def overshoot(view: RowView, cfg: HealthConfig) -> tuple[float, tuple[tuple[str, float], ...]] | None:
    """(epoch, ((layer, mean ratio), ...)) of the first row, up to this one, in which some layer's mean per-step
    update-to-weight ratio was above ``update_ratio_high`` (update_ratio's "learning rate too high"), with every
    layer above it in that row; None when none was, or the run records no per-step ratio (``UPDATE_RATIO``)."""
    if not view.has(UPDATE_RATIO):
        return None
    high = cfg.update_ratio_high
    first: int | None = None
    found: list[tuple[str, float]] = []
    for layer, col, _ in view.layers(UPDATE_RATIO, "mean"):
        seen = view.scan(("above", col, high), functools.partial(FirstAbove, col, high))
        seen.advance(view.data, view.row + 1)
        if seen.row is None or (first is not None and seen.row > first):
            continue
        if first is None or seen.row < first:
            first, found = seen.row, []
        found.append((layer, seen.value))
    return None if first is None else (view.epoch_of(first), tuple(found))


def cause_of(found: tuple[float, tuple[tuple[str, float], ...]], layer: str, order: dict[str, int]
             ) -> tuple[float, str, float]:
    """(epoch, layer, ratio) of :func:`overshoot`'s answer ``found`` that most likely killed ``layer``'s units: the
    nearest of its layers before ``layer`` in the model's order (``order``: module name -> position; a unit dies
    when the layer that feeds it is pushed, not one after it), else the largest ratio (no order known: a run fed
    by monitorch's own inspector; nothing before it)."""
    epoch, layers = found
    at = order.get(layer)
    before = [(order[g], g, v) for g, v in layers if at is not None and order.get(g, at) < at]
    if before:
        _, g, v = max(before)
        return epoch, g, v
    g, v = max(layers, key=lambda gv: gv[1])
    return epoch, g, v


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
