"""The tick's one host copy: every accumulator of every lens, per device, in one transfer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .streams import BankRow, StatStream, StreamBank
from .summary import Summary

Accumulator = StatStream | StreamBank



class Summaries(dict):
    """Summaries by ``id(stream or slot)``; a stream that saw no batch reads as empty (NaN everywhere)."""

    def __missing__(self, key: int) -> list[Summary]:
        return [Summary(0, 0, 0.0, 0.0, float("nan"), float("nan"), np.empty(0)) for _ in range(2)]


def to_host(accumulators: Sequence[Accumulator], slots: dict[int, list[BankRow]] | None = None
            ) -> Summaries:
    """Move every accumulator's epoch statistics to the host in one copy per device.

    Returns summaries keyed by ``id(stream)`` for a :class:`StatStream` and by ``id(slot)`` for each slot of
    a :class:`StreamBank` (``slots`` maps ``id(bank)`` to the slots to read). An accumulator that never
    saw a batch yields no entry. Under an initialised ``torch.distributed`` process group, moments are
    reduced across ranks first with one SUM and one MAX collective for all accumulators together.
    """
    out = Summaries()
    by_device: dict[torch.device, list[Accumulator]] = {}
    for acc in accumulators:
        if acc.sums is not None:
            by_device.setdefault(acc.sums.device, []).append(acc)
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    for group in by_device.values():
        parts = [acc.parts() for acc in group]
        sums = torch.cat([p[0] for p in parts])
        extremes = torch.cat([p[1] for p in parts])
        if distributed:
            torch.distributed.all_reduce(sums, op=torch.distributed.ReduceOp.SUM)
            torch.distributed.all_reduce(extremes, op=torch.distributed.ReduceOp.MAX)
        kept = [k for p in parts for k in p[2]]
        host = torch.cat([sums, extremes, *kept]).cpu().numpy()
        s_off, e_off, k_off = 0, sums.numel(), sums.numel() + extremes.numel()
        for acc, (s, e, k) in zip(group, parts):
            ns, ne, nk = s.numel(), e.numel(), sum(t.numel() for t in k)
            args = (host[s_off:s_off + ns], host[e_off:e_off + ne], host[k_off:k_off + nk])
            s_off, e_off, k_off = s_off + ns, e_off + ne, k_off + nk
            if isinstance(acc, StreamBank):
                out.update(acc.read_rows((slots or {}).get(id(acc), []), *args))
            else:
                out.update(acc.read(*args))
    return out

