"""Lenses: what to measure. Same names and arguments as ``monitorch.lens``.

Extension points: :func:`register_activation` (which modules count as activations) and
:func:`register_unit_axis` (which axis of a layer's weight holds its output units).
"""

from ..collect.units import register_unit_axis
from .base import AbstractLens, TagAttributes, TagType
from .gradient_activation import ParameterGradientActivation
from .kinds import register_activation
from .loss_metrics import LossMetrics
from .output_activation import OutputActivation
from .output_gradient_geometry import OutputGradientGeometry
from .output_norm import OutputNorm
from .parameter_gradient_geometry import ParameterGradientGeometry
from .parameter_norm import ParameterNorm
from .parameter_update_geometry import ParameterUpdateGeometry

__all__ = [
    "AbstractLens",
    "LossMetrics",
    "OutputActivation",
    "OutputGradientGeometry",
    "OutputNorm",
    "ParameterGradientActivation",
    "ParameterGradientGeometry",
    "ParameterNorm",
    "ParameterUpdateGeometry",
    "TagAttributes",
    "TagType",
    "register_activation",
    "register_unit_axis",
]
