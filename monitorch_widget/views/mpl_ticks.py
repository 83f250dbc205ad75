"""Tick marks of :mod:`.matplotlib_figures`' axes: whole epochs on x, readable log-10 y axes.

matplotlib's defaults put 0.25-epoch ticks on a 3-epoch axis, and on a log axis spanning less than a decade they
label the minor ticks (2, 3, 4 ... x 10^k) at the default font size, larger than the other labels and on top of
each other in a small axes. Here a log axis gets ours instead (the live widget's rule, js/logticks.ts): whole
decades when the view holds at least :data:`DECADES` of them, else the 1-2-5 values inside it, else evenly
spaced values; only major ticks are labelled, with as many labels as the axis height holds.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib import ticker

DECADES = 2.5  # a log view spanning at least this many decades is labelled at powers of ten only
LABEL_SIZE = 7  # tick label font size of every axis, log or linear, major or minor


def epoch_ticks(ax: Any) -> None:
    """Whole epochs on ``ax``'s x axis (never 0.75, 1.25 ...), as many as its width holds."""
    ax.xaxis.set_major_locator(EpochTicks())


def log_ticks(ax: Any) -> None:
    """``ax``'s y axis on a log scale with :class:`LogTicks`, labels the size of the linear axes' labels."""
    ax.set_yscale("log")
    locator = LogTicks()
    ax.yaxis.set_major_locator(locator)
    ax.yaxis.set_major_formatter(LogLabels(locator))
    ax.yaxis.set_minor_locator(ticker.LogLocator(subs="auto"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def format_value(v: float) -> str:
    """A tick value: up to 4 significant digits, ``m×10^k`` (mathtext) below 1e-3 or from 1e5 (js/axes.ts)."""
    if v == 0 or 1e-3 <= abs(v) < 1e5:
        return f"{v:.4g}"
    exp = math.floor(math.log10(abs(v)))
    mant = f"{v / 10.0 ** exp:.3g}"
    if mant in ("10", "-10"):  # rounding carried into the next decade
        exp, mant = exp + 1, mant[:-1]
    return f"$10^{{{exp}}}$" if mant == "1" else f"${mant}\\times10^{{{exp}}}$"


def _inside(ticks: Any, vmin: float, vmax: float) -> Any:
    """The ticks within the view (matplotlib's locators add one beyond each end), all if none is."""
    ticks = np.asarray(ticks, dtype=float)
    lo, hi = sorted((vmin, vmax))
    slack = (hi - lo) * 1e-9
    inside = ticks[(ticks >= lo - slack) & (ticks <= hi + slack)]
    return inside if len(inside) else ticks


class EpochTicks(ticker.MaxNLocator):
    """Whole numbers inside the view, as many as the axis length holds (``get_xticks()`` lists no epoch 0
    or 4 around a 1..3 run)."""

    def __init__(self) -> None:
        super().__init__(nbins="auto", integer=True, min_n_ticks=1)

    def tick_values(self, vmin: float, vmax: float) -> Any:
        return _inside(super().tick_values(vmin, vmax), vmin, vmax)


class LogTicks(ticker.Locator):
    """Major ticks of a log-10 axis: decades, 1-2-5 values or evenly spaced ones (module docstring);
    ``decades`` says which the last call chose (:class:`LogLabels` reads it)."""

    def __init__(self) -> None:
        self.decades = True

    def __call__(self) -> Any:
        lo, hi = self.axis.get_view_interval() if self.axis is not None else (1.0, 10.0)
        return self.tick_values(lo, hi)

    def _space(self) -> int:
        return max(2, min(9, int(self.axis.get_tick_space()))) if self.axis is not None else 5

    def tick_values(self, vmin: float, vmax: float) -> Any:
        vmin, vmax = sorted((float(vmin), float(vmax)))
        space = self._space()
        if not (vmin > 0 and math.isfinite(vmax)):  # no positive view (a log scale keeps one): no ticks
            return np.zeros(0)
        self.decades = math.log10(vmax / vmin) >= DECADES
        if self.decades:
            return _inside(ticker.LogLocator(numticks=space + 1).tick_values(vmin, vmax), vmin, vmax)
        every = np.asarray(ticker.LogLocator(subs=(1.0, 2.0, 5.0), numticks=99).tick_values(vmin, vmax))
        nice = every[(every >= vmin) & (every <= vmax)]
        if len(nice) >= 3:
            return np.asarray(nice[:: math.ceil(len(nice) / space)])
        ticks = _inside(ticker.MaxNLocator(nbins=space, steps=[1, 2, 2.5, 5, 10]).tick_values(vmin, vmax),
                        vmin, vmax)
        return ticks[ticks > 0]


class LogLabels(ticker.Formatter):
    """Labels of :class:`LogTicks`' ticks: ``10^k`` at decades, else :func:`format_value`."""

    def __init__(self, locator: LogTicks) -> None:
        self._locator = locator

    def __call__(self, x: float, pos: int | None = None) -> str:
        if not (x > 0 and math.isfinite(x)):
            return ""
        if self._locator.decades:
            exp = round(math.log10(x))
            return f"$10^{{{exp}}}$" if math.isclose(x, 10.0 ** exp, rel_tol=1e-9) else ""
        return format_value(x)
