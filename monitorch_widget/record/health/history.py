"""What earlier rows of a run say about the cause of a later finding (running folds, ``scans.py``).

A check judges one row, but a cause can lie in the past: units that died after steps far too large look calm
afterwards (dead units pass no gradient, so their update ratio is small again). These helpers read the run's
final rows up to the one being judged, each once.
"""

from __future__ import annotations

import functools

from .config import HealthConfig
from .rows import UPDATE_RATIO, RowView
from .scans import FirstAbove


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
