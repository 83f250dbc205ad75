"""The tick's one-plan host fold (collect/fold_plan.py) against plain torch on the same rows.

Entries of every kind and shape fold together in one plan: rate rows of several widths, a gradient layout
(with a parameter without units and observations left undecided), scalar rows, pushed values, staged
device values and a slot fed by two entries. Each Summary is compared with torch computing the statistic
directly from the per-batch values; the plan is kept across ticks while only the row sizes change.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import closest_observation

from monitorch_widget.collect import fold_math, fold_plan
from monitorch_widget.collect.buffers import RowBuffer
from monitorch_widget.collect.streams import Pending, StatStream, StreamBank
from monitorch_widget.collect.transfer import to_host

POINTS = ("mean", "std", "min", "max", "Q1", "median", "Q3")


def assert_summary(summary, values: list[float], keep: bool = True) -> None:
    """``values``: the per-batch values of one quantity, NaN where a batch is non-finite (left out)."""
    t = torch.tensor(values, dtype=torch.float64)
    finite = t[torch.isfinite(t)]
    assert (summary.count, summary.nonfinite) == (finite.numel(), t.numel() - finite.numel())
    if finite.numel() == 0:
        assert math.isnan(summary.point("mean"))
        return
    q = torch.quantile(finite, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)).tolist()
    want = {"mean": finite.mean().item(), "std": finite.std(correction=0).item(), "min": finite.min().item(),
            "max": finite.max().item(), "Q1": q[0], "median": closest_observation(finite, 0.5), "Q3": q[2]}
    for method in POINTS if keep else ("mean", "std", "min", "max"):
        assert summary.point(method) == pytest.approx(want[method], rel=1e-12, abs=1e-15), method


def fill(buf: RowBuffer, counts: list[torch.Tensor], sizes: list[int], checks: list[float]) -> None:
    for c, size, check in zip(counts, sizes, checks):
        buf.rows[buf.n].copy_(c)
        buf.checks[buf.n].fill_(check)
        buf.row_sizes[buf.n] = size
        buf.n += 1


def rates_by_torch(counts: torch.Tensor, size: int) -> tuple[float, float]:
    """counts [C]: per channel, elements above eps out of ``size`` -> (activation rate, death rate)."""
    return (counts.double().sum() / (counts.numel() * size)).item(), (counts == 0).double().mean().item()


def layout_entry(gen: torch.Generator, slots: list[int]):
    """A gradient layout's rows: 3 parameters of 2, 0 and 3 units (4, 0 and 2 entries per unit), 5
    observations; parameter 2's observation 1 is non-finite, parameter 0's observation 3 undecided."""
    units, per_unit = np.array([2, 0, 3]), np.array([4.0, 1.0, 2.0])
    stops = np.cumsum(units)
    starts = stops - units
    with np.errstate(divide="ignore"):
        act, death = 1.0 / (units * per_unit), 1.0 / units
    counts = torch.stack([torch.tensor([torch.randint(0, 5, (), generator=gen).item() for _ in range(2)]
                                       + [torch.randint(0, 3, (), generator=gen).item() for _ in range(3)],
                                       dtype=torch.float32) for _ in range(5)])
    counts[2, 0] = 0.0
    check = torch.ones(5, 3)
    check[1, 2] = float("inf")
    present = np.ones((5, 3), dtype=bool)
    present[3, 0] = False
    entry = Pending("layout", slots, ((counts, 5), (check, 5), (present, None)), (starts, stops, act, death, slots))
    expected = []
    for p in range(3):
        a, d = [], []
        for r in range(5):
            if not present[r, p] or units[p] == 0:
                continue
            seg = counts[r, starts[p]:stops[p]]
            bad = not math.isfinite(check[r, p].item())
            a.append(math.nan if bad else seg.double().sum().item() / (units[p] * per_unit[p]))
            d.append(math.nan if bad else (seg == 0).double().sum().item() / units[p])
        expected.append((a, d))
    return entry, expected


@pytest.mark.filterwarnings("ignore:invalid value encountered in multiply:RuntimeWarning")  # 0 units: 0 * inf
def test_entries_of_every_kind_and_shape_fold_in_one_plan_like_torch():
    gen = torch.Generator().manual_seed(3)
    rates = StreamBank(2, keep_all=True)
    rate_slots = [rates.add_row() for _ in range(3)]
    gradients = StreamBank(2)
    grad_slots = [gradients.add_row() for _ in range(3)]
    loss = StatStream(1, keep_all=True)
    pushed = StatStream(1, keep_all=True)
    expected_rates = []
    for slot, (c, n) in zip(rate_slots[:2], [(5, 4), (3, 6)]):  # widths 5 and 3, 4 and 6 batches
        buf = RowBuffer(c, torch.device("cpu"))
        counts = [torch.randint(0, 7, (c,), generator=gen).float() for _ in range(n)]
        counts[0][0] = 0.0
        sizes = [6] * (n - 1) + [2]  # a smaller last batch
        checks = [float("nan") if i == 1 else 1.0 for i in range(n)]
        fill(buf, counts, sizes, checks)
        buf.defer_rates(slot)
        expected_rates.append([rates_by_torch(k, s) if ok == 1.0 else (math.nan, math.nan)
                               for k, s, ok in zip(counts, sizes, checks)])
    # the third slot: staged device values (a buffer that filled mid-epoch) and its remaining rows
    staged = torch.tensor([[0.5, 0.25], [float("nan"), 0.0]], dtype=torch.float64)
    rates.stage(2, staged, torch.isfinite(staged).all(1))
    buf = RowBuffer(4, torch.device("cpu"))
    counts = [torch.tensor([1.0, 0.0, 3.0, 2.0])]
    fill(buf, counts, [3], [0.0])
    buf.defer_rates(rate_slots[2])
    expected_rates.append([(0.5, 0.25), (math.nan, math.nan), rates_by_torch(counts[0], 3)])
    entry, expected_grads = layout_entry(gen, [s.index for s in grad_slots])
    gradients.defer(entry)
    loss_buf = RowBuffer(1, torch.device("cpu"))
    losses = [2.5, float("inf"), 0.75, 1.25, -0.5, 3.0, 0.125]
    for v in losses:
        loss_buf.rows[loss_buf.n].fill_(v)
        loss_buf.n += 1
    loss_buf.defer_scalars(loss)
    # one slot fed by two entries: pushed floats, then a pushed tensor
    floats = np.array([0.5, float("nan"), 0.875])
    pushed.defer(Pending("values", 0, ((floats[:, None], None), (np.isfinite(floats), None))))
    pushed.defer(Pending("scalars", 0, ((torch.tensor([[0.25]]), None),)))
    summaries = to_host([rates, gradients, loss, pushed], {id(rates): rate_slots, id(gradients): grad_slots})
    for slot, want in zip(rate_slots, expected_rates):
        act, dead = summaries[id(slot)]
        assert_summary(act, [w[0] for w in want])
        assert_summary(dead, [w[1] for w in want])
    no_units = summaries[id(grad_slots[1])]  # observed 5 times, with no entry to rate: NaN, as before
    assert no_units[0].count == 5 and math.isnan(no_units[0].point("mean")) and math.isnan(no_units[1].point("mean"))
    for slot, (act, dead) in zip(grad_slots[::2], expected_grads[::2]):
        got = summaries[id(slot)]
        assert_summary(got[0], act, keep=False)
        assert_summary(got[1], dead, keep=False)
    assert_summary(summaries[id(loss)][0], [v if math.isfinite(v) else math.nan for v in losses])
    assert_summary(summaries[id(pushed)][0], [0.5, math.nan, 0.875, 0.25])


def test_the_plan_is_kept_across_ticks_and_reads_each_ticks_row_sizes():
    bank = StreamBank(2)
    slots = [bank.add_row() for _ in range(2)]
    bufs = [RowBuffer(4, torch.device("cpu")), RowBuffer(2, torch.device("cpu"))]
    gen = torch.Generator().manual_seed(5)
    plans = []
    for sizes in ([8, 8, 8], [8, 3, 5], [8, 3, 5], [4, 4]):  # the last: another number of rows
        expected = []
        for buf, slot in zip(bufs, slots):
            counts = [torch.randint(0, 4, (buf.channels,), generator=gen).float() for _ in sizes]
            fill(buf, counts, sizes, [1.0] * len(sizes))
            buf.defer_rates(slot)
            expected.append([rates_by_torch(k, s) for k, s in zip(counts, sizes)])
        items_before = dict(fold_plan._PLANS)
        summaries = to_host([bank], {id(bank): slots})
        made = [p for k, p in fold_plan._PLANS.items() if k not in items_before]
        plans.append(made[0] if made else None)
        for slot, want in zip(slots, expected):
            act, dead = summaries[id(slot)]
            assert_summary(act, [w[0] for w in want], keep=False)
            assert_summary(dead, [w[1] for w in want], keep=False)
        bank.reset()
        for buf in bufs:
            buf.n = 0
    # a plan is made for the first tick and for the tick with another number of rows; the row sizes alone
    # (ticks 2 and 3) change no plan
    assert plans[0] is not None and plans[1] is None and plans[2] is None and plans[3] is not None


@pytest.mark.parametrize("exact_in_float32", [True, False])
@pytest.mark.parametrize("longest", [9, 40_000])  # the empty units' accumulator: int16, then int64
def test_segment_counts_are_the_plain_sums_of_each_segment(exact_in_float32: bool, longest: int):
    gen = torch.Generator().manual_seed(11)
    lengths = [longest, 1, 7, 300, 2]
    counts = torch.cat([torch.randint(0, 3, (n,), generator=gen).float() for n in lengths])
    counts[3] = float("nan")  # a NaN count: the segment's sum is NaN, and it is no empty unit
    starts = np.cumsum([0, *lengths[:-1]])
    active, empty = fold_math.segment_counts(counts.numpy(), starts, exact_in_float32, longest)
    bounds = list(zip(starts.tolist(), (starts + lengths).tolist()))
    want_active = [counts[a:b].double().sum().item() for a, b in bounds]
    want_empty = [(counts[a:b] == 0).double().sum().item() for a, b in bounds]
    assert active.dtype == empty.dtype == np.float64
    np.testing.assert_array_equal(active, want_active)
    np.testing.assert_array_equal(empty, want_empty)


@pytest.mark.parametrize("size", [7, 1 << 13])  # channels x size: <= 2^24 (float32 sums) and above (float64)
def test_a_large_plan_sums_counts_exactly(size: int):
    """Rows of 8192 channels (a plan of >= 16384 counts takes segment_counts): counts up to ``size`` per
    channel; above 2^24 a row's float32 sum would round, so the plan sums in float64 there."""
    gen = torch.Generator().manual_seed(13)
    bank = StreamBank(2, keep_all=True)
    slot = bank.add_row()
    buf = RowBuffer(8192, torch.device("cpu"))
    counts = [torch.randint(0, size + 1, (8192,), generator=gen).float() for _ in range(3)]
    counts[1][:100] = 0.0
    fill(buf, counts, [size] * 3, [1.0] * 3)
    buf.defer_rates(slot)
    act, dead = to_host([bank], {id(bank): [slot]})[id(slot)]
    want = [rates_by_torch(k, size) for k in counts]
    assert act.values.tolist() == pytest.approx([w[0] for w in want], rel=1e-15)
    assert dead.values.tolist() == [w[1] for w in want]
    # a rounded float32 sum would be off by far more than the tolerance above
    if size > 1 << 11:
        f32 = [k.sum(dtype=torch.float32).item() / (8192 * size) for k in counts]
        assert f32 != pytest.approx([w[0] for w in want], rel=1e-15)


def test_a_large_block_gathered_batch_major_folds_like_torch():
    """40 rate slots x 30 batches (a block of 2400 entries: gathered batch-major), one batch left out."""
    gen = torch.Generator().manual_seed(17)
    bank = StreamBank(2)
    slots = [bank.add_row() for _ in range(40)]
    expected = []
    for slot in slots:
        buf = RowBuffer(6, torch.device("cpu"))
        counts = [torch.randint(0, 5, (6,), generator=gen).float() for _ in range(30)]
        checks = [float("inf") if i == 7 else 1.0 for i in range(30)]
        fill(buf, counts, [4] * 30, checks)
        buf.defer_rates(slot)
        expected.append([rates_by_torch(k, 4) if ok == 1.0 else (math.nan, math.nan) for k, ok in zip(counts, checks)])
    before = set(fold_plan._PLANS)
    summaries = to_host([bank], {id(bank): slots})
    plan = next(p for k, p in fold_plan._PLANS.items() if k not in before)
    assert plan.batch_major
    for slot, want in zip(slots, expected):
        act, dead = summaries[id(slot)]
        assert_summary(act, [w[0] for w in want], keep=False)
        assert_summary(dead, [w[1] for w in want], keep=False)
