"""The update-to-weight ratio of every optimizer step: ||w_after - w_before|| / ||w_before|| per parameter.

CS231n ("Neural Networks Part 3", "Ratio of weights:updates") reads this ratio per step and expects ~1e-3; the
health check ``update_ratio`` (``record/health/gradients.py``) reads its epoch mean and max. It is measured
against the weights *before* each step: after a blow-up the weights at the tick can be orders of magnitude
larger than those the steps started from, and a ratio taken against them says nothing about the steps.

Computed on the device by :class:`~.parameter_reads.UpdateReader`: before its subtraction the reader's
snapshot holds w_before, so one ``torch._foreach_norm`` over the snapshot gives ||w_before|| (:meth:`begin`);
the update's norm is the one the reader writes anyway (row 0 of its parts), copied next to it
(:meth:`UpdateRatios.end`). The division happens at the fold, for every row at once, into
:class:`UpdateRatios`' own :class:`~.observation_rows.ObservationRows` (width 1), which fold into its own
:class:`~.streams.StreamBank`, reaching the host once per tick with the other banks. No host sync.
Parameters held in FSDP2 shards: both parts are squared norms of the local shards, summed over the shard
group at the fold (one collective, at the same row on every rank, like :class:`~.observation_rows.GeometryParts`),
and the shard group's rank 0 counts the observation. A parameter whose norm before the step is 0 gives a
non-finite ratio, counted as non-finite.
"""

from __future__ import annotations

from typing import Any

import torch

from .geometry import norms
from .modes import monitor_mode
from .observation_rows import ObservationRows
from .streams import BankRow, StreamBank


class _Rows:
    """One parameter group's ratio rows: ``parts`` [capacity, 2, sites] (update norm, weight norm before the
    step; squared for a sharded group), finished into ``rows.values`` at the fold."""

    def __init__(self, group: Any, slots: list[BankRow]) -> None:
        self.group = group
        self.rows = ObservationRows(slots, group.device, 1)
        self.parts = torch.zeros(self.rows.capacity, 2, max(len(slots), 1), dtype=torch.float32, device=group.device)
        # views made once: no indexing op per step; per row (update norms, weight norms before the step)
        self.row_views = [tuple(p.unbind(0)) for p in self.parts.unbind(0)]
        self.shards = group.parts.group  # the FSDP2 shard group, or None

    @monitor_mode
    def fold(self, bank: StreamBank) -> None:
        n = self.rows.used
        if n:
            parts = self.parts[:n]
            if self.shards is not None:
                torch.distributed.all_reduce(parts, group=self.shards)
                parts = parts.sqrt()
            torch.div(parts[:, 0], parts[:, 1], out=self.rows.values[:n, 0])
        self.rows.fold(bank)


class UpdateRatios:
    """The per-step ratios of one update reader's sites: a bank row per site, rows per parameter group.

    Per step and group: :meth:`begin` before the reader's subtraction, :meth:`end` after it; :meth:`flush`
    folds everything written."""

    def __init__(self) -> None:
        self.bank = StreamBank(1)
        self.slots: dict[int, BankRow] = {}  # id(site) -> its row in ``bank``
        self._rows: dict[int, _Rows] = {}  # id(group) -> its rows

    def add(self, site: Any) -> BankRow:
        row = self.slots[id(site)] = self.bank.add_row()
        return row

    def rows_of(self, sites: list[Any]) -> list[BankRow]:
        return [self.slots[id(s)] for s in sites if id(s) in self.slots]

    def _rows_for(self, group: Any) -> _Rows | None:
        found = self._rows.get(id(group))
        if found is not None and found.group is group:
            return found
        slots = [self.slots.get(id(s)) for s in group.sites]
        if any(s is None for s in slots):
            return None
        found = self._rows[id(group)] = _Rows(group, [s for s in slots if s is not None])
        return found

    @monitor_mode
    def begin(self, group: Any, before: list[torch.Tensor]) -> int | None:
        """Before the step's subtraction: the norms of the weights before the step (``before``: the snapshot,
        still holding them) into a new row; returns its number (None: the group is not measured)."""
        rows = self._rows_for(group)
        if rows is None:
            return None
        if rows.rows.full:
            rows.fold(self.bank)
        r, _ = rows.rows.next_row()
        out = rows.row_views[r][1]
        norms(before, out=out)
        if rows.shards is not None:
            out.square_()
        return r

    @monitor_mode
    def end(self, group: Any, r: int, update_norms: torch.Tensor, taken: list[bool] | None) -> None:
        """After it: the update's norms (row 0 of the reader's parts: raw, or squared for a sharded group),
        counted for every site of ``group`` or those ``taken`` marks (on the shard group's rank 0 only)."""
        rows = self._rows.get(id(group))
        if rows is None:
            return
        rows.row_views[r][0].copy_(update_norms)
        if group.counts_here:
            rows.rows.mark_taken(r, taken)

    def flush(self, current: list[Any]) -> None:
        """Fold every written row; forget the rows of groups no longer ``current``."""
        keep = {id(g) for g in current}
        for key, rows in list(self._rows.items()):
            if rows.rows.used:
                rows.fold(self.bank)
            if key not in keep:
                del self._rows[key]

    def clear(self) -> None:
        self._rows = {}
