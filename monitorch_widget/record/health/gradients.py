"""Checks on per-layer gradient norms and on the update-to-weight ratio.

Inputs: ``Weight Gradient Norm`` (ParameterGradientGeometry), ``Weight Norm`` (ParameterNorm) and ``Weight
Update Norm`` (ParameterUpdateGeometry), each per module with its line aggregation (``mean``) as first key.
Which gradient the norm is of: our lenses read the gradient the optimizer step used (after clipping and
GradScaler's unscale; README "What each statistic reads"); monitorch's own lens, driving ``WidgetVisualizer``,
reads it at every backward pass, before clipping. A panel recorded by our inspector names its lens, a panel fed
through monitorch's visualizer interface does not: that is how a finding says which norm it read. Clipping
itself is not detected: "after clipping, if any".

Advice that must not contradict another finding (``causes.py``): a layer whose gradient is ~0 while a layer
of the model is dead points at ``dead_layer``; a tiny update on a layer whose gradient vanishes points at
``vanishing_gradient``; the vanishing-gradient advice names the model's saturating activations, if it has any.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from .causes import dead_layers, depth_norms, saturating, see_dead, vanishing_layers
from .config import HealthConfig
from .finding import Condition, named, names, sci
from .history import last_ratio
from .rows import GRADIENT_NORM, UPDATE_NORM, UPDATE_RATIO, WEIGHT_NORM, RowView, Skipped, finite
from .scans import FirstFinite


def reading(view: RowView) -> str:
    """How the gradient norm of this run was read, for messages."""
    if view.panel_lens(GRADIENT_NORM) is None:
        return "norm read by monitorch's lens at each backward pass, before any clipping"
    return "norm of the gradient the optimizer step used, after clipping if any"


def _norms(view: RowView) -> dict[str, int]:
    if not view.has(GRADIENT_NORM):
        raise Skipped("needs ParameterGradientGeometry (per-layer gradient norms)")
    return view.first_line(GRADIENT_NORM)


def _is_are(layers: list[str]) -> str:
    return "are" if len(layers) > 1 else "is"


def _vanishing_advice(view: RowView) -> str:
    """What to try for a vanishing gradient, by the activations the model has (``Run.module_types``)."""
    found = saturating(view)
    common = "Glorot/He initialisation, normalisation layers or residual connections"
    if found is None:  # a run fed by monitorch's inspector: the module types are unknown
        return (f"gradients vanish on the way back: if the model uses sigmoid/tanh, use ReLU-family activations "
                f"in deep stacks; {common}")
    if found:
        kinds = sorted({view.run.module_types[g] for g in found})
        return (f"gradients vanish on the way back through saturating activations ({', '.join(kinds)}: "
                f"{names(found)}): use ReLU-family activations instead in deep stacks; {common}")
    return (f"gradients vanish on the way back (the model has no saturating activation): {common}; check for "
            "dead units (OutputActivation) and for a learning rate so high that it killed them")


def vanishing_gradient(view: RowView, cfg: HealthConfig) -> list[Condition]:
    norms = depth_norms(view, _norms(view))
    names_ = list(norms)
    values = view.row_values(list(norms.values()))
    ok = np.flatnonzero(np.isfinite(values) & (values >= 0))
    if ok.size < 2:
        return []
    top_k = int(ok[np.argmax(values[ok])])
    top_layer, top = names_[top_k], float(values[top_k])
    if top <= 0:
        return []
    low = ok[values[ok] < cfg.vanishing_ratio * top]
    if not low.size:
        return []
    dead = dead_layers(view, cfg)
    if dead:  # one cause, one finding: the layers it starves are named in it (not one finding per layer)
        see = see_dead(view, cfg, dead)
        starved = [names_[k] for k in low]
        return [Condition(
            "vanishing_gradient", "warning", None, GRADIENT_NORM, float(values[low].max()),
            f"the weight gradients of {names(starved)} are below {cfg.vanishing_ratio:g} of the largest layer's "
            f"({named(top_layer)}: {sci(top)}; {reading(view)}), most likely because {names(dead)} "
            f"{_is_are(dead)} dead{see[0]}.",
            f"revive {names(dead)} first{see[1]}: no gradient passes a layer whose units are all silent, "
            "so the layers around it stop learning", need=cfg.vanishing_epochs)]
    # gradients vanish on the way back to the input: only the layers before the first one (in the model's order)
    # whose gradient is not small are judged so. A small gradient after it is no decay with depth (a fresh
    # transformer's attention query / key weights, ~1e-5 of the head's while the same block's other weights are
    # not small; trial r11: "use ReLU instead", for BERT's pooler tanh): only a 0 there is named, as unreached
    first = int(ok[values[ok] >= cfg.vanishing_ratio * top][0])  # the largest layer is one
    low = low[(low < first) | (values[low] == 0)]
    if not low.size:
        return []
    shrinking = bool((values[low[low < first]] > 0).any())  # some vanish by degrees: a 0 among them underflowed
    advice = None
    out = []
    for k in low:
        layer, v = names_[k], float(values[k])
        share = v / top
        if v == 0:  # "0 is 0 of the largest layer's" read as a riddle (trial r6)
            message = f"its weight-gradient norm is 0 (the largest: {named(top_layer)}, {sci(top)}); {reading(view)}."
        else:
            message = (f"its weight-gradient norm {sci(v)} is {sci(share)} of the largest layer's "
                       f"({named(top_layer)}: {sci(top)}); {reading(view)}.")
        if v == 0 and (k > first or not shrinking):  # after a layer it reached, or nothing shrank towards it
            message += " No gradient reaches it at all."
            tip = ("check that the loss depends on it (a branch the loss does not use, a detach()) and look for "
                   "dead units after it (OutputActivation)")
        else:
            if v == 0:
                message += " It is so small that it rounds to 0 (other layers' gradients shrink on the way to it)."
            tip = advice = advice or _vanishing_advice(view)
        out.append(Condition("vanishing_gradient", "warning", layer, GRADIENT_NORM, v, message, tip,
                             need=cfg.vanishing_epochs))
    return out


def exploding_gradient(view: RowView, cfg: HealthConfig) -> list[Condition]:
    norms = _norms(view)
    lo = max(0, view.row - cfg.exploding_window)
    if lo == view.row or not norms:
        return []
    names_ = list(norms)
    cols = list(norms.values())
    now = view.row_values(cols)
    # the baseline is the layer's own level before any recent fall: the larger of the medians of the last
    # exploding_window epochs and of the exploding_window epochs before them. A gradient that fell by a decade
    # (its units died after a blow-up) and comes back to an ordinary size is a recovery, not an explosion (trial r7
    # #7: 7.5e-3 -> 0.078 on a layer whose gradient was 0.34-0.96 before it died)
    before = max(0, lo - cfg.exploding_window)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN window has no median: no jump
        medians = np.nanmedian(view.data[lo:view.row, cols], axis=0)
        earlier = np.nanmedian(view.data[before:lo, cols], axis=0) if before < lo else np.full(len(cols), np.nan)
        baseline = np.fmax(medians, earlier)  # NaN only where both are
        # a return to a size the layer had within both windows (a fall's median hides the level before it: trial
        # r13b, 0.30 -> 1.3e-5 -> 2.3e-5 -> 7.1e-4 read as "31x") is a recovery; and a gradient below
        # vanishing_ratio of the largest layer's is float noise, not an explosion (2.4e-24 -> 2.8e-23 beside 7.6e-3)
        peak = np.nanmax(view.data[before:view.row, cols], axis=0)
        measured = now[np.isfinite(now)]
        top = measured.max() if measured.size else np.nan
        jumped = np.flatnonzero((medians > 0) & (now >= cfg.exploding_jump * baseline) & ~(now <= peak)
                                & (now >= cfg.vanishing_ratio * top))
    out = []
    for k in jumped:
        layer, v, median, base = names_[k], float(now[k]), float(medians[k]), float(baseline[k])
        if not finite(v):
            continue
        level = f"its recent median {sci(median)}" if base == median else \
            f"its median {sci(base)} before its recent fall to {sci(median)}"
        out.append(Condition(
            "exploding_gradient", "critical", layer, GRADIENT_NORM, v,
            f"its gradient norm jumped to {sci(v)}, {v / base:.0f}x {level}; {reading(view)}.",
            "lower the learning rate, clip gradients (torch.nn.utils.clip_grad_norm_; Pascanu et al. 2013), "
            "or add normalisation; check the batch that caused it"))
    return out


#: why update_ratio has nothing to read in a row (ParameterUpdateGeometry observed no step of its parameters)
NO_UPDATE = ("ParameterUpdateGeometry observed no optimizer step of its watched parameters in this epoch: no step "
             "was taken, or its optimizer holds none of them (a new optimizer replaced it, or another one trains "
             "them). Pass the optimizer that trains the model, ParameterUpdateGeometry(optimizer) or lens.optimizer "
             "= optimizer, or with ParameterUpdateGeometry(None) call lens.inspect_update() after each update")


def _how(per_step: bool) -> str:
    return "per step, against the weights before it" if per_step else \
        "the epoch's mean update over the weight norm at the epoch's end; not per step"


def step_ratios(view: RowView) -> tuple[list[str], np.ndarray, np.ndarray, bool]:
    """(layers, epoch mean, epoch max, per step) of the update-to-weight ratio in this row; raises a
    non-lasting :class:`Skipped` when our ParameterUpdateGeometry observed no step in this epoch.

    Per step (``per_step`` True): ParameterUpdateGeometry's ``Weight Update Ratio`` (||u|| / ||w before the
    step||, ``collect/update_ratio.py``). Otherwise -- a run fed by monitorch's own lenses -- the epoch's mean
    update norm over the weight norm ParameterNorm read at the tick (max NaN): an approximation that a blow-up
    within the epoch defeats (the weights at the tick are no longer those the steps started from)."""
    if view.has(UPDATE_RATIO):
        means = {g: i for g, i, _ in view.layers(UPDATE_RATIO, "mean")}
        maxes = {g: i for g, i, _ in view.layers(UPDATE_RATIO, "max")}
        layers = [g for g in means if g in maxes]
        mean_values = view.row_values([means[g] for g in layers])
        if not np.isfinite(mean_values).any():
            raise Skipped(NO_UPDATE, lasting=False)
        return layers, mean_values, view.row_values([maxes[g] for g in layers]), True
    if view.panel_lens(UPDATE_NORM) is not None and not np.isfinite(
            view.row_values(list(view.first_line(UPDATE_NORM).values()))).any():
        # our ParameterUpdateGeometry, which records the ratio with its first observed step: none observed yet
        # (a history saved before the ratio existed has update norms: the approximation below reads them)
        raise Skipped(NO_UPDATE, lasting=False)
    missing = [lens for lens, tag in (("ParameterUpdateGeometry", UPDATE_NORM), ("ParameterNorm", WEIGHT_NORM))
               if not view.has(tag)]
    if missing:
        raise Skipped(f"needs {' and '.join(missing)} (update and weight norms; our ParameterUpdateGeometry alone "
                      "records the per-step ratio)")
    updates = view.first_line(UPDATE_NORM)
    weights = view.first_line(WEIGHT_NORM)
    layers = [layer for layer in updates if layer in weights]
    u = view.row_values([updates[n] for n in layers])
    w = view.row_values([weights[n] for n in layers])
    with np.errstate(all="ignore"):
        ratios = np.where(w > 0, u / w, np.nan)
    return layers, ratios, np.full(len(layers), np.nan), False


def _unmeasured(view: RowView, cfg: HealthConfig, layers: list[str], how: str, tag: str) -> list[Condition]:
    """The "learning rate too high" condition of each of ``layers`` whose ratio is not finite in this row (NaN/Inf
    weights or steps, left out by the lens; no step of it) and was above ``update_ratio_high`` when last
    measured: a value that cannot be measured is not a condition that stopped holding (trial r7 #5: the finding
    resolved once the weights were NaN, and the final findings never named the cause). Only in a run with
    non-finite values reported (its losses, outputs or gradients): a ratio missing in a finite run is a parameter
    frozen since, or an optimizer the lens does not hold, and its finding ends as measured."""
    out: list[Condition] = []
    if not any("non-finite" in message or "NaN/Inf" in message for _, message in view.run.problems):
        return out
    for layer in layers:
        last = last_ratio(view, layer)
        if last is None or not last[1] > cfg.update_ratio_high:
            continue
        row, r, m = last
        critical = m >= cfg.update_ratio_critical
        top = f" (at most {sci(m)})" if finite(m) else ""
        out.append(Condition(
            "update_ratio", "critical" if critical else "warning", layer, tag, r,
            f"each step moved its weights by {sci(r)} of their norm on average{top} in epoch "
            f"{view.epoch_of(row):g}, far above the usual ~1e-3 (CS231n; {how}); no finite ratio since (its weights "
            "or steps turned NaN/Inf, or it took no step): the learning rate is likely too high.",
            "lower the learning rate (by 10x to start), or add warm-up, and restart from weights saved before the "
            "blow-up (NaN/Inf weights do not recover)", kind="high"))
    return out


#: a training loss at or below this share of its first epoch's: the model fits its training data, its gradients and
#: so its steps are small by then (trial r13b: 60 memorised samples, loss 6.6e-4, were told to raise the learning
#: rate from epoch 49 on); two decades, as for update_ratio's "far" (heuristic)
FITTED = 1e-2


def _fitted(view: RowView) -> bool:
    """Whether this row's training loss is at most ``FITTED`` of its first finite value (False without one)."""
    idx = view.loss_col(view.train_name)
    if idx is None:
        return False
    first = view.scan(("first-incl", idx), functools.partial(FirstFinite, idx))
    first.advance(view.data, view.row + 1)
    v = view.now(idx)
    return finite(v) and first.first > 0 and v <= FITTED * first.first


