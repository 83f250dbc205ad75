"""monitorch-widget: live, in-notebook training diagnostics for PyTorch.

Drop-in for ``monitorch``: ``from monitorch_widget.inspector import PyTorchInspector`` and
``from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation, OutputNorm``
(and ``OutputGradientGeometry``, ``ParameterGradientGeometry``, ``ParameterNorm``, ``ParameterUpdateGeometry``).

Rooms (``ARCHITECTURE.md``): ``collect/`` (hooks, device accumulators) -> ``lens/`` (monitorch's lenses)
-> ``record/`` (the one store) -> ``views/`` (widget, static picture, export, print); ``inspector.py`` ties
them together.
"""

from . import views as _views  # noqa: F401 - registers the views' conveniences on Record
from .collect.faults import MonitorNotice, MonitorWarning
from .collect.rank_exchange import DistributedTickError
from .inspector import PyTorchInspector
from .record import HistoryFormatError, Record
from .record.health import Finding, HealthConfig
from .views.monitorch_adapter import WidgetVisualizer

__version__ = "0.1.0"


def load(path):
    """Read a history saved with ``inspector.save(path)`` (JSON, no pickle) into a :class:`Record`.

    Raises :class:`HistoryFormatError` naming what is wrong in a malformed or truncated file."""
    from .record.history_file import load as _load

    return _load(path)


__all__ = ["DistributedTickError", "Finding", "HealthConfig", "HistoryFormatError", "MonitorNotice", "MonitorWarning",
           "PyTorchInspector", "Record", "WidgetVisualizer", "__version__", "load"]
