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
from typing import Any

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

    def parts(self) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        assert self.sums is not None and self.ext is not None
        return self.sums, self.ext, [k.reshape(-1) for k in self.kept]

    def read(self, sums: np.ndarray, ext: np.ndarray, kept: np.ndarray) -> dict[int, list[Summary]]:
        """Host-side view: one Summary per quantity (column), keyed by ``id(self)``."""
        w = self.width
        values = kept.reshape(self.kept_rows, w) if self.keep_all else None
        out = []
        for i in range(w):
            lo, hi = -ext[i], ext[w + i]
            col = None if values is None else values[:, i][np.isfinite(values[:, i])]
            out.append(Summary(sums[0], sums[1], float(sums[2 + i]), float(sums[2 + w + i]),
                               float(lo) if np.isfinite(lo) else float("nan"),
                               float(hi) if np.isfinite(hi) else float("nan"), col))
        return {id(self): out}


class Slot:
    """One site's row in a :class:`StreamBank`; folds stage into the bank (keys the site's summaries)."""

    __slots__ = ("bank", "index")

    def __init__(self, bank: StreamBank, index: int) -> None:
        self.bank = bank
        self.index = index

    def fold(self, values: torch.Tensor, valid: torch.Tensor) -> None:
        self.bank.stage(self.index, values, valid)

    def fold_counts(self, rows: torch.Tensor, dens: list[int], check: torch.Tensor) -> None:
        """Tick path: stage raw (active count, dead channels) per batch; the bank scales them in bulk."""
        raw = torch.stack([rows.sum(1), (rows == 0).sum(1, dtype=rows.dtype)], 1)
        self.bank.stage(self.index, raw, torch.isfinite(check), (rows.shape[1], dens))

    def reset(self) -> None:
        pass  # the lens resets its bank once for all slots