def update_ratio(view: RowView, cfg: HealthConfig) -> list[Condition]:
    try:
        layers, means, maxes, per_step = step_ratios(view)
    except Skipped as exc:  # no finite ratio at all in this row: the layers measured too high before stay so
        if exc.lasting:
            raise
        per_step = view.has(UPDATE_RATIO)
        layers = [g for g, _, _ in view.layers(UPDATE_RATIO, "mean")] if per_step else \
            list(view.first_line(UPDATE_NORM))
        carried = _unmeasured(view, cfg, layers, _how(per_step), UPDATE_RATIO if per_step else UPDATE_NORM)
        if not carried:
            raise
        return carried
    how = _how(per_step)
    tag = UPDATE_RATIO if per_step else UPDATE_NORM
    unmeasured = _unmeasured(view, cfg, [layers[k] for k in np.flatnonzero(~np.isfinite(means))], how, tag)
    with np.errstate(invalid="ignore"):
        far = np.flatnonzero((means > cfg.update_ratio_high) | (means < cfg.update_ratio_low))  # NaN: False
    if not far.size:
        return unmeasured
    dead: list[str] | None = None
    vanishing: set[str] | None = None
    fitted: bool | None = None
    out = unmeasured
    still: list[tuple[str, float]] = []  # layers that barely move because of dead layers: one finding for all
    for k in far:
        layer, r, m = layers[k], float(means[k]), float(maxes[k])
        top = f" (at most {sci(m)})" if finite(m) else ""
        if r > cfg.update_ratio_high:
            # critical: some step moved the weights by their own norm (a max alone is not enough: a layer
            # initialised at zero moves by about its own norm in its first steps)
            critical = m >= cfg.update_ratio_critical
            out.append(Condition(
                "update_ratio", "critical" if critical else "warning", layer, tag, r,
                f"each step moves its weights by {sci(r)} of their norm on average{top}, far above the usual ~1e-3 "
                f"(CS231n; {how})"
                f"{'; a step moved them by at least their own norm' if critical else ''}: the learning rate is "
                "likely too high.",
                "lower the learning rate (by 10x to start), or add warm-up; keep the ratio near 1e-3", kind="high"))
            continue
        if dead is None:
            dead, vanishing = dead_layers(view, cfg), vanishing_layers(view, cfg)
        assert vanishing is not None
        if dead:
            still.append((layer, r))
            continue
        if layer in vanishing:
            cause = (f"its gradient is ~0: it vanishes on the way back (below {cfg.vanishing_ratio:g} of the largest "
                     f"layer's; vanishing_gradient on {named(layer)} once it lasts {cfg.vanishing_epochs} epochs)")
            fix = "fix the vanishing gradient (see vanishing_gradient); raising the learning rate would not help"
        else:
            cause = fix = ""
        if r == 0:  # not a small step but none: "raise the learning rate" would mislead
            out.append(Condition(
                "update_ratio", "warning", layer, tag, r,
                "its weights did not move in this epoch's steps: " + (
                    cause + "." if cause else "its gradients were zero (a dead layer, or a branch the loss does "
                    "not reach) or its learning rate is 0."),
                fix or "check its gradient activation (dead units), that the loss depends on it, that the loss is "
                "not already 0, and its parameter group's lr", kind="low"))
        elif r < cfg.update_ratio_low:
            if fitted is None:
                fitted = _fitted(view)
            if fitted and not cause:  # tiny steps of a model that fits its training data: nothing to raise
                continue
            out.append(Condition(
                "update_ratio", "info", layer, tag, r,
                f"each step moves its weights by only {sci(r)} of their norm, far below the usual ~1e-3 (CS231n; "
                f"{how}); " + (cause + "." if cause else "the learning rate may be too low."),
                fix or "raise the learning rate (a learning-rate range test finds a good one), unless training is "
                "deliberately annealed", kind="low"))
    if still and dead:
        see = see_dead(view, cfg, dead)
        stuck = [layer for layer, _ in still]
        most = max(r for _, r in still)
        moved = "did not move in this epoch's steps" if most == 0 else \
            f"move by at most {sci(most)} of their norm per step ({how})"
        out.append(Condition(
            "update_ratio", "warning", None, tag, most,
            f"the weights of {names(stuck)} {moved}: their gradients are ~0, most likely because {names(dead)} "
            f"{_is_are(dead)} dead{see[0]}.",
            f"revive {names(dead)}{see[1]}; raising the learning rate would not help", kind="low"))
    return out
