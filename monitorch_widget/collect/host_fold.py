"""The tick's one copy to the host, and the fold of every pending row there.

:func:`fold_on_host` takes every accumulator of every lens (:class:`~.streams.StreamBank`): their device
moments, staged values and pending rows. Tensors on the CPU are read in place (numpy views: the rows are
folded before any hook writes again); every other device concatenates its tensors and copies them once.
Pending rows of all accumulators then fold at once, whatever their shapes, by a plan of index arrays
made for their arrangement and kept across ticks (:mod:`.fold_plan`): about 30 numpy calls per tick, however
many sites and shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .fold_plan import plan_for
from .modes import monitor_mode
from .streams import Pending, StreamBank

#: one accumulator on the host: (sums, extremes, kept per-batch values per slot [n, width])
HostPart = tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]
_VIEWABLE = (torch.float32, torch.float64, torch.bool)


def _transfer(requests: list[tuple[Any, int | None]]) -> list[np.ndarray]:
    """Host arrays of (tensor or array, filled rows or None): in place on the CPU, one copy per other device."""
    out: list[Any] = [None] * len(requests)
    remote: dict[torch.device, list[int]] = {}
    for i, (t, n) in enumerate(requests):
        if type(t) is np.ndarray:  # the usual request: a RowBuffer's host view
            out[i] = t if n is None else t[:n]
            continue
        if isinstance(t, torch.Tensor):
            if t.device.type != "cpu":
                remote.setdefault(t.device, []).append(i)
                continue
            t = t.numpy() if t.dtype in _VIEWABLE else t.to(torch.float64).numpy()
        out[i] = t if n is None else t[:n]
    for members in remote.values():
        parts = [requests[i][0] if requests[i][1] is None else requests[i][0][:requests[i][1]] for i in members]
        for i, a in zip(members, copy_once(parts)):
            out[i] = a
    return out


def copy_once(parts: list[torch.Tensor]) -> list[np.ndarray]:
    """Tensors of one device -> host arrays of the same shapes, in one concatenation and one copy. Float32 and
    bool values promote to float64 (exactly) when a float64 tensor is among them; bools come back as bools."""
    flat = [p.reshape(-1) if p.dtype in _VIEWABLE else p.reshape(-1).to(torch.float64) for p in parts]
    host = torch.cat(flat).cpu().numpy()
    out = []
    off = 0
    for p in parts:
        a = host[off:off + p.numel()].reshape(p.shape)
        off += p.numel()
        out.append(a != 0 if p.dtype == torch.bool else a)
    return out


@monitor_mode
def fold_on_host(accumulators: Sequence[StreamBank]) -> list[HostPart | None]:
    """Fold what every accumulator holds for this tick into its host moments; returns each one's host part
    (None for one that saw no batch this epoch)."""
    requests: list[tuple[Any, int | None]] = []
    entries: list[tuple[StreamBank, Pending]] = []
    for acc in accumulators:
        if acc.staged:
            for slot, v, ok in acc.staged:
                entries.append((acc, Pending("values", slot, ((v, None), (ok, None)))))
                requests += ((v, None), (ok, None))
            acc.staged = []
        if acc.pending:
            for entry in acc.pending:
                entries.append((acc, entry))
                requests += entry.arrays
            acc.pending = []
    n_entry_arrays = len(requests)
    device_parts: list[tuple[int, int, list[tuple[int, int]]] | None] = []
    for acc in accumulators:
        if acc.sums is not None:
            assert acc.extremes is not None
            first = len(requests)
            requests += [(acc.sums, None), (acc.extremes, None)]
            kept = []
            for slot, chunks in acc.kept.items():
                for chunk in chunks:
                    kept.append((slot, len(requests)))
                    requests.append((chunk, None))
            device_parts.append((first, first + 1, kept))
        else:
            device_parts.append(None)
    host = _transfer(requests) if requests else []
    if entries:
        # one plan per arrangement of entries, kept across ticks (collect/fold_plan.py)
        entry_arrays = host[:n_entry_arrays]
        plan_for(entries, entry_arrays).run(entries, entry_arrays)
    out: list[HostPart | None] = []
    for acc, dev in zip(accumulators, device_parts):
        if dev is None and acc.host_sums is None:
            out.append(None)
            continue
        copied = None if dev is None else (host[dev[0]], host[dev[1]], [(s, host[i]) for s, i in dev[2]])
        out.append(acc.part(copied))
    return out