class StreamBank:
    """Running moments for many sites at once: row i of ``sums``/``ext`` belongs to slot i.

    Same per-row layout as :class:`StatStream`. Sites *stage* their per-batch values; :meth:`commit`
    folds consecutive slots with the same number of batches in one group of ~15 device ops, so a tick
    costs a few ops per site (computing its values) instead of a full fold each.
    """

    _STAGE_LIMIT = 1024  # staged entries are small ([batches, width]); commit() at flush does the rest

    def __init__(self, width: int, keep_all: bool = False) -> None:
        self.width = width
        self.keep_all = keep_all
        self.n_slots = 0
        self.sums: torch.Tensor | None = None
        self.ext: torch.Tensor | None = None
        # (slot, values [n, width], valid [n], scale): scale is None for final values, or
        # (channels, dens) for raw (active count, dead channels) pairs staged by Slot.fold_counts.
        self.staged: list[tuple[int, torch.Tensor, torch.Tensor, Any]] = []
        self.kept: dict[int, list[torch.Tensor]] = {}
        self.kept_rows: dict[int, int] = {}

    def new_slot(self) -> Slot:
        self.n_slots += 1
        return Slot(self, self.n_slots - 1)

    @property
    def device(self) -> torch.device | None:
        return None if self.sums is None else self.sums.device

    def _ensure(self, device: torch.device) -> None:
        w, n = self.width, self.n_slots
        if self.sums is None:
            self.sums = torch.zeros(n, 2 + 2 * w, dtype=_F64, device=device)
            self.ext = torch.full((n, 2 * w), float("-inf"), dtype=_F64, device=device)
            return
        assert self.ext is not None
        if self.sums.device != device:  # model moved after attach (rare, may sync)
            self.sums, self.ext = self.sums.to(device), self.ext.to(device)
            self.kept = {k: [t.to(device) for t in v] for k, v in self.kept.items()}
        grow = n - self.sums.shape[0]
        if grow > 0:  # a slot added later (a lazy parameter materialised)
            self.sums = torch.cat([self.sums, self.sums.new_zeros(grow, 2 + 2 * w)])
            self.ext = torch.cat([self.ext, self.ext.new_full((grow, 2 * w), float("-inf"))])

    def stage(self, index: int, values: torch.Tensor, valid: torch.Tensor, scale: Any = None) -> None:
        if values.shape[0] == 0:
            return
        self.staged.append((index, values, valid, scale))
        if len(self.staged) >= self._STAGE_LIMIT:
            self.commit()

    def commit(self) -> None:
        staged, self.staged = self.staged, []
        if not staged:
            return
        self._ensure(staged[0][1].device)
        # Entries are grouped as staged: a run of consecutive slots with equal shapes folds at once. Sites
        # stage in slot order at the tick and batched gradient groups stage their slots in order, so runs
        # are long; entries of one slot from several folds stay separate runs (each is counted once).
        start = 0
        for i in range(1, len(staged) + 1):
            if i == len(staged) or staged[i][0] != staged[i - 1][0] + 1 or \
                    staged[i][1].shape != staged[start][1].shape or staged[i][1].device != staged[start][1].device:
                self._fold_group(staged[start:i])
                start = i

    def _fold_group(self, group: list[tuple[int, torch.Tensor, torch.Tensor, Any]]) -> None:
        self.fold_block(group[0][0], torch.stack([g[1] for g in group]), torch.stack([g[2] for g in group]),
                        [g[3] for g in group])

    def fold_block(self, first: int, values: torch.Tensor, valid: torch.Tensor, scales: list[Any]) -> None:
        """Fold slots ``first .. first+g-1`` at once: values [g, n, width], valid [g, n]; ``scales[j]`` is None
        (final values) or (channels, dens) for raw (active count, dead channels) pairs."""
        self._ensure(values.device)
        assert self.sums is not None and self.ext is not None
        a, b = first, first + values.shape[0]
        n = values.shape[1]
        v = values.to(_F64)
        if any(sc is not None for sc in scales):
            # raw (count, dead channels) -> (activation = count / (channels * den), death = dead / channels),
            # one scale tensor built on the host: staged only at the tick, where a host copy is due anyway.
            # (A multiplication keeps an exact 0 exact: no layer shows a death rate of 1e-17.)
            scale_np = np.ones((len(scales), n, 2))
            for j, scale in enumerate(scales):
                if scale is not None:
                    channels, dens = scale
                    scale_np[j, :, 0] = 1.0 / (channels * np.asarray(dens, dtype=np.float64))
                    scale_np[j, :, 1] = 1.0 / channels
            v = v * torch.from_numpy(scale_np).to(v.device, non_blocking=True)
        okw = valid[:, :, None]
        z = torch.where(okw, v, 0.0)
        count = valid.sum(1, dtype=_F64)[:, None]
        self.sums[a:b].add_(torch.cat([count, n - count, z.sum(1), (z * z).sum(1)], 1))
        hi = torch.where(okw, v, float("-inf")).amax(1)
        lo = torch.where(okw, -v, float("-inf")).amax(1)
        torch.maximum(self.ext[a:b], torch.cat([lo, hi], 1), out=self.ext[a:b])
        if self.keep_all:
            masked = torch.where(okw, v, float("nan"))
            for j in range(values.shape[0]):
                self.kept.setdefault(a + j, []).append(masked[j])
                self.kept_rows[a + j] = self.kept_rows.get(a + j, 0) + n

    def reset(self) -> None:
        self.staged = []
        if self.sums is not None:
            assert self.ext is not None
            self.sums.zero_()
            self.ext.fill_(float("-inf"))
        self.kept = {}
        self.kept_rows = {}

    def parts(self) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        assert self.sums is not None and self.ext is not None
        chunks = [t.reshape(-1) for i in range(self.n_slots) for t in self.kept.get(i, [])]
        return self.sums.reshape(-1), self.ext.reshape(-1), chunks

    def read_slots(self, slots: list[Slot], sums: np.ndarray, ext: np.ndarray,
                   kept: np.ndarray) -> dict[int, list[Summary]]:
        w = self.width
        sums = sums.reshape(self.n_slots, 2 + 2 * w)
        ext = ext.reshape(self.n_slots, 2 * w)
        # Vectorised once, then plain Python numbers per slot: this runs for every layer at every tick.
        lo = -ext[:, :w]
        hi = ext[:, w:]
        lo = np.where(np.isfinite(lo), lo, np.nan).tolist()
        hi = np.where(np.isfinite(hi), hi, np.nan).tolist()
        counts, nonfinite = sums[:, 0].tolist(), sums[:, 1].tolist()
        totals, squares = sums[:, 2:2 + w].tolist(), sums[:, 2 + w:].tolist()
        offsets, off = {}, 0
        if self.keep_all:
            for i in range(self.n_slots):
                rows = self.kept_rows.get(i, 0)
                offsets[i] = (off, rows)
                off += rows * w
        out = {}
        for slot in slots:
            i = slot.index
            values = None
            if self.keep_all:
                o, rows = offsets[i]
                values = kept[o:o + rows * w].reshape(rows, w)
            out[id(slot)] = [
                Summary(counts[i], nonfinite[i], totals[i][q], squares[i][q], lo[i][q], hi[i][q],
                        None if values is None else values[:, q][np.isfinite(values[:, q])])
                for q in range(w)]
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

    def fold_rates(self, stream: StatStream | Slot) -> None:
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


