"""The hooks' fast paths (issue 13) against plain-torch values: what each one caches between batches must be
re-derived whenever the batch differs (shape, dtype, the set of parameters with a gradient, a gradient
changed after its backward pass), and the cached path must give the same numbers as the first call."""

from __future__ import annotations

import gc
import warnings

import numpy as np
import pytest
import torch
from helpers import Emit, rates_by_hand
from torch import nn

from monitorch_widget import MonitorNotice, PyTorchInspector
from monitorch_widget.collect.optimizer_steps import _Steps
from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation

OA = "Output Activations"
W, B = "Weight Gradient Activation", "Bias Gradient Activation"
EPS = 1e-8


def test_activation_rates_when_batch_size_dtype_and_the_shared_scratch_change_between_batches():
    rng = np.random.default_rng(3)
    small = [rng.standard_normal((n, 5)).astype(np.float32) for n in (6, 2, 6, 4)]
    small[1][:, 2] = 0.0                                # a dead channel in one batch
    small.append(rng.standard_normal((6, 5)))            # float64: same shape, another dtype
    small.append(rng.standard_normal((6, 5)).astype(np.float32))  # back to float32
    small = [np.where(np.abs(b) < 0.3, 0.0, b).astype(b.dtype) for b in small]
    # A second site whose first output comes later and is larger: the lens' scratch pool grows, which
    # invalidates the first site's pooled view (its next call must fetch a new one).
    large = [np.zeros((1, 3), np.float32)] * 3 + [rng.standard_normal((64, 3)).astype(np.float32)] * 3
    model = nn.Sequential(Emit([torch.from_numpy(b) for b in small]), nn.Tanh(),
                          Emit([torch.from_numpy(b) for b in large]), nn.Tanh())
    ins = PyTorchInspector([OutputActivation()], visualizer="none").attach(model)
    for _ in range(len(small)):
        model(torch.zeros(1))
    ins.tick_epoch()
    h = ins.history
    # Tanh keeps zeros at zero and is strictly monotone: |tanh(x)| > eps exactly where |x| > atanh(eps) ~ eps
    want1 = [rates_by_hand(np.tanh(b)) for b in small]
    want3 = [rates_by_hand(np.tanh(b)) for b in large]
    assert h.series(OA, "1", "activation_rate")[0] == pytest.approx(np.mean([w[0] for w in want1]), rel=1e-6)
    assert h.series(OA, "1", "death_rate")[0] == pytest.approx(np.mean([w[1] for w in want1]), rel=1e-6)
    assert h.series(OA, "3", "activation_rate")[0] == pytest.approx(np.mean([w[0] for w in want3]), rel=1e-6)
    assert h.series(OA, "3", "death_rate")[0] == pytest.approx(np.mean([w[1] for w in want3]), rel=1e-6)


def test_activation_rates_of_outputs_that_require_grad_and_a_nan_batch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU())
    ins = PyTorchInspector([OutputActivation()], visualizer="none").attach(model)
    xs = [torch.randn(5, 3), torch.randn(5, 3), torch.full((5, 3), float("nan")), torch.randn(2, 3)]
    seen = []
    for x in xs:
        out = model(x)
        assert out.requires_grad
        seen.append(out.detach().numpy().copy())
    with pytest.warns(UserWarning, match="NaN/Inf"):  # the NaN batch is reported
        ins.tick_epoch()
    finite = [rates_by_hand(b) for b in seen if np.isfinite(b).all()]
    assert ins.history.series(OA, "1", "activation_rate")[0] == pytest.approx(np.mean([f[0] for f in finite]))
    assert ins.history.series(OA, "1", "death_rate")[0] == pytest.approx(np.mean([f[1] for f in finite]))


