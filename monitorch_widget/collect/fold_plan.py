"""The tick's host fold as a fixed sequence of numpy calls over every pending row at once, whatever its shape.

Every pending entry of every accumulator (:class:`~.streams.Pending`, on the host by now) becomes one or
more *fold rows*: the per-batch values [n, w] of one bank slot. A :class:`FoldPlan` holds, for one
arrangement of entries (which accumulators, kinds, slots and shapes: stable from the first epoch on),
index arrays that turn all of them into one padded [rows, n_max, w_max] block, folded by one call of
:func:`~.fold_math.fold_moments`:

1. the count arrays (rate rows [n, C], gradient layouts' unit counts [n, W]) are concatenated flat, and cut
   into segments -- one per batch and channel set (a rate row), one per observation and parameter (a
   layout's columns ``[start, stop)``) -- summed by :func:`~.fold_math.segment_sums` (two calls: entries
   above eps, empty units) and turned into rates by :func:`~.fold_math.count_rates`;
2. every other array (checks, scalar rows, pushed values, valid flags, a layout's ``counted`` mask) is
   concatenated flat in float64; the values of every fold row are gathered from the rates and these with one
   index, its ``valid`` and ``counted`` flags with another (a batch past a row's own n: no observation,
   ``counted`` False);
3. one :func:`~.fold_math.fold_moments`; two gathers put each accumulator's moments in its own columns, in
   slot order (the bank takes them as they are).

About 30 numpy calls per tick (13 of them :func:`~.fold_math.fold_moments`'), whatever the number of sites
and shapes; the values are the ones the
per-shape fold gives, bit for bit (the same exact integer counts and scales, the same sequential sums over
batches: padding adds exact zeros at the end). Row sizes (elements per channel, which may change from batch
to batch) are read at every tick; anything else that differs builds a new plan (:func:`plan_for`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from .fold_math import count_rates, fold_moments, segment_counts, segment_sums
from .streams import Pending, StreamBank

_PLANS: OrderedDict[tuple[Any, ...], FoldPlan] = OrderedDict()
_MAX_PLANS = 16  # several inspectors ticking in turn keep their plans
_LARGE = 1 << 14  # counts from which segment_counts' cheaper accumulators pay for their extra calls
_LARGE_BLOCK = 1 << 9  # padded block entries from which it is gathered batch-major


def signature(entries: Sequence[tuple[StreamBank, Pending]], arrays: Sequence[np.ndarray]) -> tuple[Any, ...]:
    """What a plan depends on: per entry its accumulator (identity, width, slots, keep), kind, slot(s) and a
    layout's fold index by identity (the plan keeps it alive); the shapes of all host arrays."""
    key: list[Any] = [
        (id(acc), acc.width, acc.size, acc.keep_all, entry.kind, entry.slot, None) if entry.kind != "layout" else
        (id(acc), acc.width, acc.size, acc.keep_all, entry.kind, id(entry.slot), id(entry.extra))
        for acc, entry in entries]
    key.append(tuple([a.shape for a in arrays]))
    return tuple(key)


def plan_for(entries: Sequence[tuple[StreamBank, Pending]], arrays: Sequence[np.ndarray]) -> FoldPlan:
    """The plan for this arrangement (``arrays``: every entry's host arrays, in order), made on first sight."""
    key = signature(entries, arrays)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS[key] = FoldPlan(entries, arrays)
        if len(_PLANS) > _MAX_PLANS:
            _PLANS.popitem(last=False)
    else:
        _PLANS.move_to_end(key)
    return plan


