"""What one check needs to know about another's findings in the same row, so their advice does not contradict.

A layer whose gradient is ~0 because the units downstream are dead must point at the dead layer, not say
"raise the learning rate" (``update_ratio``) or "replace sigmoid/tanh" (``vanishing_gradient``); a run whose
training loss is going backwards (``divergence``) is not overfitting, whatever its validation loss does; the
vanishing-gradient advice depends on the activations the model has (``Run.module_types``). Helpers only: each
check stays a function of one row (``monitor.py``), and these re-read the same row's values.
"""

from __future__ import annotations

import math

import numpy as np

from .config import HealthConfig
from .layers import _death_layers
from .rows import GRADIENT_NORM, RowView, Skipped

#: activations that saturate (their derivative vanishes for large |x|): where "use ReLU instead" applies
SATURATING_TYPES = frozenset({"Sigmoid", "Tanh", "Hardtanh", "Softsign", "LogSigmoid", "Hardsigmoid", "Tanhshrink"})


def dead_layers(view: RowView, cfg: HealthConfig) -> list[str]:
    """Activation layers that are (nearly) constant in this row: death rate >= ``dead_critical_rate`` (what
    ``dead_layer`` calls critical). No gradient flows through them, so every layer before them gets none,
    and the layer after them sees constant inputs."""
    try:
        _, layers = _death_layers(view)
    except Skipped:
        return []
    row = view.values()
    return [g for g, idx in layers if row[idx] >= cfg.dead_critical_rate]  # NaN compares False


def see_dead(view: RowView, cfg: HealthConfig, dead: list[str]) -> tuple[str, str]:
    """How a finding that blames ``dead`` (``dead_layers``) points at their ``dead_layer`` findings: (for the
    message, for the advice). "see dead_layer" only once every one of them has been at or above ``dead_rate`` for
    ``dead_epochs`` rows (its finding then exists); before that, when it will."""
    _, layers = _death_layers(view)
    cols = [i for g, i in layers if g in dead]
    lo = view.row - cfg.dead_epochs + 1
    if lo >= 0 and cols and bool((view.data[lo:view.row + 1, cols] >= cfg.dead_rate).all()):
        return ": see dead_layer", " (see dead_layer)"
    return f" (dead_layer once it lasts {cfg.dead_epochs} epochs)", ""


def depth_norms(view: RowView, norms: dict[str, int]) -> dict[str, int]:
    """Of the weight-gradient norm columns ``norms``, those vanishing is judged on: every layer's but normalisation
    layers' (BatchNorm, LayerNorm, GroupNorm, RMSNorm, ...: their weight is a per-channel gain of a few entries,
    whose gradient norm is small for that reason alone, not because of depth). All of them when the run does not
    know its module types (fed by monitorch's own inspector)."""
    types = view.run.module_types
    return {g: c for g, c in norms.items() if "Norm" not in types.get(g, "")} if types else norms


def vanishing_layers(view: RowView, cfg: HealthConfig) -> set[str]:
    """Layers whose weight-gradient norm is below ``vanishing_ratio`` of the largest layer's in this row."""
    if not view.has(GRADIENT_NORM):
        return set()
    norms = depth_norms(view, view.first_line(GRADIENT_NORM))
    values = view.row_values(list(norms.values()))
    ok = np.isfinite(values) & (values >= 0)
    if ok.sum() < 2:
        return set()
    top = float(values[ok].max())
    if not top > 0:
        return set()
    return {g for g, v, good in zip(norms, values.tolist(), ok.tolist()) if good and v < cfg.vanishing_ratio * top}


def saturating(view: RowView) -> list[str] | None:
    """The model's saturating activation layers (``SATURATING_TYPES``) by name, in model order; None when the
    run does not know its module types (fed by monitorch's own inspector)."""
    types = view.run.module_types
    if not types:
        return None
    return [g for g, t in types.items() if t in SATURATING_TYPES]


def diverging(view: RowView, cfg: HealthConfig) -> bool:
    """Whether ``divergence``'s condition holds in this row (a critical finding: it needs one row): the training
    loss is going backwards, so a widening train/validation gap is not overfitting but the same blow-up."""
    from .loss import divergence  # loss.overfitting asks this module: imported at the call, not at the top

    return bool(view.once("divergence", divergence, view, cfg))


def finite_positive(v: float) -> bool:
    return math.isfinite(v) and v > 0