class ShapedLoss(nn.Module):
    """An L1 loss whose result has a chosen shape of one element: 0-d, [1] or [1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.shape: tuple[int, ...] = ()

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (pred - target).abs().mean().reshape(self.shape)


def test_loss_values_of_every_one_element_shape_are_recorded():
    loss_fn = ShapedLoss()
    w = nn.Parameter(torch.zeros(1))
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn, loss_range=None)], visualizer="none").attach(nn.Linear(1, 1))
    values = []
    for shape, v in [((), 1.5), ((1,), 2.0), ((1, 1), 4.25), ((), 8.0)]:
        loss_fn.shape = shape
        loss = loss_fn(w + v, torch.zeros(1))
        loss.backward()
        values.append(v)
    with torch.no_grad():
        loss_fn.shape = (1, 1)
        loss_fn(w + 3.0, torch.zeros(1))
    ins.tick_epoch()
    h = ins.history
    assert h.series("Loss", "Loss", "train_loss mean")[0] == pytest.approx(np.mean(values))
    assert h.series("Loss", "Loss", "val_loss mean")[0] == pytest.approx(3.0)


def _quiet(model: nn.Module) -> PyTorchInspector:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MonitorNotice)
        return PyTorchInspector([ParameterGradientActivation()], visualizer="none").attach(model)


def _rates(g: torch.Tensor) -> tuple[float, float]:
    active = g.abs() > EPS
    if g.dim() == 1:
        return active.double().mean().item(), (~active).double().mean().item()
    return active.double().mean().item(), (~active.any(1)).double().mean().item()


class Branchy(nn.Module):
    """Two heads; a batch uses one or both, so the set of parameters with a gradient changes per step."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.a = nn.Linear(4, 6)
        self.b = nn.Linear(4, 6)

    def forward(self, x: torch.Tensor, use: str) -> torch.Tensor:
        out = torch.zeros(x.shape[0], 6)
        if "a" in use:
            out = out + torch.relu(self.a(x))
        if "b" in use:
            out = out + self.b(x) * (x[:, :1] > 0)
        return out


def test_gradient_rates_when_the_set_of_parameters_with_a_gradient_changes_between_steps():
    model = Branchy()
    ins = _quiet(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    used: dict[str, list[torch.Tensor]] = {"a.weight": [], "b.weight": [], "a.bias": [], "b.bias": []}
    torch.manual_seed(2)
    for use in ["ab", "a", "b", "ab", "a", "a", "b"]:
        opt.zero_grad()
        model(torch.randn(3, 4), use).sum().backward()
        for name, p in model.named_parameters():
            if p.grad is not None:
                used[name].append(p.grad.clone())
        opt.step()
    ins.tick_epoch()
    h = ins.history
    for layer in ("a", "b"):
        w = [_rates(g) for g in used[f"{layer}.weight"]]
        b = [_rates(g) for g in used[f"{layer}.bias"]]
        assert h.series(W, layer, "activation_rate")[-1] == pytest.approx(np.mean([x[0] for x in w]))
        assert h.series(W, layer, "death_rate")[-1] == pytest.approx(np.mean([x[1] for x in w]))
        assert h.series(B, layer, "activation_rate")[-1] == pytest.approx(np.mean([x[0] for x in b]))


def test_a_gradient_changed_in_place_after_backward_is_read_again_by_the_step():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(5, 4))
    ins = _quiet(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    used = []
    for step in range(4):
        opt.zero_grad()
        model(torch.randn(8, 5)).pow(2).sum().backward()
        if step % 2:
            # every entry below eps after clipping: the speculative end-of-backward row must not be used
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1e-12)
        used.append(model[0].weight.grad.clone())
        opt.step()
    ins.tick_epoch()
    want = [_rates(g) for g in used]
    assert [w[0] for w in want][1] == 0.0 and [w[0] for w in want][0] > 0.5  # the test distinguishes the reads
    assert ins.history.series(W, "0", "activation_rate")[-1] == pytest.approx(np.mean([w[0] for w in want]))
    assert ins.history.series(W, "0", "death_rate")[-1] == pytest.approx(np.mean([w[1] for w in want]))


class _Listener:
    def __init__(self) -> None:
        self.steps = 0

    def on_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.steps += 1


def test_step_listeners_are_held_weakly_and_each_hears_every_step():
    steps = _Steps()
    a, b = _Listener(), _Listener()
    steps.listen(a)
    steps.listen(b)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    try:
        opt.step()
        assert (a.steps, b.steps) == (1, 1)
        del a
        gc.collect()
        opt.step()  # a listener collected without leave() is skipped
        assert b.steps == 2
        steps.leave(b)
        opt.step()
        assert b.steps == 2 and steps.handles == []
    finally:
        for handle in steps.handles:
            handle.remove()
