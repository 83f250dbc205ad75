"""``monitorch_widget.visualizer``: the visualizers by their public import path (see :mod:`.views`)."""

from .views.monitorch_adapter import WidgetVisualizer
from .views.print import PrintVisualizer
from .views.resolve import QuietVisualizer, resolve_visualizer

__all__ = ["PrintVisualizer", "QuietVisualizer", "WidgetVisualizer", "resolve_visualizer"]
