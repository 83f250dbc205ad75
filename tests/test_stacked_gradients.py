"""Same-shape large gradients read a chunk at a time (collect/stacked_gradients.py) against plain torch and
against the one-by-one read (collect/large_gradients.py): per-unit counts of |g| > eps and the NaN/Inf check,
bit for bit, for chunks whose columns are equally spaced (strided views of the row) or not (index_copy_), a
group of one, mixed dtypes in a group, bf16 / float64 gradients, NaN/inf in one member, and a class split
into chunks by the bound."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from monitorch_widget.collect import stacked_gradients
from monitorch_widget.collect.gradient_layout import Layout
from tests.test_gradient_row import CPU, EPS, Conv1D, assert_row, gradients, site


def block() -> list[tuple[nn.Module, str]]:
    """One repeated block: four unit layouts (rows, a reshaped view, units along axis 1, one per entry)."""
    return [(nn.Linear(64, 130), "weight"), (Conv1D(100, 120), "weight"),
            (nn.ConvTranspose2d(32, 16, 5, groups=2), "weight"), (nn.Linear(2, 3000), "bias")]


def parts_of_model() -> list[tuple[nn.Module, str]]:
    """An embedding of the block's Linear shape (that class is unequally spaced), three blocks, a large weight
    of its own shape (a group of one) and a small weight and bias (the small-gradient path)."""
    small = nn.Linear(10, 5)
    return ([(nn.Embedding(130, 64), "weight")] + block() + block() + block()
            + [(nn.Linear(40, 50), "weight"), (small, "weight"), (small, "bias")])


def layout_for(parts: list[tuple[nn.Module, str]], stacked: bool = True) -> Layout:
    layout = Layout([site(m, n, i) for i, (m, n) in enumerate(parts)], CPU, EPS, fused=False)
    if not stacked:
        layout.stacks.chunks = []
        layout.stacks.singles = list(layout.plain)
    return layout


def assert_same_rows(a: Layout, ra: int, b: Layout, rb: int) -> None:
    """Rows of two layouts of the same parameters: identical counts and checks (NaN where NaN)."""
    assert torch.equal(a.counts[ra], b.counts[rb])
    assert torch.equal(a.check[ra].nan_to_num(nan=-1.0), b.check[rb].nan_to_num(nan=-1.0))


def test_the_plan_stacks_each_shape_and_unit_layout_and_keeps_a_lone_shape_apart():
    layout = layout_for(parts_of_model())
    chunks = {tuple(c.positions): c for c in layout.stacks.chunks}
    assert set(chunks) == {(0, 1, 5, 9), (2, 6, 10), (3, 7, 11), (4, 8, 12)}
    assert chunks[(0, 1, 5, 9)].step == 0 and chunks[(0, 1, 5, 9)].check_step == 0  # index_copy_
    assert chunks[(2, 6, 10)].step == 130 + 120 + 16 + 3000 and chunks[(2, 6, 10)].check_step == 4  # strided
    assert [e[0] for e in layout.stacks.singles] == [13]
    assert layout.small == [14, 15]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64, torch.float16])
def test_stacked_row_equals_counts_by_hand_and_the_one_by_one_read(dtype):
    parts = parts_of_model()
    stacked, single = layout_for(parts), layout_for(parts, stacked=False)
    for seed in range(2):
        grads = gradients(parts, [dtype] * len(parts), seed)
        r, s = stacked.compute(grads), single.compute(grads)
        assert_row(stacked, r, parts, grads)
        assert_same_rows(stacked, r, single, s)
    if dtype is torch.float32:  # the check is max |g| itself, per member
        want = torch.stack([g.abs().max() for g in grads[:14]])
        assert torch.equal(stacked.check[r][:14], want)


def test_nan_and_inf_in_one_member_mark_that_member_only():
    parts = parts_of_model()
    stacked, single = layout_for(parts), layout_for(parts, stacked=False)
    for dtype in (torch.float32, torch.bfloat16):
        grads = gradients(parts, [dtype] * len(parts), seed=3)
        grads[5][7, 3] = float("nan")     # a member of the unequally spaced chunk
        grads[6][0, 4] = float("inf")     # of a strided chunk
        grads[12][9] = float("-inf")      # of the one-per-unit chunk
        r, s = stacked.compute(grads), single.compute(grads)
        assert_row(stacked, r, parts, grads)  # every other member's counts by hand
        assert [i for i, f in enumerate(torch.isfinite(stacked.check[r]).tolist()) if not f] == [5, 6, 12]
        assert_same_rows(stacked, r, single, s)


def test_a_chunk_of_mixed_dtypes_is_read_one_by_one():
    parts = parts_of_model()
    stacked, single = layout_for(parts), layout_for(parts, stacked=False)
    dtypes = [torch.float32] * len(parts)
    dtypes[5] = torch.float64  # the Linear class now mixes float32 and float64
    dtypes[6] = torch.bfloat16
    grads = gradients(parts, dtypes)
    grads[6][1, 1] = float("nan")
    r, s = stacked.compute(grads), single.compute(grads)
    assert_row(stacked, r, parts, grads)
    assert_same_rows(stacked, r, single, s)


def test_a_class_larger_than_the_bound_is_split_into_chunks(monkeypatch):
    monkeypatch.setattr(stacked_gradients, "CHUNK_ELEMENTS", 20_000)
    parts = [(nn.Linear(64, 130), "weight") for _ in range(5)] + [(nn.Linear(2, 3000), "bias") for _ in range(7)]
    stacked, single = layout_for(parts), layout_for(parts, stacked=False)
    sizes = [(c.positions, c.k * stacked.sites[c.positions[0]].numel) for c in stacked.stacks.chunks]
    # 8,320-element weights: two a chunk, the fifth alone; 3,000-element biases: six, then one alone
    assert [p for p, _ in sizes] == [[0, 1], [2, 3], [5, 6, 7, 8, 9, 10]]
    assert all(n <= 20_000 for _, n in sizes)
    assert [e[0] for e in stacked.stacks.singles] == [4, 11]
    grads = gradients(parts, [torch.float32] * len(parts))
    grads[3][0, 0] = float("nan")
    r, s = stacked.compute(grads), single.compute(grads)
    assert_row(stacked, r, parts, grads)
    assert_same_rows(stacked, r, single, s)


def test_a_gradient_of_more_than_half_a_chunk_is_read_alone(monkeypatch):
    monkeypatch.setattr(stacked_gradients, "CHUNK_ELEMENTS", 16_000)
    parts = [(nn.Linear(64, 130), "weight") for _ in range(3)]  # 8,320 elements each: over half of 16,000
    layout = layout_for(parts)
    assert layout.stacks.chunks == [] and [e[0] for e in layout.stacks.singles] == [0, 1, 2]
    grads = gradients(parts, [torch.float32] * 3)
    assert_row(layout, layout.compute(grads), parts, grads)


def test_later_rows_and_non_contiguous_gradients():
    parts = parts_of_model()
    stacked, single = layout_for(parts), layout_for(parts, stacked=False)
    for seed in range(5):  # rows 0..4 of the buffer: the strided views follow the row
        grads = gradients(parts, [torch.float32] * len(parts), seed)
        grads[1] = grads[1].t().contiguous().t()  # the embedding's gradient column-major
        grads[7] = grads[7].contiguous(memory_format=torch.channels_last)
        r, s = stacked.compute(grads), single.compute(grads)
        assert r == seed
        assert_row(stacked, r, parts, grads)
        assert_same_rows(stacked, r, single, s)
