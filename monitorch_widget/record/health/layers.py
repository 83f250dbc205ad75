"""Checks on per-layer activation and death rates: dead layers, dying layers, confident softmax outputs.

Death rate: the share of a layer's units never active (|y| <= eps) in a batch, averaged over the epoch
(README, "Definitions"). Thresholds and their rationale: ``config.py`` and the README's table.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .config import HealthConfig
from .finding import Condition, loss_change, named, pct, sci
from .history import cause_of, overshoot
from .rows import (
    GRADIENT_ACTIVATION,
    OUTPUT_ACTIVATIONS,
    RowView,
    Skipped,
    dead_checked,
    finite,
    is_softmax,
    rates_by_construction,
)
from .scans import FirstFinite

_DEAD_ADVICE = ("add dropout before this layer (the seed tutorial's remedy), lower the learning rate, or make the "
                "layer narrower; LeakyReLU keeps a gradient on silent units")
_CONSTANT_ADVICE = ("check the bias and initialisation of the layer feeding it (a large negative bias silences every "
                    "unit), re-initialise (Lu et al. 2019: symmetric initialisations let deep ReLU networks die; try "
                    "an asymmetric or He initialisation), lower the learning rate, or switch to LeakyReLU")
_DYING_ADVICE = ("this layer has more units than the task uses here: make it narrower, or add dropout before it; "
                 "compare with the model's other layers in the {panel} panel")
#: a layer's activation rate + death rate below 1 - this: its units are partly active, its input varies
KNOCK_ON_SPREAD = 0.05
#: from this many checked layers on, their rates are gathered and compared as one float64 array
_MANY = 16
_TREND_ADVICE = ("units are dying without the loss improving: lower the learning rate, add dropout before the "
                 "layer, or stop early")


def _death_layers(view: RowView) -> tuple[str, list[tuple[str, int]]]:
    """(panel, [(layer, column)]) whose death rates are checked: activations from OutputActivation, else the
    weight gradients' units from ParameterGradientActivation (a unit with zero gradient is a silent unit; an
    embedding's rows are silent for the tokens a batch lacks: :func:`.rows.rates_by_construction`). The list is
    the same object while the run's columns stay (``RowView.memo``)."""
    if view.has(OUTPUT_ACTIVATIONS):
        layers = view.memo(("dead_checked", None), lambda: [
            (g, i) for g, i, t in view.layers(OUTPUT_ACTIVATIONS, "death_rate") if dead_checked(g, t)])
        return OUTPUT_ACTIVATIONS, layers
    if view.has(GRADIENT_ACTIVATION):
        return GRADIENT_ACTIVATION, view.memo(("dead_checked", GRADIENT_ACTIVATION), lambda: [
            (g, i) for g, i, t in view.layers(GRADIENT_ACTIVATION, "death_rate") if not rates_by_construction(g, t)])
    raise Skipped("needs OutputActivation (or ParameterGradientActivation) for per-layer death rates")


class _Rates:
    """The checked layers' death rates at one row, read once for the three checks that use them: ``values``
    (one per layer, in ``layers``' order), ``cols`` (their columns), ``key`` (what equal rates have equal: the
    values themselves, or for many layers their float64 bytes, one comparison of contiguous memory), and what
    the checks remember of the previous row while the layers stay: ``previous`` (check -> [config, key, its
    conditions]) and ``made`` (layer -> (rate, config, its dead_layer Condition))."""

    __slots__ = ("panel", "layers", "cols", "index", "values", "acts", "key", "previous", "made")

    def __init__(self, view: RowView) -> None:
        self.panel, self.layers = _death_layers(view)
        held: list[Any] = view.memo(("dead_checked", "columns"), _unheld)
        if held[0] is not self.layers:
            cols = [i for _, i in self.layers]
            held[:] = self.layers, cols, np.array(cols, dtype=np.intp) if len(cols) >= _MANY else None, {}, {}
        _, self.cols, self.index, self.previous, self.made = held
        if self.index is None:
            row = view.values()
            self.values: list[float] = [row[i] for i in self.cols]
            self.key: Any = self.values
        else:
            rates = view.data[view.row].take(self.index)
            self.values, self.key = rates.tolist(), rates.tobytes()
        # their activation rates (Output Activations only; NaN: none): whether a layer's input is (nearly) constant
        # (_knock_on_sources). Part of the key: the knock-on reading depends on them (NaN never equals: recomputed)
        act_cols: list[int | None] = view.memo(("dead_checked", "activation"), lambda: _activation_columns(view, self))
        if any(i is not None for i in act_cols):
            row = view.values()
            self.acts: list[float] = [row[i] if i is not None else math.nan for i in act_cols]
            self.key = (self.key, tuple(self.acts))
        else:
            self.acts = [math.nan] * len(self.cols)

    def at(self, view: RowView, row: int) -> list[float]:
        """The same layers' rates at an earlier ``row``."""
        if self.index is None:
            values = view.data[row].tolist()
            return [values[i] for i in self.cols]
        return view.data[row].take(self.index).tolist()  # type: ignore[no-any-return]

    def unchanged(self, check: str, cfg: HealthConfig) -> list[Condition] | None:
        """``check``'s conditions at the previous row if they depend on nothing that changed since: the same
        layers, ``cfg`` and equal rates. Equal floats are not always equal bytes: NaN never equals (the check
        then runs), and 0.0 equals -0.0, which no death check tells apart (a rate counts from a positive
        threshold on; a median sums from 0.0)."""
        last = self.previous.get(check)
        return last[2] if last is not None and last[0] is cfg and last[1] == self.key else None


