"""Device-side accumulation: what hooks write into, and how an epoch's numbers reach the host.

Invariants of the hot path (the per-batch hook calls):
- no host synchronisation: nothing reads a tensor value on the host (no ``.item()``, ``.cpu()``,
  ``bool(tensor)``); hooks write with ``out=`` into preallocated rows of a :class:`RowBuffer` that lives on
  the data's own device, and only Python-side integers (row index, element counts from shapes) change;
- a few torch ops per call (a comparison, one or two reductions);
- when a buffer is full, :meth:`RowBuffer.fold` reduces its rows into a :class:`StatStream` with a fixed
  number of device ops (amortised over ``capacity`` batches).
At a tick, :func:`to_host` concatenates every stream of every lens per device and copies it to the host
once (after one SUM and one MAX collective when ``torch.distributed`` is initialised).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .aggregate import Summary

_F32 = torch.float32
_F64 = torch.float64
# Bytes of row storage per site; the capacity (rows folded at once) shrinks for wide layers.
_BUFFER_BYTES = 256 * 1024
_MAX_ROWS = 256


class StatStream:
    """Running moments of ``width`` per-batch quantities, on one device.

    ``packed`` layout (float64): [count, nonfinite, sum_0..w-1, sumsq_0..w-1 | -min_0..w-1, max_0..w-1];
    the part before ``|`` reduces across ranks by SUM, the rest by MAX. A batch whose row is flagged
    invalid (non-finite data) is counted in ``nonfinite`` and contributes nothing else.
    """

    def __init__(self, width: int, keep_all: bool = False) -> None:
        self.width = width
        self.keep_all = keep_all
        self.sums: torch.Tensor | None = None
        self.ext: torch.Tensor | None = None
        self.kept: list[torch.Tensor] = []
        self.kept_rows = 0

    @property
    def device(self) -> torch.device | None:
        return None if self.sums is None else self.sums.device

    def _alloc(self, device: torch.device) -> None:
        w = self.width
        self.sums = torch.zeros(2 + 2 * w, dtype=_F64, device=device)
        self.ext = torch.full((2 * w,), float("-inf"), dtype=_F64, device=device)

    def fold(self, values: torch.Tensor, valid: torch.Tensor) -> None:
        """values: [n, width] on one device; valid: [n] bool."""
        if self.sums is None or self.sums.device != values.device:
            self._move(values.device)
        assert self.sums is not None and self.ext is not None
        if values.shape[0] == 0:
            return
        v = values.to(_F64)
        ok = valid.to(_F64)
        vz = v * ok[:, None]
        # NaN * 0 is NaN: rows flagged invalid may hold non-finite values, so mask by selection too.
        vz = torch.where(valid[:, None], vz, 0.0)
        n_ok = ok.sum().reshape(1)
        self.sums.add_(torch.cat([n_ok, values.shape[0] - n_ok, vz.sum(0), (vz * vz).sum(0)]))
        # A Python scalar, not a new tensor: torch.tensor(..., device=cuda) would be a blocking copy.
        hi = torch.where(valid[:, None], v, float("-inf")).amax(0)
        lo = torch.where(valid[:, None], -v, float("-inf")).amax(0)
        torch.maximum(self.ext, torch.cat([lo, hi]), out=self.ext)
        if self.keep_all:
            self.kept.append(torch.where(valid[:, None], v, float("nan")))
            self.kept_rows += values.shape[0]

    def _move(self, device: torch.device) -> None:
        # A model moved between devices after attach: carry what was accumulated (rare, may sync).
        if self.sums is None:
            self._alloc(device)
            return
        assert self.ext is not None
        self.sums = self.sums.to(device)
        self.ext = self.ext.to(device)
        self.kept = [k.to(device) for k in self.kept]

    def reset(self) -> None:
        if self.sums is not None:
            assert self.ext is not None
            self.sums.zero_()
            self.ext.fill_(float("-inf"))
        self.kept = []
        self.kept_rows = 0

    def summaries(self, packed: np.ndarray | None, kept: np.ndarray | None) -> list[Summary]:
        """Host-side view of one stream: one Summary per quantity (column)."""
        w = self.width
        if packed is None:
            return [Summary(0, 0, 0.0, 0.0, float("nan"), float("nan"), None) for _ in range(w)]
        count, nonfinite = packed[0], packed[1]
        out = []
        for i in range(w):
            lo = -packed[2 + 2 * w + i]
            hi = packed[2 + 3 * w + i]
            values = None
            if kept is not None:
                col = kept[:, i]
                values = col[np.isfinite(col)]
            out.append(Summary(count, nonfinite, float(packed[2 + i]), float(packed[2 + w + i]),
                               float(lo) if np.isfinite(lo) else float("nan"),
                               float(hi) if np.isfinite(hi) else float("nan"), values))
        return out


class RowBuffer:
    """Preallocated per-batch rows on the data's device, written by hooks with ``out=``.

    ``rows[i]`` holds, for batch i, one count per channel (number of elements above eps);
    ``checks[i]`` holds a sum over the batch's raw values, non-finite iff the batch had NaN/Inf;
    ``dens[i]`` (host int) is the number of elements per channel in batch i, so a channel's rate is
    ``rows[i, c] / dens[i]``.
    """

    def __init__(self, channels: int, device: torch.device) -> None:
        self.channels = channels
        self.device = device
        self.capacity = max(4, min(_MAX_ROWS, _BUFFER_BYTES // (4 * max(channels, 1))))
        self.data = torch.zeros(self.capacity, channels, dtype=_F32, device=device)
        self.check = torch.zeros(self.capacity, dtype=_F32, device=device)
        # Views made once: indexing a tensor per batch would cost a dispatch each time.
        self.rows = list(self.data.unbind(0))
        self.checks = list(self.check.unbind(0))
        self.dens = [1] * self.capacity
        self.n = 0

    def fold_rates(self, stream: StatStream) -> None:
        """Reduce the filled rows to per-batch (activation rate, death rate) and fold into ``stream``."""
        n = self.n
        if n == 0:
            return
        fold_rate_rows(self.data[:n], self.dens[:n], self.check[:n], stream)
        self.n = 0

    def fold_scalars(self, stream: StatStream) -> None:
        """Rows hold one value each (channels == 1), e.g. a loss per batch."""
        n = self.n
        if n == 0:
            return
        vals = self.data[:n]
        stream.fold(vals, torch.isfinite(vals[:, 0]))
        self.n = 0


def fold_rate_rows(rows: torch.Tensor, dens: list[int], check: torch.Tensor, stream: StatStream) -> None:
    """rows [n, channels]: per-channel counts of active elements; dens: elements per channel in each batch
    (host ints); check [n]: non-finite iff the batch had NaN/Inf. Folds (activation, death) per batch."""
    n = rows.shape[0]
    rates = rows * (1.0 / dens[0])
    if dens.count(dens[0]) != n:
        # Batches of another size (usually only the last one) are rescaled slice by slice, with
        # Python scalars: building a per-row scale tensor would be a host-to-device copy.
        start = 0
        for i in range(1, n + 1):
            if i == n or dens[i] != dens[start]:
                if dens[start] != dens[0]:
                    rates[start:i] = rows[start:i] * (1.0 / dens[start])
                start = i
    act = rates.mean(1)
    dead = (rows == 0).to(_F32).mean(1)
    stream.fold(torch.stack([act, dead], 1), torch.isfinite(check))


def to_host(streams: Sequence[StatStream]) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
    """Move every stream's epoch statistics to the host in one copy per device.

    Returns, per stream, (packed moments, kept per-batch values [rows, width] or None); (None, None) for a
    stream that never saw a batch. Under an initialised ``torch.distributed`` process group, moments are
    reduced across ranks first with one SUM and one MAX collective for all streams together.
    """
    result: list[tuple[np.ndarray | None, np.ndarray | None]] = [(None, None)] * len(streams)
    by_device: dict[torch.device, list[int]] = {}
    for i, s in enumerate(streams):
        if s.sums is not None:
            by_device.setdefault(s.sums.device, []).append(i)
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    for device, idx in by_device.items():
        sums = torch.cat([streams[i].sums for i in idx])  # type: ignore[misc]
        ext = torch.cat([streams[i].ext for i in idx])  # type: ignore[misc]
        if distributed:
            torch.distributed.all_reduce(sums, op=torch.distributed.ReduceOp.SUM)
            torch.distributed.all_reduce(ext, op=torch.distributed.ReduceOp.MAX)
        kept_parts = [k.reshape(-1) for i in idx for k in streams[i].kept]
        host = torch.cat([sums, ext, *kept_parts]).cpu().numpy()
        s_off, e_off = 0, sums.numel()
        k_off = sums.numel() + ext.numel()
        for i in idx:
            s = streams[i]
            w = s.width
            packed = np.concatenate([host[s_off:s_off + 2 + 2 * w], host[e_off:e_off + 2 * w]])
            s_off += 2 + 2 * w
            e_off += 2 * w
            kept = None
            if s.keep_all:
                kept = host[k_off:k_off + s.kept_rows * w].reshape(s.kept_rows, w)
                k_off += s.kept_rows * w
            result[i] = (packed, kept)
    return result
