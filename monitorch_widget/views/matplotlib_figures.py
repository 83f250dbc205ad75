"""``MatplotlibVisualizer``: the record drawn as one matplotlib figure (needs ``matplotlib``).

monitorch's ``'matplotlib'`` visualizer keeps the values during training and composes one figure when
``show_fig()`` is called; code written for it calls ``inspector.visualizer.show_fig()`` and keeps the
returned ``Figure`` (``fig.savefig(...)``, a script's final picture). Ours keeps that contract, drawn from the
record: ``show_fig()`` returns a real ``matplotlib.figure.Figure`` of the current run, so the same code runs
(in a notebook the returned figure displays inline; the live widget stays available as
``inspector.widget``). Layout: each big panel (loss, metrics, warnings, comparisons) on its own row; each
per-layer panel as a row of small axes, one per layer (wrapping after ``max_columns``); lines with their
bands shaded, log scale where the lens asks (``TagAttributes.logy``), [0, 1] for probabilities.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..record import Record
from .interface import RecordView

try:
    import matplotlib.figure
except ImportError as exc:  # pragma: no cover - depends on the optional extra
    raise ImportError("MatplotlibVisualizer needs the 'matplotlib' package: pip install matplotlib") from exc

_UNIT = 2.0          # inches per small axes (height); width is 1.6x
_BAND_ALPHA = 0.2


class MatplotlibVisualizer(RecordView):
    """Collects the epochs; ``show_fig()`` draws them as one figure (``figure_``) and returns it.

    ``**kwargs`` go to ``matplotlib.figure.Figure`` (e.g. ``figsize=(12, 20)``, ``dpi=80``). The figure is
    composed at the first ``show_fig()`` and kept; ``reset_fig()`` drops it (and, when monitorch's inspector
    drives this visualizer, starts a new run for the next calls), so ``show_fig()`` draws again.
    """

    max_columns = 6

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self._kwargs = kwargs
        self.figure_: matplotlib.figure.Figure | None = None

    def on_tick(self) -> None:
        self.figure_ = None  # a new epoch: the next show_fig() draws it

    def _ensure_run(self) -> Record:
        self.figure_ = None
        return super()._ensure_run()

    def reset_fig(self) -> MatplotlibVisualizer:
        self.figure_ = None
        super().reset_fig()
        return self

    def show_fig(self) -> matplotlib.figure.Figure:
        """The figure of the current run (composed now unless already composed since the last epoch)."""
        if self.figure_ is None:
            self.figure_ = draw_run(self.record, max_columns=self.max_columns, **self._kwargs)
        return self.figure_


def _rows(record: Record, max_columns: int) -> list[tuple[str, list[str]]]:
    """(panel, groups on this row) in drawing order: big panels first, then per-layer panels."""
    run = record.current
    if run is None:
        return []
    rows: list[tuple[str, list[str]]] = []
    for big in (True, False):
        for panel in run.panels:
            if panel.big != big:
                continue
            groups = run.groups(panel.tag)
            if big:
                rows.append((panel.tag, groups))
            else:
                rows += [(panel.tag, groups[i:i + max_columns]) for i in range(0, len(groups), max_columns)]
    return rows


def draw_run(record: Record, *, max_columns: int = 6, **kwargs: Any) -> matplotlib.figure.Figure:
    """One figure of ``record``'s current run; an empty record gives a figure saying so."""
    rows = _rows(record, max_columns)
    run = record.current
    columns = max([1] + [len(g) for tag, g in rows if run is not None and not run.panel(tag).big])
    kwargs.setdefault("figsize", (columns * _UNIT * 1.6, max(1, len(rows)) * _UNIT * 1.15))
    kwargs.setdefault("layout", "constrained")  # leaves room for the run's title above the first row's titles
    fig = matplotlib.figure.Figure(**kwargs)
    if run is None or not rows:
        fig.text(0.5, 0.5, "no epoch recorded yet", ha="center", va="center")
        return fig
    fig.suptitle(run.label)
    grid = fig.add_gridspec(len(rows), columns)
    x = np.asarray(run.epochs[: run.final_rows], dtype=float)
    for r, (tag, groups) in enumerate(rows):
        panel = run.panel(tag)
        if panel.big:
            ax = fig.add_subplot(grid[r, :])
            for group in groups:
                _draw_group(ax, run, tag, group, x, label_group=len(groups) > 1)
            ax.set_title(tag, fontsize=9)
            _style(ax, panel, legend=True)
        else:
            for c, group in enumerate(groups):
                ax = fig.add_subplot(grid[r, c])
                _draw_group(ax, run, tag, group, x, label_group=False)
                ax.set_title(f"{tag}: {group}", fontsize=8)
                _style(ax, panel, legend=c == 0)
    return fig


def _draw_group(ax: Any, run: Any, tag: str, group: str, x: np.ndarray, label_group: bool) -> None:
    n = len(x)
    colors: dict[str, Any] = {}
    for col in run.columns:
        if col.panel != tag or col.group != group or col.role != "line":
            continue
        y = run.data[:n, col.index]
        label = f"{group} {col.key}" if label_group else col.key
        (line,) = ax.plot(x, y, marker="." if n < 30 else None, label=label)
        colors[col.key] = line.get_color()
    for col in run.columns:
        if col.panel != tag or col.group != group or col.role != "lo":
            continue
        lo, hi = run.data[:n, col.index], run.data[:n, col.index + 1]
        color = colors.get(col.band_of or "", "grey")
        ax.fill_between(x, lo, hi, color=color, alpha=_BAND_ALPHA, linewidth=0)


def _style(ax: Any, panel: Any, legend: bool) -> None:
    if panel.kind == "probability":
        ax.set_ylim(0, 1)
    elif panel.logy:
        ax.set_yscale("log")
    ax.set_xlabel("epoch", fontsize=8)
    ax.tick_params(labelsize=7)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
