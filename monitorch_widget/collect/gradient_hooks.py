"""Gradient hooks: per parameter row, how many gradient entries are above eps.

Large parameters are reduced at their own post-accumulate-grad hook; small ones are queued and reduced
together once per backward pass by a :class:`GradientGroup` (one ``index_add_`` for all of them).
"""

from __future__ import annotations

import torch
from torch import nn

from .buffers import RowBuffer, fold_rate_rows
from .faults import FaultLog
from .hooks import Site, Unsupported
from .scratch import ScratchPool
from .streams import BankRow

_F32 = torch.float32


class GradientSite(Site):
    """Post-accumulate-grad hook: per parameter row (dim 0), how many gradient entries are above eps."""


    def __init__(self, name: str, module: nn.Module, param_name: str, param: nn.Parameter, lens: str,
                 faults: FaultLog, *, eps: float, keep_all: bool, group: GradientGroup | None = None,
                 slot: BankRow | None = None, pool: ScratchPool | None = None) -> None:
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
        self.row_size = 1
        self._register = lambda: param.register_post_accumulate_grad_hook(self.defer if self.group is not None else self)
        self.handle = self._register()

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
            buf.row_sizes[n] = self.row_size  # type: ignore[union-attr]
            buf.n = n + 1  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001
            grad = getattr(param, "grad", None)
            if grad is not None and grad.is_sparse:
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
            raise Unsupported("0-d parameter")
        if self.buf is not None and self.buf.n:
            self.buf.fold_rates(self.stream)
        self.rows = g.shape[0]
        self.row_size = g.numel() // max(self.rows, 1)
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
        slot_ids = [s.stream.index if isinstance(s.stream, BankRow) else -1 for s in sites]
        first = min(slot_ids)
        self.first_row = first if sorted(slot_ids) == list(range(first, first + len(sites))) and first >= 0 else None
        self.colsite = None
        if self.first_row is not None:
            self.colsite = torch.cat([torch.full((b - a,), sid - first, dtype=torch.long, device=device)
                                      for sid, (a, b, _) in zip(slot_ids, self.slices)])
            order = sorted(range(len(sites)), key=lambda j: slot_ids[j])
            self.scales_in_bank_order = [(self.slices[j][1] - self.slices[j][0], self.slices[j][2]) for j in order]


def _bank_order(pair: tuple[GradientSite, tuple[int, int, int]]) -> int:
    stream = pair[0].stream
    return stream.index if isinstance(stream, BankRow) else 0


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
            maybe = [s.param.grad for s in sites]
            grads = [g for g in maybe if g is not None and not g.is_sparse]
            if len(grads) != len(sites):
                for s, g in zip(sites, maybe):
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
            assert layout.first_row is not None  # implied by colsite
            bank.fold_block(layout.first_row, raw, valid,
                            [(channels, [k] * n) for channels, k in layout.scales_in_bank_order])
            buf.n = 0
            return
        # slots were handed out in definition order, sites sit in backward order: stage in slot order
        for site, (a, b, k) in sorted(zip(layout.sites, layout.slices), key=_bank_order):
            if at_tick and isinstance(site.stream, BankRow):
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

