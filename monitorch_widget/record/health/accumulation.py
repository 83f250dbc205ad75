"""Gradients that accumulate across optimizer steps: a forgotten ``optimizer.zero_grad()``.

Inputs: ParameterGradientGeometry's ``Weight Gradient Correlation`` (the cosine of each step's gradient with the
previous step's, averaged over the epoch; the epoch's first observation counts 0) and ``Weight Gradient Norm``
(epoch mean), per layer, and the run's optimizer step count at each row (``Run.steps``, counted by our
inspector; NaN where it is not: a run fed by monitorch's own inspector, an older history).

Without zeroing, the gradient a step uses is G_t = g_1 + ... + g_t, the sum of every gradient since the run
began (trial r15 s08). Consecutive sums differ by one batch's gradient, so their cosine is ~1 and an epoch of n
steps averages ~(n - 1) / n (0.908 with 11 steps; a healthy minibatch run: ~0.6 with SGD, towards 0 with
Adam), and the sum's norm grows with the number of steps summed: while the batches' gradients share a direction
m, the epoch mean of ||G_t|| is ~||m|| (S + (n + 1) / 2), S the steps before the epoch, so from one epoch to the
next it grows by the ratio ``summed_growth`` computes (2.83x from the first epoch to the second with 11 steps
each, 1.65x to the third). The check reads that signature in the run's first epochs, where the sum starts.

Full-batch training (the same data at every step) also has consecutive cosines near 1, and its gradient may grow
for a while as the loss sharpens: measured on digits with Adam, 1.2-1.9x per epoch in MLPs, and 2.5-5.4x from
the first epoch to the second in a CNN whose initial gradient is tiny, but then no more (0.6-1.0x to the third)
where a sum keeps growing (1.6-2.7x measured). Hence growth over two consecutive pairs of epochs, each by a
share of a sum's (``HealthConfig.accumulation_*``); a full-batch run whose gradient grows like a sum for three
epochs would still be taken for one.
"""

from __future__ import annotations

import math

import numpy as np

from .config import HealthConfig
from .finding import Condition
from .rows import GRADIENT_CORRELATION, GRADIENT_NORM, RowView, Skipped

#: fewest optimizer steps in an epoch for its mean correlation to say anything: the epoch's first step counts 0, so
#: with n steps the mean is at most (n - 1) / n; with fewer than 4 that bound (< 0.75) nears a healthy run's ~0.6
MIN_STEPS = 4

_ADVICE = ("call optimizer.zero_grad() (or model.zero_grad()) once per optimizer step, before the backward pass; "
           "when accumulating gradients over several batches on purpose, zero them after each optimizer.step()")


def summed_growth(before: float, n_prev: float, n: float) -> float:
    """How much the epoch mean of a running sum's norm grows from one epoch to the next while every step adds the
    same vector: (S + (n + 1) / 2) / (S - n_prev + (n_prev + 1) / 2), ``before`` = S the steps before the later
    epoch, ``n_prev`` / ``n`` the steps of the earlier / later epoch (the mean step index of each epoch; from the
    run's first epoch to its second, (3n + 1) / (n + 1) with n steps each: 2.83 with 11)."""
    return (before + (n + 1) / 2) / (before - n_prev + (n_prev + 1) / 2)


class _Onset:
    """Whether the run's first ``accumulation_epochs`` epochs with steps look like a running sum's (``onset``:
    (first row, last row, the smallest growth factor of a layer, the least a running sum grows by, the lowest
    correlation in the last row); None: they did not, or are not all recorded yet while ``done`` is False), and
    each layer's norm in the last of them (``reached``). Decided once: a forgotten zero_grad sums from the run's
    first step. Every epoch after the first must have its correlation near (n-1)/n (the first one's early sums,
    of a few batches, turn more: 0.82-0.89 in trial r15) and every layer's norm must have grown from the epoch
    before by ``accumulation_growth`` of what a running sum's does."""

    def __init__(self, corr: tuple[int, ...], norm: tuple[int, ...]) -> None:
        self.corr, self.norm = corr, norm
        self.done = False
        self.first: int | None = None  # the run's first row with a step (once read up to it)
        self.seen = 0  # rows searched for it
        self.onset: tuple[int, int, tuple[tuple[float, float], ...], float] | None = None
        self.reached: list[float] = []

    def judge(self, view: RowView, cfg: HealthConfig) -> None:
        if self.done:
            return
        steps, data = view.run.steps, view.data
        while self.first is None and self.seen <= view.row:
            if steps[self.seen] > 0:  # NaN compares False
                self.first = self.seen
            self.seen += 1
        first = self.first
        if first is None or view.row < first + cfg.accumulation_epochs - 1:
            return
        self.done = True
        last = first + cfg.accumulation_epochs - 1
        grew: list[tuple[float, float]] = []
        for row in range(first + 1, last + 1):
            n_prev = steps[row - 1] - (steps[row - 2] if row > 1 else 0.0)
            n = steps[row] - steps[row - 1]
            if not (n_prev >= MIN_STEPS and near(data[row], self.corr, n, cfg)):  # NaN compares False
                return
            q = summed_growth(steps[row - 1], n_prev, n)
            growth = self._growth(data, row, 1 + cfg.accumulation_growth * (q - 1))
            if growth is None:
                return
            grew.append((growth, q))
        close = min(v for v in data[last, list(self.corr)].tolist() if math.isfinite(v))
        self.onset = (first, last, tuple(grew), close)
        self.reached = data[last, list(self.norm)].tolist()

    def _growth(self, data: np.ndarray, row: int, need: float) -> float | None:
        """The smallest factor by which a layer's gradient norm grew from ``row - 1`` to ``row`` when every layer's
        (with a correlation in ``row``) grew by at least ``need``; else None."""
        least = math.inf
        for c, k in zip(self.corr, self.norm):
            if not math.isfinite(data[row, c]):
                continue
            before, after = float(data[row - 1, k]), float(data[row, k])
            if not (before > 0 and after >= need * before):  # NaN compares False
                return None
            least = min(least, after / before)
        return least if least < math.inf else None


