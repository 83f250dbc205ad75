"""Gradient observations of a set of parameters, written into one device buffer row each.

An *observation* reads the gradients of a set of parameters at one moment (an optimizer step, or the end
of a backward pass) and writes, per parameter, the number of gradient entries above eps in each unit
(:mod:`.units`) and a non-finite check. A :class:`Layout` holds the buffers for one set of parameters on one
device: columns ``[start, stop)`` of ``counts`` belong to parameter ``i``, column ``i`` of ``check`` too.

Invariants:
- computing a row costs a fixed number of device ops: parameters up to ``SMALL`` elements are flattened into
  one vector and reduced together with one ``index_add_`` into the row (counts per unit and, per parameter,
  the sum of ``|g| * 0``), larger ones each with one comparison and two reductions; nothing is read on the
  host. When the model runs compiled and a gradient has ``FUSE_MIN`` elements or more, the whole row is
  read by one compiled call, each gradient once (:mod:`.compiled_counts`), with the same values;
- whether a row is an observation *for a parameter* is decided later, on the host (``present``): a row
  computed speculatively at the end of a backward pass becomes one only if no optimizer step reads that
  gradient afterwards (see :mod:`.gradient_reading`);
- a parameter's entry is non-finite iff its gradient had NaN/Inf: the batch is left out of *that* parameter's
  rates only. The entry is exact: ``max |g|`` (float32 gradients of an unsharded layout) or ``max |g| * 0``
  / the sum of ``|g| * 0`` (0 or NaN), never a sum of values, which overflows to inf for large finite
  gradients (two float32 entries of 2e38); 0-or-NaN entries also sum over a shard group without overflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from . import compiled_counts
from .compiled import runs_compiled
from .compiled_counts import CompiledRow
from .fold_math import unit_rates
from .large_gradients import read_large
from .modes import monitor_mode
from .sharding import local_unit_index, reduce_rows
from .streams import Pending, StreamBank
from .units import UnitSpec

if TYPE_CHECKING:
    from .gradient_site import GradientSite

_F32 = torch.float32
_DTYPE = attrgetter("dtype")
# elements: up to this, gradients are concatenated and counted with two index_add_ (fewer ops); bigger ones are
# cheaper to reduce where they are (one thread, 8 gradients each: 256 elements 31 vs 73 µs grouped vs one by
# one, 1024: 78 vs 75, 4096: 265 vs 81, 16384: 1039 vs 100 -- index_add_ costs per element)
SMALL = 1 << 10
# One layout holds a row of every watched unit per observation: 4 MiB of rows (at least 4) keep a deep model's
# buffer from filling (and folding on the device) every few steps; 50 x Linear(256, 256) holds 81 rows.
_BUFFER_BYTES = 4 * 1024 * 1024
_MAX_ROWS = 256
# elements from which a gradient of a compiled model is read by the compiled row: measured on one CPU thread,
# one fused pass beats four eager ones at 512x512 (~30 vs ~80 µs) and not at 256x256 (where compiling would
# only add latency)
FUSE_MIN = 1 << 18


class Layout:
    """Buffers and fixed index tensors for one ordered set of parameters on one device."""

    @monitor_mode
    def __init__(self, sites: list[GradientSite], device: torch.device, eps: float,
                 fused: bool | None = None) -> None:
        """``fused``: read the row with one compiled call when a gradient has ``FUSE_MIN`` elements or more
        (:mod:`.compiled_counts`); None: when a watched module runs inside a torch.compile graph (FSDP2 shard
        layouts: never)."""
        self.sites = sites
        self.device = device
        self.generation = 0  # bumped at every fold: row numbers handed out before it are stale
        self.eps = torch.tensor(eps, dtype=_F32, device=device)
        self.zero_t = torch.zeros((), dtype=_F32, device=device)
        specs: list[UnitSpec] = [s.units for s in sites]
        self.columns: list[tuple[int, int]] = []
        start = 0
        for spec in specs:
            self.columns.append((start, start + spec.units))
            start += spec.units
        width = start
        # sharded gradients (FSDP2): every rank writes its shard's counts into the global unit columns, and
        # the rows are summed over the shard group before they fold (see .sharding)
        groups = {id(s.shards.group): s.shards.group for s in sites if s.shards is not None and s.shards.group}
        if len(groups) > 1 or (groups and any(s.shards is None or s.shards.group is None for s in sites)):
            raise ValueError("a layout holds either unsharded parameters or parameters of one shard group")
        self.group = next(iter(groups.values()), None)
        self.reduced = 0  # rows [0, reduced) were summed over the group already (kept across a fold)
        self.small = [i for i, s in enumerate(sites) if s.numel <= SMALL and self.group is None]
        self.large = [i for i, s in enumerate(sites) if i not in self.small]
        self.shard_index: dict[int, torch.Tensor] = {}
        for i in self.large:
            shards = sites[i].shards
            if shards is not None and shards.dim is not None and specs[i].view is not None:
                self.shard_index[i] = local_unit_index(specs[i], shards, device)
        self.capacity = max(4, min(_MAX_ROWS, _BUFFER_BYTES // (4 * max(width + len(sites), 1))))
        if self.small:
            # One row holds [counts | check]: the small parameters' counts and checks are one index_add_ of
            # ``source`` = [|g| > eps, |g| * 0] (each small element twice) into it.
            n_small = sum(sites[i].numel for i in self.small)
            self.small_index = torch.cat(
                [specs[i].unit_index(device) + self.columns[i][0] for i in self.small]
                + [torch.full((sites[i].numel,), width + i, dtype=torch.long, device=device) for i in self.small])
            self.source = torch.empty(2 * n_small, dtype=_F32, device=device)
            self.source_halves = self.source[:n_small], self.source[n_small:]
            rows = torch.zeros(self.capacity, width + len(sites), dtype=_F32, device=device)
            self.counts, self.check = rows[:, :width], rows[:, width:]
            self.rows = list(rows.unbind(0))
        else:  # contiguous apart: a shard group sums them with one collective each
            self.counts = torch.zeros(self.capacity, width, dtype=_F32, device=device)
            self.check = torch.zeros(self.capacity, len(sites), dtype=_F32, device=device)
        # per column: which parameter it belongs to; per parameter: units and elements per unit
        self.column_param = torch.cat([torch.full((b - a,), i, dtype=torch.long, device=device)
                                       for i, (a, b) in enumerate(self.columns)])
        units = torch.tensor([spec.units for spec in specs], dtype=torch.float64, device=device)
        per_unit = torch.tensor([spec.per_unit for spec in specs], dtype=torch.float64, device=device)
        self.activation_scale = 1.0 / (units * per_unit)
        self.death_scale = 1.0 / units
        self.bank_rows = torch.tensor([s.bank_row.index for s in sites], dtype=torch.long, device=device)
        self.counts_rows = list(self.counts.unbind(0))
        self.check_rows = list(self.check.unbind(0))
        self.present = np.zeros((self.capacity, len(sites)), dtype=bool)
        self.used = 0
        # parameters read by one compiled call (.compiled_counts): those big enough to gain from one pass
        # Once one gradient pays for a compiled call, every gradient of the row joins it, small ones too: each
        # added one costs its own loop in that call, less than its eager passes, and the call's results are then
        # the whole row in column order (two plain copies, no index_copy_, no small-gradient path). Measured on
        # the compiled MLP of benchmarks/compiled.py: the row 875 -> ~600 us a step.
        self.fused_params = (list(range(len(sites))) if self.group is None and any(
            sites[i].numel >= FUSE_MIN for i in self.large) else [])
        if fused is None:
            fused = compiled_counts.ENABLED and runs_compiled(s.module for s in sites)
        self.fused: CompiledRow | None = None
        if fused and self.fused_params:
            self.fused = CompiledRow(specs)
        # large gradients of unsharded parameters (compute's usual loop), each with its columns [a, b), the view
        # and dims its units reduce over (an int for one dim: parsed faster; None: one element per unit) and the
        # shape of the reduction's result where it is not [units]; sharded ones go through the general loop
        self.plain: list[tuple[int, int, int, tuple[int, ...] | None, int | tuple[int, ...] | None, Any]] = []
        self.sharded_large: list[int] = []
        for i in self.large:
            spec = specs[i]
            if self.group is None and sites[i].shards is None:
                kept = None if spec.view is None else tuple(n for d, n in enumerate(spec.view) if d not in spec.dims)
                dims = None if not spec.dims else spec.dims[0] if len(spec.dims) == 1 else spec.dims
                self.plain.append((i, *self.columns[i], spec.view, dims, kept))
            else:
                self.sharded_large.append(i)

    @property
    def full(self) -> bool:
        return self.used == self.capacity

    def mark(self, row: int, pos: int, counted: bool = True) -> None:
        """Row ``row`` is parameter ``pos``'s observation (decided on the host); ``counted``: False on ranks that
        leave an observation every rank shares (DDP's all-reduced gradient) to one rank."""
        self.present[row, pos] = counted

    def mark_row(self, row: int) -> None:
        """Row ``row`` is every parameter's observation (:meth:`mark` for each position, counted)."""
        self.present[row] = True

    @monitor_mode
    def compute(self, grads: list[torch.Tensor]) -> int:
        """Write one row from ``grads`` (aligned with ``sites``, detached); returns the row number."""
        row = self.used
        counts, check = self.counts_rows[row], self.check_rows[row]
        self.used = row + 1
        # (gradients of mixed dtypes take the eager formulation: its small gradients compare widened, in float32)
        if self.fused is not None and len(set(map(_DTYPE, grads))) == 1:
            done = self.fused.read(grads, self.eps)  # every gradient of the row, in column order
            if done is not None:
                counts.copy_(done[0])
                check.copy_(done[1])
                return row
        # eager (or the compiled call failed and stays off: the same values)
        if self.small:
            self._read_small(grads, row)
        read_large(self, grads, counts, check, frozenset())
        return row

    def _read_small(self, grads: list[torch.Tensor], row: int) -> None:
        """Counts and checks of the small gradients: one index_add_ into the row (see __init__)."""
        parts = grads if not self.large else [grads[i] for i in self.small]
        active, flags = self.source_halves
        if len(set(map(_DTYPE, parts))) > 1:  # mixed dtypes: widened exactly, compared in float32
            magnitude = _flatten([p.to(torch.float64) for p in parts]).abs_()
            torch.mul(magnitude, self.zero_t, out=flags)  # before float32 rounds 1e300 to inf
            torch.gt(magnitude.to(_F32), self.eps, out=active)
        else:
            # |g| of all of them in a new vector (one part: a view of the gradient, so not in place)
            magnitude = _flatten(parts).abs_() if len(parts) > 1 else parts[0].reshape(-1).abs()
            torch.gt(magnitude, self.eps, out=active)  # compared in the gradients' dtype, as the large ones
            torch.mul(magnitude, self.zero_t, out=flags)  # 0, or NaN where |g| is NaN/inf
        whole = self.rows[row]
        whole.zero_()
        whole.index_add_(0, self.small_index, self.source)

    @monitor_mode
    def fold(self, bank: StreamBank, keep: Sequence[int] = ()) -> dict[int, int]:
        """Fold the rows' present entries into ``bank`` as per-observation (activation, death) rates
        (:func:`.fold_math.unit_rates`) and empty the buffer (a new generation). Rows in ``keep`` (still
        undecided: a gradient whose life goes on) move to the front; returns their new row numbers. At a tick
        (``bank.at_tick``) the rows go to the host as they are and fold there; in the middle of an epoch (a
        full buffer) they fold on the device."""
        n = self.used
        if self.group is not None and n > self.reduced:  # every rank of the group folds at the same row
            reduce_rows(self.counts[self.reduced:n], self.check[self.reduced:n], self.group)
        present = self.present[:n]
        moved = {old: new for new, old in enumerate(sorted(set(keep)))}
        if n and present.any():
            index = self._fold_index()
            if bank.at_tick:
                counts, check = self.counts, self.check
                if any(old != new for old, new in moved.items()):  # the moves below overwrite rows
                    counts, check = counts[:n].clone(), check[:n].clone()
                # the host folds the rows with unit_rates' statistic (collect/fold_plan.py): present [n, params]
                # marks the observations, ``extra`` is _fold_index() (starts, stops, activation and death scales, slots)
                bank.defer(Pending("layout", index[4], ((counts, n), (check, n), (present.copy(), None)), index))
            else:
                slots = index[4]
                values = unit_rates(self.counts[:n], *self._device_index())
                counted_t = torch.from_numpy(np.ascontiguousarray(present.T)).to(self.device, non_blocking=True)
                bank.fold_slots(slots, values, torch.isfinite(self.check[:n]).T, counted_t)
        self.present[:n] = False
        for old, new in moved.items():
            if old != new:
                self.counts[new].copy_(self.counts[old])
                self.check[new].copy_(self.check[old])
        self.used = self.reduced = len(moved)
        self.generation += 1
        return moved

    def _fold_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[int]]:
        """Host copies of what a fold needs, made once per layout: each parameter's columns ``[start, stop)``
        (parameters own consecutive columns, one per unit, in ``sites`` order), the activation and death
        scales (1 / (units * per_unit), 1 / units; inf for a parameter without entries, whose rates are then
        NaN) and the bank rows."""
        cached = getattr(self, "_host_index", None)
        if cached is None:
            units = np.array([s.units.units for s in self.sites], dtype=np.int64)
            per_unit = np.array([s.units.per_unit for s in self.sites], dtype=np.float64)
            stops = np.cumsum(units)
            with np.errstate(divide="ignore"):
                cached = self._host_index = (stops - units, stops, 1.0 / (units * per_unit), 1.0 / units,
                                             [s.bank_row.index for s in self.sites])
        return cached

    def _device_index(self) -> tuple[torch.Tensor, ...]:
        """The same (columns and scales) on the layout's device, for folds in the middle of an epoch."""
        cached = getattr(self, "_device_fold_index", None)
        if cached is None:
            # non_blocking from host memory: this runs in a hook when a buffer fills
            cached = self._device_fold_index = tuple(torch.from_numpy(a).to(self.device, non_blocking=True)
                                                     for a in self._fold_index()[:4])
        return cached


def _flatten(parts: list[torch.Tensor]) -> torch.Tensor:
    """A new 1-D tensor of the ``parts`` (one dtype) one after another: one C++ call (the one DDP's bucketing
    uses) instead of a reshape per part and a cat."""
    if _FLATTEN is not None:
        return _FLATTEN(parts)
    return torch.cat([p.reshape(-1) for p in parts])


_FLATTEN = getattr(torch._C._nn, "flatten_dense_tensors", None)


class LayoutKind(Protocol):
    """What a reader's observations compute: makes the buffers of one parameter set on one device (a
    :class:`~.gradient_layout.Layout`-like object: ``compute``, ``mark``, ``fold``, ``full``, ``generation``),
    and is told when an epoch starts."""

    def new(self, sites: list[GradientSite], device: torch.device) -> Any: ...

    def reset(self) -> None: ...


class ActivityCounts:
    """Per-unit counts of |g| > eps (gradient activation): :class:`~.gradient_layout.Layout`."""

    def __init__(self, eps: float) -> None:
        self.eps = eps

    def new(self, sites: list[GradientSite], device: torch.device) -> Layout:
        return Layout(sites, device, self.eps)

    def reset(self) -> None:
        pass
