"""What one gradient observation is (README: "What each statistic reads"), checked against plain torch.

Every expected value is computed by hand from gradients cloned by the test at the moment the definition
names (before the optimizer step, or at the end of the backward pass), never from the monitor's state.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from monitorch_widget import MonitorNotice, MonitorWarning, PyTorchInspector
from monitorch_widget.lens import ParameterGradientActivation

EPS = 1e-8
W, B = "Weight Gradient Activation", "Bias Gradient Activation"


def rates(g: torch.Tensor, axis: int = 0) -> tuple[float, float]:
    """(activation, death) of one gradient: share of entries above eps; share of units all within eps."""
    active = g.abs() > EPS
    if g.dim() <= 1:
        return active.double().mean().item(), (~active).double().mean().item()
    per_unit = active.movedim(axis, 0).reshape(g.shape[axis], -1).any(1)
    return active.double().mean().item(), (~per_unit).double().mean().item()


def mean_rates(grads: list[torch.Tensor], axis: int = 0) -> tuple[float, float]:
    pairs = [rates(g, axis) for g in grads]
    return float(np.mean([p[0] for p in pairs])), float(np.mean([p[1] for p in pairs]))


def recorded(ins: PyTorchInspector, group: str, tag: str = W) -> tuple[float, float]:
    h = ins.history
    return h.series(tag, group, "activation_rate")[-1], h.series(tag, group, "death_rate")[-1]


def quiet_inspector(model: nn.Module, **lens_kw) -> PyTorchInspector:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MonitorNotice)
        return PyTorchInspector([ParameterGradientActivation(**lens_kw)], visualizer="none").attach(model)


def embedding_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Embedding(100, 4), nn.Flatten(), nn.Linear(12, 3))


@pytest.mark.parametrize("k", [1, 4])
def test_gradient_accumulation_reads_the_gradient_the_step_uses(k):
    model = embedding_model()
    ins = quiet_inspector(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    used = []
    for step in range(3):
        opt.zero_grad()
        for micro in range(k):
            torch.manual_seed(100 * step + micro)
            x = torch.randint(0, 100, (2, 3))
            (nn.functional.cross_entropy(model(x), torch.randint(0, 3, (2,))) / k).backward()
        used.append(model[0].weight.grad.clone())
        opt.step()
    ins.tick_epoch()
    act, death = mean_rates(used)
    assert recorded(ins, "0") == pytest.approx((act, death), abs=1e-9)
    if k == 4:  # the step's summed gradient, neither a partial sum nor each micro-batch's own
        assert 0.7 < death < 0.9


@pytest.mark.parametrize("make", [lambda p: torch.optim.SGD(p, lr=0.05),
                                  lambda p: torch.optim.LBFGS(p, lr=0.1, max_iter=3)], ids=["SGD", "LBFGS"])
def test_closure_steps_and_lbfgs_read_the_gradient_after_the_closure(make):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    ins = quiet_inspector(model)
    opt = make(model.parameters())
    x, y = torch.randn(16, 4), torch.randn(16, 2)
    used = []

    def closure():
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
        used.append(model[2].weight.grad.clone())  # the step does not change .grad
    ins.tick_epoch()
    assert recorded(ins, "2") == pytest.approx(mean_rates(used), abs=1e-9)


def test_gradscaler_with_a_fused_optimizer_counts_a_skipped_step_as_non_finite():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    ins = quiet_inspector(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    used = []
    for step in range(4):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(torch.randn(8, 4)), torch.randn(8, 2))
        if step == 2:
            loss = loss * float("inf")  # inf gradients: the scaler skips this step
        scaler.scale(loss).backward()
        scaler.step(opt)  # fused: the optimizer unscales the gradient itself, in place
        if step != 2:
            used.append(model[2].weight.grad.clone())
        scaler.update()
    with pytest.warns(MonitorWarning) as caught:
        ins.tick_epoch()
    assert any("NaN/Inf" in str(w.message) and "'2' (1)" in str(w.message) for w in caught)
    assert recorded(ins, "2") == pytest.approx(mean_rates(used), abs=1e-9)


def test_two_optimizers_only_the_watched_parameters_and_only_gradients_a_step_used():
    torch.manual_seed(3)
    gen, disc = nn.Linear(3, 4), nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 1))
    ins = quiet_inspector(disc)
    opt_g, opt_d = torch.optim.SGD(gen.parameters(), lr=0.1), torch.optim.SGD(disc.parameters(), lr=0.1)
    used = []
    for _ in range(3):
        opt_d.zero_grad()
        real, fake = torch.randn(6, 4), gen(torch.randn(6, 3))
        (disc(real).mean() - disc(fake.detach()).mean()).backward()  # accumulates two branches
        used.append(disc[0].weight.grad.clone())
        opt_d.step()
        opt_g.zero_grad()
        disc(gen(torch.randn(6, 3))).mean().backward()  # reaches disc's grads too; no disc step uses them
        opt_g.step()
    ins.tick_epoch()
    assert recorded(ins, "0") == pytest.approx(mean_rates(used), abs=1e-9)


@pytest.mark.parametrize("reentrant", [True, False])
def test_checkpointed_block_with_a_weight_shared_inside_and_outside(reentrant):
    torch.manual_seed(4)
    shared = nn.Linear(5, 5)
    model = nn.ModuleDict({"shared": shared, "head": nn.Linear(5, 2)})
    ins = quiet_inspector(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    used = []
    for _ in range(3):
        opt.zero_grad()
        x = torch.randn(4, 5, requires_grad=True)
        h = checkpoint(lambda t: torch.relu(shared(t)), x, use_reentrant=reentrant)
        out = model["head"](torch.relu(shared(h)))
        out.pow(2).mean().backward()
        used.append(shared.weight.grad.clone())
        opt.step()
    ins.tick_epoch()
    assert recorded(ins, "shared") == pytest.approx(mean_rates(used), abs=1e-9)


def test_hand_written_update_counts_each_backward_pass():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    ins = quiet_inspector(model)
    used = []
    for _ in range(5):
        model(torch.randn(8, 4)).pow(2).mean().backward()
        used.append(model[0].weight.grad.clone())
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad
        model.zero_grad()
    ins.tick_epoch()
    assert recorded(ins, "0") == pytest.approx(mean_rates(used), abs=1e-9)


def test_non_finite_gradient_leaves_out_that_parameter_only():
    torch.manual_seed(6)
    a, b = nn.Linear(3, 4), nn.Linear(3, 4)
    model = nn.ModuleDict({"a": a, "b": b})
    ins = quiet_inspector(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    used_a, used_b = [], []
    for batch in range(3):
        opt.zero_grad()
        x = torch.randn(2, 3)
        xb = x.clone()
        xb[:, batch] = 0.0  # b's gradient column `batch` is exactly zero: activation 2/3 in each batch
        out_a = a(x)
        if batch == 1:
            out_a = out_a * torch.zeros(1).norm().sqrt().reciprocal()  # inf * x: NaN/Inf in a's gradient
        (out_a.sum() + b(xb).relu().sum()).backward()
        used_a.append(a.weight.grad.clone())
        used_b.append(b.weight.grad.clone())
        opt.step()
    with pytest.warns(MonitorWarning) as caught:
        ins.tick_epoch()
    messages = [str(w.message) for w in caught]
    assert any("NaN/Inf" in m and ": 'a' (1)." in m for m in messages) and not any("'b'" in m for m in messages)
    assert recorded(ins, "b") == pytest.approx(mean_rates(used_b), abs=1e-9)
    finite_a = [g for g in used_a if torch.isfinite(g).all()]
    assert recorded(ins, "a") == pytest.approx(mean_rates(finite_a), abs=1e-9)


class Conv1D(nn.Module):
    """Same layout as transformers' GPT-2 Conv1D: weight [in, out], y = x @ W + b."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.1)
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


