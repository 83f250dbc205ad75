"""Device-side accumulation: what hooks write into, and how an epoch's numbers reach the host.

Invariants of the hot path (the per-batch hook calls):
- no host synchronisation: nothing reads a tensor value on the host (no ``.item()``, ``.cpu()``,
  ``bool(tensor)``); hooks write with ``out=`` into preallocated rows of a :class:`RowBuffer` that lives on
  the data's own device, and only Python-side integers (row index, element counts from shapes) change;
- a few torch ops per call (a comparison, one or two reductions);
- when a buffer is full, :meth:`RowBuffer.fold` reduces its rows into a :class:`StatStream` with a fixed
  number of device ops (amortised over ``capacity`` batches).
At a tick, :func:`to_host` concatenates every stream of every lens per device and copies it to the host
once; under ``torch.distributed`` the ranks' host copies are then combined (:mod:`.rank_exchange`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .modes import monitor_mode
from .summary import Summary

_F64 = torch.float64


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
        self.extremes: torch.Tensor | None = None
        self.kept: list[torch.Tensor] = []
        self.kept_rows = 0

    @property
    def device(self) -> torch.device | None:
        return None if self.sums is None else self.sums.device

    @monitor_mode
    def _alloc(self, device: torch.device) -> None:
        w = self.width
        self.sums = torch.zeros(2 + 2 * w, dtype=_F64, device=device)
        self.extremes = torch.full((2 * w,), float("-inf"), dtype=_F64, device=device)

    @monitor_mode
    def fold(self, values: torch.Tensor, valid: torch.Tensor) -> None:
        """values: [n, width] on one device; valid: [n] bool."""
        if self.sums is None or self.sums.device != values.device:
            self._move(values.device)
        assert self.sums is not None and self.extremes is not None
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
        torch.maximum(self.extremes, torch.cat([lo, hi]), out=self.extremes)
        if self.keep_all:
            self.kept.append(torch.where(valid[:, None], v, float("nan")))
            self.kept_rows += values.shape[0]

    @monitor_mode
    def _move(self, device: torch.device) -> None:
        # A model moved between devices after attach: carry what was accumulated (rare, may sync).
        if self.sums is None:
            self._alloc(device)
            return
        assert self.extremes is not None
        self.sums = self.sums.to(device)
        self.extremes = self.extremes.to(device)
        self.kept = [k.to(device) for k in self.kept]

    def reset(self) -> None:
        if self.sums is not None:
            assert self.extremes is not None
            self.sums.zero_()
            self.extremes.fill_(float("-inf"))
        self.kept = []
        self.kept_rows = 0

    def parts(self) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, torch.Tensor]]]:
        """(sums, extremes, [(slot, kept values [n, width])]): the one slot of a stream is 0."""
        assert self.sums is not None and self.extremes is not None
        return self.sums, self.extremes, [(0, k) for k in self.kept]

    def read(self, sums: np.ndarray, extremes: np.ndarray, kept: dict[int, np.ndarray]) -> dict[int, list[Summary]]:
        """Host-side view: one Summary per quantity (column), keyed by ``id(self)``. ``kept``: slot 0's
        per-batch values [n, width] (from every rank under torch.distributed), if kept."""
        w = self.width
        values = kept.get(0, np.empty((0, w))) if self.keep_all else None
        out = []
        for i in range(w):
            lo, hi = -extremes[i], extremes[w + i]
            col = None if values is None else values[:, i][np.isfinite(values[:, i])]
            out.append(Summary(sums[0], sums[1], float(sums[2 + i]), float(sums[2 + w + i]),
                               float(lo) if np.isfinite(lo) else float("nan"),
                               float(hi) if np.isfinite(hi) else float("nan"), col))
        return {id(self): out}


class BankRow:
    """One site's row in a :class:`StreamBank`; folds stage into the bank (keys the site's summaries)."""

    __slots__ = ("bank", "index")

    def __init__(self, bank: StreamBank, index: int) -> None:
        self.bank = bank
        self.index = index


    def fold(self, values: torch.Tensor, valid: torch.Tensor) -> None:
        self.bank.stage(self.index, values, valid)

    def fold_counts(self, rows: torch.Tensor, row_sizes: list[int], check: torch.Tensor) -> None:
        """Tick path: stage raw (active count, dead channels) per batch; the bank scales them in bulk."""
        raw = torch.stack([rows.sum(1), (rows == 0).sum(1, dtype=rows.dtype)], 1)
        self.bank.stage(self.index, raw, torch.isfinite(check), (rows.shape[1], row_sizes))

    def reset(self) -> None:
        pass  # the lens resets its bank once for all slots


class StreamBank:
    """Running moments for many sites at once: row i of ``sums``/``extremes`` belongs to slot i.

    Same per-row layout as :class:`StatStream`. Sites *stage* their per-batch values; :meth:`commit`
    folds consecutive slots with the same number of batches in one group of ~15 device ops, so a tick
    costs a few ops per site (computing its values) instead of a full fold each.
    """

    _STAGE_LIMIT = 1024  # staged entries are small ([batches, width]); commit() at flush does the rest

    def __init__(self, width: int, keep_all: bool = False) -> None:
        self.width = width
        self.keep_all = keep_all
        self.size = 0
        self.sums: torch.Tensor | None = None
        self.extremes: torch.Tensor | None = None
        # (slot, values [n, width], valid [n], scale): scale is None for final values, or
        # (channels, row_sizes) for raw (active count, dead channels) pairs staged by BankRow.fold_counts.
        self.staged: list[tuple[int, torch.Tensor, torch.Tensor, Any]] = []
        self.kept: dict[int, list[torch.Tensor]] = {}
        self.kept_rows: dict[int, int] = {}

    def add_row(self) -> BankRow:
        self.size += 1
        return BankRow(self, self.size - 1)

    @property
    def device(self) -> torch.device | None:
        return None if self.sums is None else self.sums.device

    @monitor_mode
    def _ensure(self, device: torch.device) -> None:
        w, n = self.width, self.size
        if self.sums is None:
            self.sums = torch.zeros(n, 2 + 2 * w, dtype=_F64, device=device)
            self.extremes = torch.full((n, 2 * w), float("-inf"), dtype=_F64, device=device)
            return
        assert self.extremes is not None
        if self.sums.device != device:  # model moved after attach (rare, may sync)
            self.sums, self.extremes = self.sums.to(device), self.extremes.to(device)
            self.kept = {k: [t.to(device) for t in v] for k, v in self.kept.items()}
        grow = n - self.sums.shape[0]
        if grow > 0:  # a slot added later (a lazy parameter materialised)
            self.sums = torch.cat([self.sums, self.sums.new_zeros(grow, 2 + 2 * w)])
            self.extremes = torch.cat([self.extremes, self.extremes.new_full((grow, 2 * w), float("-inf"))])

    def stage(self, index: int, values: torch.Tensor, valid: torch.Tensor, scale: Any = None) -> None:
        if values.shape[0] == 0:
            return
        self.staged.append((index, values, valid, scale))
        if len(self.staged) >= self._STAGE_LIMIT:
            self.commit()

    @monitor_mode
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

    @monitor_mode
    def fold_block(self, first: int, values: torch.Tensor, valid: torch.Tensor, scales: list[Any]) -> None:
        """Fold slots ``first .. first+g-1`` at once: values [g, n, width], valid [g, n]; ``scales[j]`` is None
        (final values) or (channels, row_sizes) for raw (active count, dead channels) pairs."""
        self._ensure(values.device)
        assert self.sums is not None and self.extremes is not None
        a, b = first, first + values.shape[0]
        n = values.shape[1]
        v = values.to(_F64)
        if any(sc is not None for sc in scales):
            # raw (count, dead channels) -> (activation = count / (channels * row_size), death = dead / channels),
            # one scale tensor built on the host: staged only at the tick, where a host copy is due anyway.
            # (A multiplication keeps an exact 0 exact: no layer shows a death rate of 1e-17.)
            scale_np = np.ones((len(scales), n, 2))
            for j, scale in enumerate(scales):
                if scale is not None:
                    channels, row_sizes = scale
                    scale_np[j, :, 0] = 1.0 / (channels * np.asarray(row_sizes, dtype=np.float64))
                    scale_np[j, :, 1] = 1.0 / channels
            v = v * torch.from_numpy(scale_np).to(v.device, non_blocking=True)
        okw = valid[:, :, None]
        z = torch.where(okw, v, 0.0)
        count = valid.sum(1, dtype=_F64)[:, None]
        self.sums[a:b].add_(torch.cat([count, n - count, z.sum(1), (z * z).sum(1)], 1))
        hi = torch.where(okw, v, float("-inf")).amax(1)
        lo = torch.where(okw, -v, float("-inf")).amax(1)
        torch.maximum(self.extremes[a:b], torch.cat([lo, hi], 1), out=self.extremes[a:b])
        if self.keep_all:
            masked = torch.where(okw, v, float("nan"))
            for j in range(values.shape[0]):
                self.kept.setdefault(a + j, []).append(masked[j])
                self.kept_rows[a + j] = self.kept_rows.get(a + j, 0) + n

    @monitor_mode
    def fold_rows(self, rows: torch.Tensor, row_list: list[int], values: torch.Tensor, valid: torch.Tensor,
                  counted: torch.Tensor) -> None:
        """Fold observations into any set of distinct bank rows at once: ``rows`` [g] (long, on the device; ``row_list``
        the same on the host), values [g, n, width], valid [g, n]; ``counted`` [g, n] marks the entries that
        are observations at all (valid ones are finite, counted-but-not-valid ones count as non-finite)."""
        self._ensure(values.device)
        assert self.sums is not None and self.extremes is not None
        v = values.to(_F64)
        valid = valid & counted
        okw = valid[:, :, None]
        z = torch.where(okw, v, 0.0)
        count = valid.sum(1, dtype=_F64)[:, None]
        nonfinite = (counted & ~valid).sum(1, dtype=_F64)[:, None]
        self.sums.index_add_(0, rows, torch.cat([count, nonfinite, z.sum(1), (z * z).sum(1)], 1))
        hi = torch.where(okw, v, float("-inf")).amax(1)
        lo = torch.where(okw, -v, float("-inf")).amax(1)
        # rows are distinct within one call (one per parameter of a layout): a gather and a scatter suffice
        self.extremes[rows] = torch.maximum(self.extremes[rows], torch.cat([lo, hi], 1))
        if self.keep_all:
            masked = torch.where(okw, v, float("nan"))
            for j, row in enumerate(row_list):
                self.kept.setdefault(row, []).append(masked[j])
                self.kept_rows[row] = self.kept_rows.get(row, 0) + masked.shape[1]

    def reset(self) -> None:
        self.staged = []
        if self.sums is not None:
            assert self.extremes is not None
            self.sums.zero_()
            self.extremes.fill_(float("-inf"))
        self.kept = {}
        self.kept_rows = {}

    def parts(self) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, torch.Tensor]]]:
        """(sums, extremes, [(slot, kept values [n, width])] in slot order)."""
        assert self.sums is not None and self.extremes is not None
        chunks = [(i, t) for i in range(self.size) for t in self.kept.get(i, [])]
        return self.sums.reshape(-1), self.extremes.reshape(-1), chunks

    def read_rows(self, slots: list[BankRow], sums: np.ndarray, extremes: np.ndarray,
                  kept: dict[int, np.ndarray]) -> dict[int, list[Summary]]:
        """Summaries of ``slots``, keyed by ``id(slot)``; ``kept``: per slot, its per-batch values [n, width]."""
        w = self.width
        sums = sums.reshape(self.size, 2 + 2 * w)
        extremes = extremes.reshape(self.size, 2 * w)
        # Vectorised once, then plain Python numbers per slot: this runs for every layer at every tick.
        lo = -extremes[:, :w]
        hi = extremes[:, w:]
        lo = np.where(np.isfinite(lo), lo, np.nan).tolist()
        hi = np.where(np.isfinite(hi), hi, np.nan).tolist()
        counts, nonfinite = sums[:, 0].tolist(), sums[:, 1].tolist()
        totals, squares = sums[:, 2:2 + w].tolist(), sums[:, 2 + w:].tolist()
        empty = np.empty((0, w))
        out = {}
        for slot in slots:
            i = slot.index
            values = kept.get(i, empty) if self.keep_all else None
            out[id(slot)] = [
                Summary(counts[i], nonfinite[i], totals[i][q], squares[i][q], lo[i][q], hi[i][q],
                        None if values is None else values[:, q][np.isfinite(values[:, q])])
                for q in range(w)]
        return out

