"""Per-observation rows of a fixed set of sites on one device: what the geometry lenses write into.

An *observation* writes, for every site of the set at once, ``width`` float32 values (a norm, a correlation)
into one row of ``values`` [capacity, width, sites]; nothing is read on the host. The geometry readers write
the row's parts instead (:class:`GeometryParts`: norms, inner products, previous norms), and the fold turns
all new rows into values at once. Whether an entry counts is decided on the host (``present``): the
parameter-update readers mark whole rows at once, an output-gradient site its own entry (the sites of one
lens share the rows, each filling its own column from the top), the gradient reader marks a parameter's entry
when that gradient's use is decided (:mod:`.gradient_reading`). A full buffer, and every tick, folds the present entries into the lens'
:class:`~.streams.StreamBank` in a fixed number of device ops; an entry with a non-finite value counts as a
non-finite observation of that site only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .geometry import finish_geometry
from .modes import monitor_mode
from .streams import BankRow, StreamBank

_F32 = torch.float32
_BUFFER_BYTES = 256 * 1024
_MAX_ROWS = 256


class ObservationRows:
    """Preallocated rows for ``slots`` (one bank row per site, in order) on ``device``.

    Memory: ``capacity * len(slots) * width`` float32 values (at most 256 KiB, 256 rows) plus a host bool mask.
    """

    @monitor_mode
    def __init__(self, slots: Sequence[BankRow], device: torch.device, width: int, capacity: int | None = None) \
            -> None:
        self.slots = list(slots)
        self.device = device
        self.width = width
        n = max(len(self.slots), 1)
        self.capacity = capacity or max(4, min(_MAX_ROWS, _BUFFER_BYTES // (4 * n * width)))
        self.values = torch.zeros(self.capacity, width, n, dtype=_F32, device=device)
        self.rows = list(self.values.unbind(0))  # views made once: no indexing op per observation
        self.present = np.zeros((self.capacity, n), dtype=bool)
        self.bank_rows = torch.tensor([s.index for s in self.slots], dtype=torch.long, device=device)
        self.used = 0
        self.generation = 0  # bumped at every fold: row numbers handed out before it are stale

    @property
    def full(self) -> bool:
        return self.used == self.capacity

    def next_row(self) -> tuple[int, torch.Tensor]:
        """The next free row ([width, sites] view) and its number; the caller folds first when ``full``."""
        row = self.used
        self.used = row + 1
        return row, self.rows[row]

    def mark(self, row: int, pos: int, counted: bool = True) -> None:
        self.present[row, pos] = counted

    def mark_taken(self, row: int, taken: Sequence[bool] | None = None) -> None:
        """Row ``row`` is an observation of every site (``taken`` None) or of the sites ``taken`` marks."""
        if taken is None:
            self.present[row] = True
        else:
            self.present[row] |= np.asarray(taken, dtype=bool)

    @monitor_mode
    def fold(self, bank: StreamBank, keep: Sequence[int] = ()) -> dict[int, int]:
        """Fold the present entries into ``bank`` and empty the buffer (a new generation). Rows in ``keep``
        (still undecided) move to the front; returns their new row numbers."""
        n = self.used
        present = self.present[:n]
        if n and present.any():
            counted = torch.from_numpy(np.ascontiguousarray(present.T)).to(self.device, non_blocking=True)
            values = self.values[:n].permute(2, 0, 1)  # [sites, n, width]
            valid = torch.isfinite(values).all(2)
            bank.fold_rows(self.bank_rows, [s.index for s in self.slots], values, valid, counted)
        self.present[:n] = False
        moved = {old: new for new, old in enumerate(sorted(set(keep)))}
        for old, new in moved.items():
            if old != new:
                self.values[new].copy_(self.values[old])
        self.used = len(moved)
        self.generation += 1
        return moved


class GeometryParts:
    """The parts of geometry observations (:mod:`.geometry`) before they become values: written per
    observation, finished at the fold for every new row at once.

    ``parts`` [capacity, 1 or 3, sites] float32: raw norms, and with a correlation inner products and the
    previous tensor's norms (:func:`.geometry.write_parts`), or, for tensors held in shards (FSDP2, a shard
    ``group``), the squared norms and inner products of the local shards (:func:`.geometry.geometry_partials`).
    :meth:`finish` (right before ``rows.fold``) sums shard parts over the group -- one collective, which every
    rank reaches at the same row: the tick, a full buffer -- and writes the rows' values with
    :func:`.geometry.finish_geometry`."""

    @monitor_mode
    def __init__(self, rows: ObservationRows, correlation: bool, group: Any = None, per_row_scale: bool = False) \
            -> None:
        self.rows = rows
        self.group = group
        self.parts = torch.zeros(rows.capacity, 3 if correlation else 1, max(len(rows.slots), 1), dtype=_F32,
                                 device=rows.device)
        self.rows_parts = list(self.parts.unbind(0))  # views made once: no indexing op per observation
        self.rows_views = [tuple(p.unbind(0)) for p in self.rows_parts]  # and each row's parts ([sites] each)
        # per_row_scale: each row's normalize_by_size factor, set by the writer (tensors whose size varies)
        self.row_scale = np.ones(self.parts[:, 0].shape, dtype=np.float32) if per_row_scale else None
        self.done = 0  # rows [0, done) hold finished values (and, sharded, summed parts)
        self._scalars: dict[tuple[int, int], list[torch.Tensor]] = {}

    def scalars(self, row: int, pos: int) -> list[torch.Tensor]:
        """The 0-d views of the parts of site ``pos`` in row ``row`` (made on first use, then kept)."""
        views = self._scalars.get((row, pos))
        if views is None:
            views = self._scalars[(row, pos)] = list(self.rows_parts[row][:, pos].unbind(0))
        return views

    @monitor_mode
    def finish(self, scale: torch.Tensor | float | None) -> None:
        """Write the values of the rows written since the last call (sharded: summed over the group first).
        ``scale``: the ``normalize_by_size`` factors ([sites]) or None; ``row_scale`` overrides it."""
        n = self.rows.used
        if n > self.done:
            parts = self.parts[self.done:n]
            if self.group is not None:
                torch.distributed.all_reduce(parts, group=self.group)
            if self.row_scale is not None:
                scale = torch.from_numpy(self.row_scale[self.done:n]).to(self.rows.device, non_blocking=True)
            finish_geometry(self.rows.values[self.done:n].transpose(0, 1), parts.transpose(0, 1), scale,
                            squared=self.group is not None)
            self.done = n

    def moved(self, moved: dict[int, int]) -> None:
        """``rows.fold`` kept rows ``moved`` (old -> new): their parts move with them."""
        for old, new in moved.items():
            if old != new:
                self.parts[new].copy_(self.parts[old])
                if self.row_scale is not None:
                    self.row_scale[new] = self.row_scale[old]
        self.done = len(moved)
