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
its correlation is 0, like the first gradient of an epoch; ``reshaped`` counts those within an epoch, so that a
lens can say when they are more than a last batch (variable sequence lengths). An empty gradient (a batch of no rows) is no
observation. No host synchronisation: 4 small device ops per
observation (norm, inner product, the previous norm copied from the previous row, the copy of the gradient)
into a preallocated row of parts, finished for all rows at once at the fold (:mod:`.geometry`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from .compiled import in_graph, in_transform
from .faults import FaultLog
from .geometry import write_parts_one
from .hooks import Site
from .modes import monitor_mode
from .observation_rows import GeometryParts, ObservationRows
from .streams import BankRow


def first_tensor(out: Any) -> torch.Tensor | None:
    """The output tensor whose gradient is read: the output, or the first element of a tuple output (an RNN's
    output, not its hidden state); a ``PackedSequence`` (an RNN fed packed sequences) gives its packed data
    ``[total length, features]``."""
    if isinstance(out, (tuple, list)) and not isinstance(out, PackedSequence) and out:
        out = out[0]
    if isinstance(out, PackedSequence):
        out = out.data
    return out if isinstance(out, torch.Tensor) else None


class OutputGradientSite(Site):
    """Forward hook on one module; a tensor hook on its output reads the output's gradient."""

    def __init__(self, name: str, module: nn.Module, lens: str, faults: FaultLog, slot: BankRow,
                 rows: OutputGradientRows) -> None:
        super().__init__(name, lens, faults, rows.width, False, slot)
        self.slot = slot
        self.correlation = rows.correlation
        self.seen = False  # an output of this module required grad at least once
        self.shared = rows
        self.column = rows.add(self)
        self.previous: torch.Tensor | None = None
        self.before: torch.Tensor | None = None  # ||previous||: the previous observation's norm (a 0-d row view)
        self.observed = 0   # observations this epoch
        self.reshaped = 0   # ... of them after one of another shape this epoch (correlation 0 by definition)
        self.detached = 0   # calls under grad this epoch whose output did not require grad (frozen, nothing before)
        self.watch_forward(module)

    def __call__(self, module: nn.Module, args: Any, out: Any) -> Any:
        if in_graph():  # traced by dynamo: leave only this flag in the graph (collect/compiled.py)
            self.in_graph = True
            return
        if self.off or not torch.is_grad_enabled():
            return
        y = first_tensor(out)
        if y is None:
            first = out[0] if isinstance(out, (tuple, list)) and out else out
            self.fail(f"output is a {type(out).__name__}" + (f" whose first element is a {type(first).__name__}"
                      if first is not out else "") + "; OutputGradientGeometry reads the gradient of a tensor "
                      "output, of the first element of a tuple output, or of a PackedSequence's data. Leave this "
                      "module type out with an OutputGradientGeometry on the other modules, or wrap the module so "
                      "that it returns a tensor")
            return
        if y.requires_grad and not in_transform(y):  # a torch.func transform's gradient is not a training pass
            self.seen = True
            # the module returned its input (nn.Identity, a ResNet's shortcut; an in-place activation): a hook on
            # that tensor would read the gradient of every use of it, the input's (trial r14b: 4.78 for the
            # shortcut's 5.66). Its output becomes a view of its own, whose gradient is this use's only
            own = y.view_as(y) if y is out and any(a is y for a in args) else None
            (y if own is None else own).register_hook(self._on_gradient)
            return own  # None: the output stays as it is
        if not y.requires_grad:
            self.detached += 1
        return None

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
        if g.numel() == 0:  # a batch of no rows: no observation, and the previous gradient stays for the next
            return
        col = self.column
        rows = self.shared.rows_for(g.device)
        row = rows.next_row(col)
        out = rows.parts.scalars(row, col)
        if rows.parts.row_scale is not None:  # normalize_by_size: the RMS; a last smaller batch has its own size
            rows.parts.row_scale[row, col] = 1.0 / math.sqrt(max(g.numel(), 1))
        if self.correlation:
            prev = self.previous
            if prev is None or prev.shape != g.shape or prev.dtype != g.dtype or prev.device != g.device:
                if self.observed:
                    self.reshaped += 1
                prev = self.previous = torch.zeros_like(g)
                self.before = None
            write_parts_one(out, g, prev, self.before)
            self.before = out[0]
            prev.copy_(g)
        else:
            write_parts_one(out, g, None)
        rows.rows.present[row, col] = True
        self.observed += 1

    def flush(self) -> None:
        """Nothing of its own: the lens folds its :class:`OutputGradientRows` once for all its sites."""

    @monitor_mode
    def reset(self) -> None:
        """A new epoch: the previous gradient is zero again (monitorch's first correlation of an epoch is 0)."""
        if self.previous is not None:
            self.previous.zero_()
        self.before = None
        self.observed = self.reshaped = self.detached = 0

    def remove(self) -> None:
        super().remove()
        self.previous = None
        self.before = None


class _DeviceRows:
    """The rows of every site of one lens on one device: column ``i`` is site ``i``; each site fills its own
    rows from the top (its own row counter), so the buffer folds once for all of them."""

    CAPACITY = 32  # observations per site between folds (the 0-d views of used rows are kept: at most 3 per entry)

    @monitor_mode
    def __init__(self, owner: OutputGradientRows, device: torch.device) -> None:
        self.owner = owner
        self.sites = list(owner.sites)
        self.rows = ObservationRows([s.slot for s in self.sites], device, owner.width, capacity=self.CAPACITY)
        self.parts = GeometryParts(self.rows, owner.correlation, per_row_scale=owner.normalize)
        self.counts = [0] * len(self.sites)

    def next_row(self, col: int) -> int:
        row = self.counts[col]
        if row == self.rows.capacity:
            self.fold()
            row = 0
        self.counts[col] = row + 1
        if row >= self.rows.used:
            self.rows.used = row + 1
        return row

    @monitor_mode
    def fold(self) -> None:
        if not self.rows.used:
            return
        for site in self.sites:
            site.before = None  # its row is about to be reused
        self.parts.finish(None)
        self.rows.fold(self.sites[0].slot.bank)
        self.parts.moved({})
        self.counts = [0] * len(self.sites)


class OutputGradientRows:
    """Where the output-gradient sites of one lens write their observations (a :class:`_DeviceRows` per
    device they were seen on) and what each observation is: ``width`` = 2 with ``correlation``, else 1;
    ``normalize``: the RMS. The lens folds it at every tick (:meth:`flush`)."""

    def __init__(self, normalize: bool, correlation: bool) -> None:
        self.normalize = normalize
        self.correlation = correlation
        self.width = 2 if correlation else 1
        self.sites: list[OutputGradientSite] = []
        self.by_device: dict[torch.device, _DeviceRows] = {}

    def add(self, site: OutputGradientSite) -> int:
        """The column of a new site."""
        self.sites.append(site)
        return len(self.sites) - 1

    def rows_for(self, device: torch.device) -> _DeviceRows:
        rows = self.by_device.get(device)
        if rows is None or len(rows.sites) != len(self.sites):  # first on this device, or a site added since
            if rows is not None:
                rows.fold()
            rows = self.by_device[device] = _DeviceRows(self, device)
        return rows

    def flush(self) -> None:
        for rows in self.by_device.values():
            rows.fold()
