"""The views room: everything that draws or writes the record, and the visualizer adapters.

Door in: the record's events and :mod:`monitorch_widget.record.protocol` (snapshot, deltas, filters).
``widget`` + ``sync`` (the live anywidget), ``static_picture`` (SVG for hosts without JavaScript),
``html_export`` (one offline file), ``bqplot_figures``, ``print`` (one line per epoch), ``resolve`` (the
``visualizer=`` argument), ``monitorch_adapter`` (our widget as a monitorch visualizer), and monitorch's other
visualizers: ``interface`` (AbstractVisualizer, DummyVisualizer, RecordView), ``tensorboard``,
``matplotlib_figures``, ``recorder`` (recorder / player on the JSON history).

Importing this package registers the record's conveniences (``Record.to_html``, ``Record.to_bqplot``,
displaying a record as a widget); the heavy imports (anywidget, bqplot, IPython) wait until first use.
"""

from __future__ import annotations

from typing import Any

from ..record import Record, offer


def _to_html(record: Record, path: Any, *, title: str | None = None) -> Any:
    from .html_export import to_html

    return to_html(record, path, title=title)


def _to_bqplot(record: Record, panel: str, *, group: str | None = None, runs: str = "all") -> Any:
    from .bqplot_figures import to_bqplot

    return to_bqplot(record, panel, group=group, runs=runs)


def _display(record: Record) -> None:
    from IPython.display import display

    from .widget import MonitorWidget

    display(MonitorWidget(record))


offer("to_html", _to_html)
offer("to_bqplot", _to_bqplot)
offer("display", _display)