def _activation_columns(view: RowView, r: _Rates) -> list[int | None]:
    """Per checked layer, its activation-rate column (Output Activations), else None."""
    if r.panel != OUTPUT_ACTIVATIONS:
        return [None] * len(r.layers)
    act = {g: i for g, i, _ in view.layers(OUTPUT_ACTIVATIONS, "activation_rate")}
    return [act.get(g) for g, _ in r.layers]


def _unheld() -> list[Any]:
    return [None, None, None, None, None]


def _death_rates(view: RowView) -> _Rates:
    return view.once("death rates", _Rates, view)  # type: ignore[no-any-return]


def dead_layer(view: RowView, cfg: HealthConfig) -> list[Condition]:
    r = _death_rates(view)
    # the conditions depend on the layers, their rates and the config alone: when none of them changed since
    # the previous row, the same list (the monitor then knows that nothing changed, monitor.py); else a layer
    # whose rate is the previous row's gets the same Condition object again, without formatting its message anew
    rate = cfg.dead_rate
    # the steps that killed them (update_ratio's "learning rate too high" in an earlier row): the cause, which the
    # ratio no longer shows once the units are dead; it changes at most once per run
    found = overshoot(view, cfg) if any(d >= rate for d in r.values) else None
    out = r.unchanged("dead_layer", cfg)
    if out is not None and r.previous.get("dead_layer why") == found:
        return out
    order = view.memo(("module order", None), lambda: {name: k for k, name in enumerate(view.run.module_types)})
    made = r.made
    out = []
    sources = _knock_on_sources(r, cfg)
    for k, d in enumerate(r.values):
        if not d >= rate:  # NaN compares False
            continue
        layer, upstream = r.layers[k][0], sources[k]
        why = None if found is None else cause_of(found, layer, order)
        hit = made.get(layer)
        if hit is None or hit[0] != d or hit[1] is not cfg or hit[3] != why or hit[4] != upstream:
            hit = made[layer] = (d, cfg, _dead(layer, r.panel, d, cfg, why, upstream), why, upstream)
        out.append(hit[2])
    r.previous["dead_layer"] = [cfg, r.key, out]
    r.previous["dead_layer why"] = found
    return out


def _knock_on_sources(r: _Rates, cfg: HealthConfig) -> list[str | None]:
    """Per layer (in the model's order), the nearest (nearly) constant layer before it (death rate at least
    ``dead_critical_rate``) with no healthy layer (below ``dead_rate``) in between, or None: the layer whose
    constant output makes this one's input (nearly) constant, so its silence is a knock-on. A NaN rate neither
    starts nor ends such a stretch.

    The module order is not the graph: in a residual network the input also comes through the skip path and
    varies (trial r13b: 'blocks.11.act', 46% dead like its neighbours, was told to revive 'blocks.10.act' first).
    A (nearly) constant input has a signature: each unit is active for the whole batch or for none of it, so the
    activation rate is 1 - the death rate; a layer whose units are partly active (activation + death rate below
    1 - ``KNOCK_ON_SPREAD``) sees a varying input, and is judged on its own."""
    sources: list[str | None] = []
    upstream: str | None = None
    critical, rate = cfg.dead_critical_rate, cfg.dead_rate
    for k, d in enumerate(r.values):
        sources.append(None if upstream is not None and r.acts[k] + d < 1 - KNOCK_ON_SPREAD else upstream)
        if d >= critical:
            upstream = r.layers[k][0]
        elif d < rate:  # a healthy layer: what comes after it has a varying input again
            upstream = None
    return sources


