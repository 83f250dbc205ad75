"""Checks on per-layer gradient norms and on the update-to-weight ratio.

Inputs: ``Weight Gradient Norm`` (ParameterGradientGeometry), ``Weight Norm`` (ParameterNorm) and ``Weight
Update Norm`` (ParameterUpdateGeometry), each per module with its line aggregation (``mean``) as first key.
Which gradient the norm is of: our lenses read the gradient the optimizer step used (after clipping and
GradScaler's unscale; README "What each statistic reads"); monitorch's own lens, driving ``WidgetVisualizer``,
reads it at every backward pass, before clipping. A panel recorded by our inspector names its lens, a panel fed
through monitorch's visualizer interface does not: that is how a finding says which norm it read.
"""

from __future__ import annotations

import warnings

import numpy as np

from .config import HealthConfig
from .finding import Condition, sci
from .rows import GRADIENT_NORM, UPDATE_NORM, WEIGHT_NORM, RowView, Skipped, finite


def reading(view: RowView) -> str:
    """How the gradient norm of this run was read, for messages."""
    if view.panel_lens(GRADIENT_NORM) is None:
        return "norm read by monitorch's lens at each backward pass, before any clipping"
    return "norm of the gradient the optimizer step used, after clipping"


def _norms(view: RowView) -> dict[str, int]:
    if not view.has(GRADIENT_NORM):
        raise Skipped("needs ParameterGradientGeometry (per-layer gradient norms)")
    return view.first_line(GRADIENT_NORM)


def vanishing_gradient(view: RowView, cfg: HealthConfig) -> list[Condition]:
    norms = _norms(view)
    names = list(norms)
    values = view.row_values(list(norms.values()))
    ok = np.flatnonzero(np.isfinite(values) & (values >= 0))
    if ok.size < 2:
        return []
    top_k = int(ok[np.argmax(values[ok])])
    top_layer, top = names[top_k], float(values[top_k])
    if top <= 0:
        return []
    out = []
    for k in ok[values[ok] < cfg.vanishing_ratio * top]:
        layer, v = names[k], float(values[k])
        share = v / top
        out.append(Condition(
            "vanishing_gradient", "warning", layer, GRADIENT_NORM, v,
            f"its weight-gradient norm {sci(v)} is {sci(share)} of the largest layer's ({top_layer}: {sci(top)}); "
            f"{reading(view)}.",
            "gradients vanish on the way back: use ReLU-family activations instead of sigmoid/tanh in deep "
            "stacks, Glorot/He initialisation, normalisation layers or residual connections",
            need=cfg.vanishing_epochs))
    return out


def exploding_gradient(view: RowView, cfg: HealthConfig) -> list[Condition]:
    norms = _norms(view)
    lo = max(0, view.row - cfg.exploding_window)
    if lo == view.row or not norms:
        return []
    names = list(norms)
    cols = list(norms.values())
    now = view.row_values(cols)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN window has no median: no jump
        medians = np.nanmedian(view.data[lo:view.row, cols], axis=0)
        jumped = np.flatnonzero((medians > 0) & (now >= cfg.exploding_jump * medians))
    out = []
    for k in jumped:
        layer, v, median = names[k], float(now[k]), float(medians[k])
        if not finite(v):
            continue
        out.append(Condition(
            "exploding_gradient", "critical", layer, GRADIENT_NORM, v,
            f"its gradient norm jumped to {sci(v)}, {v / median:.0f}x its recent median {sci(median)}; "
            f"{reading(view)}.",
            "lower the learning rate, clip gradients (torch.nn.utils.clip_grad_norm_; Pascanu et al. 2013), "
            "or add normalisation; check the batch that caused it"))
    return out


def update_ratio(view: RowView, cfg: HealthConfig) -> list[Condition]:
    missing = [lens for lens, tag in (("ParameterUpdateGeometry", UPDATE_NORM), ("ParameterNorm", WEIGHT_NORM))
               if not view.has(tag)]
    if missing:
        raise Skipped(f"needs {' and '.join(missing)} (update and weight norms)")
    updates = view.first_line(UPDATE_NORM)
    weights = view.first_line(WEIGHT_NORM)
    names = [layer for layer in updates if layer in weights]
    u = view.row_values([updates[n] for n in names])
    w = view.row_values([weights[n] for n in names])
    with np.errstate(all="ignore"):
        ratios = np.where(w > 0, u / w, np.nan)
    far = np.flatnonzero((ratios > cfg.update_ratio_high) | (ratios < cfg.update_ratio_low))  # NaN: False
    out = []
    for k in far:
        layer, r = names[k], float(ratios[k])
        if r > cfg.update_ratio_high:
            out.append(Condition(
                "update_ratio", "warning", layer, UPDATE_NORM, r,
                f"each step moves its weights by {sci(r)} of their norm, far above the usual ~1e-3 (CS231n); "
                "the learning rate is likely too high.",
                "lower the learning rate (by 10x to start), or add warm-up; keep the ratio near 1e-3"))
        elif r == 0:  # not a small step but none: "raise the learning rate" would mislead
            out.append(Condition(
                "update_ratio", "warning", layer, UPDATE_NORM, r,
                "its weights did not move in this epoch's steps: its gradients were zero (a dead layer, or a "
                "branch the loss does not reach) or its learning rate is 0.",
                "check its gradient activation (dead units), that the loss depends on it, and its parameter "
                "group's lr"))
        elif r < cfg.update_ratio_low:
            out.append(Condition(
                "update_ratio", "info", layer, UPDATE_NORM, r,
                f"each step moves its weights by only {sci(r)} of their norm, far below the usual ~1e-3 (CS231n); "
                "the learning rate may be too low.",
                "raise the learning rate (a learning-rate range test finds a good one), unless training is "
                "deliberately annealed"))
    return out
