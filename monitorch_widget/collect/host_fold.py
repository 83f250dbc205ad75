"""The tick's one copy to the host, and the fold of every pending row there.

:func:`fold_on_host` takes every accumulator of every lens (:class:`~.streams.StreamBank`): their device
moments, staged values and pending rows. Tensors on the CPU are read in place (numpy views: the rows are
folded before any hook writes again); every other device concatenates its tensors and copies them once.
Pending rows of all accumulators are then grouped by kind and shape, each group reduced to per-batch values
and folded with :func:`~.fold_math.fold_moments` (numpy): the number of host ops grows with the number of
distinct shapes, not with the number of sites.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .fold_math import fold_moments, rate_values
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


def _stack(arrays: list[list[np.ndarray]], i: int) -> np.ndarray:
    return arrays[0][i][None] if len(arrays) == 1 else np.stack([a[i] for a in arrays])


def _reduce(kind: str, entries: list[Pending], arrays: list[list[np.ndarray]]) -> tuple[Any, Any, Any]:
    """A group of pending entries of one kind and shape -> values [g, n, w], valid [g, n], counted or None."""
    if kind == "values":
        return _stack(arrays, 0).astype(np.float64, copy=False), _stack(arrays, 1), None
    if kind == "scalars":
        values = _stack(arrays, 0).astype(np.float64, copy=False)
        return values, np.isfinite(values[..., 0]), None
    if kind == "rates":
        rows = _stack(arrays, 0)
        sizes = [e.extra for e in entries]
        first = sizes[0][0]
        if all(size.count(first) == len(size) for size in sizes):  # the usual case: one batch size throughout
            inv: Any = 1.0 / (rows.shape[-1] * first)
        else:
            inv = 1.0 / (rows.shape[-1] * np.array(sizes, dtype=np.float64))
        values, valid = rate_values(rows, inv, _stack(arrays, 1))
        return values, valid, None
    (entry,), (host,) = entries, arrays
    return entry.extra(*host)  # 'layout': the layout reduces its own rows


@monitor_mode
def fold_on_host(accumulators: Sequence[StreamBank]) -> list[HostPart | None]:
    """Fold what every accumulator holds for this tick into its host moments; returns each one's host part
    (None for one that saw no batch this epoch)."""
    requests: list[tuple[Any, int | None]] = []
    device_parts: list[tuple[int, int, list[tuple[int, int]]] | None] = []
    items: list[tuple[StreamBank, Pending, int]] = []  # (accumulator, entry, first request)
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
        entries = [Pending("values", slot, ((v, None), (ok, None))) for slot, v, ok in acc.staged] + acc.pending
        acc.staged, acc.pending = [], []
        for entry in entries:
            items.append((acc, entry, len(requests)))
            requests += entry.arrays
    host = _transfer(requests)
    groups: dict[tuple[str, Any], list[tuple[StreamBank, Pending, list[np.ndarray]]]] = {}
    for acc, entry, first in items:
        arrays = host[first:first + len(entry.arrays)]
        key = (entry.kind, id(entry) if entry.kind == "layout" else arrays[0].shape)  # the others follow it
        groups.setdefault(key, []).append((acc, entry, arrays))
    # Each group reduces to per-batch values; then all values of one width fold at once, the shorter
    # ones padded with batches that are no observation (counted False). A group's rows belong to runs of
    # entries of one accumulator (``blocks``: accumulator, its slots), in order.
    by_width: dict[int, list[tuple[Any, Any, Any, list[tuple[StreamBank, list[int]]]]]] = {}
    for key, group in groups.items():
        values, valid, counted = _reduce(key[0], [g[1] for g in group], [g[2] for g in group])
        blocks: list[tuple[StreamBank, list[int]]] = []
        if key[0] == "layout":
            blocks.append((group[0][0], list(group[0][1].slot)))
        else:
            for acc, entry, _ in group:
                if not blocks or blocks[-1][0] is not acc:
                    blocks.append((acc, []))
                blocks[-1][1].append(entry.slot)
        by_width.setdefault(values.shape[-1], []).append((values, valid, counted, blocks))
    for parts in by_width.values():
        _fold_width(parts)
    out: list[HostPart | None] = []
    for acc, dev in zip(accumulators, device_parts):
        if dev is None and acc.host_sums is None:
            out.append(None)
            continue
        copied = None if dev is None else (host[dev[0]], host[dev[1]], [(s, host[i]) for s, i in dev[2]])
        out.append(acc.part(copied))
    return out


def _fold_width(parts: list[tuple[Any, Any, Any, list[tuple[StreamBank, list[int]]]]]) -> None:
    """Fold reduced groups of one width ([g, n, w] values each) at once and add them to their accumulators."""
    if len(parts) == 1:
        values, valid, counted, _ = parts[0]
    elif len({p[0].shape[1] for p in parts}) == 1:  # equal numbers of batches: side by side
        values = np.concatenate([p[0] for p in parts])
        valid = np.concatenate([p[1] for p in parts])
        counted = None if all(p[2] is None for p in parts) else \
            np.concatenate([np.ones(p[1].shape, bool) if p[2] is None else p[2] for p in parts])
    else:
        rows, n, w = sum(p[0].shape[0] for p in parts), max(p[0].shape[1] for p in parts), parts[0][0].shape[2]
        values, valid, counted = np.zeros((rows, n, w)), np.zeros((rows, n), bool), np.zeros((rows, n), bool)
        a = 0
        for v, ok, c, _ in parts:
            b, m = a + v.shape[0], v.shape[1]
            values[a:b, :m], valid[a:b, :m], counted[a:b, :m] = v, ok, True if c is None else c
            a = b
    keep = any(acc.keep_all for p in parts for acc, _ in p[3])
    sums, extremes, masked = fold_moments(values, valid, counted, keep)
    a = 0
    for v, _, _, blocks in parts:
        m = v.shape[1]
        for acc, slots in blocks:
            b = a + len(slots)
            kept = [masked[j, :m] for j in range(a, b)] if masked is not None and acc.keep_all else None
            acc.add_host(slots, sums[a:b], extremes[a:b], kept)
            a = b
