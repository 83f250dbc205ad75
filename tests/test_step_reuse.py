"""The step that reuses a whole layout's end-of-backward read at once (``GradientObservations._reuse_row``, issue 13)
must decide exactly what the site-by-site rule decides (``collect/gradient_reading.py``'s definition): the row read
at the end of the backward pass is the step's observation only for gradients that are the same tensor, unchanged,
when the step runs. Each case below changes one gradient between the backward pass and the step in another way;
every expected value is computed by hand from gradients cloned at the moment the definition names.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from monitorch_widget import MonitorNotice, PyTorchInspector
from monitorch_widget.lens import ParameterGradientActivation

EPS = 1e-8
W, B = "Weight Gradient Activation", "Bias Gradient Activation"


def rates(g: torch.Tensor) -> tuple[float, float]:
    """(activation, death) of one Linear gradient: share of entries above eps; share of output rows all within."""
    active = g.abs() > EPS
    per_unit = active.reshape(g.shape[0], -1).any(1) if g.dim() > 1 else active
    return active.double().mean().item(), (~per_unit).double().mean().item()


def mean_rates(grads: list[torch.Tensor]) -> tuple[float, float]:
    pairs = [rates(g) for g in grads]
    return float(np.mean([p[0] for p in pairs])), float(np.mean([p[1] for p in pairs]))


def keep_weight_grads(model: nn.Module, used: dict[str, list[torch.Tensor]]) -> None:
    """Clone each named layer's weight gradient as it is now (what the step about to run uses)."""
    for name in used:
        used[name].append(model.get_submodule(name).weight.grad.clone())


def assert_recorded(ins: PyTorchInspector, used: dict[str, list[torch.Tensor]]) -> None:
    """Each layer's recorded weight rates are the mean of the rates of the gradients kept for it."""
    for name, grads in used.items():
        assert recorded(ins, name) == pytest.approx(mean_rates(grads), abs=1e-12)


def recorded(ins: PyTorchInspector, group: str, tag: str = W) -> tuple[float, float]:
    h = ins.history
    return h.series(tag, group, "activation_rate")[-1], h.series(tag, group, "death_rate")[-1]


def setup() -> tuple[nn.Module, torch.optim.Optimizer, PyTorchInspector]:
    torch.manual_seed(0)
    # a ReLU between the layers leaves some of the first layer's gradient rows exactly zero: death rates > 0
    model = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MonitorNotice)
        ins = PyTorchInspector([ParameterGradientActivation()], visualizer="none").attach(model)
    return model, opt, ins


def backward(model: nn.Module, seed: int) -> None:
    torch.manual_seed(seed)
    model(torch.randn(4, 5)).pow(2).sum().backward()


def zero_rows(g: torch.Tensor, rows: int) -> None:
    """In place: the first ``rows`` output rows of a gradient set to zero (their units die)."""
    g[:rows].zero_()


def test_the_usual_loop_counts_each_step_once():
    model, opt, ins = setup()
    used: dict[str, list[torch.Tensor]] = {"0": [], "2": []}
    for step in range(5):
        opt.zero_grad()
        backward(model, step)
        keep_weight_grads(model, used)
        opt.step()
    ins.tick_epoch()
    assert_recorded(ins, used)
    assert ins.history.series(W, "0", "activation_rate").__len__() == 1


@pytest.mark.parametrize("change", ["in_place", "replaced"])
def test_a_gradient_changed_after_the_backward_pass_is_read_again_by_the_step(change):
    """One parameter's gradient changes between backward and step (in place: its version moves; replaced: another
    tensor): that parameter's observation is what the step used; the others keep their backward read."""
    model, opt, ins = setup()
    used: dict[str, list[torch.Tensor]] = {"0": [], "2": []}
    for step in range(4):
        opt.zero_grad()
        backward(model, 10 + step)
        g = model[0].weight.grad
        if change == "in_place":
            zero_rows(g, 2)
        else:
            keep = (torch.arange(g.shape[0]) >= 3).to(g.dtype)[:, None]
            replaced = g * keep  # its first 3 rows zero, written out of place: version 0, as g's
            assert replaced._version == g._version  # so only its identity tells them apart
            model[0].weight.grad = replaced
        keep_weight_grads(model, used)
        opt.step()
    ins.tick_epoch()
    assert_recorded(ins, used)
    # the changed gradients' dead rows are seen: the step read them, not the backward pass
    assert recorded(ins, "0")[1] >= (3 if change == "replaced" else 2) / 6


