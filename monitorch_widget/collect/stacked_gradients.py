"""A layout's same-shape large gradients read together, a bounded chunk at a time (:mod:`.large_gradients`).

A transformer repeats its blocks: its watched weights come in a few shapes, several gradients each (the GPT
client of issue 12: 18 weights of 4 shapes). Read one by one, each costs four eager ops (``|g|``, its max,
``|g| > eps`` in place, the per-unit sum: :mod:`.large_gradients`), most of it per-op dispatch for gradients
of a few thousand elements. Here the gradients of one shape (and one unit layout) are stacked into a new
``[k, *shape]`` tensor, ``k`` at most ``CHUNK_ELEMENTS // numel`` (a chunk of at most 1 MiB of float32, the
only temporary), and the same four ops, each once per chunk, give every member's values: ``max |g|`` over each
member's own entries (so a NaN/inf in one member marks that member only), ``|g| > eps`` compared in the
gradients' dtype, float32 per-unit sums -- the same values as the one-by-one reads, bit for bit
(tests/test_stacked_gradients.py). Results go straight into the row when the members' columns (and check
entries) are equally spaced, as for one weight per repeated block (a strided view of the row); otherwise
through one ``index_copy_`` each.

A chunk of one, a gradient of more than half a chunk, and a chunk whose gradients do not share one dtype are
read one by one. Measured on one CPU thread, the GPT client's 18 gradients (fresh from a backward pass): see
benchmarks/README.md, "Fourth round".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .gradient_layout import Layout

_F32 = torch.float32
# elements of one stacked chunk: 1 MiB of float32 (2 MiB of float64), half of this CPU's L2 per core
CHUNK_ELEMENTS = 1 << 18

Entry = tuple[int, int, int, Any, Any, Any]  # Layout.plain's: (position, start, stop, view, dims, kept)


def _spacing(values: list[int]) -> int:
    """The common difference of ``values`` (at least two, increasing), or 0 where they are not equally spaced."""
    step = values[1] - values[0]
    return step if all(b - a == step for a, b in zip(values, values[1:])) else 0


class Chunk:
    """Up to ``CHUNK_ELEMENTS`` elements of same-shape gradients read by one set of ops."""

    def __init__(self, layout: Layout, members: list[Entry]) -> None:
        self.members = members
        self.positions = [m[0] for m in members]
        self.k = k = len(members)
        first = layout.sites[self.positions[0]].units
        shape = first.view if first.view is not None else first.shape
        self.view = (k, *shape)  # the stack as the units see it
        self.dims: tuple[int, ...] | None = tuple(d + 1 for d in first.dims) if first.dims else None
        units = first.units
        kept = [n for d, n in enumerate(shape) if d not in first.dims] if first.dims else [units]
        self.result = (k, *kept)  # the per-unit sums' shape
        inner = [1] * len(kept)  # contiguous strides of one member's [*kept] counts
        for d in range(len(kept) - 2, -1, -1):
            inner[d] = inner[d + 1] * kept[d + 1]
        self.inner = tuple(inner)
        starts = [m[1] for m in members]
        self.start, self.step = starts[0], _spacing(starts)
        self.first, self.check_step = self.positions[0], _spacing(self.positions)
        device = layout.device
        # unequal spacing: the results go through a [k * units] / [k] temporary and one index_copy_ each
        self.columns = (None if self.step else
                        torch.cat([torch.arange(a, b, device=device) for _, a, b, *_ in members]))
        self.places = (None if self.check_step else
                       torch.tensor(self.positions, dtype=torch.long, device=device))

    def read(self, layout: Layout, grads: list[torch.Tensor], counts: torch.Tensor, check: torch.Tensor) -> bool:
        """Write the members' counts and checks; False (nothing written) when their dtypes differ."""
        parts = [grads[i] for i in self.positions]
        dtype = parts[0].dtype
        for g in parts:
            if g.dtype is not dtype:
                return False
        magnitude = torch.stack(parts).abs_().view(self.view)  # the only temporary: one chunk
        f32 = dtype is _F32
        per_member = magnitude.view(self.k, -1)
        if self.places is None and f32:
            torch.amax(per_member, 1, out=_spaced(check, (self.k,), (self.check_step,), self.first))
        else:
            peak = torch.amax(per_member, 1)
            if not f32:  # 0 or NaN: a float64 max may exceed float32
                peak = torch.mul(peak, layout.zero_t)
            if self.places is None:
                _spaced(check, (self.k,), (self.check_step,), self.first).copy_(peak)
            else:
                check.index_copy_(0, self.places, peak.to(_F32))
        active = magnitude.gt_(layout.eps)
        if self.columns is None:
            out = _spaced(counts, self.result, (self.step, *self.inner), self.start)
            if self.dims is None:  # one element per unit
                out.copy_(active.view(self.result))
            elif f32:
                torch.sum(active, self.dims, out=out)
            else:
                torch.sum(active, self.dims, dtype=_F32, out=out)
        else:
            if self.dims is None:
                summed = active.reshape(-1)
            else:
                summed = torch.sum(active, self.dims, dtype=_F32).view(-1)
            counts.index_copy_(0, self.columns, summed.to(_F32))
        return True


def _spaced(row: torch.Tensor, shape: tuple[int, ...], strides: tuple[int, ...], start: int) -> torch.Tensor:
    """A view of ``row`` (1-D) from element ``start`` with ``shape`` and ``strides`` counted in its elements."""
    unit = row.stride(0)
    return row.as_strided(shape, tuple(s * unit for s in strides), row.storage_offset() + start * unit)


class GradientStacks:
    """A layout's plan: its unsharded large gradients as chunks of same-shape gradients and ``singles``, read
    one by one (``Layout.plain`` entries, in order)."""

    def __init__(self, layout: Layout) -> None:
        classes: dict[tuple[Any, ...], list[Entry]] = {}
        self.singles: list[Entry] = []
        for entry in layout.plain:
            spec = layout.sites[entry[0]].units
            if 2 * spec.units * spec.per_unit > CHUNK_ELEMENTS:
                self.singles.append(entry)
            else:
                classes.setdefault((spec.shape, spec.view, spec.dims), []).append(entry)
        self.chunks: list[Chunk] = []
        for members in classes.values():
            numel = layout.sites[members[0][0]].numel
            per_chunk = max(1, CHUNK_ELEMENTS // max(numel, 1))
            for c in range(0, len(members), per_chunk):
                part = members[c:c + per_chunk]
                if len(part) > 1:
                    self.chunks.append(Chunk(layout, part))
                else:
                    self.singles += part
        self.singles.sort(key=lambda e: e[0])
