"""Checks on the loss curves and on non-finite values: non-finite, divergence, plateau, overfitting.

Losses: the training / validation lines of the ``Loss`` (or ``Loss & Metrics``) panel, named after the
inspector's ``train_loss_str`` / ``non_train_loss_str``. Non-finite values: our lenses leave NaN/Inf batches
out of their statistics and report them as the run's problems (``collect/faults.py``), so the check reads the
problems new in this epoch; a run fed by monitorch's own inspector carries NaN/Inf in the values themselves.
"""

from __future__ import annotations

import numpy as np

from .config import HealthConfig
from .finding import Condition, sci
from .rows import GRADIENT_NORM, LOSS_PANELS, RowView, finite

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
        if np.isinf(v) or (foreign and np.isnan(v) and np.isfinite(view.upto(idx)[:-1]).any()):
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
        norms = view.first_line(GRADIENT_NORM)
        values = view.row_values(list(norms.values()))
        bad = np.isinf(values) | (np.isnan(values) if foreign else False)
        for k in np.flatnonzero(bad):
            add(list(norms)[k], GRADIENT_NORM, "gradient norm")
    return list(found.values())


def divergence(view: RowView, cfg: HealthConfig) -> list[Condition]:
    col = view.upto(view.train_loss())
    v = float(col[view.row])
    prev = col[: view.row]
    ok = np.isfinite(prev)
    if not finite(v) or not ok.any():
        return []
    best_row = int(np.flatnonzero(ok)[np.argmin(prev[ok])])
    best = float(prev[best_row])
    if best <= 0 or v < cfg.divergence_factor * best:
        return []
    return [Condition(
        "divergence", "critical", None, view.run.columns[view.train_loss()].panel, v,
        f"the training loss {sci(v)} is {v / best:.1f}x its best ({sci(best)} at epoch {view.epoch_of(best_row):g}): "
        "training is going backwards.",
        "lower the learning rate (by 10x to start), clip gradients, and check for a bad batch or a data change")]


def plateau(view: RowView, cfg: HealthConfig) -> list[Condition]:
    idx = view.train_loss()
    col = view.upto(idx)
    rows = np.flatnonzero(np.isfinite(col))
    if rows.size <= cfg.plateau_patience:
        return []
    vals = col[rows]
    # as ReduceLROnPlateau (mode min, threshold_mode rel): an epoch improves when it beats the best so far by
    # the relative threshold; a plateau is more than `patience` epochs without one
    best_before = np.minimum.accumulate(np.concatenate(([np.inf], vals[:-1])))
    improved = vals < best_before * (1 - cfg.plateau_threshold) if np.all(vals > 0) else vals < best_before
    last = int(np.flatnonzero(improved)[-1])
    bad = vals.size - 1 - last
    if bad <= cfg.plateau_patience:
        return []
    return [Condition(
        "plateau", "info", None, view.run.columns[idx].panel, float(vals[-1]),
        f"the training loss has not improved by {cfg.plateau_threshold:.0e} (relative) for {bad} epochs.",
        "if validation is still poor, lower the learning rate (ReduceLROnPlateau) or add capacity; if it is good, "
        "stop training", since=view.epoch_of(int(rows[last + 1])))]


def overfitting(view: RowView, cfg: HealthConfig) -> list[Condition]:
    val = view.upto(view.val_loss())
    train = view.upto(view.train_loss())
    v, t = float(val[view.row]), float(train[view.row])
    ok = np.isfinite(val)
    if not (finite(v) and finite(t)) or not ok.any():
        return []
    best_row = int(np.flatnonzero(ok)[np.argmin(val[ok])])
    best, t_best = float(val[best_row]), float(train[best_row])
    if best <= 0 or not finite(t_best):
        return []
    gl = 100 * (v / best - 1)
    if gl <= cfg.overfit_gl or t >= t_best:
        return []
    return [Condition(
        "overfitting", "warning", None, view.run.columns[view.val_loss()].panel, gl,
        f"the validation loss is {gl:.0f}% above its best (epoch {view.epoch_of(best_row):g}) while the training loss "
        "kept falling (Prechelt's GL criterion).",
        "stop early (keep the weights of the best validation epoch), add regularisation (dropout, weight decay, "
        "augmentation), or get more data")]
