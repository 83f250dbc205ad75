"""``MatplotlibVisualizer``: the record drawn as one matplotlib figure (needs ``matplotlib``).

monitorch's ``'matplotlib'`` visualizer keeps the values during training and composes one figure when
``show_fig()`` is called; code written for it calls ``inspector.visualizer.show_fig()`` and keeps the
returned ``Figure`` (``fig.savefig(...)``, a script's final picture). Ours keeps that contract, drawn from the
record: ``show_fig()`` returns a real ``matplotlib.figure.Figure`` of the current run, so the same code runs
(in a notebook the returned figure displays inline; the live widget stays available as
``inspector.widget``).

Layout (constrained): one row (a subfigure) per big panel (loss, metrics, warnings, comparisons), its legend
outside the axes on the right; then one row per per-layer panel, a small axes per layer (wrapping after
``max_columns``, fewer when the figure is narrow), the panel's legend once above its first row. Lines with
their bands shaded in the line's colour, one legend entry per band (monitorch's ``'lo -- hi'`` label) and a
shading per band kind (Q1–Q3 darkest, ±σ lighter, min–max lightest with a dotted edge); whole epochs on x; log
scale where the lens asks (``TagAttributes.logy``, ticks of :mod:`.mpl_ticks`), [0, 1] for probabilities, the
panel's fixed range where it has one (correlations: [-1, 1], as in the widget). A ``figsize`` too short for
the rows is raised to ``min_row_height`` inches a row, with a warning once per visualizer.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from ..record import Record
from .interface import RecordView

try:
    import matplotlib.colors
    import matplotlib.figure
except ImportError as exc:  # pragma: no cover - depends on the optional extra
    raise ImportError("MatplotlibVisualizer needs the 'matplotlib' package: pip install matplotlib") from exc

from .mpl_ticks import LABEL_SIZE, epoch_ticks, log_ticks

_COLUMN_WIDTH = 3.2     # inches per small axes by default
_MIN_COLUMN_WIDTH = 2.2  # a narrower figsize wraps the layers into fewer columns
_ROW_HEIGHT = 2.3       # inches per row by default (a big panel's row: _BIG_ROW)
_BIG_ROW = 1.15
_LEGEND_HEIGHT = 0.3    # a per-layer panel's legend line above its first row
_TITLE_HEIGHT = 0.4     # the run's title
_MIN_WIDTH = 8.0        # the default width at least (a big panel's legend sits beside it)
# band kind (the lower edge's last word) -> (alpha, edge line style or None); others: _OTHER_BAND
_BANDS = {"Q1": (0.34, None), "-σ": (0.2, None), "min": (0.09, ":")}
_OTHER_BAND = (0.15, "--")


class MatplotlibVisualizer(RecordView):
    """Collects the epochs; ``show_fig()`` draws them as one figure (``figure_``) and returns it.

    ``**kwargs`` go to ``matplotlib.figure.Figure`` (e.g. ``figsize=(12, 20)``, ``dpi=80``). The figure is
    composed at the first ``show_fig()`` and kept; ``reset_fig()`` drops it (and, when monitorch's inspector
    drives this visualizer, starts a new run for the next calls), so ``show_fig()`` draws again.

    ``max_columns``: layers side by side at most. ``min_row_height`` (inches): a ``figsize`` whose height
    leaves a row less than this is drawn taller (warned once); ``0`` keeps the ``figsize`` as given.
    """

    max_columns = 6
    min_row_height = 1.5

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self._kwargs = kwargs
        self._said_size = False
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
            self.figure_ = draw_run(self.record, max_columns=self.max_columns, min_row_height=self.min_row_height,
                                    **self._kwargs)
            asked = self._kwargs.get("figsize")
            if asked is not None and not self._said_size:
                drawn = tuple(float(v) for v in self.figure_.get_size_inches())
                if drawn[1] > float(asked[1]) + 1e-6:
                    self._said_size = True
                    warnings.warn(
                        f"monitorch_widget: MatplotlibVisualizer(figsize={tuple(asked)}) leaves less than "
                        f"{self.min_row_height} in per row of panels, so titles, ticks and legends would overlap; "
                        f"drawn at figsize=({drawn[0]:g}, {drawn[1]:.1f}) instead. Pass a taller figsize, or set "
                        "visualizer.min_row_height = 0 to keep the figsize as given (said once).",
                        UserWarning, stacklevel=2)
        return self.figure_


def _rows(record: Record, max_columns: int) -> list[tuple[str, list[str], bool]]:
    """(panel, groups on this row, the panel's first row) in drawing order: big panels, then per-layer ones."""
    run = record.current
    if run is None:
        return []
    rows: list[tuple[str, list[str], bool]] = []
    for big in (True, False):
        for panel in run.panels:
            if panel.big != big:
                continue
            groups = run.groups(panel.tag)
            if big:
                rows.append((panel.tag, groups, True))
            else:
                rows += [(panel.tag, groups[i:i + max_columns], i == 0) for i in range(0, len(groups), max_columns)]
    return rows


def _layout(record: Record, max_columns: int, min_row_height: float, figsize: Any
            ) -> tuple[list[tuple[str, list[str], bool]], int, list[float], tuple[float, float]]:
    """(rows, columns, row heights, figsize): the user's width (fewer columns when narrow), a height of at
    least ``min_row_height`` per row."""
    run = record.current
    if figsize is not None:
        max_columns = max(1, min(max_columns, int(float(figsize[0]) // _MIN_COLUMN_WIDTH)))
    rows = _rows(record, max_columns)
    big = {tag: run.panel(tag).big for tag, _, _ in rows} if run is not None else {}
    columns = max([1] + [len(g) for tag, g, _ in rows if not big[tag]])
    heights = [_ROW_HEIGHT * (_BIG_ROW if big[tag] else 1.0) + (_LEGEND_HEIGHT if first and not big[tag] else 0.0)
               for tag, _, first in rows]
    if figsize is None:
        return rows, columns, heights, (max(_MIN_WIDTH, columns * _COLUMN_WIDTH), sum(heights) + _TITLE_HEIGHT)
    width, height = float(figsize[0]), float(figsize[1])
    if rows and min_row_height > 0:
        height = max(height, sum(heights) * min_row_height / _ROW_HEIGHT + _TITLE_HEIGHT)
    return rows, columns, heights, (width, height)


def draw_run(record: Record, *, max_columns: int = 6, min_row_height: float = 0.0,
             **kwargs: Any) -> matplotlib.figure.Figure:
    """One figure of ``record``'s current run; an empty record gives a figure saying so."""
    rows, columns, heights, kwargs["figsize"] = _layout(record, max_columns, min_row_height, kwargs.get("figsize"))
    kwargs.setdefault("layout", "constrained")  # room for titles, ticks and legends outside the axes
    fig = matplotlib.figure.Figure(**kwargs)
    run = record.current
    if run is None or not rows:
        fig.text(0.5, 0.5, "no epoch recorded yet", ha="center", va="center")
        return fig
    fig.suptitle(run.label)
    x = np.asarray(run.epochs[: run.final_rows], dtype=float)
    subfigs = fig.subfigures(len(rows), 1, height_ratios=heights, squeeze=False)[:, 0]
    scale = max(0.1, (kwargs["figsize"][1] - _TITLE_HEIGHT) / sum(heights))  # a row's inches per height unit
    for sub, (tag, groups, first), height in zip(subfigs, rows, heights):
        panel = run.panel(tag)
        if panel.big:
            ax = sub.add_subplot(1, 1, 1)
            for group in groups:
                _draw_group(ax, run, tag, group, x, label_group=len(groups) > 1)
            ax.set_title(tag, fontsize=9)
            _style(ax, panel)
            _legend_beside(ax, height * scale)
            continue
        grid = sub.add_gridspec(1, columns)
        axes = []
        for c, group in enumerate(groups):
            ax = sub.add_subplot(grid[0, c])
            _draw_group(ax, run, tag, group, x, label_group=False)
            ax.set_title(f"{tag}: {group}", fontsize=8)
            _style(ax, panel)
            axes.append(ax)
        if first:
            _legend_above(sub, axes, kwargs["figsize"][0])
    return fig


def _draw_group(ax: Any, run: Any, tag: str, group: str, x: np.ndarray, label_group: bool) -> None:
    """The group's lines, each followed by its bands (shaded in the line's colour, labelled)."""
    n = len(x)
    prefix = f"{group} " if label_group else ""
    mine = [c for c in run.columns if c.panel == tag and c.group == group]
    drawn: set[int] = set()
    for col in [c for c in mine if c.role == "line"]:
        (line,) = ax.plot(x, run.data[:n, col.index], marker="." if n < 30 else None, label=prefix + col.key,
                          zorder=3)
        for lo in [c for c in mine if c.role == "lo" and c.band_of == col.key]:
            _band(ax, run, lo, x, line.get_color(), prefix)
            drawn.add(lo.index)
    for lo in [c for c in mine if c.role == "lo" and c.index not in drawn]:  # a band without its line
        _band(ax, run, lo, x, "grey", prefix)


def _band(ax: Any, run: Any, lo: Any, x: np.ndarray, color: Any, prefix: str) -> None:
    hi = run.columns[lo.index + 1] if lo.index + 1 < len(run.columns) else None
    if hi is None or hi.role != "hi":
        return
    n = len(x)
    alpha, edge = _BANDS.get(lo.key.split(" ")[-1], _OTHER_BAND)
    rgb = matplotlib.colors.to_rgb(color)
    ax.fill_between(x, run.data[:n, lo.index], run.data[:n, hi.index], facecolor=(*rgb, alpha),
                    edgecolor=(*rgb, 0.7) if edge else "none", linestyle=edge or "-", linewidth=0.9 if edge else 0,
                    label=f"{prefix}{lo.key} -- {hi.key}", zorder=2)


def _style(ax: Any, panel: Any) -> None:
    if panel.kind == "probability":
        ax.set_ylim(0, 1)
    elif panel.ylim:  # a fixed range (correlations: [-1, 1]); the widget offers no log scale there either
        ax.set_ylim(*panel.ylim)
    elif panel.logy:
        log_ticks(ax)
    epoch_ticks(ax)
    ax.set_xlabel("epoch", fontsize=LABEL_SIZE)
    ax.tick_params(which="both", labelsize=LABEL_SIZE)
    ax.grid(alpha=0.3)


def _legend_beside(ax: Any, height: float) -> None:
    """A big panel's legend outside its axes on the right (in columns when it is taller than the row)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        per_column = max(1, int(height * 72 / (LABEL_SIZE * 1.9)) - 1)
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
                  fontsize=LABEL_SIZE, ncols=math.ceil(len(handles) / per_column))


def _legend_above(sub: Any, axes: list[Any], width: float) -> None:
    """A per-layer panel's legend once, above its first row (every entry of the row's axes, once)."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        widest = max(len(label) for label in entries) * LABEL_SIZE * 0.6 / 72 + 0.6  # inches, with its key
        ncols = max(1, min(len(entries), int(width * 0.95 // widest)))
        sub.legend(list(entries.values()), list(entries), loc="outside upper center", ncols=ncols,
                   fontsize=LABEL_SIZE, frameon=False)
