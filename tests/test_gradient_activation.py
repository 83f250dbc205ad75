import gc
import weakref

import numpy as np
import pytest
import torch
from torch import nn

from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import ParameterGradientActivation

W, B, WG = "Weight Gradient Activation", "Bias Gradient Activation", "Warning Gradient Activations"


def grad_rates_by_hand(g: np.ndarray, eps: float = 1e-8) -> tuple[float, float]:
    active = np.abs(g) > eps
    per_row = active.reshape(g.shape[0], -1).mean(axis=1) if g.ndim > 1 else active.astype(float)
    return float(per_row.mean()), float((per_row == 0).mean())


def test_linear_weight_and_bias_rows_by_hand():
    lin = nn.Linear(3, 2)
    ins = PyTorchInspector([ParameterGradientActivation()], visualizer="none").attach(lin)
    x = torch.tensor([[1.0, 0.0, 2.0]])
    lin(x)[:, 0].sum().backward()  # only output neuron 0 gets a gradient
    grads = (lin.weight.grad.numpy().copy(), lin.bias.grad.numpy().copy())
    ins.tick_epoch()
    # row 0 = x (2 of 3 entries non-zero), row 1 = 0 -> activation (2/3 + 0)/2, death 1/2
    assert ins.history.series(W, "", "activation_rate")[0] == pytest.approx(1 / 3)
    assert ins.history.series(W, "", "death_rate")[0] == pytest.approx(0.5)
    assert grad_rates_by_hand(grads[0]) == pytest.approx((1 / 3, 0.5))
    assert ins.history.series(B, "", "activation_rate")[0] == pytest.approx(0.5)
    assert ins.history.series(B, "", "death_rate")[0] == pytest.approx(0.5)
    assert ins.history.series(WG, WG, "worst death_rate")[0] == pytest.approx(0.5)
    assert ins.history.series(WG, WG, "worst activation_rate")[0] == pytest.approx(1 / 3)


def test_conv_weight_rows_are_output_channels():
    conv = nn.Conv2d(2, 3, kernel_size=2)
    model = nn.Sequential(conv)
    ins = PyTorchInspector([ParameterGradientActivation(parameters="weight")], visualizer="none").attach(model)
    out = conv(torch.randn(4, 2, 5, 5))
    (out[:, 0].sum() + out[:, 2].sum()).backward()
    expected = grad_rates_by_hand(conv.weight.grad.numpy())
    ins.tick_epoch()
    assert ins.history.series(W, "0", "activation_rate")[0] == pytest.approx(expected[0])
    assert ins.history.series(W, "0", "death_rate")[0] == pytest.approx(1 / 3)
    assert "Bias Gradient Activation" not in ins.history.panels()


def test_layer_without_bias_still_tracks_its_weight_in_definition_order():
    model = nn.Sequential(nn.Linear(4, 4, bias=False), nn.ReLU(), nn.Linear(4, 2))
    ins = PyTorchInspector([ParameterGradientActivation()], visualizer="none").attach(model)
    model(torch.randn(8, 4)).sum().backward()
    ins.tick_epoch()
    run = ins.history.runs[0]
    assert run.groups(W) == ["0", "2"]
    assert run.groups(B) == ["2"]


def test_epoch_mean_over_several_backward_passes():
    lin = nn.Linear(2, 2, bias=False)
    ins = PyTorchInspector([ParameterGradientActivation()], visualizer="none").attach(lin)
    seen = []
    for x, k in ((torch.tensor([[1.0, 1.0]]), 0), (torch.tensor([[1.0, 0.0]]), 1), (torch.tensor([[1.0, 1.0]]), None)):
        lin.zero_grad(set_to_none=True)
        out = lin(x)
        (out.sum() if k is None else out[:, k].sum()).backward()
        seen.append(grad_rates_by_hand(lin.weight.grad.numpy()))
    ins.tick_epoch()
    assert ins.history.series(W, "", "activation_rate")[0] == pytest.approx(np.mean([s[0] for s in seen]))
    assert ins.history.series(W, "", "death_rate")[0] == pytest.approx(np.mean([s[1] for s in seen]))


def test_lazy_module_is_tracked_once_materialised():
    model = nn.Sequential(nn.LazyLinear(3), nn.ReLU(), nn.Linear(3, 1))
    ins = PyTorchInspector([ParameterGradientActivation()], visualizer="none").attach(model)
    for _ in range(2):
        model(torch.randn(5, 4)).sum().backward()
    ins.tick_epoch()
    assert ins.history.runs[0].groups(W) == ["0", "2"]
    assert 0.0 < ins.history.series(W, "0", "activation_rate")[0] <= 1.0


