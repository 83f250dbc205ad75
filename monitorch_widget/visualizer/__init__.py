"""Visualizers: views of the record (``'widget'``, ``'print'``) and adapters for user visualizers."""

from .print import PrintVisualizer
from .resolve import QuietVisualizer, resolve_visualizer
from .widget import WidgetVisualizer

__all__ = ["PrintVisualizer", "QuietVisualizer", "WidgetVisualizer", "resolve_visualizer"]
