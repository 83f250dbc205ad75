"""Lenses: what to measure. Same names and arguments as ``monitorch.lens``."""

from .base import AbstractLens, TagAttributes, TagType
from .gradient_activation import ParameterGradientActivation
from .loss_metrics import LossMetrics
from .output_activation import OutputActivation
from .output_norm import OutputNorm

__all__ = [
    "AbstractLens",
    "LossMetrics",
    "OutputActivation",
    "OutputNorm",
    "ParameterGradientActivation",
    "TagAttributes",
    "TagType",
]