class FoldPlan:
    """Index arrays that fold one arrangement of pending entries (see the module docstring)."""

    def __init__(self, entries: Sequence[tuple[StreamBank, Pending]], host: Sequence[np.ndarray]) -> None:
        items = []
        at = 0
        for acc, entry in entries:
            items.append((acc, entry, host[at:at + len(entry.arrays)]))
            at += len(entry.arrays)
        # keep what the signature names by identity alive (ids stay unique while the plan lives)
        self.pinned = [(e.slot, e.extra) for _, e, _ in items if e.kind == "layout"]
        # 1. every array's flat offset: count arrays (rate rows, layout counts) in the concatenation xc, the
        # others in x (float64)
        count_arrays: list[int] = []
        value_arrays: list[int] = []
        flat = 0
        for _, entry, arrays in items:
            for a in range(len(arrays)):
                (count_arrays if a == 0 and entry.kind in ("rates", "layout") else value_arrays).append(flat)
                flat += 1
        self.count_order, self.value_order = count_arrays, value_arrays
        x_off: dict[int, int] = {}  # a count array's offset in xc, any other's in x
        n_xc = n_x = 0
        for i in count_arrays:
            x_off[i], n_xc = n_xc, n_xc + host[i].size
        for i in value_arrays:
            x_off[i], n_x = n_x, n_x + host[i].size
        # 2. count segments and fold rows
        starts: list[np.ndarray] = []
        lengths: list[np.ndarray] = []
        act_scale: list[np.ndarray] = []
        dead_scale: list[np.ndarray] = []
        self.rate_segments: list[tuple[int, int, int]] = []  # (first segment, n, channels) of each rates entry
        self.rate_entries: list[int] = []
        n_seg = 0
        # positions in the value source (activation rates of the segments, their death rates, then x, then a 0)
        # and in the flag source (isfinite(x), x != 0, False, True) are final once every segment is known:
        # each fold row is noted symbolically first
        pending_rows: list[tuple[str, Any]] = []
        banks: dict[int, tuple[StreamBank, list[int], list[Any]]] = {}  # id -> (bank, fold rows, slots)
        flat = 0
        for i, (acc, entry, arrays) in enumerate(items):
            first_row = len(pending_rows)
            kind = entry.kind
            if kind == "rates":
                n, c = arrays[0].shape
                base = x_off[flat]
                starts.append(base + c * np.arange(n))
                lengths.append(np.full(n, c))
                act_scale.append(np.zeros(n))  # 1 / (C * size): from the row sizes at every tick
                dead_scale.append(np.full(n, 1.0 / c))
                self.rate_segments.append((n_seg, n, c))
                self.rate_entries.append(i)
                pending_rows.append(("segments", (n_seg, n, 1, x_off[flat + 1], 1, None, 0)))
                n_seg += n
                slots = [entry.slot]
            elif kind == "layout":
                seg_starts, seg_stops, act, death = entry.extra[:4]
                n, width = arrays[0].shape
                params = len(seg_starts)
                base = x_off[flat]
                row_base = base + width * np.arange(n)
                starts.append((row_base[:, None] + np.asarray(seg_starts)[None, :]).reshape(-1))
                lengths.append(np.broadcast_to(np.asarray(seg_stops) - np.asarray(seg_starts), (n, params)).reshape(-1))
                act_scale.append(np.broadcast_to(np.asarray(act, dtype=np.float64), (n, params)).reshape(-1))
                dead_scale.append(np.broadcast_to(np.asarray(death, dtype=np.float64), (n, params)).reshape(-1))
                for p in range(params):  # parameter p: segment n_seg + r * params + p, check/counted [r, p]
                    pending_rows.append(("segments", (n_seg + p, n, params, x_off[flat + 1] + p, params,
                                                      x_off[flat + 2] + p, params)))
                n_seg += n * params
                slots = list(entry.slot)
            elif kind == "scalars":
                n = arrays[0].shape[0]
                pending_rows.append(("scalars", (x_off[flat], n)))
                slots = [entry.slot]
            elif kind == "values":
                n, w = arrays[0].shape
                pending_rows.append(("values", (x_off[flat], n, w, x_off[flat + 1])))
                slots = [entry.slot]
            else:
                raise ValueError(f"unknown pending kind {kind!r}")
            flat += len(arrays)
            bank = banks.setdefault(id(acc), (acc, [], []))
            bank[1].extend(range(first_row, len(pending_rows)))
            bank[2].extend(slots)
        self.n_seg = n_seg
        if n_seg:
            self.seg_starts = np.concatenate(starts).astype(np.intp)
            seg_lengths = np.concatenate(lengths)
            self.seg_stops = self.seg_starts + seg_lengths
            self.nonempty = bool((seg_lengths > 0).all())
            self.longest = int(seg_lengths.max())
            self.act_scale = np.concatenate(act_scale)
            self.dead_scale = np.concatenate(dead_scale)
        self.sizes: list[Any] | None = None  # the row sizes act_scale was last filled from
        self.exact_in_float32 = False  # every segment's total at most 2^24 (set with act_scale)
        if n_seg and not self.rate_entries:
            self._bound_totals()
        width = max(acc.width for acc, _, _ in items)
        self.width = width
        zero = 2 * n_seg + n_x  # the value source's trailing 0.0
        false, true = 2 * n_x, 2 * n_x + 1
        n_max = max(spec[1] for _, spec in pending_rows)
        g = len(pending_rows)
        vidx = np.full((g, n_max, width), zero, dtype=np.intp)
        valid = np.full((g, n_max), false, dtype=np.intp)
        counted = np.full((g, n_max), false, dtype=np.intp)
        self.n_of_row = []
        for j, (kind, spec) in enumerate(pending_rows):
            if kind == "segments":
                seg0, n, stride, check0, check_stride, counted0, counted_stride = spec
                segs = seg0 + stride * np.arange(n)
                vidx[j, :n, 0], vidx[j, :n, 1] = segs, n_seg + segs
                valid[j, :n] = check0 + check_stride * np.arange(n)
                counted[j, :n] = true if counted0 is None else n_x + counted0 + counted_stride * np.arange(n)
            elif kind == "scalars":
                off, n = spec
                vidx[j, :n, 0] = 2 * n_seg + off + np.arange(n)
                valid[j, :n] = off + np.arange(n)
                counted[j, :n] = true
            else:  # values [n, w] and valid flags [n]
                off, n, w, valid_off = spec
                vidx[j, :n, :w] = 2 * n_seg + off + w * np.arange(n)[:, None] + np.arange(w)[None, :]
                valid[j, :n] = n_x + valid_off + np.arange(n)
                counted[j, :n] = true
            self.n_of_row.append(spec[1])
        # Gathered batch-major ([n_max, rows, width] in memory, read through a transposed view): fold_moments'
        # reductions over the batches then run along the outermost axis, rows and quantities in the inner loop:
        # the same sequential sums (bit for bit), 2x faster on a deep model's [152, 20, 2] block
        # (a small block, as the seed's [12, 7, 2], gathers row-major: strided views would cost more than they save)
        self.batch_major = vidx.size >= _LARGE_BLOCK
        flag_idx = np.stack([valid, counted])  # one gather for both flag sets
        self.vidx = np.ascontiguousarray(vidx.transpose(1, 0, 2)) if self.batch_major else vidx
        self.flag_idx = np.ascontiguousarray(flag_idx.transpose(0, 2, 1)) if self.batch_major else flag_idx
        # 3. each bank's columns of the folded moments: [count, nonfinite, sums, sums of squares], [-min, max]
        s_width, e_width = 2 + 2 * width, 2 * width
        s_index: list[np.ndarray] = []
        e_index: list[np.ndarray] = []
        self.banks: list[tuple[StreamBank, list[Any], int, int, int, int, list[int] | None, bool]] = []
        s_at = e_at = 0
        for acc, fold_rows, slots in banks.values():
            w = acc.width
            if sorted(slots) == list(range(acc.size)):  # every slot once (a layout lists them in backward order)
                fold_rows = [row for _, row in sorted(zip(slots, fold_rows))]
                slots = list(range(acc.size))
            r = np.asarray(fold_rows, dtype=np.intp)[:, None]
            s_cols = np.r_[0, 1, 2:2 + w, 2 + width:2 + width + w]
            e_cols = np.r_[0:w, width:width + w]
            s_index.append((r * s_width + s_cols).reshape(-1))
            e_index.append((r * e_width + e_cols).reshape(-1))
            rows_here = len(fold_rows)
            # every slot once, in order: the bank's first fold of an epoch takes the rows as they are
            whole = slots == list(range(acc.size))
            self.banks.append((acc, slots, s_at, rows_here, e_at, w, fold_rows if acc.keep_all else None, whole))
            s_at += rows_here * (2 + 2 * w)
            e_at += rows_here * 2 * w
        self.s_index = np.concatenate(s_index)
        self.e_index = np.concatenate(e_index)
        self.keep = any(acc.keep_all for acc, _, _ in items)

    def _rate_scales(self, entries: Sequence[tuple[StreamBank, Pending]]) -> None:
        """1 / (C * elements per channel) of every rate segment, from this tick's row sizes."""
        sizes = [entries[i][1].extra for i in self.rate_entries]
        if sizes == self.sizes:
            return
        for (seg0, n, c), size in zip(self.rate_segments, sizes):
            # the same float the per-buffer path computes: 1.0 / (C * size), the product exact
            self.act_scale[seg0:seg0 + n] = 1.0 / (c * np.asarray(size, dtype=np.float64))
        self.sizes = [list(s) for s in sizes]
        self._bound_totals()

    def _bound_totals(self) -> None:
        # a segment counts at most 1 / act_scale entries (its elements, or its parameter's entries): summed as
        # float32 integers every partial sum is exact while that stays <= 2^24 (a size 0 reads scale inf: 0)
        self.exact_in_float32 = bool((self.act_scale >= 2.0 ** -24).all())

    def run(self, entries: Sequence[tuple[StreamBank, Pending]], arrays: Sequence[np.ndarray]) -> None:
        """Fold ``entries`` (``arrays``: every entry's host arrays, in order; more may follow) into their
        accumulators' host moments."""
        x = np.concatenate([arrays[i] for i in self.value_order], axis=None, dtype=np.float64)
        if self.n_seg:
            self._rate_scales(entries)
            # Kept in the rows' dtype (float32 counts): segment_sums accumulates in float64 as it reduces. A
            # float64 copy first cost 7x more for a deep model's epoch (20 rows x 25,600 units: 3.7 vs 0.5 ms; the
            # 4 MB temporary is fresh pages every tick) and nothing for a small one.
            counts = np.concatenate([arrays[i] for i in self.count_order], axis=None)
            if self.nonempty and counts.size >= _LARGE:
                active, empty = segment_counts(counts, self.seg_starts, self.exact_in_float32, self.longest)
            else:  # few counts: two calls fewer
                active = segment_sums(counts, self.seg_starts, self.seg_stops, self.nonempty)
                empty = segment_sums(counts == 0, self.seg_starts, self.seg_stops, self.nonempty)
            source = np.concatenate([*count_rates(active, empty, self.act_scale, self.dead_scale), x, (0.0,)])
        else:
            source = np.concatenate([x, (0.0,)])
        flags = np.concatenate([np.isfinite(x), x != 0, (False, True)])[self.flag_idx]
        if self.batch_major:
            sums, extremes, masked = fold_moments(source[self.vidx].transpose(1, 0, 2), flags[0].T, flags[1].T,
                                                  self.keep)
        else:
            sums, extremes, masked = fold_moments(source[self.vidx], flags[0], flags[1], self.keep)
        all_sums = sums.reshape(-1)[self.s_index]
        all_extremes = extremes.reshape(-1)[self.e_index]
        n_of_row = self.n_of_row
        for acc, slots, s_at, rows, e_at, w, kept_rows, whole in self.banks:
            bank_sums = all_sums[s_at:s_at + rows * (2 + 2 * w)].reshape(rows, 2 + 2 * w)
            bank_extremes = all_extremes[e_at:e_at + rows * 2 * w].reshape(rows, 2 * w)
            if whole and acc.host_sums is None:  # the usual tick: what add_host would do, without its checks
                acc.host_sums, acc.host_extremes = bank_sums, bank_extremes
                if kept_rows is not None:
                    assert masked is not None
                    acc.host_kept = {slot: [masked[j, :n_of_row[j], :w]] for slot, j in zip(slots, kept_rows)}
                continue
            kept = None
            if kept_rows is not None:
                assert masked is not None
                kept = [masked[j, :n_of_row[j], :w] for j in kept_rows]
            acc.add_host(slots, bank_sums, bank_extremes, kept)
