"""Checks on the loss curves and on non-finite values: non-finite, divergence, plateau, overfitting.

Losses: the training / validation lines of the ``Loss`` (or ``Loss & Metrics``) panel, named after the
inspector's ``train_loss_str`` / ``non_train_loss_str``. Non-finite values: our lenses leave NaN/Inf batches
out of their statistics and report them as the run's problems (``collect/faults.py``), so the check reads the
problems new in this epoch; a run fed by monitorch's own inspector carries NaN/Inf in the values themselves.
"""

from __future__ import annotations

import math

import numpy as np

from .config import HealthConfig
from .finding import Condition, sci
from .rows import GRADIENT_NORM, LOSS_PANELS, RowView, finite
from .scans import FirstMin, Improvements

_NONFINITE_ADVICE = ("find the first NaN/Inf (torch.autograd.set_detect_anomaly(True)); lower the learning rate, "
                     "clip gradients, and guard log/div/sqrt against zero")


def nonfinite(view: RowView, cfg: HealthConfig) -> list[Condition]:
    found: dict[str | None, Condition] = {}

    def add(layer: str | None, tag: str | None, what: str) -> None:
        if layer not in found:
            where = f"{what} in epoch {view.epoch:g}"
            found[layer] = Condition("nonfinite", "critical", layer, tag, None, f"NaN/Inf {where}.", _NONFINITE_ADVICE)

    for name in (view.train_name, view.val_name):
        idx = view.loss_col(name)
        if idx is None:
            continue
        v = view.now(idx)
        panel = view.run.columns[idx].panel
        foreign = view.panel_lens(panel) is None  # monitorch's inspector: NaN is a NaN loss, not a gap
        if math.isinf(v) or (foreign and math.isnan(v) and np.isfinite(view.upto(idx)[:-1]).any()):
            add(None, panel, f"{name}")
    for lens, message in view.new_problems:
        if "non-finite" in message and ("loss" in message or lens == "LossMetrics"):
            add(None, next((p for p in LOSS_PANELS if view.has(p)), None), "loss value(s)")
        elif "NaN/Inf" in message and ": " in message:
            layer = message.split(": ", 1)[0]
            tag = next((p.tag for p in view.run.panels if p.lens == lens and layer in view.run.groups(p.tag)), None)
            add(layer, tag, "outputs" if lens == "OutputActivation" else "gradients" if "Gradient" in lens else "values")
    if view.has(GRADIENT_NORM):
        foreign = view.panel_lens(GRADIENT_NORM) is None
        row = view.values()
        for layer, idx in view.first_line(GRADIENT_NORM).items():
            v = row[idx]
            if math.isinf(v) or (foreign and math.isnan(v)):
                add(layer, GRADIENT_NORM, "gradient norm")
    return list(found.values())


def divergence(view: RowView, cfg: HealthConfig) -> list[Condition]:
    idx = view.train_loss()
    v = view.now(idx)
    prev = view.scan(("min", idx), lambda: FirstMin(idx))
    prev.advance(view.data, view.row)  # the best of the rows before this one
    if not finite(v) or prev.row is None:
        return []
    best_row, best = prev.row, prev.best
    if best <= 0 or v < cfg.divergence_factor * best:
        return []
    return [Condition(
        "divergence", "critical", None, view.run.columns[idx].panel, v,
        f"the training loss {sci(v)} is {v / best:.1f}x its best ({sci(best)} at epoch {view.epoch_of(best_row):g}): "
        "training is going backwards.",
        "lower the learning rate (by 10x to start), clip gradients, and check for a bad batch or a data change")]


def plateau(view: RowView, cfg: HealthConfig) -> list[Condition]:
    idx = view.train_loss()
    # as ReduceLROnPlateau (mode min, threshold_mode rel): an epoch improves when it beats the best so far by
    # the relative threshold; a plateau is more than `patience` epochs without one (scans.Improvements)
    seen = view.scan(("plateau", idx, cfg.plateau_threshold), lambda: Improvements(idx, cfg.plateau_threshold))
    seen.advance(view.data, view.row + 1)
    if seen.count <= cfg.plateau_patience:
        return []
    last, after = seen.rel if seen.all_positive else seen.abs
    if last is None:  # no epoch ever improved (plateau_threshold=1 in relative mode: best * 0 is NaN at first)
        raise IndexError("index -1 is out of bounds for axis 0 with size 0")
    bad = seen.count - 1 - last
    if bad <= cfg.plateau_patience:
        return []
    assert after is not None  # bad >= 1 finite values came after the last improvement
    return [Condition(
        "plateau", "info", None, view.run.columns[idx].panel, seen.latest,
        f"the training loss has not improved by {cfg.plateau_threshold:.0e} (relative) for {bad} epochs.",
        "if validation is still poor, lower the learning rate (ReduceLROnPlateau) or add capacity; if it is good, "
        "stop training", since=view.epoch_of(after))]


def overfitting(view: RowView, cfg: HealthConfig) -> list[Condition]:
    val_idx, train_idx = view.val_loss(), view.train_loss()
    v, t = view.now(val_idx), view.now(train_idx)
    if not (finite(v) and finite(t)):
        return []
    best_val = view.scan(("min", val_idx, "inclusive"), lambda: FirstMin(val_idx))
    best_val.advance(view.data, view.row + 1)  # the best validation loss up to and with this row
    best_row, best = best_val.row, best_val.best
    assert best_row is not None  # this row's value is finite
    t_best = float(view.data[best_row, train_idx])
    if best <= 0 or not finite(t_best):
        return []
    gl = 100 * (v / best - 1)
    if gl <= cfg.overfit_gl or t >= t_best:
        return []
    return [Condition(
        "overfitting", "warning", None, view.run.columns[val_idx].panel, gl,
        f"the validation loss is {gl:.0f}% above its best (epoch {view.epoch_of(best_row):g}) while the training loss "
        "kept falling (Prechelt's GL criterion).",
        "stop early (keep the weights of the best validation epoch), add regularisation (dropout, weight decay, "
        "augmentation), or get more data")]
