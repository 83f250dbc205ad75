"""Accumulation of per-batch statistics over an epoch: what hooks fold into, and how it reaches the host.

Invariants of the hot path (the per-batch hook calls):
- no host synchronisation: nothing reads a tensor value on the host (no ``.item()``, ``.cpu()``,
  ``bool(tensor)``); hooks write with ``out=`` into preallocated rows of a
  :class:`~.buffers.RowBuffer` that lives on the data's own device, and only Python-side integers change;
- a few torch ops per call (a comparison, one or two reductions);
- when a buffer is full, its rows reduce on the device to per-batch values ([batches, width], a few ops)
  which are *staged* in the bank; after ``STAGE_LIMIT`` stagings they fold into device moments
  (:func:`~.fold_math.fold_moments`), so a long epoch holds a bounded amount of device memory.
At a tick nothing folds on the device: sites hand their buffers' filled rows to the bank (*pending*), and
:func:`~.host_fold.fold_on_host` copies every pending row, staged value and device moment of every lens to
the host once per device, then folds them with numpy, grouped by shape across sites (the same
:mod:`.fold_math` functions), into this epoch's host moments. Under ``torch.distributed`` those host parts
are then combined across ranks (:mod:`.transfer`, :mod:`.rank_exchange`).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch

from .fold_math import as_f64, fold_moments
from .modes import monitor_mode
from .summary import SlotTable, Summary

_F64 = torch.float64


class Pending(NamedTuple):
    """Rows handed over at a tick, folded on the host. ``arrays``: (tensor or array, filled rows or None);
    ``kind``: 'values' ([n, w] values, [n] valid), 'scalars' ([n, 1] values, valid iff finite), 'rates'
    (RowBuffer rows [n, C] and checks [n]; ``extra`` the row sizes) or 'layout' (a gradient layout's unit
    counts [n, W], checks [n, params] and observation mask [n, params]; ``extra`` its fold index: columns
    ``starts``/``stops``, activation and death scales per parameter, bank rows). Folded by
    :mod:`.fold_plan`."""
    kind: str
    slot: Any  # the bank row; a layout's: the list of its sites' bank rows
    arrays: tuple[tuple[Any, int | None], ...]
    extra: Any = None


class StreamBank:
    """Running moments of ``width`` per-batch quantities for ``size`` slots (sites): row i belongs to slot i.

    Layout of a slot's moments (float64): ``sums`` [count, nonfinite, sum_0..w-1, sumsq_0..w-1] (reduce
    across ranks by SUM) and ``extremes`` [-min_0..w-1, max_0..w-1] (by MAX). A batch flagged invalid
    (non-finite data) counts in ``nonfinite`` and contributes nothing else. With ``keep_all`` every
    per-batch value is kept too (quantiles). State of an epoch: device moments of in-epoch folds (``sums``,
    ``extremes``, ``kept``; None until a fold ran on the device), ``staged`` device values not folded yet,
    ``pending`` rows of the current tick, and host moments (``host_*``) of the ticks and refreshes so far.
    """

    STAGE_LIMIT = 1024  # staged entries are small ([batches, width]); past this, they fold on the device

    def __init__(self, width: int, keep_all: bool = False) -> None:
        self.width = width
        self._signs = np.repeat([-1.0, 1.0], width)  # turns the extremes' [-min, max] into [min, max]
        self.keep_all = keep_all
        self.size = 0
        #: set while a lens' gradient readers fold at the tick: their layouts then hand rows over (pending)
        self.at_tick = False
        self.sums: torch.Tensor | None = None
        self.extremes: torch.Tensor | None = None
        self.kept: dict[int, list[torch.Tensor]] = {}
        self.staged: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        self.pending: list[Pending] = []
        self.host_sums: np.ndarray | None = None
        self.host_extremes: np.ndarray | None = None
        self.host_kept: dict[int, list[np.ndarray]] = {}
        # (slots, their number, [(id(slot), row)], the same as a dict) of the last read_rows: see there
        self._keys: tuple[list[BankRow], int, list[tuple[int, int]], dict[int, int]] | None = None

    def add_row(self) -> BankRow:
        self.size += 1
        return BankRow(self, self.size - 1)

    @property
    def device(self) -> torch.device | None:
        return None if self.sums is None else self.sums.device

    def has_data(self) -> bool:
        return self.sums is not None or self.host_sums is not None or bool(self.staged) or bool(self.pending)

    # --- in-epoch folds, on the device ---------------------------------------------------------------
    def stage(self, index: int, values: torch.Tensor, valid: torch.Tensor) -> None:
        """Per-batch values [n, width] (owned, not a view of a reused buffer) and valid [n] of slot ``index``."""
        if values.shape[0] == 0:
            return
        self.staged.append((index, values, valid))
        if len(self.staged) >= self.STAGE_LIMIT:
            self.commit()

    @monitor_mode
    def commit(self) -> None:
        """Fold the staged values into the device moments, entries of equal shape and device at once."""
        staged, self.staged = self.staged, []
        groups: dict[tuple[Any, ...], list[tuple[int, torch.Tensor, torch.Tensor]]] = {}
        for entry in staged:
            groups.setdefault((entry[1].device, *entry[1].shape), []).append(entry)
        for group in groups.values():
            self.fold_slots([g[0] for g in group], torch.stack([as_f64(g[1]) for g in group]),
                            torch.stack([g[2] for g in group]))

    @monitor_mode
    def fold_rows(self, rows: torch.Tensor, row_list: list[int], values: torch.Tensor, valid: torch.Tensor,
                  counted: torch.Tensor) -> None:
        """Fold observations into bank rows at once: ``row_list`` [g] (``rows``: the same as a long tensor on the
        device), values [g, n, width], valid [g, n]; ``counted`` [g, n] marks the entries that are observations
        at all (valid ones are finite, counted-but-not-valid ones count as non-finite)."""
        self.fold_slots(row_list, as_f64(values), valid, counted, rows)

    @monitor_mode
    def fold_slots(self, slots: list[int], values: torch.Tensor, valid: torch.Tensor, counted: Any = None,
                   index: torch.Tensor | None = None) -> None:
        """The device fold: values [g, n, width] of ``slots`` (may repeat), valid/counted [g, n]."""
        self._ensure(values.device)
        assert self.sums is not None and self.extremes is not None
        sums, extremes, masked = fold_moments(values, valid, counted, self.keep_all)
        if index is None:
            # non_blocking from host memory: no wait for the device's queue (this may run inside a hook)
            index = torch.from_numpy(np.asarray(slots, dtype=np.int64)).to(values.device, non_blocking=True)
        self.sums.index_add_(0, index, sums)
        self.extremes.scatter_reduce_(0, index[:, None].expand_as(extremes), extremes, "amax")
        if masked is not None:
            for j, slot in enumerate(slots):
                self.kept.setdefault(slot, []).append(masked[j])

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

    # --- the tick ------------------------------------------------------------------------------------
    def defer(self, entry: Pending) -> None:
        """Rows to fold on the host at this tick's copy (views stay untouched until then)."""
        self.pending.append(entry)

    def add_host(self, slots: list[int], sums: np.ndarray, extremes: np.ndarray,
                 kept: list[np.ndarray] | None) -> None:
        """Add host-folded moments of ``slots`` (rows of ``sums``/``extremes``; ``kept``: each one's masked
        per-batch values [n, width]) to this epoch's."""
        w = self.width
        if self.host_sums is None and len(slots) == self.size and slots == list(range(self.size)):
            # the first fold of the epoch, every slot in order (the usual tick): the rows as they are
            self.host_sums, self.host_extremes = sums, extremes
        elif self.host_sums is None:
            self.host_sums = np.zeros((self.size, 2 + 2 * w))
            self.host_extremes = np.full((self.size, 2 * w), -np.inf)
        elif self.host_sums.shape[0] < self.size:  # a slot added later
            grow = self.size - self.host_sums.shape[0]
            self.host_sums = np.concatenate([self.host_sums, np.zeros((grow, 2 + 2 * w))])
            self.host_extremes = np.concatenate([self.host_extremes, np.full((grow, 2 * w), -np.inf)])
        assert self.host_extremes is not None
        first = slots[0]
        if self.host_sums is sums:
            pass
        elif slots == list(range(first, first + len(slots))):  # consecutive slots (sites in model order)
            self.host_sums[first:first + len(slots)] += sums
            part = self.host_extremes[first:first + len(slots)]
            np.maximum(part, extremes, out=part)
        elif len(set(slots)) == len(slots):
            self.host_sums[slots] += sums
            self.host_extremes[slots] = np.maximum(self.host_extremes[slots], extremes)
        else:
            np.add.at(self.host_sums, slots, sums)
            np.maximum.at(self.host_extremes, slots, extremes)
        if kept is not None and self.keep_all:
            for slot, values in zip(slots, kept):
                self.host_kept.setdefault(slot, []).append(values)

    def part(self, device: tuple[np.ndarray, np.ndarray, list[tuple[int, np.ndarray]]] | None
             ) -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]:
        """This epoch's host part (sums, extremes, kept values per slot): host moments plus the copy of the
        device moments (``device``: sums, extremes, kept chunks; None without in-epoch device folds)."""
        w, n = self.width, self.size
        if device is None and self.host_sums is not None and self.host_sums.shape[0] == n:
            # the usual case (no fold on the device this epoch): this epoch's host moments as they are
            assert self.host_extremes is not None
            return self.host_sums.reshape(-1), self.host_extremes.reshape(-1), \
                {k: c[0] if len(c) == 1 else np.concatenate(c) for k, c in self.host_kept.items()}
        sums = np.zeros((n, 2 + 2 * w))
        extremes = np.full((n, 2 * w), -np.inf)
        chunks: dict[int, list[np.ndarray]] = {}
        if device is not None:
            d_sums, d_extremes, d_kept = device
            rows = d_sums.size // (2 + 2 * w)
            sums[:rows] += d_sums.reshape(rows, -1)
            extremes[:rows] = d_extremes.reshape(rows, -1)
            for slot, values in d_kept:
                chunks.setdefault(slot, []).append(values)
        if self.host_sums is not None:
            assert self.host_extremes is not None
            rows = self.host_sums.shape[0]
            sums[:rows] += self.host_sums
            np.maximum(extremes[:rows], self.host_extremes, out=extremes[:rows])
        for slot, arrays in self.host_kept.items():
            chunks.setdefault(slot, []).extend(arrays)
        return sums.reshape(-1), extremes.reshape(-1), {k: np.concatenate(c) for k, c in chunks.items()}

    def reset(self) -> None:
        """A new epoch: drop every moment (no device op; device moments are allocated again when needed)."""
        self.sums = self.extremes = None
        self.kept = {}
        self.staged = []
        self.pending = []
        self.host_sums = self.host_extremes = None
        self.host_kept = {}

    def read_rows(self, slots: list[BankRow], sums: np.ndarray, extremes: np.ndarray,
                  kept: dict[int, np.ndarray]) -> dict[int, list[Summary]] | SlotTable:
        """Summaries of ``slots``, keyed by ``id(slot)``; ``kept``: per slot, its per-batch values [n, width]. Eight
        slots or more without kept values: a :class:`~.summary.SlotTable` (keyed the same way)."""
        cached = self._keys
        if cached is None or cached[0] is not slots or cached[1] != len(slots):
            # a lens hands the same list of slots every tick (sites are only appended): keyed once
            keys = [(id(s), s.index) for s in slots]
            cached = self._keys = (slots, len(slots), keys, dict(keys))
        return self._read(cached[2], sums, extremes, kept, cached[3])

    def _read(self, keys: list[tuple[int, int]], sums: np.ndarray, extremes: np.ndarray,
              kept: dict[int, np.ndarray], index: dict[int, int] | None = None) -> dict[int, list[Summary]] | SlotTable:
        w = self.width
        # A few array ops and two conversions to Python numbers for every slot at once: this runs for every
        # layer at every tick. Per slot, quantity q reads [count, nonfinite, sum_q, sumsq_q, min_q, max_q].
        table = sums.reshape(-1, 2 + 2 * w)
        ends = extremes.reshape(-1, 2 * w)
        if len(keys) < 8:  # a few slots (a loss, a metric): four array ops would cost more than the loop
            return self._read_few(keys, table.tolist(), ends.tolist(), kept)
        # an extreme of a slot without finite batches is +-inf: NaN, as everywhere else; minima come negated
        ends = np.where(np.isfinite(ends), ends * self._signs, math.nan)
        if not self.keep_all:  # Summary objects made when asked; a lens may read points of every slot at once
            return SlotTable(np.concatenate([table, ends], 1), w, dict(keys) if index is None else index)
        rows = np.concatenate([table, ends], 1).tolist()
        out = {}
        empty = np.empty((0, w))
        for key, i in keys:
            s = rows[i]
            values = kept.get(i, empty)
            out[key] = [Summary(s[0], s[1], s[2 + q], s[2 + w + q], s[2 + 2 * w + q], s[2 + 3 * w + q], None,
                                values[:, q]) for q in range(w)]
        return out

    def _read_few(self, keys: list[tuple[int, int]], rows: list[list[float]], ends: list[list[float]],
                  kept: dict[int, np.ndarray]) -> dict[int, list[Summary]]:
        w = self.width
        empty = np.empty((0, w))
        out = {}
        isfinite = math.isfinite
        for key, i in keys:
            s, e = rows[i], ends[i]
            values = kept.get(i, empty) if self.keep_all else None
            # an extreme of a slot without finite batches is +-inf: NaN, as everywhere else
            out[key] = [
                Summary(s[0], s[1], s[2 + q], s[2 + w + q], -e[q] if isfinite(e[q]) else math.nan,
                        e[w + q] if isfinite(e[w + q]) else math.nan, None,
                        None if values is None else values[:, q])
                for q in range(w)]
        return out



