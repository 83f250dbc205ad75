"""A bank read as one table (collect/summary.SlotTable): every slot's points at once are the numbers each
slot's Summary gives, which are plain torch statistics of the per-batch values; Summary objects come when
asked (collect/transfer.Summaries)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monitorch_widget.collect.streams import StreamBank
from monitorch_widget.collect.transfer import Summaries, to_host


def bank_of(values: list[list[list[float]]]) -> tuple[StreamBank, list]:
    """A bank of len(values) slots of width 2; slot i saw the per-batch rows values[i] (NaN: a left-out batch)."""
    bank = StreamBank(2)
    slots = [bank.add_row() for _ in values]
    for slot, rows in zip(slots, values):
        if rows:
            t = torch.tensor(rows, dtype=torch.float64)
            bank.stage(slot.index, t, torch.isfinite(t).all(1))
    return bank, slots


def test_points_of_every_slot_are_each_slots_summary_and_plain_torch():
    gen = torch.Generator().manual_seed(2)
    values = [torch.rand(int(torch.randint(1, 9, (), generator=gen)), 2, generator=gen).tolist() for _ in range(11)]
    values[3] = []  # a slot without a batch: NaN everywhere
    values[5] = [[float("nan"), 0.5], [0.25, 0.75]]  # one batch left out
    values[7] = [[float("inf"), 1.0]]  # its only batch left out: no counted batch
    bank, slots = bank_of(values)
    summaries = to_host([bank], {id(bank): slots})
    table = summaries.table(bank)
    assert table is not None and dict.__len__(summaries) == 0  # no Summary object made yet
    for q in range(2):
        for method in ("mean", "min", "max"):
            got = table.points(method, q)
            for slot, rows in zip(slots, values):
                ok = [r[q] for r in rows if all(math.isfinite(x) for x in r)]
                want = math.nan if not ok else {"mean": torch.tensor(ok, dtype=torch.float64).mean().item(),
                                                "min": min(ok), "max": max(ok)}[method]
                one = summaries[id(slot)][q].point(method)  # made now, from the same row
                if math.isnan(want):
                    assert math.isnan(got[slot.index]) and math.isnan(one)
                else:
                    assert got[slot.index] == one == pytest.approx(want, rel=1e-15)
        assert table.points("std", q) is None  # not one division: asked of each Summary
    assert table.nonfinite() == [sum(1 for r in rows if not all(math.isfinite(x) for x in r)) for rows in values]
    assert summaries.get(id(slots[0])) is summaries[id(slots[0])] and summaries.get(12345) is None


def test_an_unknown_key_still_reads_as_an_empty_summary():
    summaries = Summaries()
    empty = summaries[1]
    assert empty[0].count == 0 and math.isnan(empty[0].point("mean")) and np.isnan(empty[1].point("max"))
