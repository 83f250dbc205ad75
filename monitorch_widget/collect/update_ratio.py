"""The update-to-weight ratio of every optimizer step: ||w_after - w_before|| / ||w_before|| per parameter.

CS231n ("Neural Networks Part 3", "Ratio of weights:updates") reads this ratio per step and expects ~1e-3; the
health check ``update_ratio`` (``record/health/gradients.py``) reads its epoch mean and max. It is measured
against the weights *before* each step: after a blow-up the weights at the tick can be orders of magnitude
larger than those the steps started from, and a ratio taken against them says nothing about the steps.

Computed on the device by :class:`~.parameter_reads.UpdateReader`: before its subtraction the reader's
snapshot holds w_before, so one ``torch._foreach_norm`` over the snapshot gives ||w_before||; the update's
norm is the one the reader writes anyway (the raw norm of its row's parts); one division writes the ratios
into a row of :class:`UpdateRatios`' own :class:`~.observation_rows.ObservationRows` (width 1), which fold
into its own :class:`~.streams.StreamBank`, reaching the host once per tick with the other banks. No host
sync. Not measured for parameters held in FSDP2 shards (their norms are partial sums until the fold): no
observation. A parameter whose norm before the step is 0 gives a non-finite ratio, counted as non-finite.
"""

from __future__ import annotations

from typing import Any

import torch

from .geometry import norms
from .modes import monitor_mode
from .observation_rows import ObservationRows
from .streams import BankRow, StreamBank


class UpdateRatios:
    """The per-step ratios of one update reader's sites: a bank row per site, rows per parameter group.

    ``rows_for(group)`` gives the :class:`ObservationRows` of a group of sites (made on first use, kept while
    the group is current); :meth:`write` takes one step's norms; :meth:`flush` folds everything written."""

    def __init__(self) -> None:
        self.bank = StreamBank(1)
        self.slots: dict[int, BankRow] = {}  # id(site) -> its row in ``bank``
        self._rows: dict[int, tuple[Any, ObservationRows]] = {}  # id(group) -> (group, its rows)

    def add(self, site: Any) -> BankRow:
        row = self.slots[id(site)] = self.bank.add_row()
        return row

    def rows_of(self, sites: list[Any]) -> list[BankRow]:
        return [self.slots[id(s)] for s in sites if id(s) in self.slots]

    def _rows_for(self, group: Any) -> ObservationRows | None:
        found = self._rows.get(id(group))
        if found is not None and found[0] is group:
            return found[1]
        slots = [self.slots.get(id(s)) for s in group.sites]
        if any(s is None for s in slots):
            return None
        rows = ObservationRows([s for s in slots if s is not None], group.device, 1)
        self._rows[id(group)] = (group, rows)
        return rows

    @monitor_mode
    def weight_norms(self, group: Any, before: list[torch.Tensor]) -> torch.Tensor | None:
        """[n] float32 norms of the weights before the step (``before``: the snapshot, still holding them);
        None for a sharded group (not measured)."""
        if group.parts.group is not None:
            return None
        return norms(before)

    @monitor_mode
    def write(self, group: Any, update_norms: torch.Tensor, weight_norms: torch.Tensor,
              taken: list[bool] | None) -> None:
        """One step: ratios ``update_norms / weight_norms`` ([n] float32 on the group's device), counted for
        every site of ``group`` or those ``taken`` marks."""
        rows = self._rows_for(group)
        if rows is None:
            return
        if rows.full:
            rows.fold(self.bank)
        r, out = rows.next_row()
        torch.div(update_norms, weight_norms, out=out[0])
        if taken is None:
            rows.mark_all(r)
        else:
            for pos, counted in enumerate(taken):
                if counted:
                    rows.mark(r, pos)

    def flush(self, current: list[Any]) -> None:
        """Fold every written row; forget the rows of groups no longer ``current``."""
        keep = {id(g) for g in current}
        for key, (_, rows) in list(self._rows.items()):
            if rows.used:
                rows.fold(self.bank)
            if key not in keep:
                del self._rows[key]

    def clear(self) -> None:
        self._rows = {}