class StatStream(StreamBank):
    """A bank of one slot that a single site (a loss, a pushed value) owns; its summaries are keyed by
    ``id(stream)``."""

    def __init__(self, width: int, keep_all: bool = False) -> None:
        super().__init__(width, keep_all)
        self.size = 1

    def fold(self, values: torch.Tensor, valid: torch.Tensor) -> None:
        """values: [n, width] on one device (owned); valid: [n] bool."""
        self.stage(0, values, valid)

    def read(self, sums: np.ndarray, extremes: np.ndarray, kept: dict[int, np.ndarray]) -> dict[int, list[Summary]]:
        """Host-side view: one Summary per quantity (column), keyed by ``id(self)``."""
        out = self._read([(id(self), 0)], sums, extremes, kept)
        assert not isinstance(out, SlotTable)  # one slot: always read as Summary objects
        return out


class BankRow:
    """One site's row in a :class:`StreamBank` (keys the site's summaries)."""

    __slots__ = ("bank", "index")

    def __init__(self, bank: StreamBank, index: int) -> None:
        self.bank = bank
        self.index = index

    def fold(self, values: torch.Tensor, valid: torch.Tensor) -> None:
        self.bank.stage(self.index, values, valid)

    def reset(self) -> None:
        pass  # the lens resets its bank once for all slots
