"""One gradient observation row (collect/gradient_layout.py ``Layout.compute``), eager and compiled
(collect/compiled_counts.py), against plain torch: per-unit counts of |g| > eps, the NaN/Inf check.

Expected counts are computed here from the gradients in float64, with eps rounded the way the definition says
(to float32, then to the gradient's dtype; to float32 for a small-parameter group of mixed dtypes).
"""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters

import monitorch_widget as mw
from monitorch_widget.collect import compiled_counts
from monitorch_widget.collect.gradient_layout import FUSE_MIN, SMALL, Layout
from monitorch_widget.collect.units import parameter_units
from monitorch_widget.lens import ParameterGradientActivation

EPS = 1e-8
CPU = torch.device("cpu")


class Conv1D(nn.Module):  # transformers' GPT-2 layout: weight [in, out], units along axis 1
    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_in, n_out))


def site(module: nn.Module, name: str, row: int) -> types.SimpleNamespace:
    """What a Layout reads of a GradientSite."""
    p = getattr(module, name)
    return types.SimpleNamespace(module=module, units=parameter_units(module, name, p.shape), numel=p.numel(),
                                 shards=None, bank_row=types.SimpleNamespace(index=row))


def eps_in(dtype: torch.dtype) -> float:
    return float(torch.tensor(EPS, dtype=torch.float32).to(dtype).double())


