"""ActivationSite: the forward hook of the output-activation lens, per batch and channel, on the output's device.

The hot path writes one row per call with ``out=`` (the check, the 0/1 mask in a pooled scratch, the per-channel
count); a new shape or dtype takes :meth:`ActivationSite._prepare` (the channel axis from the output's autograd
graph, :mod:`.feeders`). See :mod:`.hooks` for what every site shares.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .buffers import RowBuffer
from .compiled import in_graph, in_transform
from .faults import FaultLog
from .feeders import channels_last
from .hooks import Site, Unsupported
from .nested import is_nested, joined
from .passes import COUNT_ALL, COUNT_TRAINING, is_counted_pass
from .scratch import ScratchPool
from .streams import BankRow

_F32 = torch.float32
_MAX, _MAX_TIMES_0, _EMPTY = 0, 1, 2  # ActivationSite.check_how


class ActivationSite(Site):
    """Forward hook: per channel, how many output elements are above eps in this batch. An empty output (a batch
    of no rows) is no observation: it has no rate."""


    def __init__(self, name: str, module: nn.Module, lens: str, faults: FaultLog, *, pass_rule: int, eps: float,
                 channel_last: bool, nonneg: bool, keep_all: bool, slot: BankRow | None = None,
                 pool: ScratchPool | None = None) -> None:
        super().__init__(name, lens, faults, 2, keep_all, slot)
        self.pool = pool
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
        self.watch_forward(module)

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
            self._on_error(out, exc, module, args)

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

    def _on_error(self, out: Any, exc: Exception, module: nn.Module | None = None, args: Any = None) -> None:
        if is_nested(out) and module is not None:
            # nn.TransformerEncoder's eval fast path: its components joined into one dense output (collect/nested)
            try:
                dense = joined(out)
            except Exception as exc2:  # noqa: BLE001
                exc = exc2
            else:
                self(module, args, dense)
                return
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
