"""Values pushed explicitly (``push_loss`` / ``push_metric``) during an epoch.

Python numbers are kept as floats; tensors are kept as detached 0-d tensors on their device (pushing a
loss tensor costs no host sync). At the tick, :meth:`Pushes.streams` turns every name into a
:class:`~monitorch_widget.collect.streams.StatStream`, so pushed values travel to the host (and across ranks) in
the same single transfer as everything the hooks gathered.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

from .streams import StatStream
from .summary import Summary


def check_number(value: Any, argument: str) -> float | torch.Tensor:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{argument} must be a number or a 1-element tensor, got a tensor of shape "
                             f"{tuple(value.shape)}; reduce it first (e.g. .mean())")
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"{argument} must be real-valued, got a tensor of dtype {value.dtype}")
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
        self._streams: dict[str, StatStream] = {}
        self._summaries: dict[str, Summary] = {}

    def push(self, name: str, value: float | torch.Tensor) -> None:
        self.values.setdefault(name, []).append(value)

    def streams(self, names: list[str], device: torch.device | None) -> list[StatStream]:
        """One stream per name, in the given order (the same on every rank), holding this epoch's values."""
        self._streams = {}
        for name in names:
            stream = StatStream(1, keep_all=True)
            items = self.values.get(name, [])
            tensors = [v for v in items if isinstance(v, torch.Tensor)]
            home = tensors[0].device if tensors else (device or torch.device("cpu"))
            if items:
                col = torch.stack([v.to(home, torch.float64) if isinstance(v, torch.Tensor)
                                   else torch.tensor(v, dtype=torch.float64, device=home) for v in items])
            else:
                col = torch.empty(0, dtype=torch.float64, device=home)
            # An empty fold still allocates the stream, so every rank contributes the same layout.
            stream.fold(col[:, None], torch.isfinite(col))
            self._streams[name] = stream
        return list(self._streams.values())

    def set_summaries(self, summaries: dict[int, list[Summary]]) -> None:
        self._summaries = {name: summaries[id(s)][0] for name, s in self._streams.items()}

    def summary(self, name: str) -> Summary | None:
        s = self._summaries.get(name)
        return s if s is not None and (s.count or s.nonfinite) else None

    def reset(self) -> None:
        self.values = {}
        self._streams = {}
        self._summaries = {}
