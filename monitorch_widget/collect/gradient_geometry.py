"""Gradient geometry observations for the gradient reader: norms and correlations of parameter gradients.

Plugged into :class:`~.gradient_reading.GradientReader` as its layout kind, so *when* a gradient is read is
the reader's one definition (one observation per gradient use); this module says *what* a read computes:
per parameter, ||g|| (or RMS) and, with ``correlation``, <g_prev, g> / (||g_prev|| ||g|| + eps) where
g_prev is the parameter's previous *observation* (:mod:`.geometry`).

Memory with ``correlation``: two gradient-sized buffers per watched parameter (2x the watched parameters'
gradients). ``previous`` holds the last observation; ``spare`` holds the gradient as the latest read saw
it -- a read at the end of a backward pass is speculative, and becomes the observation (the buffers swap)
only when a step uses that gradient unchanged or no step uses it (decided on the host, later, when the
gradient itself may be gone). Without ``correlation``: only the rows (a few floats per observation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from .geometry import geometry_partials, norms, size_scale, write_parts
from .modes import monitor_mode
from .observation_rows import GeometryParts, ObservationRows
from .streams import StreamBank

if TYPE_CHECKING:
    from .gradient_site import GradientSite


class GradientGeometry:
    """The layout kind of a ``ParameterGradientGeometry`` lens' reader (and its correlation memory)."""

    def __init__(self, normalize: bool, correlation: bool) -> None:
        self.normalize = normalize
        self.correlation = correlation
        self.width = 2 if correlation else 1
        # id(site) -> [previous, spare, previous as a 1-D view, spare as a 1-D view]
        self.memory: dict[int, list[torch.Tensor]] = {}
        # id(site) -> how many times its previous buffer changed (a swap, a new pair, an epoch's zeroing): a
        # layout that did not see every change recomputes the previous norms instead of copying them
        self.changes: dict[int, int] = {}

    def new(self, sites: list[GradientSite], device: torch.device) -> GeometryLayout:
        groups = {id(s.shards.group): s.shards.group for s in sites if s.shards is not None and s.shards.group}
        if not groups:
            return GeometryLayout(self, sites, device)
        if len(groups) > 1 or any(s.shards is None or s.shards.group is None for s in sites):
            raise ValueError("a layout holds either unsharded parameters or parameters of one shard group")
        return ShardedGeometryLayout(self, sites, device, next(iter(groups.values())))

    @monitor_mode
    def buffers(self, site: GradientSite, g: torch.Tensor) -> list[torch.Tensor]:
        pair = self.memory.get(id(site))
        if pair is None or pair[0].shape != g.shape or pair[0].dtype != g.dtype or pair[0].device != g.device:
            previous, spare = (torch.zeros(g.shape, dtype=g.dtype, device=g.device) for _ in range(2))
            pair = self.memory[id(site)] = [previous, spare, previous.view(-1), spare.view(-1)]
            self.changes[id(site)] = self.changes.get(id(site), 0) + 1
        return pair

    @monitor_mode
    def reset(self) -> None:
        """A new epoch: the previous gradient is zero again (monitorch's first correlation of an epoch is 0)."""
        previous = [pair[0] for pair in self.memory.values()]
        if previous:
            torch._foreach_zero_(previous)
        for key in self.changes:
            self.changes[key] += 1

    def bytes_held(self) -> int:
        return sum(t.numel() * t.element_size() for pair in self.memory.values() for t in pair[:2])


