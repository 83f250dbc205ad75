"""Intra-epoch updates: a provisional row for the running epoch every N steps or N seconds.

A "step" is a training forward pass of the attached model's root module. The refresh reuses the tick's
path (fold, one host copy, lens calls) without resetting anything, so the final row written by
``tick_epoch()`` is exactly what it would be without updates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .compiled import in_graph
from .faults import FaultLog
from .held_hooks import HeldHook


class IntraEpochUpdates:
    """Calls ``update()`` (the inspector's provisional refresh) every ``every`` steps (int) or seconds (float),
    counted from a forward pre-hook on the model's root module; a failure is reported to ``faults``."""

    def __init__(self, every: float, update: Callable[[], None], faults: FaultLog) -> None:
        if isinstance(every, bool) or not isinstance(every, (int, float)) or every <= 0:
            raise ValueError(f"update_every={every!r}: give a positive int (training steps) or float (seconds)")
        self.update = update
        self.faults = faults
        self.by_steps = isinstance(every, int)
        self.every = every
        self.steps = 0
        self.last = time.monotonic()
        self.handle: RemovableHandle | None = None

    def attach(self, model: nn.Module) -> None:
        self.handle = model.register_forward_pre_hook(HeldHook(self._on_forward))
        self.reset()

    def detach(self) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None

    def reset(self) -> None:
        self.steps = 0
        self.last = time.monotonic()

    def _on_forward(self, module: nn.Module, args: Any) -> None:
        if in_graph() or not (torch.is_grad_enabled() and module.training):
            return
        self.steps += 1
        if self.by_steps:
            due = self.steps % int(self.every) == 0
        else:
            due = time.monotonic() - self.last >= self.every
        if due and self.steps > 1:
            self.last = time.monotonic()
            try:
                self.update()
            except Exception as exc:  # noqa: BLE001
                self.faults.report("update_every", f"intra-epoch update failed with "
                                             f"{type(exc).__name__}: {exc}")
