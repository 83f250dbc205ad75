"""Hook objects: one per (lens, module) or (lens, parameter), called by PyTorch on every batch.

Each site owns a :class:`~monitorch_widget.accum.RowBuffer` (allocated on first use, on the data's
device) and a :class:`~monitorch_widget.accum.StatStream`. The ``__call__`` methods are the hot path:
see the invariants in :mod:`monitorch_widget.accum`. Anything unusual (a new shape, a new device, a
non-tensor output) leaves the fast path through ``_slow``; any exception disables the site, reports once
through the lens' :class:`~monitorch_widget.faults.FaultLog`, and training goes on.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .accum import RowBuffer, Slot, StatStream, fold_rate_rows
from .faults import FaultLog

_F32 = torch.float32

# Gates deciding whether a forward pass is a training pass.
GATE_GRAD_AND_MODE = 0  # default: grad enabled and module.training
GATE_GRAD = 1           # evaluation_from_grad=True
GATE_MODE = 2           # evaluation_from_grad=False
GATE_ALL = 3            # record_eval=True


def gate_for(record_eval: bool, evaluation_from_grad: bool | None) -> int:
    if record_eval:
        return GATE_ALL
    if evaluation_from_grad is None:
        return GATE_GRAD_AND_MODE
    return GATE_GRAD if evaluation_from_grad else GATE_MODE


def is_training_pass(gate: int, module: nn.Module) -> bool:
    if gate == GATE_GRAD_AND_MODE:
        return torch.is_grad_enabled() and module.training
    if gate == GATE_GRAD:
        return torch.is_grad_enabled()
    if gate == GATE_MODE:
        return module.training
    return True


class ScratchPool:
    """One flat mask buffer per (device, dtype), shared by a lens' sites, handed out as views.

    Sites write a 0/1 mask into their view and reduce it right away; hooks run one after another and
    kernels on one stream run in order, so one buffer serves every site. It saves an allocation (page
    faults on CPU) per hook call for the cost of one buffer as large as the largest hooked tensor, up to
    ``cap`` elements (bigger tensors use temporaries).
    """

    def __init__(self, cap: int = 1 << 22) -> None:
        self.cap = cap
        self.buffers: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        self.users: list[Site] = []

    def view(self, site: Site, like: torch.Tensor) -> torch.Tensor | None:
        numel = like.numel()
        if numel > self.cap:
            return None
        key = (like.device, like.dtype)
        buf = self.buffers.get(key)
        if buf is None or buf.numel() < numel:
            self.buffers[key] = buf = torch.empty(max(numel, 1024), dtype=like.dtype, device=like.device)
            for user in self.users:  # views of the old buffer would keep it alive
                user.scratch = None
            self.users = []
        self.users.append(site)
        return buf[:numel].view(like.shape)

    def clear(self) -> None:
        self.buffers = {}
        self.users = []


class Site:
    """Common state of a hook object. ``off`` is the single flag the hot path checks."""


    def __init__(self, name: str, lens: str, faults: FaultLog, stream_width: int, keep_all: bool,
                 slot: Slot | None = None) -> None:
        self.name = name
        self.lens = lens
        self.faults = faults
        # Rate sites share their lens' StreamBank through a slot; scalar sites own a stream.
        self.stream: StatStream | Slot = slot if slot is not None else StatStream(stream_width, keep_all)
        self.scratch: torch.Tensor | None = None
        self.pool: ScratchPool | None = None
        self._hook: Any = None  # registers this site's hook again; returns the handle
        self.buf: RowBuffer | None = None
        self.handle: Any = None
        self.broken = False
        self.hidden = False
        self.active = True
        self.off = False

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
        self._update_off()
        if hidden and self.handle is not None:
            self.handle.remove()
            self.handle = None
        elif not hidden and self.handle is None and self._hook is not None:
            self.handle = self._hook()

    def fail(self, message: str) -> None:
        self.broken = True
        self._update_off()
        self.faults.report(self.lens, f"{self.name}: {message}; this series stops here, training goes on")

    def flush(self) -> None:
        """Fold what the buffer holds. (A lens folds its rate sites in blocks instead: AbstractLens.flush.)"""
        if self.buf is not None and self.buf.n:
            self.buf.fold_rates(self.stream)

    def reset(self) -> None:
        if self.buf is not None:
            self.buf.n = 0
        self.stream.reset()

    def remove(self) -> None:
        self._hook = None
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
        self.buf = None
        self.scratch = None
        if self.pool is not None:
            self.pool.clear()


class ActivationSite(Site):
    """Forward hook: per channel, how many output elements are above eps in this batch."""


    def __init__(self, name: str, module: nn.Module, lens: str, faults: FaultLog, *, gate: int, eps: float,
                 channel_last: bool, nonneg: bool, keep_all: bool, slot: Slot | None = None,
                 pool: ScratchPool | None = None) -> None:
        super().__init__(name, lens, faults, 2, keep_all, slot)
        self.pool = pool
        self.module_type = type(module).__name__
        self.gate = gate
        self.eps = eps
        # A 0-d tensor: comparing with it skips wrapping a Python float on every call (several µs).
        self.eps_t = torch.tensor(eps, dtype=_F32)
        self.channel_last = channel_last
        self.nonneg = nonneg
        self.ndim = -1
        self.channels = -1
        self.cdim = -1 if channel_last else 1
        self.dims: tuple[int, ...] = ()
        self.all_dims: tuple[int, ...] = ()
        self._hook = lambda: module.register_forward_hook(self)
        self.handle = self._hook()

    def __call__(self, module: nn.Module, args: Any, out: Any) -> None:
        if self.off:
            return
        gate = self.gate
        if gate == GATE_GRAD_AND_MODE:
            if not (module.training and torch.is_grad_enabled()):
                return
        elif gate != GATE_ALL and not is_training_pass(gate, module):
            return
        try:
            y = out.detach()
            if y.dim() != self.ndim or y.shape[self.cdim] != self.channels:
                self._reshape(y)
            buf = self.buf
            n = buf.n  # type: ignore[union-attr]
            if n == buf.capacity:  # type: ignore[union-attr]
                buf.fold_rates(self.stream)  # type: ignore[union-attr]
                n = 0
            # The 0/1 mask stays in y's floating dtype: summing a bool tensor is a slow path on CPU.
            scratch = self.scratch
            if (scratch is None or scratch.shape != y.shape or scratch.dtype != y.dtype) and self.pool is not None:
                scratch = self.scratch = self.pool.view(self, y)
            if scratch is not None:
                mask = torch.gt(y, self.eps_t, out=scratch) if self.nonneg else \
                    torch.abs(y, out=scratch).gt_(self.eps_t)
            elif self.nonneg:
                mask = torch.gt(y, self.eps_t, out=torch.empty_like(y))
            else:
                mask = y.abs().gt_(self.eps_t)
            torch.sum(mask, self.dims, dtype=_F32, out=buf.rows[n])  # type: ignore[union-attr]
            torch.sum(y, self.all_dims, dtype=_F32, out=buf.checks[n])  # type: ignore[union-attr]
            buf.dens[n] = y.numel() // self.channels  # type: ignore[union-attr]
            buf.n = n + 1  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001 - a monitor must never stop training
            self._on_error(out, exc)

    def _reshape(self, y: torch.Tensor) -> None:
        if not (y.is_floating_point() or y.is_complex()):
            raise _Unsupported(f"output has dtype {y.dtype}; activation rates need a floating-point output")
        if y.dim() < 1:
            raise _Unsupported("output is a 0-d tensor; activation rates need at least a batch dimension")
        if self.buf is not None and self.buf.n:
            self.buf.fold_rates(self.stream)
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
        self.dims = dims
        self.all_dims = tuple(range(y.dim()))
        if self.buf is None or self.buf.channels != channels or self.buf.device != y.device:
            self.buf = RowBuffer(channels, y.device)
        self.scratch = None

    def _on_error(self, out: Any, exc: Exception) -> None:
        if isinstance(out, torch.Tensor) and self.buf is not None and out.device != self.buf.device:
            # Model moved to another device after attach: start a buffer there, keep the epoch's stats.
            try:
                self.buf.fold_rates(self.stream)
                self.buf = RowBuffer(self.channels, out.device)
                self.ndim = -1
                return
            except Exception as exc2:  # noqa: BLE001
                exc = exc2
        if not isinstance(out, torch.Tensor):
            self.fail(f"output is a {type(out).__name__}, not a tensor; OutputActivation needs a tensor output"
                      " (exclude this module type or wrap it)")
        elif isinstance(exc, _Unsupported):
            self.fail(str(exc))
        else:
            self.fail(f"hook failed with {type(exc).__name__}: {exc}")


class GradientSite(Site):
    """Post-accumulate-grad hook: per parameter row (dim 0), how many gradient entries are above eps."""


    def __init__(self, name: str, module: nn.Module, param_name: str, param: nn.Parameter, lens: str,
                 faults: FaultLog, *, eps: float, keep_all: bool, group: GradientGroup | None = None,
                 slot: Slot | None = None, pool: ScratchPool | None = None) -> None:
        super().__init__(name, lens, faults, 2, keep_all, slot)
        self.pool = pool
        self.param = param
        self.group = group if group is not None and param.numel() <= GradientGroup.SMALL else None
        self.module_type = type(module).__name__
        self.param_name = param_name
        self.eps = eps
        self.eps_t = torch.tensor(eps, dtype=_F32)
        self.rows = -1
        self.vector = param.dim() <= 1
        self.dims: tuple[int, ...] = tuple(range(1, param.dim()))
        self.all_dims: tuple[int, ...] = tuple(range(max(param.dim(), 1)))
        self.den = 1
        self._hook = lambda: param.register_post_accumulate_grad_hook(self.defer if self.group is not None else self)
        self.handle = self._hook()

    def defer(self, param: torch.Tensor) -> None:
        """Small parameters: queue for one batched pass over all of them at the end of backward."""
        if not self.off:
            self.group.add(self)  # type: ignore[union-attr]

    def __call__(self, param: torch.Tensor) -> None:
        if self.off:
            return
        try:
            g = param.grad
            if g is None:
                return
            if self.buf is None or g.shape[0] != self.rows or g.device != self.buf.device:
                self._reshape(g)
            buf = self.buf
            n = buf.n  # type: ignore[union-attr]
            if n == buf.capacity:  # type: ignore[union-attr]
                buf.fold_rates(self.stream)  # type: ignore[union-attr]
                n = 0
            scratch = self.scratch
            if (scratch is None or scratch.dtype != g.dtype) and self.pool is not None:
                scratch = self.scratch = self.pool.view(self, g)
            a = torch.abs(g, out=scratch) if scratch is not None else g.abs()
            if self.vector:
                torch.gt(a, self.eps_t, out=buf.rows[n])  # type: ignore[union-attr]
            else:
                torch.sum(a.gt_(self.eps_t), self.dims, dtype=_F32, out=buf.rows[n])  # type: ignore[union-attr]
            torch.sum(g, self.all_dims, dtype=_F32, out=buf.checks[n])  # type: ignore[union-attr]
            buf.dens[n] = self.den  # type: ignore[union-attr]
            buf.n = n + 1  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001
            if getattr(param, "grad", None) is not None and param.grad.is_sparse:
                self.fail("gradient is sparse; gradient activation needs dense gradients")
            else:
                self.fail(f"hook failed with {type(exc).__name__}: {exc}")

    def remove(self) -> None:
        super().remove()
        self.param = None  # type: ignore[assignment]
        if self.group is not None:
            self.group.clear()

    def _reshape(self, g: torch.Tensor) -> None:
        if g.dim() == 0:
            raise _Unsupported("0-d parameter")
        if self.buf is not None and self.buf.n:
            self.buf.fold_rates(self.stream)
        self.rows = g.shape[0]
        self.den = g.numel() // max(self.rows, 1)
        self.buf = RowBuffer(self.rows, g.device)


class _Layout:
    """One batched layout: which sites (in backward order) fill which column range of a shared buffer."""

    def __init__(self, sites: list[GradientSite], device: torch.device) -> None:
        self.sites = sites
        sizes = [s.param.numel() for s in sites]
        rows = [s.param.shape[0] if s.param.dim() else 1 for s in sites]
        self.slices: list[tuple[int, int, int]] = []  # (start, stop, elements per row)
        start = 0
        for size, r in zip(sizes, rows):
            self.slices.append((start, start + r, max(size // max(r, 1), 1)))
            start += r
        # index[e] = the buffer column (parameter row) that flat gradient element e belongs to
        self.index = torch.cat([torch.arange(a, b, device=device).repeat_interleave(k)
                                for (a, b, k) in self.slices])
        self.buf = RowBuffer(start, device)
        # Tick-time fold of every site at once needs the sites' slots to be consecutive: then column c of
        # the buffer belongs to the site of slot rank colsite[c] (built with device fills, no host copy).
        slot_ids = [s.stream.index if isinstance(s.stream, Slot) else -1 for s in sites]
        first = min(slot_ids)
        self.first_slot = first if sorted(slot_ids) == list(range(first, first + len(sites))) and first >= 0 else None
        self.colsite = None
        if self.first_slot is not None:
            self.colsite = torch.cat([torch.full((b - a,), sid - first, dtype=torch.long, device=device)
                                      for sid, (a, b, _) in zip(slot_ids, self.slices)])
            order = sorted(range(len(sites)), key=lambda j: slot_ids[j])
            self.scales_in_slot_order = [(self.slices[j][1] - self.slices[j][0], self.slices[j][2]) for j in order]


def _slot_order(pair: tuple[GradientSite, tuple[int, int, int]]) -> int:
    stream = pair[0].stream
    return stream.index if isinstance(stream, Slot) else 0


class GradientGroup:
    """Batches the gradient statistics of a lens' small parameters into a few ops per backward pass.

    Per-parameter hooks only queue their site; at the end of the backward pass (an autograd engine
    callback) all queued gradients are concatenated and reduced together: |g| > eps, then one
    ``index_add_`` gives every parameter row's count. Each distinct set of queued parameters (usually one
    per model) gets its own buffer layout; folding splits the buffer back into the sites' own streams.
    """

    SMALL = 1 << 14  # elements; bigger gradients are cheaper to reduce where they are

    def __init__(self, eps: float, faults: FaultLog, lens: str) -> None:
        self.eps_t = torch.tensor(eps, dtype=_F32)
        self.faults = faults
        self.lens = lens
        self.pending: list[GradientSite] = []
        self.queued = False
        self.layouts: dict[tuple[int, ...], _Layout] = {}
        self.broken = False

    def add(self, site: GradientSite) -> None:
        self.pending.append(site)
        if not self.queued:
            self.queued = True
            try:
                torch.autograd.Variable._execution_engine.queue_callback(self.process)
            except RuntimeError:  # not inside a backward pass (a hook called by hand): process now
                self.process()

    def process(self) -> None:
        sites, self.pending, self.queued = self.pending, [], False
        if not sites or self.broken:
            return
        try:
            grads = [s.param.grad for s in sites]
            if any(g is None or g.is_sparse for g in grads):
                for s, g in zip(sites, grads):
                    if g is not None:
                        s(s.param)  # the per-site path reports what is unusual
                return
            key = tuple(id(s) for s in sites)
            layout = self.layouts.get(key)
            device = grads[0].device
            if layout is None or layout.buf.device != device:
                layout = self.layouts[key] = _Layout(sites, device)
            buf = layout.buf
            n = buf.n
            if n == buf.capacity:
                self._fold(layout)
                n = 0
            flat = torch.cat([g.reshape(-1) for g in grads])
            torch.sum(flat, 0, dtype=_F32, out=buf.checks[n])  # before flat is overwritten in place
            row = buf.rows[n]
            row.zero_()
            row.index_add_(0, layout.index, flat.abs_().gt_(self.eps_t).to(_F32))
            buf.n = n + 1
        except Exception as exc:  # noqa: BLE001
            self.broken = True
            self.faults.report(self.lens, f"batched gradient statistics failed with {type(exc).__name__}: {exc}; "
                               "falling back to one hook per parameter")
            for s in sites:
                s.group = None
                if s.handle is not None:
                    s.handle.remove()
                    s.handle = s.param.register_post_accumulate_grad_hook(s)

    def _fold(self, layout: _Layout, at_tick: bool = False) -> None:
        buf = layout.buf
        n = buf.n
        if n == 0:
            return
        if at_tick and layout.colsite is not None:
            sites = len(layout.sites)
            rows = buf.data[:n]
            count = rows.new_zeros(n, sites).index_add_(1, layout.colsite, rows)
            dead = rows.new_zeros(n, sites).index_add_(1, layout.colsite, (rows == 0).to(rows.dtype))
            raw = torch.stack([count, dead], 2).transpose(0, 1)  # [sites (slot order), n, 2]
            valid = torch.isfinite(buf.check[:n]).expand(sites, n)
            bank = layout.sites[0].stream.bank  # type: ignore[union-attr]
            bank.fold_block(layout.first_slot, raw, valid,
                            [(channels, [k] * n) for channels, k in layout.scales_in_slot_order])
            buf.n = 0
            return
        # slots were handed out in definition order, sites sit in backward order: stage in slot order
        for site, (a, b, k) in sorted(zip(layout.sites, layout.slices), key=_slot_order):
            if at_tick and isinstance(site.stream, Slot):
                site.stream.fold_counts(buf.data[:n, a:b], [k] * n, buf.check[:n])
            else:
                fold_rate_rows(buf.data[:n, a:b], [k] * n, buf.check[:n], site.stream)
        buf.n = 0

    def flush(self) -> None:
        if self.pending:
            self.process()
        for layout in self.layouts.values():
            self._fold(layout, at_tick=True)

    def reset(self) -> None:
        for layout in self.layouts.values():
            layout.buf.n = 0

    def clear(self) -> None:
        self.pending = []
        self.queued = False
        self.layouts = {}


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
            self.buf.fold_scalars(self.stream)


class _Unsupported(Exception):
    pass
