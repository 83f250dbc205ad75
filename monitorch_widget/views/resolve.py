"""Turn the ``visualizer=`` argument into the object the inspector talks to.

Names: ``'widget'``, ``'print'``, ``'none'`` / ``'dummy'`` (record only), ``'matplotlib'`` and
``'tensorboard'`` (monitorch's four names plus ours). Objects: our record views (``PrintVisualizer()``,
``MatplotlibVisualizer()``, ``RecorderVisualizer(path)``) are bound to the inspector's record; any other
object with monitorch's visualizer methods receives monitorch's calls at each tick.
"""

from __future__ import annotations

from typing import Any

from ..record import Record
from .interface import DummyVisualizer, RecordView
from .monitorch_adapter import WidgetVisualizer, in_notebook
from .print import PrintVisualizer

NAMES = ("widget", "print", "none", "dummy", "matplotlib", "tensorboard")
INTERFACE = ("register_tags", "plot_numerical_values", "plot_probabilities", "plot_relations")


class QuietVisualizer(DummyVisualizer):
    """``'none'`` / ``'dummy'``: record only (read ``inspector.history`` or display ``inspector.widget`` yourself).
    A :class:`DummyVisualizer` (monitorch's ``'dummy'`` class), so ``isinstance`` checks written for monitorch
    hold; the inspector sends it no calls (it reads the record)."""

    def __init__(self, record: Record) -> None:
        self.record = record

    def show_fig(self) -> None:
        PrintVisualizer(self.record).show_fig()


def _by_name(spec: str, record: Record) -> Any:
    if spec == "widget":
        return WidgetVisualizer(record)
    if spec == "print":
        return PrintVisualizer(record)
    if spec in ("none", "dummy"):
        return QuietVisualizer(record)
    if spec == "matplotlib":
        from .matplotlib_figures import MatplotlibVisualizer

        vis = MatplotlibVisualizer()
        vis.bind(record)
        return vis
    if spec == "tensorboard":
        from .tensorboard import TensorBoardVisualizer

        return TensorBoardVisualizer()
    raise ValueError(f"visualizer={spec!r} is not a known visualizer name; accepted: "
                     f"{', '.join(repr(n) for n in NAMES)}, or an object with monitorch's visualizer "
                     f"methods ({', '.join(INTERFACE)})")


def resolve_visualizer(spec: Any, record: Record) -> Any:
    if spec is None or spec == "auto":
        spec = "widget" if in_notebook() else "print"
    if isinstance(spec, str):
        return _by_name(spec, record)
    if isinstance(spec, RecordView) and not spec.bound and not spec.record.runs:
        spec.bind(record)  # an unused view of ours reads the inspector's record directly
        return spec
    if isinstance(spec, WidgetVisualizer) and spec._widget is None and not spec.record.runs:
        spec.bind(record)  # likewise an unused WidgetVisualizer() (not displayed yet)
        return spec
    missing = [m for m in INTERFACE if not callable(getattr(spec, m, None))]
    if missing:
        raise TypeError(f"visualizer={spec!r} lacks {', '.join(missing)}; pass one of "
                        f"{', '.join(repr(n) for n in NAMES)} or an object implementing monitorch's visualizer "
                        f"interface ({', '.join(INTERFACE)})")
    return spec


def reads_record(visualizer: Any, record: Record) -> bool:
    """The visualizer draws ``record`` itself (so the inspector must not also replay the calls into it)."""
    if isinstance(visualizer, (WidgetVisualizer, QuietVisualizer)):
        return visualizer.record is record
    return isinstance(visualizer, RecordView) and visualizer.bound and visualizer.record is record
