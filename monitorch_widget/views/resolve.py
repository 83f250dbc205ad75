"""Turn the ``visualizer=`` argument into the object the inspector talks to."""

from __future__ import annotations

from typing import Any

from ..record import Record
from .monitorch_adapter import WidgetVisualizer, in_notebook
from .print import PrintVisualizer

NAMES = ("widget", "print", "none")
INTERFACE = ("register_tags", "plot_numerical_values", "plot_probabilities", "plot_relations")


class QuietVisualizer:
    """``'none'``: record only (read ``inspector.history`` or display ``inspector.widget`` yourself)."""

    def __init__(self, record: Record) -> None:
        self.record = record

    def show_fig(self) -> None:
        PrintVisualizer(self.record).show_fig()




def resolve_visualizer(spec: Any, record: Record) -> Any:
    if spec is None or spec == "auto":
        spec = "widget" if in_notebook() else "print"
    if isinstance(spec, str):
        if spec == "widget":
            return WidgetVisualizer(record)
        if spec == "print":
            return PrintVisualizer(record)
        if spec in ("none", "dummy"):
            return QuietVisualizer(record)
        hint = ""
        if spec in ("matplotlib", "tensorboard"):
            hint = (f"; for monitorch's {spec} visualizer pass its object, e.g. "
                    f"visualizer=monitorch.visualizer.{spec.title()}Visualizer()")
        raise ValueError(f"visualizer={spec!r} is not a known visualizer name; accepted: "
                         f"{', '.join(repr(n) for n in NAMES)}, or an object with monitorch's visualizer "
                         f"methods ({', '.join(INTERFACE)}){hint}")
    missing = [m for m in INTERFACE if not callable(getattr(spec, m, None))]
    if missing:
        raise TypeError(f"visualizer={spec!r} lacks {', '.join(missing)}; pass 'widget', 'print', 'none' or an "
                        f"object implementing monitorch's visualizer interface ({', '.join(INTERFACE)})")
    return spec