def near(values: np.ndarray, corr: tuple[int, ...], n: float, cfg: HealthConfig) -> bool:
    """Whether an epoch of ``n`` steps (at least MIN_STEPS) has every layer's mean gradient correlation (of those
    with one in ``values``, at least one) at or above ``accumulation_correlation`` x (n - 1) / n."""
    if not (math.isfinite(n) and n >= MIN_STEPS):
        return False
    floor = cfg.accumulation_correlation * (n - 1) / n
    seen = [v for v in values[list(corr)].tolist() if math.isfinite(v)]
    return bool(seen) and all(v >= floor for v in seen)


def accumulating_gradient(view: RowView, cfg: HealthConfig) -> list[Condition]:
    if not (view.has(GRADIENT_CORRELATION) and view.has(GRADIENT_NORM)):
        raise Skipped("needs ParameterGradientGeometry with compute_correlation=True (its default): the gradient "
                      "correlation between consecutive steps")
    steps = view.run.steps
    if not math.isfinite(steps[view.row]):
        raise Skipped("needs the run's optimizer step count per epoch (counted by our PyTorchInspector, not by "
                      "monitorch's)", lasting=False)
    pairs = view.memo(("accumulation", None), lambda: _pairs(view))
    if not pairs:
        return []
    corr, norm = tuple(c for c, _ in pairs), tuple(k for _, k in pairs)
    key = ("accumulation", corr, norm, cfg.accumulation_correlation, cfg.accumulation_growth,
           cfg.accumulation_epochs)
    onset = view.scan(key, lambda: _Onset(corr, norm))
    onset.judge(view, cfg)
    if onset.onset is None or view.row < onset.onset[1]:
        return []
    first, last, grew, close = onset.onset
    row = view.values()
    # it holds while no layer's norm fell below the size it had grown to: a running sum that stops growing keeps
    # its size, and its direction may turn for an epoch (a CNN's sum under SGD: correlation 0.66 in one epoch)
    if any(math.isfinite(row[c]) and not row[k] >= size for c, k, size in zip(corr, norm, onset.reached)):
        return []
    now = [row[c] for c in corr if math.isfinite(row[c])]
    n = steps[last] - (steps[last - 1] if last else 0.0)
    epochs = [view.epoch_of(r) for r in range(first, last + 1)]
    seen = ", ".join(f"{g:.2f}x from epoch {a:g} to {b:g}" for (g, _), a, b in zip(grew, epochs, epochs[1:]))
    summed = ", ".join(f"{q:.2f}x" for _, q in grew)
    return [Condition(
        "accumulating_gradient", "warning", None, GRADIENT_CORRELATION, min(now) if now else None,
        f"consecutive steps' gradients pointed the same way in every watched layer (mean Weight Gradient Correlation "
        f"at least {close:.3f} in epoch {epochs[-1]:g}, near the (n-1)/n = {(n - 1) / n:.3f} an epoch of {n:g} steps "
        f"reaches at most) and every layer's gradient norm grew by at least {seen}, as a running sum of every step's "
        f"gradient since the run began does ({summed}). The gradients accumulate across optimizer steps \u2014 is "
        "optimizer.zero_grad() missing? (or gradient accumulation without zeroing)", _ADVICE,
        since=view.epoch_of(first))]


def _pairs(view: RowView) -> list[tuple[int, int]]:
    """(correlation column, gradient norm column) of every layer that has both (the lens' first line key)."""
    norms = view.first_line(GRADIENT_NORM)
    return [(c, norms[g]) for g, c in view.first_line(GRADIENT_CORRELATION).items() if g in norms]
