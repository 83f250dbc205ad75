"""The NaN/Inf check of outputs and gradients is exact: finite values near their dtype's largest (whose sum
overflows to inf) are not flagged; one inf, -inf or NaN is. Values are checked against plain torch / numpy.

The check used to be a sum of the batch's values, tested for finiteness: in float32 two entries of 2e38 add
up to inf, so a valid batch was left out and reported as NaN/Inf (collect/hooks.py, collect/gradient_layout.py,
collect/compiled_counts.py).
"""

from __future__ import annotations

import types
import warnings

import numpy as np
import pytest
import torch
from helpers import Emit, rates_by_hand
from torch import nn
from torch._dynamo.utils import counters

import monitorch_widget as mw
from monitorch_widget.collect.gradient_layout import FUSE_MIN, SMALL, Layout
from monitorch_widget.collect.units import parameter_units
from monitorch_widget.lens import OutputActivation, ParameterGradientActivation

CPU = torch.device("cpu")
OA = "Output Activations"
BAD = (float("inf"), float("-inf"), float("nan"))


def near_max(shape: tuple[int, ...], dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """Finite entries of magnitude 0.5-0.9x the dtype's largest (float64: about 1e300, beyond float32), signs
    mixed, a few zeros: any sum of a few of them overflows."""
    gen = torch.Generator().manual_seed(seed)
    top = 1e300 if dtype == torch.float64 else torch.finfo(dtype).max
    x = (torch.rand(shape, generator=gen, dtype=torch.float64) * 0.4 + 0.5) * top
    x = x * torch.where(torch.rand(shape, generator=gen) < 0.5, -1.0, 1.0).double()
    x.view(-1)[::13] = 0
    out = x.to(dtype)
    assert torch.isfinite(out).all()
    # the old check (a float32 sum) would have flagged it; float16 overflows in its own dtype only
    assert not torch.isfinite(out.abs().sum(dtype=torch.float16 if dtype == torch.float16 else torch.float32))
    return out


def site(module: nn.Module, name: str, row: int) -> types.SimpleNamespace:
    p = getattr(module, name)
    return types.SimpleNamespace(module=module, units=parameter_units(module, name, p.shape), numel=p.numel(),
                                 shards=None, bank_row=types.SimpleNamespace(index=row))


def counts_by_hand(g: torch.Tensor) -> torch.Tensor:
    """Per-unit counts of |g| > 1e-8 (units along axis 0, one per entry for 1-D), in float64."""
    active = (g.double().abs() > 1e-8).double()
    return active.reshape(-1) if g.dim() <= 1 else active.reshape(g.shape[0], -1).sum(1)


def check_row(layout: Layout, grads: list[torch.Tensor]) -> list[bool]:
    layout.used = 0  # reuse the first row (a wide layout holds only 4)
    row = layout.compute(grads)
    finite = torch.isfinite(layout.check[row]).tolist()
    assert finite == [bool(torch.isfinite(g).all()) for g in grads]
    for i, (a, b) in enumerate(layout.columns):
        if finite[i]:
            assert torch.equal(layout.counts[row, a:b].double(), counts_by_hand(grads[i])), i
    return finite


def eager_parts() -> list[tuple[nn.Module, str]]:
    big, small = nn.Linear(40, 30), nn.Linear(12, 10)  # 1200 weights: large; 120 and 10: small
    return [(big, "weight"), (small, "weight"), (small, "bias"), (nn.Linear(1, 2000), "bias")]


@pytest.mark.parametrize("dtypes", [[torch.float32] * 4, [torch.bfloat16] * 4, [torch.float16] * 4,
                                    [torch.float64] * 4,
                                    [torch.float64, torch.float64, torch.float32, torch.bfloat16]],
                         ids=["float32", "bfloat16", "float16", "float64", "mixed"])
def test_eager_row_flags_exactly_the_gradients_with_nan_or_inf(dtypes):
    parts = eager_parts()
    layout = Layout([site(m, n, i) for i, (m, n) in enumerate(parts)], CPU, 1e-8, fused=False)
    assert layout.large == [0, 3] and layout.small == [1, 2] and parts[0][0].weight.numel() > SMALL
    grads = [near_max(getattr(m, n).shape, dt, i) for i, ((m, n), dt) in enumerate(zip(parts, dtypes))]
    assert check_row(layout, grads) == [True] * 4
    for k in range(len(grads)):
        for bad in BAD:
            spoiled = [g.clone() for g in grads]
            spoiled[k].view(-1)[5] = bad
            want = [i != k for i in range(4)]
            assert check_row(layout, spoiled) == want, (k, bad)


def test_compiled_row_flags_exactly_the_gradients_with_nan_or_inf():
    torch._dynamo.reset()
    counters.clear()
    parts = [(nn.Linear(520, 512), "weight"), (nn.Linear(1, 270_000), "bias"), (nn.Linear(12, 10), "weight")]
    layout = Layout([site(m, n, i) for i, (m, n) in enumerate(parts)], CPU, 1e-8, fused=True)
    assert layout.fused is not None and layout.fused_params == [0, 1, 2]  # the small one joins the call
    assert all(getattr(m, n).numel() >= FUSE_MIN for m, n in parts[:2])
    grads = [near_max(getattr(m, n).shape, torch.float32, i) for i, (m, n) in enumerate(parts)]
    assert check_row(layout, grads) == [True] * 3
    for k in range(2):
        for bad in BAD:
            spoiled = [g.clone() for g in grads]
            spoiled[k].view(-1)[70_001] = bad
            assert check_row(layout, spoiled) == [i != k for i in range(3)], (k, bad)
    assert layout.fused.error is None, layout.fused.error
    assert sum(counters["recompiles"].values()) == 0
    torch._dynamo.reset()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("activation", [nn.ReLU, nn.Hardshrink], ids=["non-negative", "signed"])
def test_output_activation_check_is_exact(dtype, activation):
    batches = [near_max((8, 6), dtype, s) for s in range(3)]
    batches[1][:, 2] = 0  # a dead channel
    spoiled = {}
    for k, bad in enumerate(BAD):
        b = near_max((8, 6), dtype, 10 + k)
        b[3, 4] = bad
        spoiled[k] = b
    model = nn.Sequential(Emit(batches + list(spoiled.values())), activation())
    ins = mw.PyTorchInspector([OutputActivation()], visualizer="none").attach(model)
    outs = []
    for _ in range(len(batches)):
        outs.append(model(torch.zeros(1)).double().numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing reported: every batch is finite
        ins.tick_epoch()
    want = [rates_by_hand(o) for o in outs]
    assert ins.history.series(OA, "1", "activation_rate")[-1] == pytest.approx(np.mean([w[0] for w in want]))
    assert ins.history.series(OA, "1", "death_rate")[-1] == pytest.approx(np.mean([w[1] for w in want]))
    # one bad element per batch: ReLU turns -inf into 0 (a finite output); every other one is flagged
    flagged = []
    for _ in spoiled:
        outs.append(model(torch.zeros(1)).double().numpy())
        flagged.append(not np.isfinite(outs[-1]).all())
    assert flagged == [True, activation is nn.Hardshrink, True]
    with pytest.warns(UserWarning, match=rf"batches with NaN/Inf values were left out.*: '1' \({sum(flagged)}\)"):
        ins.tick_epoch()
    finite = [rates_by_hand(o) for o in outs[3:] if np.isfinite(o).all()]
    if finite:
        assert ins.history.series(OA, "1", "activation_rate")[-1] == pytest.approx(np.mean([f[0] for f in finite]))
    else:
        assert np.isnan(ins.history.series(OA, "1", "activation_rate")[-1])


class Scaled(nn.Module):
    """A linear layer whose loss multiplies its output by ``c``: the weight's gradient is c x^T (1e38 per
    entry for x = 1, c = 1e38) and the bias' is c, both finite with an overflowing sum."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.lin = nn.Linear(n_in, n_out)
        self.c = torch.full((n_out,), 1e38)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.lin(x) * self.c).sum()


def gradient_run(model: nn.Module, call: nn.Module, xs: list[torch.Tensor]) -> tuple[mw.PyTorchInspector, list]:
    ins = mw.PyTorchInspector([ParameterGradientActivation()], visualizer="none", module=call)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    grads = []
    for x in xs:
        opt.zero_grad()
        call(x).backward()
        grads.append({n: p.grad.clone() for n, p in model.lin.named_parameters()})
        opt.step()
    return ins, grads


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_gradient_check_is_exact_end_to_end(compiled):
    torch._dynamo.reset()
    counters.clear()
    n_in, n_out = (520, 512) if compiled else (40, 30)  # compiled: a weight of >= FUSE_MIN, read fused
    model = Scaled(n_in, n_out)
    call = torch.compile(model) if compiled else model
    ones = torch.ones(1, n_in)
    spoiled = [ones.clone() for _ in BAD]
    for x, bad in zip(spoiled, BAD):
        x[0, 7] = bad  # the weight's column 7 becomes non-finite, the bias stays 1e38
        x[0, 8:] = 0  # and its later columns zero: counted, these batches would lower its activation rate
    ins, grads = gradient_run(model, call, [ones, ones * 0.5] + spoiled)
    for g in grads[:2]:
        assert torch.isfinite(g["weight"]).all() and not torch.isfinite(g["weight"].sum())
        assert torch.isfinite(g["bias"]).all() and not torch.isfinite(g["bias"].sum())
    assert [bool(torch.isfinite(g["weight"]).all()) for g in grads] == [True, True, False, False, False]
    with pytest.warns(UserWarning, match=r"batches with NaN/Inf values were left out.*: 'lin' \(3\)") as caught:
        ins.tick_epoch()
    messages = [str(w.message) for w in caught if "NaN/Inf" in str(w.message)]
    assert len(messages) == 1
    lens = ins.lenses[0]
    nonfinite = {k: n for k, n in lens.ctx.faults.counts.items() if "NaN/Inf" in k[1]}
    assert list(nonfinite.values()) == [1]  # reported for one of the two sites named "lin"
    assert [s.param_name for s in lens._reader.sites] == ["weight", "bias"]
    h = ins.history
    assert h.series("Weight Gradient Activation", "lin", "activation_rate")[-1] == pytest.approx(1.0)  # left out
    assert h.series("Bias Gradient Activation", "lin", "activation_rate")[-1] == pytest.approx(1.0)
    if compiled:
        layouts = list(ins.lenses[0]._reader.layouts.values())
        assert layouts and all(lay.fused is not None and lay.fused.error is None for lay in layouts)
        assert sum(counters["recompiles"].values()) == 0
    torch._dynamo.reset()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("activation", [nn.ReLU, nn.Hardshrink], ids=["non-negative", "signed"])
def test_an_empty_output_does_not_break_the_check(dtype, activation):
    """An empty batch has no largest value (``amax`` of nothing raises) and no rate: it is no observation."""
    batches = [near_max((8, 6), dtype, 0), torch.zeros((0, 6), dtype=dtype), near_max((8, 6), dtype, 1)]
    model = nn.Sequential(Emit(batches), activation())
    ins = mw.PyTorchInspector([OutputActivation()], visualizer="none").attach(model)
    for _ in batches:
        model(torch.zeros(1))
    site = ins.lenses[0].sites[0]
    assert not site.broken and site.buf is not None and site.buf.n == 2  # the empty batch wrote no row
    assert torch.isfinite(site.buf.check[:2]).all()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ins.tick_epoch()
    assert not [w for w in caught if "failed" in str(w.message)]
