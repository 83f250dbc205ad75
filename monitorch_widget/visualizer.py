"""``monitorch_widget.visualizer``: monitorch's visualizer names, and ours (see :mod:`.views`).

Every name of ``monitorch.visualizer`` with the same signature. How each maps onto monitorch-widget is in the
README ("monitorch visualizers in monitorch-widget"). ``MatplotlibVisualizer`` and ``TensorBoardVisualizer``
are imported on first use (they need ``matplotlib`` / ``tensorboard``).
"""

from typing import TYPE_CHECKING, Any

from .lens.base import TagAttributes, TagType
from .views.interface import AbstractVisualizer, DummyVisualizer, RecordView
from .views.monitorch_adapter import WidgetVisualizer
from .views.print import PrintVisualizer
from .views.recorder import PlayerVisualizer, RecorderVisualizer
from .views.resolve import QuietVisualizer, resolve_visualizer

if TYPE_CHECKING:
    from .views.matplotlib_figures import MatplotlibVisualizer
    from .views.tensorboard import TensorBoardVisualizer

_OPTIONAL = {"MatplotlibVisualizer": ".views.matplotlib_figures", "TensorBoardVisualizer": ".views.tensorboard"}


def __getattr__(name: str) -> Any:
    if name in _OPTIONAL:
        import importlib

        return getattr(importlib.import_module(_OPTIONAL[name], __package__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AbstractVisualizer", "DummyVisualizer", "MatplotlibVisualizer", "PlayerVisualizer", "PrintVisualizer",
           "QuietVisualizer", "RecordView", "RecorderVisualizer", "TagAttributes", "TagType", "TensorBoardVisualizer",
           "WidgetVisualizer", "resolve_visualizer"]