def fold_buffers(slots: list[Slot], bufs: list[RowBuffer]) -> None:
    """Tick path for many sites at once: buffers of equal shape and fill, slots consecutive in one bank.
    Stacks them and folds raw (active count, dead channels) pairs as one block: a handful of ops for all."""
    n = bufs[0].n
    rows = torch.stack([b.data[:n] for b in bufs])  # [g, n, channels]
    check = torch.stack([b.check[:n] for b in bufs])
    raw = torch.stack([rows.sum(2), (rows == 0).sum(2, dtype=rows.dtype)], 2)
    channels = rows.shape[2]
    slots[0].bank.fold_block(slots[0].index, raw, torch.isfinite(check), [(channels, b.dens[:n]) for b in bufs])
    for b in bufs:
        b.n = 0


def fold_rate_rows(rows: torch.Tensor, dens: list[int], check: torch.Tensor, stream: StatStream | Slot) -> None:
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


Accumulator = StatStream | StreamBank


class Summaries(dict):
    """Summaries by ``id(stream or slot)``; a stream that saw no batch reads as empty (NaN everywhere)."""

    def __missing__(self, key: int) -> list[Summary]:
        return [Summary(0, 0, 0.0, 0.0, float("nan"), float("nan"), np.empty(0)) for _ in range(2)]


def to_host(accumulators: Sequence[Accumulator], slots: dict[int, list[Slot]] | None = None
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
        ext = torch.cat([p[1] for p in parts])
        if distributed:
            torch.distributed.all_reduce(sums, op=torch.distributed.ReduceOp.SUM)
            torch.distributed.all_reduce(ext, op=torch.distributed.ReduceOp.MAX)
        kept = [k for p in parts for k in p[2]]
        host = torch.cat([sums, ext, *kept]).cpu().numpy()
        s_off, e_off, k_off = 0, sums.numel(), sums.numel() + ext.numel()
        for acc, (s, e, k) in zip(group, parts):
            ns, ne, nk = s.numel(), e.numel(), sum(t.numel() for t in k)
            args = (host[s_off:s_off + ns], host[e_off:e_off + ne], host[k_off:k_off + nk])
            s_off, e_off, k_off = s_off + ns, e_off + ne, k_off + nk
            if isinstance(acc, StreamBank):
                out.update(acc.read_slots((slots or {}).get(id(acc), []), *args))
            else:
                out.update(acc.read(*args))
    return out
