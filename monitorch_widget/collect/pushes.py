"""Values pushed explicitly (``push_loss`` / ``push_metric``) during an epoch.

Python numbers are kept as floats; tensors are kept as detached 0-d tensors on their device (pushing a
loss tensor costs no host sync). At the tick, :meth:`Pushes.streams` hands every name's values to its
:class:`~monitorch_widget.collect.streams.StatStream`: floats fold on the host directly, tensors ride the tick's
single copy to the host with everything the hooks gathered (and across ranks, the same exchange).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Collection
from typing import Any

import numpy as np
import torch

from .faults import MonitorWarning
from .streams import Pending, StatStream
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


def checked_metric(name: Any, value: Any, declared: Collection[str], losses: Collection[str],
                   warned: set[str]) -> float | torch.Tensor:
    """``push_metric(name, value)``'s arguments checked: ``TypeError`` for a non-str name, :func:`check_number`'s
    errors for the value; a name neither ``declared`` (the lenses' metrics) nor a loss name is warned about once
    (``warned``) with the declared ones: the likely typo."""
    if not isinstance(name, str):
        raise TypeError(f"push_metric(name=...) must be a str, got {type(name).__name__}")
    number = check_number(value, f"push_metric({name!r}, value)")
    if name not in declared and name not in losses and name not in warned:
        warned.add(name)
        names = ", ".join(sorted(declared)) or "(none)"
        warnings.warn(f"push_metric({name!r}): no lens declared this metric, so it is not plotted; declared "
                      f"metrics: {names}. Add it with LossMetrics(metrics=[...]) if it is not a typo.",
                      MonitorWarning, stacklevel=3)
    return number


class Pushes:
    """This epoch's pushed values per name, and one :class:`StatStream` per name that folds them at the tick
    (made once per name: the tick allocates nothing per name)."""

    def __init__(self) -> None:
        self.values: dict[str, list[float | torch.Tensor]] = {}
        self._streams: dict[str, StatStream] = {}
        self._summaries: dict[int, list[Summary]] = {}

    def push(self, name: str, value: float | torch.Tensor) -> None:
        self.values.setdefault(name, []).append(value)

    def streams(self, names: list[str]) -> list[StatStream]:
        """One stream per name, in the given order (the same on every rank), holding this epoch's values:
        Python floats as one host array, tensors as they are (they ride the tick's copy to the host)."""
        out = []
        for name in names:
            stream = self._streams.get(name)
            if stream is None:
                stream = self._streams[name] = StatStream(1, keep_all=True)
            stream.reset()
            items = self.values.get(name, ())
            if not items:
                out.append(stream)
                continue
            floats = [[v] for v in items if not isinstance(v, torch.Tensor)]
            if floats:  # one row per value: a batch is valid iff its value is finite
                stream.defer(Pending("scalars", 0, ((np.array(floats, dtype=np.float64), None),)))
            if len(floats) < len(items):
                for v in items:
                    if isinstance(v, torch.Tensor):
                        stream.defer(Pending("scalars", 0, ((v.reshape(1, 1), None),)))
            out.append(stream)
        return out

    def set_summaries(self, summaries: dict[int, list[Summary]]) -> None:
        # looked up when asked for (a lens reads a few names): the tick builds no summary of a name nobody reads
        self._summaries = summaries

    def summary(self, name: str) -> Summary | None:
        stream = self._streams.get(name)
        found = self._summaries.get(id(stream)) if stream is not None else None
        s = found[0] if found else None
        return s if s is not None and (s.count or s.nonfinite) else None

    def reset(self) -> None:
        self.values = {}
        self._summaries = {}
