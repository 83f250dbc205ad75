"""Hook objects: one per (lens, module) or (lens, parameter), called by PyTorch on every batch.

Each site owns a :class:`~monitorch_widget.collect.buffers.RowBuffer` (allocated on first use, on the data's
device) and a :class:`~monitorch_widget.collect.streams.StatStream`. The ``__call__`` methods are the hot path:
see the invariants in :mod:`monitorch_widget.collect.streams`. Anything unusual (a new shape, a new device, a
non-tensor output) leaves the fast path through ``_slow``; any exception disables the site, reports once
through the lens' :class:`~monitorch_widget.collect.faults.FaultLog`, and training goes on.
"""


from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .buffers import RowBuffer
from .compiled import in_graph, in_transform
from .faults import FaultLog
from .feeders import channels_last
from .held_hooks import NotCopied
from .passes import COUNT_ALL, COUNT_TRAINING, is_counted_pass
from .scratch import ScratchPool
from .streams import BankRow, StatStream

_F32 = torch.float32
_MAX, _MAX_TIMES_0, _EMPTY = 0, 1, 2  # ActivationSite.check_how
#: ticks so far, of any inspector: a site's uncounted calls are those since the tick it last counted one at
TICKS = [0]

#: how many times any site was hidden or shown: what lenses keep about their shown sites is valid while it stays
VISIBILITY = [0]


class Site(NotCopied):
    """Common state of a hook object. ``off`` is the single flag the hot path checks."""

    #: False for a kind of site that never fills a RowBuffer (its rows live elsewhere): the tick skips it
    buffered = True

    def __init__(self, name: str, lens: str, faults: FaultLog, stream_width: int, keep_all: bool,
                 slot: BankRow | None = None) -> None:
        self.name = name
        self.lens = lens
        self.faults = faults
        # Rate sites share their lens' StreamBank through a slot; scalar sites own a stream.
        self.stream: StatStream | BankRow = slot if slot is not None else StatStream(stream_width, keep_all)
        self.scratch: torch.Tensor | None = None
        self.pool: ScratchPool | None = None
        # Registers this site's hook (again, after it was hidden); returns the hook's handle.
        self._register: Callable[[], RemovableHandle] | None = None
        self.buf: RowBuffer | None = None
        self.handle: RemovableHandle | None = None
        self.broken = False
        self.hidden = False
        self.active = True
        self.off = False
        #: calls the pass rule did not count (grad disabled, eval mode) since tick ``uncounted_at``: a module that
        #: never ran in a counted pass but has some ran all the same (a frozen backbone under no_grad); read with
        #: :meth:`uncounted_calls` (lens/silent.py). Stamped, not reset per tick: no loop over the sites at a tick
        self.uncounted = 0
        self.uncounted_at = 0
        # Set (by a store dynamo replays after each compiled call) when the hook was traced into a graph.
        self.in_graph = False

    def _update_off(self) -> None:
        self.off = self.broken or self.hidden or not self.active

    def set_active(self, active: bool) -> None:
        self.active = active
        self._update_off()

    def set_hidden(self, hidden: bool) -> None:
        """Hidden in the widget: the hook is removed (and registered again when shown)."""
        if hidden == self.hidden:
            return
        self.hidden = hidden
        VISIBILITY[0] += 1
        self._update_off()
        if hidden and self.handle is not None:
            self.handle.remove()
            self.handle = None
        elif not hidden and self.handle is None and self._register is not None:
            self.handle = self._register()

    def drop(self) -> None:
        """A call the pass rule does not count (the hook's early exit: grad disabled, eval mode)."""
        if self.uncounted_at != TICKS[0]:
            self.uncounted_at, self.uncounted = TICKS[0], 0
        self.uncounted += 1

    def uncounted_calls(self) -> int:
        """Calls dropped since the last tick."""
        return self.uncounted if self.uncounted_at == TICKS[0] else 0

    def fail(self, message: str) -> None:
        self.broken = True
        self._update_off()
        self.faults.report(self.lens, f"{self.name}: {message}; this series stops here, training goes on")

    def flush(self) -> None:
        """Tick: hand the buffer's filled rows to the bank; they fold on the host (collect/host_fold.py)."""
        if self.buf is not None and self.buf.n:
            self.buf.defer_rates(self.stream)

    def reset(self) -> None:
        """A new epoch (no device op: the rows are overwritten, the stream drops its moments)."""
        if self.buf is not None:
            self.buf.n = 0
        self.stream.reset()

    def remove(self) -> None:
        self._register = None
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
        self.buf = None
        self.scratch = None
        if self.pool is not None:
            self.pool.clear()


