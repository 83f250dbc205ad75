"""The frozen-parameter notice (lens/frozen.py) is said once per inspector per parameter, not once per gradient
lens watching it (fresh-user trial: ParameterGradientActivation and ParameterGradientGeometry both printed it)."""

from __future__ import annotations

import warnings

import torch
from torch import nn

import monitorch_widget as mw
from monitorch_widget import MonitorNotice
from monitorch_widget.lens import ParameterGradientActivation, ParameterGradientGeometry


def _train(model: nn.Module, ins: mw.PyTorchInspector, freeze, epochs: int = 3, set_to_none: bool = False,
           said: str = "do not require grad") -> list[str]:
    """``set_to_none=False``: a frozen parameter keeps its zeroed .grad. Returns the MonitorNotices saying ``said``."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(epochs):
            freeze(epoch)
            for _ in range(2):
                opt.zero_grad(set_to_none=set_to_none)
                model(torch.randn(3, 4)).pow(2).mean().backward()
                opt.step()
            ins.tick_epoch()
    return [str(w.message) for w in caught if issubclass(w.category, MonitorNotice) and said in str(w.message)]


def test_two_gradient_lenses_watching_a_frozen_parameter_say_it_once():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    ins = mw.PyTorchInspector([ParameterGradientActivation(), ParameterGradientGeometry()], visualizer="none",
                              module=model)
    said = _train(model, ins, lambda e: e == 1 and model[0].requires_grad_(False))
    assert len(said) == 1, said
    assert "'0.weight', '0.bias'" in said[0]
    ins.detach()


def test_each_frozen_parameter_is_named_once_whichever_lens_watches_it():
    """Lens A watches weights only, lens B weights and biases; layer 0 is frozen from epoch 2, layer 2 from epoch
    3: A names each weight as it freezes, B only the bias it alone watches (the weight was named already)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 2))
    ins = mw.PyTorchInspector([ParameterGradientActivation(parameters="weight"), ParameterGradientGeometry()],
                              visualizer="none", module=model)

    def freeze(epoch: int) -> None:
        if epoch in (1, 2):
            model[2 * epoch - 2].requires_grad_(False)

    said = _train(model, ins, freeze, epochs=4)
    named = [(s.split("]")[0].split("[")[1], s.split(".grad tensor: ")[1].split(";")[0]) for s in said]
    assert named == [("ParameterGradientActivation", "'0.weight'"), ("ParameterGradientGeometry", "'0.bias'"),
                     ("ParameterGradientActivation", "'2.weight'"), ("ParameterGradientGeometry", "'2.bias'")]
    ins.detach()


def test_a_parameter_frozen_before_attach_is_named_once():
    """Trial r13b: a layer frozen by mistake (requires_grad_(False) before attach, still given to the optimizer, the
    default zero_grad()) dropped out of the gradient panels with no notice at all."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 2))
    model[2].requires_grad_(False)
    ins = mw.PyTorchInspector([ParameterGradientActivation(), ParameterGradientGeometry()], visualizer="none",
                              module=model)
    said = _train(model, ins, lambda e: None, set_to_none=True, said="frozen")
    assert len(said) == 1 and \
        "2 watched parameter(s) are frozen (requires_grad=False) but held by the optimizer: '2.weight', '2.bias'" in said[0]
    assert "2" not in ins.history.runs[-1].groups("Weight Gradient Norm")  # the case: no series, so say why
    ins.detach()
