"""A layout's gradients of more than ``SMALL`` elements, read one by one into their row (:mod:`.gradient_layout`).

Each costs four passes in eager mode: ``|g|`` (a new tensor), its max (the exact non-finite check: ``max |g|``
is NaN/inf iff some entry is; a sum of values is not exact, tests/test_nonfinite_check.py), ``|g| > eps`` in
place, and the per-unit sum. Measured on one CPU thread and rejected: ``torch.abs(g, out=scratch)`` into a
reusable buffer (no faster than a fresh tensor, and the buffer would hold memory between steps).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .sharding import rows_unit_aligned

if TYPE_CHECKING:
    from .gradient_layout import Layout

_F32 = torch.float32


def read_large(layout: Layout, grads: list[torch.Tensor], counts: torch.Tensor, check: torch.Tensor,
               skip: frozenset[int]) -> None:
    """Write the counts (columns of ``counts``, a [width] row) and check entries (``check``, [params]) of
    ``layout``'s large gradients (``grads`` aligned with its sites), except those in ``skip`` (read by the
    compiled row)."""
    eps = layout.eps
    for i, a, b, view, dims, kept in layout.plain:  # the usual large gradients: unsharded parameters'
        if i in skip:
            continue
        g = grads[i]
        magnitude = g.abs()
        f32 = g.dtype == _F32
        if f32:
            torch.amax(magnitude, out=check[i])
        elif g.numel():  # 0 or NaN: a float64 max may exceed float32
            torch.mul(torch.amax(magnitude), layout.zero_t, out=check[i])
        else:
            check[i].zero_()
        active = magnitude.gt_(eps)
        if view is not None:
            active = active.view(view)
        if dims is None:  # one element per unit
            counts[a:b].copy_(active.reshape(-1))
        elif f32:  # a float32 sum into the float32 row: no dtype= to parse (~0.5 us a call)
            torch.sum(active, dims, out=counts[a:b] if kept is None else counts[a:b].view(kept))
        else:
            torch.sum(active, dims, dtype=_F32, out=counts[a:b] if kept is None else counts[a:b].view(kept))
    for i in layout.sharded_large:
        if i in skip:
            continue
        g = grads[i]
        spec = layout.sites[i].units
        a, b = layout.columns[i]
        shards = layout.sites[i].shards
        magnitude = g.abs()
        if g.dtype == _F32 and layout.group is None:
            torch.amax(magnitude, out=check[i])
        elif g.numel():  # 0 or NaN: a float64 max may exceed float32, a shard group sums the entries
            torch.mul(torch.amax(magnitude), layout.zero_t, out=check[i])
        else:  # an empty local shard has no max
            check[i].zero_()
        active = magnitude.gt_(layout.eps)
        if shards is not None and shards.dim is not None:  # this rank's shard of a sharded gradient
            if rows_unit_aligned(spec, shards):  # whole units: a slice of the columns
                counts[a:b].zero_()
                a, b = a + shards.offset, a + shards.offset + shards.length
            elif i in layout.shard_index:  # a grouped unit layout: each element's global unit
                counts[a:b].zero_().index_add_(0, layout.shard_index[i], active.reshape(-1).to(_F32))
                continue
            # else: every unit has entries here (units along another dimension): partial counts
        if spec.view is not None:
            active = active.view(spec.view)
        if spec.dims:
            torch.sum(active, spec.dims, dtype=_F32, out=spec.counts_out(counts[a:b]))
        else:  # one element per unit
            counts[a:b].copy_(active.reshape(-1))