def by_hand(g: torch.Tensor, module: nn.Module, eps: float) -> torch.Tensor:
    """Per-unit counts of |g| > eps in float64, units per the layer (collect/units.py's table)."""
    active = (g.double().abs() > eps).double()
    if g.dim() <= 1:
        return active.reshape(-1)
    if isinstance(module, nn.ConvTranspose2d):  # [in, out/groups, kh, kw]: output channels within each group
        groups = module.groups
        return active.reshape(groups, g.shape[0] // groups, g.shape[1], -1).sum((1, 3)).reshape(-1)
    if isinstance(module, Conv1D):
        return active.sum(0)
    return active.reshape(g.shape[0], -1).sum(1)


def with_edges(g: torch.Tensor) -> torch.Tensor:
    """``g`` with entries at eps (in g's dtype), just above and below it, at -eps, zero and -0."""
    e = torch.tensor(EPS, dtype=torch.float32).to(g.dtype)
    up, down = torch.nextafter(e, torch.ones_like(e)), torch.nextafter(e, torch.zeros_like(e))
    flat = g.reshape(-1)
    for k, v in enumerate((e, up, down, -e, -up, torch.zeros_like(e), -torch.zeros_like(e))):
        flat[k * 7 % flat.numel()::97] = v
    return g


def gradients(modules: list[tuple[nn.Module, str]], dtypes: list[torch.dtype], seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for (m, name), dt in zip(modules, dtypes):
        shape = getattr(m, name).shape
        g = torch.randn(shape, generator=gen) * 1e-8  # about half the entries within eps
        g[torch.rand(shape, generator=gen) < 0.3] = 0
        out.append(with_edges(g.to(dt)))
    return out


def model_parts() -> list[tuple[nn.Module, str]]:
    big = nn.Linear(130, 128)          # 16,640 weights: a large parameter, units along axis 0
    conv_t = nn.ConvTranspose2d(64, 32, 5, groups=2)  # [64, 16, 5, 5] = 25,600: large, a reshaped view
    gpt = Conv1D(160, 120)               # 19,200: large, units along axis 1
    long_bias = nn.Linear(2, 20000)      # bias of 20,000 entries: large, one entry per unit
    small = nn.Linear(30, 20)            # small weight and bias
    return [(big, "weight"), (conv_t, "weight"), (gpt, "weight"), (long_bias, "bias"), (small, "weight"),
            (small, "bias"), (big, "bias")]


def big_parts() -> list[tuple[nn.Module, str]]:
    """Gradients of FUSE_MIN elements or more (the compiled row reads these), one per unit layout."""
    return [(nn.Linear(520, 512), "weight"), (nn.ConvTranspose2d(128, 64, 8, groups=2), "weight"),
            (Conv1D(512, 520), "weight"), (nn.Linear(1, 270_000), "bias")]


def all_parts() -> list[tuple[nn.Module, str]]:
    return big_parts() + model_parts()


def layout_for(parts: list[tuple[nn.Module, str]], fused: bool) -> Layout:
    return Layout([site(m, n, i) for i, (m, n) in enumerate(parts)], CPU, EPS, fused=fused)


def expected(parts, grads, layout: Layout) -> tuple[torch.Tensor, list[bool]]:
    small_dtypes = {grads[i].dtype for i in layout.small}
    want = []
    for i, ((m, _), g) in enumerate(zip(parts, grads)):
        eps = eps_in(torch.float32 if (i in layout.small and len(small_dtypes) > 1) else g.dtype)
        want.append(by_hand(g, m, eps))
    return torch.cat(want).float(), [bool(torch.isfinite(g).all()) for g in grads]


def assert_row(layout: Layout, row: int, parts, grads) -> None:
    want, finite = expected(parts, grads, layout)
    for i, (a, b) in enumerate(layout.columns):
        if finite[i]:  # a non-finite parameter's counts are never read (its row is left out)
            assert torch.equal(layout.counts[row, a:b], want[a:b]), (i, parts[i])
    assert torch.isfinite(layout.check[row]).tolist() == finite


DTYPE_SETS = {
    "float32": [torch.float32] * 11,
    "mixed": [torch.bfloat16, torch.float16, torch.float64, torch.float32,
              torch.bfloat16, torch.float16, torch.float64, torch.float32, torch.bfloat16, torch.float32,
              torch.float16],
}


def test_the_parts_cover_every_path():
    layout = layout_for(all_parts(), fused=True)
    # compiled: every gradient of the row in the one call (the row in column order)
    assert layout.fused_params == list(range(11)) and layout.large == list(range(8)) and layout.small == [8, 9, 10]
    specs = [s.units for s in layout.sites]
    for k in (0, 4):  # compiled and eager: a plain weight, a reshaped view, units along axis 1, one per unit
        assert specs[k].dims == (1,) and specs[k + 1].view is not None and specs[k + 2].dims == (0,)
        assert specs[k + 3].dims == ()
    assert all(s.numel >= FUSE_MIN for s in layout.sites[:4])
    assert all(SMALL < s.numel < FUSE_MIN for s in layout.sites[4:8])


@pytest.mark.parametrize("dtypes", DTYPE_SETS.values(), ids=DTYPE_SETS.keys())
def test_eager_row_equals_counts_by_hand(dtypes):
    parts = all_parts()
    layout = layout_for(parts, fused=False)
    for seed in range(2):
        grads = gradients(parts, dtypes, seed)
        assert_row(layout, layout.compute(grads), parts, grads)


def test_eager_row_reads_non_contiguous_gradients_and_marks_nan_inf_per_parameter():
    parts = all_parts()
    layout = layout_for(parts, fused=False)
    grads = gradients(parts, DTYPE_SETS["float32"])
    grads[4] = grads[4].t().contiguous().t()  # same values, column-major
    grads[5] = grads[5].contiguous(memory_format=torch.channels_last)
    grads[4][3, 5] = float("nan")
    grads[6][0, 0] = float("inf")
    grads[9][1] = float("-inf")  # a small parameter
    row = layout.compute(grads)
    assert_row(layout, row, parts, grads)
    assert torch.isfinite(layout.check[row]).tolist() == [True] * 4 + [False, True, False, True, True, False, True]


def test_rows_written_again_after_a_fold_count_from_zero():
    """A row's small gradients are index-added into it: rows written before a fold are zeroed before they are
    written again (a tick keeping an undecided row, then a full buffer folding on the device)."""
    from monitorch_widget.collect.streams import StreamBank

    parts = model_parts()
    layout = layout_for(parts, fused=False)
    bank = StreamBank(2, keep_all=False)
    for _ in parts:
        bank.add_row()
    seed = 0
    for n_rows, keep in ((3, [1]), (layout.capacity - 1, [])):
        rows = []
        for _ in range(n_rows):
            grads = gradients(parts, DTYPE_SETS["float32"], seed)
            seed += 1
            row = layout.compute(grads)
            assert_row(layout, row, parts, grads)
            rows.append((row, grads))
        for row, _ in rows:
            layout.mark_row(row)
        bank.at_tick = not keep
        moved = layout.fold(bank, [rows[k][0] for k in keep])
        bank.at_tick = False
        for k in keep:  # the undecided row moved to the front, intact
            assert_row(layout, moved[rows[k][0]], parts, rows[k][1])
    assert layout.used == 0
    for _ in range(3):  # every row written before is written again, from zero
        grads = gradients(parts, DTYPE_SETS["float32"], seed)
        seed += 1
        assert_row(layout, layout.compute(grads), parts, grads)


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("dtypes", DTYPE_SETS.values(), ids=DTYPE_SETS.keys())
def test_compiled_row_equals_eager_and_counts_by_hand_without_recompiles(dtypes, fresh_dynamo):
    parts = all_parts()
    fused, eager = layout_for(parts, fused=True), layout_for(parts, fused=False)
    assert fused.fused is not None and eager.fused is None
    for seed in range(4):
        grads = gradients(parts, dtypes, seed)
        if seed == 2:
            grads[1].view(-1)[7] = float("nan")
            grads[3][11] = float("inf")
            grads[2][0, 0] = float("-inf")
            grads[8][0, 0] = float("nan")
        r, s = fused.compute(grads), eager.compute(grads)
        assert fused.fused.error is None, fused.fused.error
        assert_row(fused, r, parts, grads)
        assert torch.isfinite(fused.check[r]).tolist() == torch.isfinite(eager.check[s]).tolist()
        finite = torch.isfinite(eager.check[s])
        for i, (a, b) in enumerate(fused.columns):
            if finite[i]:
                assert torch.equal(fused.counts[r, a:b], eager.counts[s, a:b])
        if seed == 0:  # the first call compiled the row; none after it may compile again
            # (gradients of mixed dtypes take the eager formulation: nothing compiled)
            assert counters["stats"]["unique_graphs"] == (1 if len(set(dtypes)) == 1 else 0)
            counters.clear()
    assert sum(counters["recompiles"].values()) == 0 and counters["stats"]["unique_graphs"] == 0
    assert sum(counters["graph_break"].values()) == 0


def test_a_compiled_row_reads_a_gradient_whose_memory_layout_changed(fresh_dynamo):
    parts = all_parts()
    layout = layout_for(parts, fused=True)
    grads = gradients(parts, DTYPE_SETS["float32"])
    assert_row(layout, layout.compute(grads), parts, grads)
    grads[0] = grads[0].t().contiguous().t()  # column-major now: dynamo's stride guard compiles it once more
    grads[1] = grads[1].contiguous(memory_format=torch.channels_last)
    assert_row(layout, layout.compute(grads), parts, grads)
    assert layout.fused is not None and layout.fused.error is None


def test_a_second_layout_compiles_its_own_row_and_recompiles_nothing(fresh_dynamo):
    parts = all_parts()
    first, second = layout_for(parts, fused=True), layout_for(parts[:2], fused=True)
    grads = gradients(parts, DTYPE_SETS["float32"])
    first.compute(grads)
    second.compute(grads[:2])
    first.compute(grads)
    assert counters["stats"]["unique_graphs"] == 2
    assert sum(counters["recompiles"].values()) == 0
    assert_row(second, 0, parts[:2], grads[:2])


def test_a_row_that_cannot_compile_falls_back_to_the_same_eager_values(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", broken)
    parts = all_parts()
    layout = layout_for(parts, fused=True)
    grads = gradients(parts, DTYPE_SETS["float32"])  # one dtype: the compiled call is tried (mixed: eager at once)
    assert_row(layout, layout.compute(grads), parts, grads)
    assert layout.fused is not None and "no C++ compiler" in (layout.fused.error or "")
    assert_row(layout, layout.compute(grads), parts, grads)  # and stays eager


def test_layouts_fuse_only_for_compiled_models_with_a_large_gradient(fresh_dynamo):
    big, small = nn.Linear(520, 512), nn.Linear(130, 128)
    assert Layout([site(big, "weight", 0)], CPU, EPS).fused is None  # not compiled
    big.compile()  # compiled in place
    assert Layout([site(big, "weight", 0)], CPU, EPS).fused is not None
    small.compile()
    assert Layout([site(small, "weight", 0)], CPU, EPS).fused is None  # below FUSE_MIN: four eager passes are as fast
    compiled_counts.ENABLED = False
    try:
        assert Layout([site(big, "weight", 0)], CPU, EPS).fused is None
    finally:
        compiled_counts.ENABLED = True


@pytest.mark.parametrize("dynamic", [None, True], ids=["default", "dynamic-shapes"])
def test_a_compiled_model_reads_its_large_gradients_in_the_compiled_row(dynamic, fresh_dynamo):
    """The row's shapes are the parameters': a model compiled with dynamic shapes (batch sizes vary) changes
    nothing for it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 520), nn.ReLU(), nn.Linear(520, 512), nn.ReLU(), nn.Linear(512, 4))
    compiled = torch.compile(model, dynamic=dynamic)
    ins = mw.PyTorchInspector([ParameterGradientActivation()], visualizer="none", module=compiled)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(0)
    act, dead = [], []
    for step in range(3):
        opt.zero_grad()
        n = 8 if dynamic is None or step != 1 else 5
        x = torch.randn(n, 16, generator=gen)
        x[:, :4] = 0  # some inputs off: dead weight-gradient columns, not rows
        nn.functional.cross_entropy(compiled(x), torch.randint(0, 4, (n,), generator=gen)).backward()
        g = model[2].weight.grad.detach().clone()
        active = g.abs() > EPS
        act.append(active.double().mean().item())
        dead.append((~active.any(1)).double().mean().item())
        opt.step()
        if step == 0:
            counters.clear()
    ins.tick_epoch()
    layouts = list(ins.lenses[0]._reader.layouts.values())
    assert sum(counters["recompiles"].values()) == 0 and sum(counters["graph_break"].values()) == 0
    assert counters["stats"]["unique_graphs"] == 0
    got = ins.history.series("Weight Gradient Activation", "2", "activation_rate")[-1]
    assert got == pytest.approx(sum(act) / 3, abs=1e-7)
    assert ins.history.series("Weight Gradient Activation", "2", "death_rate")[-1] == pytest.approx(sum(dead) / 3)
    assert layouts and all(lay.fused is not None and lay.fused.error is None for lay in layouts)