def _dead(layer: str, panel: str, d: float, cfg: HealthConfig, why: tuple[float, str, float] | None = None,
          upstream: str | None = None) -> Condition:
    critical = d >= cfg.dead_critical_rate
    rule = f"at least {pct(cfg.dead_rate)} for {cfg.dead_epochs} epochs"
    message = (f"{pct(d)} of its units stay silent for whole batches (dead layer: {rule}"
               f"{'; the layer is nearly constant' if critical else ''}).")
    advice = _CONSTANT_ADVICE if critical else _DEAD_ADVICE
    if upstream is not None:  # a knock-on: its input is (nearly) constant; the cause is upstream, not its width
        message += (f" Before it, {named(upstream)} is dead (at least {pct(cfg.dead_critical_rate)} silent), so "
                    "this layer's input is (nearly) the constant bias of the layer between: most likely why its "
                    "units are silent too.")
        advice = (f"revive {named(upstream)} first (its dead_layer finding says how); this layer's units fire "
                  "again only once its input varies, so dropout or a narrower layer here would not help")
    elif why is not None:  # the learning rate killed them: say so, first (its update_ratio finding may have ended)
        epoch, where, ratio = why
        message += (f" In epoch {epoch:g} the steps moved the weights of {named(where)} by {sci(ratio)} of their "
                    "norm on average (update_ratio: learning rate too high): steps that large can push a unit below "
                    "zero for every input, and dead units stop moving, so the ratio looks calm afterwards.")
        advice = ("lower the learning rate (by 10x to start: the steps that killed these units were far too large) "
                  "and restart from a fresh initialisation or weights saved before; LeakyReLU keeps a gradient on "
                  "silent units")
    return Condition("dead_layer", "critical" if critical else "warning", layer, panel, d, message, advice,
                     need=cfg.dead_epochs)


def dying_layer(view: RowView, cfg: HealthConfig) -> list[Condition]:
    r = _death_rates(view)
    # steps far too large earlier in the run (update_ratio's "learning rate too high"): dead_layer names them as
    # the cause of a layer at or above dead_rate and says to lower the learning rate; "more units than the task
    # uses" would contradict it there (trial r10)
    killed = any(d >= cfg.dead_rate for d in r.values) and overshoot(view, cfg) is not None
    out = r.unchanged("dying_layer", cfg)
    if out is None or r.previous.get("dying_layer killed") != killed:
        out = _dying(r, cfg, killed)
        r.previous["dying_layer"] = [cfg, r.key, out]
        r.previous["dying_layer killed"] = killed
    return out


def _dying(r: _Rates, cfg: HealthConfig, killed: bool = False) -> list[Condition]:
    values = r.values
    ranked = sorted(v for v in values if math.isfinite(v))
    if len(ranked) < 2:
        return []
    out = []
    # a candidate is at least dying_gap above a median that is >= 0 (the prefilter keeps this O(layers)); a
    # (nearly) constant layer is dead_layer's critical case: "more units than the task uses" would contradict it
    low, high, medians = _medians_without(ranked)
    gap, ratio, critical = cfg.dying_gap, cfg.dying_ratio, cfg.dead_critical_rate
    # a knock-on layer (dead_layer names it so) is not over capacity either; nor is a constant layer itself
    # (dead_layer's critical case)
    sources = _knock_on_sources(r, cfg)
    for k, d in enumerate(values):
        if sources[k] is not None or d >= critical or not (d >= gap and math.isfinite(d)) or (
                killed and d >= cfg.dead_rate):
            continue
        median = medians[0] if d <= low else medians[1] if d <= high else medians[2]
        if d >= median + gap and d >= ratio * median:
            out.append(Condition(
                "dying_layer", "warning", r.layers[k][0], r.panel, d,
                f"{pct(d)} of its units are silent for whole batches, far above the model's other layers "
                f"(median {pct(median)}).", _DYING_ADVICE.format(panel=r.panel), need=cfg.dying_epochs))
    return out