def test_parameters_naming_nothing_is_a_clear_error_and_registers_nothing():
    model = nn.Sequential(nn.Linear(2, 2))
    ins = PyTorchInspector([ParameterGradientActivation(parameters=("wieght",))], visualizer="none")
    with pytest.raises(ValueError, match="wieght.*parameter names in this model: bias, weight"):
        ins.attach(model)
    assert not model[0].weight._post_accumulate_grad_hooks
    assert not ins.state.attached


def test_detach_removes_every_hook_and_frees_the_model():
    from monitorch_widget.lens import LossMetrics, OutputActivation

    loss_fn = nn.MSELoss()
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Dropout(), nn.Linear(3, 1))
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn), OutputActivation(), ParameterGradientActivation()],
                           visualizer="none").attach(model)
    loss_fn(model(torch.randn(4, 2)), torch.zeros(4, 1)).backward()
    ins.tick_epoch()
    ins.detach()
    assert all(not m._forward_hooks for m in model.modules())
    assert not loss_fn._forward_hooks
    assert all(not p._post_accumulate_grad_hooks for p in model.parameters())
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_a_parametrization_applied_after_attach_is_named_with_its_tensors_and_the_rest_goes_on():
    """weight_norm after attach: the module's weight is computed from original0/original1 from then on. That
    series stops with a message naming them (not a wrong FSDP1 diagnosis); the other parameters stay exact."""
    from torch.nn.utils.parametrizations import weight_norm

    from monitorch_widget import MonitorWarning

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    ins = PyTorchInspector([ParameterGradientActivation()], visualizer="none").attach(model)
    g = torch.Generator().manual_seed(1)

    def epoch():
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        grads = []
        for _ in range(2):
            opt.zero_grad()
            nn.functional.cross_entropy(model(torch.randn(4, 4, generator=g)), torch.randint(0, 2, (4,), generator=g)
                                        ).backward()
            grads.append(model[2].weight.grad.numpy().copy())
            opt.step()
        return grads

    epoch()
    ins.tick_epoch()
    weight_norm(model[0])
    # said at the first step that looks again at the optimizer's parameters (a new optimizer here), else at the tick
    with pytest.warns(MonitorWarning, match=r"'weight' is computed by a parametrization \(_WeightNorm\) applied "
                      r"after attach; the gradient now reaches 'original0', 'original1'.*parameters=\['original0', "
                      r"'original1'\]"):
        grads = epoch()
    ins.tick_epoch()
    assert ins.history.series(W, "2", "activation_rate")[1] == pytest.approx(
        np.mean([grad_rates_by_hand(x)[0] for x in grads]))


class _LoRA(nn.Module):
    def __init__(self, out_features, in_features, rank=2):
        super().__init__()
        self.A = nn.Parameter(torch.randn(rank, in_features) * 0.1)
        self.B = nn.Parameter(torch.zeros(out_features, rank))

    def forward(self, weight):
        return weight + self.B @ self.A


@pytest.mark.parametrize("change, said", [
    # a LoRA-style parametrization on a frozen base: the trained tensors are the adapter's, not the frozen original
    ("lora", r"a parametrization \(_LoRA\) applied after attach; the gradient now reaches '0.A', '0.B'.*"
             r"parameters=\['A', 'B'\]"),
    # the older hook-based API (audio models): weight_g / weight_v, not an FSDP1 flattening
    ("old_weight_norm", r"torch.nn.utils.weight_norm \(its hook-based form\) applied after attach; the gradient now "
                        r"reaches 'weight_g', 'weight_v'.*parameters=\['weight_g', 'weight_v'\]"),
])
def test_other_reparametrizations_after_attach_name_the_tensors_that_train(change, said):
    import torch.nn.utils.parametrize as parametrize

    from monitorch_widget import MonitorWarning

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    ins = PyTorchInspector([ParameterGradientActivation()], visualizer="none").attach(model)
    if change == "lora":
        for p in model.parameters():
            p.requires_grad_(False)
        parametrize.register_parametrization(model[0], "weight", _LoRA(16, 8))
    else:
        torch.nn.utils.weight_norm(model[0])
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    with pytest.warns(MonitorWarning, match=said):
        for _ in range(2):
            opt.zero_grad()
            model(torch.randn(4, 8)).pow(2).mean().backward()
            opt.step()
        ins.tick_epoch()
