"""Health checks on the record: what is wrong, where, since when, and what to try (README, "Health checks").

One module per group of checks (``layers.py``: dead / dying layers and confident softmax outputs;
``gradients.py``: vanishing / exploding gradients and the update-to-weight ratio; ``accumulation.py``: gradients
accumulating across optimizer steps (a forgotten ``zero_grad()``); ``loss.py``: non-finite
values, divergence, plateau, overfitting), the thresholds in ``config.py``, and ``monitor.py`` turning
conditions into findings that keep their id while they hold.
"""

from .config import CHECKS, HealthConfig
from .finding import Finding
from .monitor import HealthMonitor

__all__ = ["CHECKS", "Finding", "HealthConfig", "HealthMonitor"]
