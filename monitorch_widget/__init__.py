"""monitorch-widget: live, in-notebook training diagnostics for PyTorch.

Drop-in for ``monitorch``: ``from monitorch_widget.inspector import PyTorchInspector`` and
``from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation, OutputNorm``.
"""

from .faults import MonitorWarning
from .inspector import PyTorchInspector
from .record import Record
from .visualizer.widget import WidgetVisualizer

__version__ = "0.1.0"


def load(path):
    """Read a history saved with ``inspector.save(path)`` (JSON, no pickle) into a :class:`Record`."""
    from .io import load as _load

    return _load(path)


__all__ = ["MonitorWarning", "PyTorchInspector", "Record", "WidgetVisualizer", "__version__", "load"]