def _medians_without(ranked: list[float]) -> tuple[float, float, tuple[float, float, float]]:
    """The medians of the sorted finite values ``ranked`` with one of them left out, all of them at once:
    ``(low, high, (m0, m1, m2))``, where leaving out a value ``v`` of ``ranked`` leaves median ``m0`` if
    ``v <= low``, ``m1`` if ``low < v <= high``, else ``m2`` (there are at most three: leaving out the p-th
    value shifts the middle of the rest by one place when p is at or below it; p = ``bisect_left(ranked, v)``,
    and ``p <= i`` exactly when ``ranked[i] >= v``).

    Same float64 results as numpy (2.x), which averages the middle pair, or takes the middle value, as a sum
    started at 0.0 (so -0.0 reads 0.0). ``ranked`` must hold at least two values."""
    h = (len(ranked) - 1) // 2
    if len(ranked) % 2 == 0:  # an odd number of others: their middle one
        up, down = 0.0 + ranked[h + 1], 0.0 + ranked[h]  # p <= h, p > h
        return ranked[h], ranked[h], (up, up, down)
    # an even number of others: their middle pair; p < h, p == h, p > h
    return ranked[h - 1], ranked[h], ((0.0 + ranked[h] + ranked[h + 1]) / 2,
                                      (0.0 + ranked[h - 1] + ranked[h + 1]) / 2,
                                      (0.0 + ranked[h - 1] + ranked[h]) / 2)


def _median_without(ranked: list[float], value: float) -> float:
    """``np.median`` of the sorted finite values ``ranked`` with one occurrence of ``value`` (one of them) left
    out (:func:`_medians_without`)."""
    low, high, medians = _medians_without(ranked)
    return medians[0] if value <= low else medians[1] if value <= high else medians[2]


def dying_trend(view: RowView, cfg: HealthConfig) -> list[Condition]:
    r = _death_rates(view)
    start = view.row - cfg.dying_window + 1
    if start < 0 or not r.layers:
        return []
    loss_idx = view.train_loss()
    l0, l1 = float(view.data[start, loss_idx]), view.now(loss_idx)
    if not (finite(l0) and finite(l1)) or l0 == 0:
        return []
    improvement = (l0 - l1) / abs(l0)
    if improvement >= cfg.stalled_improvement:
        return []
    first = r.at(view, start)
    rise = cfg.dying_rise
    out = []
    for k, (d0, d1) in enumerate(zip(first, r.values)):
        if not d1 - d0 >= rise:  # NaN compares False
            continue
        out.append(Condition(
            "dying_trend", "warning", r.layers[k][0], r.panel, d1,
            f"its death rate rose from {pct(d0)} to {pct(d1)} over {cfg.dying_window} epochs while the "
            f"training loss {loss_change(l0, l1)}.", _TREND_ADVICE, since=view.epoch_of(start)))
    return out


def _accuracy_or_why(view: RowView, name: str | None) -> int | str:
    """The accuracy metric's column, or why it is missing (remembered like the column while columns stay)."""
    try:
        return view.accuracy(name)
    except Skipped as why:
        return str(why)


def confident_softmax(view: RowView, cfg: HealthConfig) -> list[Condition]:
    if not view.has(OUTPUT_ACTIVATIONS):
        raise Skipped("needs OutputActivation (the softmax output's activation rate)")
    softmaxes = view.memo(("softmax", None), lambda: [
        (g, i) for g, i, t in view.layers(OUTPUT_ACTIVATIONS, "activation_rate") if is_softmax(g, t)])
    if not softmaxes:
        return []
    acc_idx = view.memo(("accuracy", cfg.accuracy_metric), lambda: _accuracy_or_why(view, cfg.accuracy_metric))
    if isinstance(acc_idx, str):
        raise Skipped(acc_idx)
    acc = view.now(acc_idx)
    if not finite(acc) or acc >= cfg.low_accuracy:
        return []
    out = []
    for layer, idx in softmaxes:
        seen = view.scan(("first", idx), functools.partial(FirstFinite, idx))
        seen.advance(view.data, view.row + 1)
        rate = view.now(idx)
        if seen.count < 2 or not finite(rate):
            continue
        first = seen.first
        if rate <= cfg.confident_share * first:
            out.append(Condition(
                "confident_softmax", "warning", layer, OUTPUT_ACTIVATIONS, rate,
                f"its activation rate fell from {pct(first)} to {pct(rate)} (confident predictions, near one class "
                f"per sample) while validation accuracy is only {pct(acc)}.",
                "the model is confidently wrong: regularise (dropout before the output, label smoothing, weight "
                "decay), lower the learning rate, or check the labels"))
    return out