class GeometryLayout(ObservationRows):
    """Rows of (norm[, correlation]) for one ordered set of parameters on one device. A read writes the parts
    (norms, inner products with the previous observations, their norms: 3 + n small ops); the fold finishes
    every row written since the last one at once (:class:`~.observation_rows.GeometryParts`)."""

    group: Any = None

    @monitor_mode
    def __init__(self, kind: GradientGeometry, sites: list[GradientSite], device: torch.device) -> None:
        super().__init__([s.bank_row for s in sites], device, kind.width)
        self.kind = kind
        self.sites = sites
        self.scale = size_scale([s.param for s in sites], kind.normalize, device)
        self.parts = GeometryParts(self, kind.correlation, self.group)
        # The norms of the sites' previous observations, not recomputed from the buffers: a read that becomes
        # the observation (mark) already wrote its norm into its row; ``marked`` lists those (row, position)
        # pairs not yet copied here, ``seen`` the kind's change count of each site as this tensor reflects it.
        self.before = torch.zeros(len(sites), dtype=torch.float32, device=device)
        self.marked: list[tuple[int, int]] = []
        self.seen: list[int] | None = None

    @monitor_mode
    def compute(self, grads: list[torch.Tensor]) -> int:
        """Write one row from ``grads`` (aligned with ``sites``, detached); returns the row number."""
        row, _ = self.next_row()
        parts = self.parts.rows_parts[row]
        if not self.kind.correlation:
            self.write(parts, grads, None, None)
            return row
        pairs = [self.kind.buffers(s, g) for s, g in zip(self.sites, grads)]
        previous = [p[2] for p in pairs]
        self.write(parts, grads, previous, self._before(previous))
        torch._foreach_copy_([p[1] for p in pairs], grads)
        return row

    def _before(self, previous: list[torch.Tensor]) -> torch.Tensor | None:
        """``before`` brought up to date with the buffers ``previous``: recomputed when a change happened
        elsewhere (another layout's mark, a new buffer, a new epoch), else the marked rows' norms copied."""
        changes = self.kind.changes
        now = [changes.get(id(s), 0) for s in self.sites]
        if now != self.seen:
            self.marked.clear()
            self.seen = now
            norms(previous, out=self.before)
        else:
            self._copy_marked()
        return self.before

    def _copy_marked(self) -> None:
        marked, self.marked = self.marked, []
        if not marked:
            return
        values = self.parts.parts
        rows = {r for r, _ in marked}
        if len(rows) == 1 and len(marked) == len(self.sites) and len({p for _, p in marked}) == len(marked):
            self.before.copy_(values[marked[0][0], 0])  # the usual step: every site marked in one row
            return
        for r, p in marked:  # in order: the last mark of a position wins
            self.before[p].copy_(values[r, 0, p])

    def write(self, parts: torch.Tensor, grads: list[torch.Tensor], previous: list[torch.Tensor] | None,
              before: torch.Tensor | None) -> None:
        write_parts(parts, grads, previous, before)

    def mark(self, row: int, pos: int, counted: bool = True) -> None:
        """The latest read of parameter ``pos`` (row ``row``) is its observation: it becomes the previous one."""
        super().mark(row, pos, counted)
        if self.kind.correlation:
            site = self.sites[pos]
            pair = self.kind.memory.get(id(site))
            if pair is not None:
                pair[0], pair[1], pair[2], pair[3] = pair[1], pair[0], pair[3], pair[2]
                self.kind.changes[id(site)] += 1
                if self.seen is not None:
                    self.seen[pos] += 1
                    self.marked.append((row, pos))

    @monitor_mode
    def fold(self, bank: StreamBank, keep: Sequence[int] = ()) -> dict[int, int]:
        self._copy_marked()  # before the rows are reused or moved
        self.parts.finish(self.scale)
        moved = super().fold(bank, keep)
        self.parts.moved(moved)
        return moved


class ShardedGeometryLayout(GeometryLayout):
    """FSDP2: each rank holds a shard of every gradient. Observations are written as additive parts (squared
    norms, inner products with the previous shard) and summed over the shard ``group`` before they become
    norms and correlations (:class:`~.observation_rows.GeometryParts`). Nothing is gathered."""

    @monitor_mode
    def __init__(self, kind: GradientGeometry, sites: list[GradientSite], device: torch.device, group: Any) -> None:
        self.group = group  # the reader skips provisional folds of a shard group's layouts (ranks refresh apart)
        super().__init__(kind, sites, device)

    def _before(self, previous: list[torch.Tensor]) -> torch.Tensor | None:
        return None  # a shard's parts are summed in place at the fold: its norms are recomputed

    def write(self, parts: torch.Tensor, grads: list[torch.Tensor], previous: list[torch.Tensor] | None,
              before: torch.Tensor | None) -> None:
        geometry_partials(parts, grads, previous)
