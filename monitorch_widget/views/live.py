"""The inspector's live widget: built on first use, bound to the inspector, driven from the training thread.

No thread of ours sends (views/sync.py): every monitor call on the training thread (a tick, a push, a forward
pass of the model) *pumps* the widget, which sends what waited and runs the views' queued requests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..record import Record
from .monitorch_adapter import WidgetVisualizer


class LiveView:
    """``visualizer``: the inspector's own WidgetVisualizer if it was given one, else one is made on first use;
    ``on_recording(module, on)``: a view's stop / resume recording request (run on the training thread)."""

    def __init__(self, record: Record, visualizer: WidgetVisualizer | None,
                 on_recording: Callable[[str, bool], object]) -> None:
        self.record = record
        self.visualizer = visualizer
        self.on_recording = on_recording

    def widget(self) -> Any:
        """The live widget (one per inspector; display it any number of times). A widget the user closed is
        replaced by a fresh one showing the whole record."""
        if self.visualizer is None:
            self.visualizer = WidgetVisualizer(self.record)
        widget = self.visualizer.widget
        if widget.comm is None:
            self.visualizer._widget = None
            widget = self.visualizer.widget
        self._bind(widget)
        return widget

    @property
    def built(self) -> Any:
        """The widget if one was built, else None (never builds one)."""
        return self.visualizer._widget if self.visualizer is not None else None

    def _bind(self, widget: Any) -> None:
        if getattr(widget, "_mw_bound_to", None) is not self:
            widget._mw_bound_to = self
            widget.on_recording(self.on_recording)

    def pump(self) -> None:
        """A monitor call on the training thread (every forward pass of the model: two attribute reads when no
        widget was built)."""
        visualizer = self.visualizer
        if visualizer is None:
            return
        widget = visualizer._widget
        if widget is not None:
            self._bind(widget)
            widget._mw_pump()

    def flush(self) -> None:
        widget = self.built
        if widget is not None:
            widget.flush()

    def finish(self) -> None:
        """Training stopped (detach, the last tick of ``inspector.iter``): nothing may wait for a cell end."""
        sync = getattr(self.built, "_sync", None)
        if sync is not None:
            sync.finish()

    def close(self) -> None:
        widget = self.built
        if widget is not None:
            widget.close()