def test_gradients_set_to_none_before_the_step_count_as_read_at_their_backward_pass():
    """zero_grad() between backward and step: the step uses no gradient, so each backward pass's gradient is
    counted once, as it stood at the end of that pass (when the next backward pass starts a new one)."""
    model, opt, ins = setup()
    seen: list[torch.Tensor] = []
    for step in range(3):
        backward(model, 20 + step)
        seen.append(model[2].weight.grad.clone())
        opt.zero_grad()  # set_to_none: nothing for the step
        opt.step()
    ins.tick_epoch()
    assert recorded(ins, "2") == pytest.approx(mean_rates(seen), abs=1e-12)


def test_an_optimizer_of_some_parameters_reads_them_and_leaves_the_rest_to_their_backward_pass():
    """The optimizer updates only the first layer: the second layer's gradients are counted per backward pass,
    the first layer's per step -- here the same values, so both equal the per-batch gradients; the biases are
    in neither optimizer and still counted (unused gradients count once)."""
    model, _, ins = setup()
    opt = torch.optim.SGD(model[0].parameters(), lr=0.1)
    used: dict[str, list[torch.Tensor]] = {"0": [], "2": []}
    bias: list[torch.Tensor] = []
    for step in range(4):
        opt.zero_grad()
        for p in model[2].parameters():
            p.grad = None
        backward(model, 30 + step)
        keep_weight_grads(model, used)
        bias.append(model[2].bias.grad.clone())
        opt.step()
    ins.tick_epoch()
    assert_recorded(ins, used)
    assert recorded(ins, "2", B) == pytest.approx(mean_rates(bias), abs=1e-12)


def test_accumulation_without_zero_grad_between_steps_reads_each_steps_sum():
    """No zero_grad at all: each backward pass accumulates in place into the same tensor (its version moves by
    one), and each step reads the running sum it used -- once per step, never the backward read of a sum the
    next pass has since grown."""
    model, opt, ins = setup()
    used: list[torch.Tensor] = []
    for step in range(4):
        backward(model, 40 + step)
        used.append(model[0].weight.grad.clone())
        opt.step()
    ins.tick_epoch()
    assert recorded(ins, "0") == pytest.approx(mean_rates(used), abs=1e-12)


@pytest.mark.parametrize("how", ["in_place", "replaced"])
def test_a_gradient_rewritten_by_a_later_hook_of_the_backward_pass_is_read_as_rewritten(how):
    """Another post-accumulate-grad hook, registered after ours, rewrites one gradient during the backward pass
    (as a wrapper's reducer does): the read at the end of the pass sees the rewritten gradient, and the step
    finds it unchanged since that read, so each step counts it once, as rewritten."""
    model, opt, ins = setup()
    weight = model[2].weight

    def rewrite(p: torch.Tensor) -> None:
        if how == "in_place":
            zero_rows(p.grad, 1)
        else:
            keep = (torch.arange(p.grad.shape[0]) >= 2).to(p.grad.dtype)[:, None]
            p.grad = p.grad * keep

    handle = weight.register_post_accumulate_grad_hook(rewrite)
    used: list[torch.Tensor] = []
    for step in range(4):
        opt.zero_grad()
        backward(model, 50 + step)
        used.append(weight.grad.clone())
        opt.step()
    handle.remove()
    ins.tick_epoch()
    assert recorded(ins, "2") == pytest.approx(mean_rates(used), abs=1e-12)
    assert recorded(ins, "2")[1] == pytest.approx(1 / 3 if how == "in_place" else 2 / 3)