class ActivationSite(Site):
    """Forward hook: per channel, how many output elements are above eps in this batch. An empty output (a batch
    of no rows) is no observation: it has no rate."""


    def __init__(self, name: str, module: nn.Module, lens: str, faults: FaultLog, *, pass_rule: int, eps: float,
                 channel_last: bool, nonneg: bool, keep_all: bool, slot: BankRow | None = None,
                 pool: ScratchPool | None = None) -> None:
        super().__init__(name, lens, faults, 2, keep_all, slot)
        self.pool = pool
        self.module_type = type(module).__name__
        self.pass_rule = pass_rule
        self.eps = eps
        # A 0-d tensor: comparing with it skips wrapping a Python float on every call (several µs).
        self.eps_t = torch.tensor(eps, dtype=_F32)
        self.zero_t = torch.zeros((), dtype=_F32)
        self.channel_last = channel_last
        # the channel axis follows the layer that fed this output (collect/feeders.py), decided at the first call
        # of each shape; ``default_last`` (the definition-order guess) where the graph does not tell. Off when the
        # user chose the axis (channel_dim=, channel_last=True).
        self.auto_axis = False
        self.default_last = channel_last
        # what a graph said, per output rank: a no_grad pass at a shape never trained (another sequence length)
        # takes it too; a shared activation fed by a convolution and a linear layer differs in rank
        self._axis_of_rank: dict[int, bool] = {}
        self.axis_unsure = False  # the axis of the current shape came from no graph: the next graph decides
        self.nonneg = nonneg
        self.ndim = -1
        self.channels = -1
        self.cdim = -1 if channel_last else 1
        self.dims: int | tuple[int, ...] = ()  # an int when there is one: parsed faster than a tuple
        self.keepdim = False  # a 1-D output [batch] reduces to one value: keep it 1-D like its row
        # The output shape and dtype the fast path was prepared for (scratch view, elements per channel).
        self.shape: torch.Size | None = None
        self.dtype: torch.dtype | None = None
        self.check_how = _MAX  # how the NaN/Inf check is written for this shape and dtype (see __call__)
        self.row_size = 1
        self._register = lambda: module.register_forward_hook(self)
        self.handle = self._register()

    def __call__(self, module: nn.Module, args: Any, out: Any) -> None:
        if in_graph():  # traced by dynamo: leave only this flag in the graph (collect/compiled.py)
            self.in_graph = True
            return
        if self.off:
            return
        pass_rule = self.pass_rule
        if pass_rule == COUNT_TRAINING:
            if not (module.training and torch.is_grad_enabled()):
                self.drop()
                return
        elif pass_rule != COUNT_ALL and not is_counted_pass(pass_rule, module):
            self.drop()
            return
        try:
            y = out.detach() if out.requires_grad else out
            scratch = self.scratch
            if scratch is None or y.shape != self.shape or y.dtype != self.dtype or (
                    self.axis_unsure and out.grad_fn is not None):  # a first graph for an axis a no_grad pass guessed
                scratch = self._prepare(y, out)  # a new shape or dtype (or no pooled scratch): the slow path
            if self.check_how == _EMPTY:  # a batch of no rows (an expert no token reached): no observation
                return
            buf = self.buf
            n = buf.n  # type: ignore[union-attr]
            if n == buf.capacity:  # type: ignore[union-attr]
                buf.fold_rates(self.stream)  # type: ignore[union-attr]
                n = 0
            # The check: the largest |y| (y itself for a non-negative output, never -inf there), NaN/Inf iff
            # some element is -- a max cannot overflow, unlike a sum of large finite values. Float32 outputs
            # write it straight into the row (_MAX); other dtypes write max * 0 (_MAX_TIMES_0: 0 or NaN, as
            # a float64 max above float32's range would turn inf when stored).
            check = buf.checks[n]  # type: ignore[union-attr]
            how = self.check_how
            # The 0/1 mask stays in y's floating dtype: summing a bool tensor is a slow path on CPU.
            if self.nonneg:
                if how == _MAX:
                    torch.amax(y, out=check)
                else:
                    torch.mul(torch.amax(y), self.zero_t, out=check)
                mask = torch.gt(y, self.eps_t, out=scratch if scratch is not None else torch.empty_like(y))
            else:
                mask = torch.abs(y, out=scratch) if scratch is not None else y.abs()
                if how == _MAX:
                    torch.amax(mask, out=check)
                else:
                    torch.mul(torch.amax(mask), self.zero_t, out=check)
                mask.gt_(self.eps_t)
            # The rows are float32, so the count accumulates in float32 (a reduction with ``out=`` and no
            # ``dtype`` takes the output's dtype; passing dtype= costs ~1.5 us of argument parsing per call).
            torch.sum(mask, self.dims, keepdim=self.keepdim, out=buf.rows[n])  # type: ignore[union-attr]
            buf.row_sizes[n] = self.row_size  # type: ignore[union-attr]
            buf.n = n + 1  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001 - a monitor must never stop training
            self._on_error(out, exc)

    def _prepare(self, y: torch.Tensor, out: Any = None) -> torch.Tensor | None:
        """Ready the fast path for ``y``'s shape and dtype (``out``: the module's output, ``y`` detached from it);
        returns the scratch view for the mask (or None)."""
        if self.auto_axis and y.dim() >= 3:  # [B, C] has one reading; from 3-D on, ask what fed it
            key = y.dim()
            source = out if isinstance(out, torch.Tensor) else y
            last = channels_last(source)
            if last is None:  # no graph (a no_grad pass) or one it cannot read: a graph's answer for this rank,
                known = self._axis_of_rank.get(key)  # else the definition-order default
                self.axis_unsure = known is None and source.grad_fn is None
                last = self.default_last if known is None else known
            else:
                self._axis_of_rank[key] = last
                self.axis_unsure = False
            if last != self.channel_last:
                self.channel_last = last
                self.ndim = -1  # another channel axis: a new buffer layout
        if y.dim() != self.ndim or y.shape[self.cdim] != self.channels:
            self._reshape(y)  # another layout of channels: a new buffer (a new batch size keeps it)
        self.shape, self.dtype = y.shape, y.dtype
        self.check_how = _EMPTY if y.numel() == 0 else _MAX if y.dtype == _F32 else _MAX_TIMES_0
        self.row_size = y.numel() // self.channels if self.channels else 0
        scratch = self.scratch
        if (scratch is None or scratch.shape != y.shape or scratch.dtype != y.dtype) and self.pool is not None:
            scratch = self.scratch = self.pool.view(self, y)
        return scratch

    def _reshape(self, y: torch.Tensor) -> None:
        if not (y.is_floating_point() or y.is_complex()):
            raise Unsupported(f"output has dtype {y.dtype}; activation rates need a floating-point output")
        if y.dim() < 1:
            raise Unsupported("output is a 0-d tensor; activation rates need at least a batch dimension")
        if self.buf is not None and self.buf.n:
            self.buf.fold_rates(self.stream)
        dims: tuple[int, ...]
        if y.dim() == 1:
            # [batch] only: one neuron, rate over the batch.
            channels, cdim, dims = 1, 0, (0,)
        else:
            cdim = y.dim() - 1 if self.channel_last else 1
            channels = y.shape[cdim]
            dims = tuple(d for d in range(y.dim()) if d != cdim)
        self.ndim = y.dim()
        self.cdim = cdim if y.dim() > 1 else 0
        self.channels = channels
        self.dims = dims[0] if len(dims) == 1 else dims
        self.keepdim = y.dim() == 1
        if self.buf is None or self.buf.channels != channels or self.buf.device != y.device:
            self.buf = RowBuffer(channels, y.device)
        self.scratch = None

    def _on_error(self, out: Any, exc: Exception) -> None:
        if in_transform(out):
            # a call under a torch.func transform (per-sample gradients) is no training pass; its batched tensors
            # refuse the out= ops (checked here, off the hot path): skipped, the series goes on, and the next
            # ordinary call prepares its own shape again
            self.shape = None
            self.ndim = -1
            return
        if isinstance(out, torch.Tensor) and self.buf is not None and out.device != self.buf.device:
            # Model moved to another device after attach: start a buffer there, keep the epoch's stats.
            try:
                self.buf.fold_rates(self.stream)
                self.buf = RowBuffer(self.channels, out.device)
                self.ndim = -1
                self.shape = None
                return
            except Exception as exc2:  # noqa: BLE001
                exc = exc2
        if not isinstance(out, torch.Tensor):
            self.fail(f"output is a {type(out).__name__}, not a tensor; OutputActivation needs a tensor output"
                      " (exclude this module type or wrap it)")
        elif isinstance(exc, Unsupported):
            self.fail(str(exc))
        else:
            self.fail(f"hook failed with {type(exc).__name__}: {exc}")


class ScalarSite(Site):
    """One value per batch (a loss, an output norm); the row is the value itself."""


    def __init__(self, name: str, lens: str, faults: FaultLog, keep_all: bool) -> None:
        super().__init__(name, lens, faults, 1, keep_all)

    def slot(self, device: torch.device) -> torch.Tensor:
        """The 1-element row to write this batch's value into (``copy_`` broadcasts a 0-d tensor)."""
        buf = self.buf
        if buf is None or buf.device != device:
            if buf is not None and buf.n:
                buf.fold_scalars(self.stream)
            buf = self.buf = RowBuffer(1, device)
        elif buf.n == buf.capacity:
            buf.fold_scalars(self.stream)
        n = buf.n
        buf.n = n + 1
        return buf.rows[n]

    def flush(self) -> None:
        if self.buf is not None and self.buf.n:
            self.buf.defer_scalars(self.stream)


class Unsupported(Exception):
    pass

