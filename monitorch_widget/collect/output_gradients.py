"""The gradient with respect to a module's output, read by a tensor hook on that output.

monitorch registers a full module backward hook (``register_full_backward_hook``), which raises when the
next module modifies the output in place (``ReLU(inplace=True)``) and stops ``torch.compile`` from
compiling the frame. Here a forward hook registers a hook on the output tensor itself (the first tensor of
a tuple output, as monitorch reads ``grad_output[0]``); autograd calls it with dL/d(output) as it was
before any in-place change, once per backward pass through that call of the module -- the same observation
as monitorch's. Outputs that do not require grad (no backward will reach them) are not hooked.

Per observation (:mod:`.geometry`): ||g|| (or ||g|| / sqrt(numel), the RMS) and, with ``correlation``,
<g_prev, g> / (||g_prev|| ||g|| + eps) with the previous gradient of the same module. Memory with
``correlation``: one copy of the module's output gradient (the previous one). A gradient whose shape differs
from the previous one (a smaller last batch) has nothing to correlate with: the previous one is zeroed, so
its correlation is 0, like the first gradient of an epoch. No host synchronisation: ~12 small device ops
per observation into a preallocated row.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .compiled import in_graph
from .faults import FaultLog
from .geometry import write_geometry
from .hooks import Site
from .modes import monitor_mode
from .observation_rows import ObservationRows
from .streams import BankRow


def first_tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


class OutputGradientSite(Site):
    """Forward hook on one module; a tensor hook on its output reads the output's gradient."""

    def __init__(self, name: str, module: nn.Module, lens: str, faults: FaultLog, slot: BankRow, *,
                 normalize: bool, correlation: bool) -> None:
        super().__init__(name, lens, faults, 2 if correlation else 1, False, slot)
        self.slot = slot
        self.module_type = type(module).__name__
        self.normalize = normalize
        self.correlation = correlation
        self.width = 2 if correlation else 1
        self.seen = False  # an output of this module required grad at least once
        self.rows: ObservationRows | None = None
        self.previous: torch.Tensor | None = None
        self._register = lambda: module.register_forward_hook(self)
        self.handle = self._register()

    def __call__(self, module: nn.Module, args: Any, out: Any) -> None:
        if in_graph():  # traced by dynamo: leave only this flag in the graph (collect/compiled.py)
            self.in_graph = True
            return
        if self.off or not torch.is_grad_enabled():
            return
        y = first_tensor(out)
        if y is None:
            self.fail(f"output is a {type(out).__name__}, not a tensor; OutputGradientGeometry reads the gradient "
                      "of a tensor output (or of the first tensor of a tuple)")
            return
        if y.requires_grad:
            self.seen = True
            y.register_hook(self._on_gradient)

    def _on_gradient(self, grad: torch.Tensor) -> None:
        if self.off:
            return
        try:
            self._observe(grad)
        except Exception as exc:  # noqa: BLE001 - a monitor must never stop training
            self.fail(f"gradient hook failed with {type(exc).__name__}: {exc}")

    @monitor_mode
    def _observe(self, grad: torch.Tensor) -> None:
        g = grad.detach()
        rows = self.rows
        if rows is None or rows.device != g.device:
            if rows is not None:
                rows.fold(self.slot.bank)
            rows = self.rows = ObservationRows([self.slot], g.device, self.width)
        elif rows.full:
            rows.fold(self.slot.bank)
        row, values = rows.next_row()
        scale = 1.0 / math.sqrt(max(g.numel(), 1)) if self.normalize else None
        if self.correlation:
            prev = self.previous
            if prev is None or prev.shape != g.shape or prev.dtype != g.dtype or prev.device != g.device:
                prev = self.previous = torch.zeros_like(g)
            write_geometry(values, [g], [prev], scale)
            prev.copy_(g)
        else:
            write_geometry(values, [g], None, scale)
        rows.mark_all(row)

    def flush(self) -> None:
        if self.rows is not None:
            self.rows.fold(self.slot.bank)

    @monitor_mode
    def reset(self) -> None:
        """A new epoch: the previous gradient is zero again (monitorch's first correlation of an epoch is 0)."""
        if self.previous is not None:
            self.previous.zero_()

    def remove(self) -> None:
        super().remove()
        self.rows = None
        self.previous = None
