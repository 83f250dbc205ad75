"""Checks on the loss curves and on non-finite values: non-finite, divergence, plateau, overfitting.

Losses: the training / validation lines of the ``Loss`` (or ``Loss & Metrics``) panel, named after the
inspector's ``train_loss_str`` / ``non_train_loss_str``. Non-finite values: our lenses leave NaN/Inf batches
out of their statistics and report them as the run's problems (``collect/faults.py``), so the check reads the
problems new in this epoch; a run fed by monitorch's own inspector carries NaN/Inf in the values themselves.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

from . import accumulation, gradients
from .causes import dead_layers, diverging, vanishing_layers
from .config import HealthConfig
from .finding import Condition, named, names, sci
from .rows import GRADIENT_NORM, LOSS_PANELS, UPDATE_RATIO, RowView, Skipped, finite
from .scans import BestAndPeak, FirstFinite, FirstMin, Improvements

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


def _spread(view: RowView, idx: int) -> tuple[int, int] | None:
    """The columns of the training loss's ``-σ`` / ``+σ`` band (LossMetrics' default range), or None."""
    panel = view.run.columns[idx].panel
    lo = view.run.column(panel, panel, f"{view.train_name} -σ", "lo")
    hi = view.run.column(panel, panel, f"{view.train_name} +σ", "hi")
    return None if lo is None or hi is None else (lo, hi)


def _spike(view: RowView, cfg: HealthConfig, idx: int, v: float) -> Condition | None:
    """A blow-up inside this epoch, which no comparison of epoch means sees while it is the first (or the
    best) epoch: the batches' losses spread at least ``spike_cv`` times their mean AND a step of the same
    epoch moved some layer's weights by at least ``update_ratio_critical`` of their norm (the per-step ratio,
    ``causes.UPDATE_RATIO``). The spread alone cannot tell a blow-up from a loss that fell fast in the first
    batches; the step size tells them apart. Both thresholds are heuristics."""
    band = view.memo(("spread", view.train_name), lambda: _spread(view, idx))
    if band is None or not view.has(UPDATE_RATIO) or not (finite(v) and v > 0):
        return None
    lo, hi = view.now(band[0]), view.now(band[1])
    std = (hi - lo) / 2
    if not std >= cfg.spike_cv * v:  # NaN compares False
        return None
    big = [(g, view.now(i)) for g, i, _ in view.layers(UPDATE_RATIO, "max")]
    big = [(g, m) for g, m in big if m >= cfg.update_ratio_critical]
    if not big:
        return None
    layer, top = max(big, key=lambda gm: gm[1])
    return Condition(
        "divergence", "critical", None, view.run.columns[idx].panel, v,
        f"the training loss blew up within epoch {view.epoch:g}: its batches' standard deviation {sci(std)} is "
        f"{std / v:.1f}x their mean {sci(v)}, and a step moved {named(layer)}'s weights by {sci(top)}x their norm "
        "(heuristic: a spread this wide with steps this large).",
        "lower the learning rate (by 10x to start), add warm-up or clip gradients; the epochs after a blow-up "
        "may look calm because units died in it (see dead_layer, if it is found)")


def divergence(view: RowView, cfg: HealthConfig) -> list[Condition]:
    idx = view.train_loss()
    v = view.now(idx)
    prev = view.scan(("best-peak", idx), lambda: BestAndPeak(idx))
    prev.advance(view.data, view.row)  # the best of the rows before this one, and the highest value since it
    first = view.scan(("first", idx), functools.partial(FirstFinite, idx))
    first.advance(view.data, view.row)
    # A ratio alone flags wobbles of a loss near 0 (0.012 -> 0.021 is 1.8x): the loss must also have climbed back,
    # at some epoch since its best, a share of what it fell from its first epoch (all of it when it never fell:
    # going up from the start); an oscillating run that did stays diverging while above the ratio.
    peak = max(prev.peak, v) if finite(v) else prev.peak
    if not finite(v) or prev.row is None or prev.best <= 0 or v < cfg.divergence_factor * prev.best or \
            peak - prev.best < cfg.divergence_giveback * (first.first - prev.best):
        spike = _spike(view, cfg, idx, v)
        return [] if spike is None else [spike]
    best_row, best = prev.row, prev.best
    fell = first.first - best
    back = f", {(peak - best) / fell:.0%} of its fall from {sci(first.first)} at the first epoch" if fell > 0 else ""
    advice = "lower the learning rate (by 10x to start), clip gradients, and check for a bad batch or a data change"
    if _holds(view, cfg, "accumulating_gradient", accumulation.accumulating_gradient):
        # the steps grow because the gradients are summed across steps: a lower learning rate only slows that
        advice = ("fix the gradient accumulation first (see accumulating_gradient: is optimizer.zero_grad() "
                  "missing?); a lower learning rate would only delay this")
    return [Condition(
        "divergence", "critical", None, view.run.columns[idx].panel, v,
        f"the training loss {sci(v)} is {v / best:.1f}x its best ({sci(best)} at epoch {view.epoch_of(best_row):g})"
        f"{back}: training is going backwards.", advice)]


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
    message = f"the training loss has not improved by {cfg.plateau_threshold:.0e} (relative) for {bad} epochs."
    advice = ("if validation is still poor, lower the learning rate (ReduceLROnPlateau) or add capacity; if it is "
              "good, stop training")
    stalled = _stalled_by(view, cfg)
    if stalled is not None:  # another finding's cause: a lower learning rate or more capacity would not help
        message += f" {stalled[0]}"
        advice = stalled[1]
    return [Condition("plateau", "info", None, view.run.columns[idx].panel, seen.latest, message, advice,
                      since=view.epoch_of(after))]


def _stalled_by(view: RowView, cfg: HealthConfig) -> tuple[str, str] | None:
    """(message, advice) when another condition of this row explains a plateau, so that its advice does not
    contradict that finding's: gradients accumulating across steps (``accumulating_gradient``); a training loss
    going backwards (``divergence``: "add capacity" beside it misleads, trial r15 s08); (nearly) constant
    activation layers (dead_layer's critical case); vanishing_gradient's condition (trial r13b: a tiny-init run
    told "lower the learning rate or add capacity" beside it); steps far too small (``update_ratio``'s "learning
    rate too low", trial r15 s03: "raise the learning rate" there, "lower the learning rate" here)."""
    if _holds(view, cfg, "accumulating_gradient", accumulation.accumulating_gradient):
        return ("The gradients accumulate across optimizer steps (accumulating_gradient).",
                "fix the gradient accumulation first (see accumulating_gradient: is optimizer.zero_grad() missing?); "
                "a lower learning rate or more capacity would not help")
    if diverging(view, cfg):
        return ("The training loss is going backwards (divergence).",
                "see divergence: lower the learning rate (by 10x to start) or clip gradients; more capacity would "
                "not help")
    dead = dead_layers(view, cfg)
    if dead:
        return (f"{names(dead)} {'are' if len(dead) > 1 else 'is'} dead (dead_layer): no gradient passes "
                f"{'them' if len(dead) > 1 else 'it'}.",
                f"revive {names(dead)} first (see dead_layer); a lower learning rate or more capacity would not help")
    vanishing = _holds(view, cfg, "vanishing_gradient", gradients.vanishing_gradient) if view.has(GRADIENT_NORM) \
        else []
    if vanishing:
        layers = [c.layer for c in vanishing if c.layer is not None]
        which = names(layers) if layers else "some layers"
        return (f"The gradients of {which} vanish (vanishing_gradient): they barely learn.",
                "fix the vanishing gradient first (see vanishing_gradient); a lower learning rate would not help")
    return _small_steps(view, cfg)


def _holds(view: RowView, cfg: HealthConfig, check: str, run: Callable[..., list[Condition]]) -> list[Condition]:
    """``check``'s conditions in this row (computed once per row, shared with the monitor); none when skipped."""
    try:
        return view.once(("check", check), run, view, cfg)  # type: ignore[no-any-return]
    except Skipped:
        return []


def _small_steps(view: RowView, cfg: HealthConfig) -> tuple[str, str] | None:
    """update_ratio's "steps far too small" (info: the learning rate may be too low) or "weights did not move" on
    layers whose gradient does not vanish (those point at vanishing_gradient, not at the learning rate)."""
    low = [c for c in _holds(view, cfg, "update_ratio", gradients.update_ratio)
           if c.kind == "low" and c.layer is not None]
    if not low:
        return None
    vanishing = vanishing_layers(view, cfg)
    small = [c.layer for c in low if c.layer not in vanishing and c.value != 0 and c.layer is not None]
    still = [c.layer for c in low if c.layer not in vanishing and c.value == 0 and c.layer is not None]
    if small:
        return (f"Each step moves the weights of {names(small)} by less than {cfg.update_ratio_low:g} of their norm "
                "(update_ratio): steps this small barely change the loss.",
                "raise the learning rate (see update_ratio; a learning-rate range test finds a good one); a lower one "
                "would make the steps smaller still")
    if still:
        return (f"The weights of {names(still)} did not move (update_ratio).",
                "find why they take no step (see update_ratio: zero gradients, or a learning rate of 0); a lower "
                "learning rate would not help")
    return None


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
    # overfitting is the model fitting the training data clearly better than at the best validation epoch: the
    # training loss must have fallen by overfit_fit of its value there (a stalled or collapsed run's loss wobbles
    # by a few percent), and the run must not be diverging (a blow-up raises both losses: not a data problem)
    fell = t_best - t
    if gl <= cfg.overfit_gl or not fell >= cfg.overfit_fit * abs(t_best) or diverging(view, cfg):
        return []
    return [Condition(
        "overfitting", "warning", None, view.run.columns[val_idx].panel, gl,
        f"the validation loss is {gl:.0f}% above its best (epoch {view.epoch_of(best_row):g}) while the training loss "
        f"fell {fell / abs(t_best):.0%} below its value there (Prechelt's GL criterion).",
        "stop early (keep the weights of the best validation epoch), add regularisation (dropout, weight decay, "
        "augmentation), or get more data", need=cfg.overfit_epochs)]
