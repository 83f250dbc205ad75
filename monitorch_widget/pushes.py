"""Values pushed explicitly (``push_loss`` / ``push_metric``) during an epoch.

Python numbers are kept as floats; tensors are kept as detached 0-d tensors on their device (pushing a
loss tensor costs no host sync) and copied to the host once, at the tick.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

from .aggregate import Summary


def check_number(value: Any, argument: str) -> float | torch.Tensor:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{argument} must be a number or a 1-element tensor, got a tensor of shape "
                             f"{tuple(value.shape)}; reduce it first (e.g. .mean())")
        if value.dtype == torch.bool or not (value.is_floating_point() or value.dtype.is_signed
                                             or value.dtype == torch.uint8):
            raise TypeError(f"{argument} must be numeric, got a tensor of dtype {value.dtype}")
        return value.detach().reshape(())
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{argument} must be a real number (int, float, numpy scalar or 1-element tensor), "
                        f"got {type(value).__name__}: {value!r}")
    return float(value)


class Pushes:
    def __init__(self) -> None:
        self.values: dict[str, list[float | torch.Tensor]] = {}

    def push(self, name: str, value: float | torch.Tensor) -> None:
        self.values.setdefault(name, []).append(value)

    def summary(self, name: str) -> Summary | None:
        items = self.values.get(name)
        if not items:
            return None
        tensors = [v for v in items if isinstance(v, torch.Tensor)]
        if tensors:
            host = iter(torch.stack([t.to(tensors[0].device, torch.float64) for t in tensors]).cpu().tolist())
            items = [next(host) if isinstance(v, torch.Tensor) else v for v in items]
        return Summary.of(np.asarray(items, dtype=np.float64))

    def reset(self) -> None:
        self.values = {}
