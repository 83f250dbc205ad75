"""Modules and parameters added to the model after attach: not watched, and named once at the next tick."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from monitorch_widget import MonitorNotice, PyTorchInspector
from monitorch_widget.lens import OutputActivation, ParameterGradientActivation, ParameterNorm


def train(model: nn.Module, opt: torch.optim.Optimizer, width: int) -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        opt.zero_grad()
        x, y = torch.randn(8, 4, generator=g), torch.randint(0, width, (8,), generator=g)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def notices(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, MonitorNotice)]


def test_appended_modules_and_a_new_parameter_are_named_once_at_the_next_tick():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ins = PyTorchInspector([OutputActivation(), ParameterGradientActivation(), ParameterNorm()], visualizer="none",
                           module=model)
    train(model, opt, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ins.tick_epoch()
    assert notices(caught) == []
    model.append(nn.ReLU())
    model.append(nn.Sequential(nn.Linear(3, 2)))  # a subtree: named once, by its root
    model[0].register_parameter("scale", nn.Parameter(torch.ones(())))
    model[2].weight = nn.Parameter(model[2].weight.detach().clone())  # a replacement: followed, not named
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train(model, opt, 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ins.tick_epoch()
        train(model, opt, 2)
        ins.tick_epoch()  # said once
    said = notices(caught)
    assert len(said) == 1 and said[0].startswith("monitorch_widget [model]: 3 module(s) / parameter(s)")
    assert "'3 (ReLU)', '4 (Sequential)', '0.scale'" in said[0] and "'2.weight'" not in said[0]
    # the replaced weight is still read (its new parameter, the optimizer's), the added ones are not
    assert ins.history.series("Weight Gradient Activation", "2", "activation_rate")[-1] > 0
    groups = {c.group for c in ins.history.runs[-1].columns if c.panel == "Weight Gradient Activation"}
    assert groups == {"0", "2"}
    ins.detach()


def test_other_models_and_wrappers_are_not_named_and_detach_removes_the_hooks():
    model = nn.Sequential(nn.Linear(4, 3))
    ins = PyTorchInspector([ParameterGradientActivation()], visualizer="none", module=model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        other = nn.Sequential(nn.Linear(2, 2))
        other.append(model)  # our model registered into another one: not an addition to ours
        train(model, torch.optim.SGD(model.parameters(), lr=0.1), 3)
        ins.tick_epoch()
        ins.detach()
        model.append(nn.ReLU())  # after detach: nobody watches, nothing to say
        ins.attach(model)
        train(model, torch.optim.SGD(model.parameters(), lr=0.1), 3)
        ins.tick_epoch()
    assert notices(caught) == []


@pytest.mark.parametrize("boom", ["module", "parameter"])
def test_a_registration_is_never_broken_by_the_monitor(boom):
    model = nn.Sequential(nn.Linear(4, 3))
    ins = PyTorchInspector([ParameterGradientActivation()], visualizer="none", module=model)
    ins._growth._names = None  # broken bookkeeping: the user's assignment still works
    if boom == "module":
        model.append(nn.ReLU())
        assert isinstance(model[1], nn.ReLU)
    else:
        model[0].register_parameter("extra", nn.Parameter(torch.zeros(1)))
        assert model[0].extra.shape == (1,)
    ins.detach()


def test_pruning_after_attach_is_followed_as_the_same_parameter_not_called_new_or_replaced():
    """torch.nn.utils.prune re-registers '0.weight' as '0.weight_orig' (the same Parameter, still trained) and
    computes 'weight' from it and a mask (trial r5, finding 7: the gradient lenses said "replaced ... stops here"
    and wrote a one-batch value, the model notice called weight_orig new and unwatched). The gradient norm of
    each epoch is now weight_orig's, by hand, and one notice says what is followed."""
    from torch.nn.utils import prune

    from monitorch_widget.lens import ParameterGradientGeometry

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ins = PyTorchInspector([ParameterGradientGeometry()], visualizer="none", module=model)
    param = model[0].weight
    gen = torch.Generator().manual_seed(3)
    want = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(3):
            if epoch == 1:
                prune.l1_unstructured(model[0], "weight", amount=0.5)
                assert model[0].weight_orig is param
            norms = []
            for _ in range(3):
                opt.zero_grad()
                model(torch.randn(8, 6, generator=gen)).pow(2).mean().backward()
                norms.append(float(param.grad.norm()))  # masked after pruning: half its entries 0
                opt.step()
            want.append(sum(norms) / len(norms))
            ins.tick_epoch()
    got = ins.history.series("Weight Gradient Norm", "0", "mean")
    assert list(got) == pytest.approx(want, rel=1e-5)
    said = notices(caught)
    assert any("as 'weight_orig' (pruning" in m for m in said)
    assert not any("not watched" in m or "stops here" in m for m in said)
    ins.detach()


def _replaced_weight_series(evaluated: bool) -> tuple[list[float], list[float]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    active = {"is_active_fn": lambda _: model.training} if evaluated else {}
    ins = PyTorchInspector([ParameterGradientActivation(), ParameterNorm()], visualizer="none", module=model, **active)
    for epoch in range(3):
        if epoch == 1:
            model[2].weight = nn.Parameter(model[2].weight.detach().clone() * 2)
        train(model, torch.optim.SGD(model.parameters(), lr=0.1), 3)
        if evaluated:  # the README's pattern: the hooks are off after this pass, until the next training pass
            model.eval()
            with torch.no_grad():
                model(torch.randn(8, 4))
            model.train()
        ins.tick_epoch()
    return (list(ins.history.series("Weight Gradient Activation", "2", "activation_rate")),
            list(ins.history.series("Weight Norm", "2", "mean")))


def test_a_replaced_parameter_is_followed_when_the_last_pass_before_the_tick_was_an_evaluation_one():
    """The tick re-binds a parameter replaced under its name whatever is_active_fn answered at the last pass
    (trial r10's class of fault: a tick-time check that read the hooks' on/off state): the same series as without
    is_active_fn, the norm the new weight's by hand."""
    plain, norms = _replaced_weight_series(False)
    evaluated, evaluated_norms = _replaced_weight_series(True)
    assert all(v > 0 for v in plain)
    assert evaluated == pytest.approx(plain, rel=1e-6)
    assert evaluated_norms == pytest.approx(norms, rel=1e-6)