@pytest.mark.parametrize("groups", [1, 2])
def test_transposed_convolution_units_are_output_channels(groups):
    torch.manual_seed(7)
    layer = nn.ConvTranspose2d(4, 6, 3, groups=groups)
    ins = quiet_inspector(layer)
    opt = torch.optim.SGD(layer.parameters(), lr=0.0)
    opt.zero_grad()
    out = layer(torch.randn(2, 4, 5, 5))
    mask = torch.tensor([1.0, 0, 1, 0, 1, 0]).view(1, 6, 1, 1)  # channels 1, 3, 5 receive no gradient
    (out * mask).sum().backward()
    grad_w, grad_b = layer.weight.grad.clone(), layer.bias.grad.clone()
    opt.step()
    ins.tick_epoch()
    # by hand: output channel c of a grouped transposed conv is weight[g*(in/g):(g+1)*(in/g), c % (out/g)]
    per_group_out = 6 // groups
    dead = [not grad_w[(c // per_group_out) * (4 // groups):(c // per_group_out + 1) * (4 // groups),
                       c % per_group_out].abs().gt(EPS).any() for c in range(6)]
    assert sum(dead) == 3 and rates(grad_b)[1] == 0.5
    assert recorded(ins, "", W)[1] == pytest.approx(0.5)
    assert recorded(ins, "", B)[1] == pytest.approx(0.5)


def test_gpt2_style_conv1d_units_are_its_output_columns():
    torch.manual_seed(8)
    layer = Conv1D(nf=6, nx=4)
    ins = quiet_inspector(layer)
    opt = torch.optim.SGD(layer.parameters(), lr=0.0)
    opt.zero_grad()
    (layer(torch.randn(3, 4)) * torch.tensor([1.0, 1, 0, 0, 0, 1])).sum().backward()
    g = layer.weight.grad.clone()
    opt.step()
    ins.tick_epoch()
    assert recorded(ins, "") == pytest.approx(rates(g, axis=1), abs=1e-9)
    assert recorded(ins, "")[1] == pytest.approx(0.5)


def test_frozen_at_attach_then_unfrozen_is_tracked_from_its_first_gradient():
    torch.manual_seed(9)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    model[0].requires_grad_(False)
    ins = quiet_inspector(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def epoch():
        used = []
        for _ in range(2):
            opt.zero_grad()
            model(torch.randn(5, 3)).pow(2).mean().backward()
            used.append(None if model[0].weight.grad is None else model[0].weight.grad.clone())
            opt.step()
        ins.tick_epoch()
        return used

    assert epoch() == [None, None]
    assert "0" not in ins.history.runs[-1].groups(W)
    model[0].requires_grad_(True)
    used = epoch()
    assert recorded(ins, "0") == pytest.approx(mean_rates(used), abs=1e-9)
