"""``'widget'``: the live anywidget view of the record, and a monitorch-compatible visualizer.

``WidgetVisualizer()`` on its own (with its own record) implements monitorch's visualizer interface, so
``monitorch.inspector.PyTorchInspector(lenses, visualizer=WidgetVisualizer())`` drives our widget.
"""

from __future__ import annotations

import sys
from typing import Any

from ..record import Record
from .print import PrintVisualizer


def in_notebook() -> bool:
    """Whether the code runs in a notebook that shows widgets: a Jupyter kernel (JupyterLab, Notebook, VS Code,
    Colab) or a marimo notebook (``marimo edit`` / ``run`` / ``export``; not ``python notebook.py``)."""
    marimo = sys.modules.get("marimo")  # imported by the notebook itself: no import cost for anyone else
    if marimo is not None:
        try:
            if marimo.running_in_notebook():
                return True
        except Exception:  # noqa: BLE001, S110 - an older marimo without it: not detected, 'print' as before
            pass
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and (hasattr(shell, "kernel") or type(shell).__name__ == "ZMQInteractiveShell")


class WidgetVisualizer:
    def __init__(self, record: Record | None = None) -> None:
        self.record = record if record is not None else Record()
        self._widget: Any = None
        self._new_run = self.record.current is None

    def bind(self, record: Record) -> None:
        """Show ``record`` (an inspector's) instead of this visualizer's own, still unused one."""
        if self._widget is not None or self.record.runs:
            raise ValueError("this WidgetVisualizer already shows another record; create a new one")
        self.record = record
        self._new_run = False

    @property
    def widget(self) -> Any:
        if self._widget is None:
            from .widget import MonitorWidget

            self._widget = MonitorWidget(self.record)
        return self._widget

    def show_fig(self) -> Any:
        """In a notebook, show the live widget (once; it keeps updating); elsewhere print a summary."""
        if in_notebook():
            widget = self.widget
            if not getattr(widget, "_mw_displayed", False):
                from IPython.display import display

                display(widget)
            return widget
        PrintVisualizer(self.record).show_fig()
        return None

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # --- monitorch visualizer interface (used when monitorch's own inspector drives us) ------------
    def register_tags(self, main_tag: str, tag_attr: Any) -> None:
        self.record.register_tags(main_tag, tag_attr)

    def _ensure_run(self) -> None:
        if self._new_run:
            self._new_run = False
            self.record.start_run(f"run {len(self.record.runs) + 1}")

    def plot_numerical_values(self, epoch: int, main_tag: str, values_dict: Any, ranges_dict: Any = None) -> None:
        self._ensure_run()
        self.record.plot_numerical_values(epoch, main_tag, values_dict, ranges_dict)
        self._pump()

    def plot_probabilities(self, epoch: int, main_tag: str, values_dict: Any) -> None:
        self._ensure_run()
        self.record.plot_probabilities(epoch, main_tag, values_dict)
        self._pump()

    def plot_relations(self, epoch: int, main_tag: str, values_dict: Any) -> None:
        self._ensure_run()
        self.record.plot_relations(epoch, main_tag, values_dict)
        self._pump()

    def _pump(self) -> None:
        # monitorch's inspector never ends a row with a status event: each call is a monitor call on the
        # training thread, where the widget sends what waited (views/sync.py)
        if self._widget is not None:
            self._widget._mw_pump()

    def reset_fig(self) -> None:
        """monitorch calls this on detach: the next data starts a new run (old ones stay, drawn faint)."""
        self.record.end()
        self._new_run = True
