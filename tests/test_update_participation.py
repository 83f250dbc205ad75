"""ParameterUpdateGeometry observes, per step, only the parameters that step updates.

Found on real code: a module skipped on some batches (conditional computation, an unused branch) has
``.grad`` None at those steps, so every ``torch.optim`` optimizer leaves it as it is; a GAN's generator
optimizer never touches the discriminator. The lens recorded a zero update for each such step (halving the
norm's mean of a module used every other step, and making every correlation of it 0: each one is with a zero
update) and a zero update every epoch for the discriminator, which the health check then read as "the learning
rate may be too low". Also, assigning ``lens.optimizer`` a new optimizer mid-training left the new one's
steps unobserved (the hooks stayed on the old one), and a new optimizer the lens was not told about is
unobserved without a word: it is now named once. The expected values below are computed with plain torch
from the parameters before and after each step.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import monitorch_widget as mw
from monitorch_widget import MonitorNotice
from monitorch_widget.lens import ParameterUpdateGeometry


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a.flatten(), b.flatten()) / (a.norm() * b.norm() + 1e-8))


def _by_hand(updates: list[torch.Tensor]) -> tuple[float, float]:
    """Mean norm and mean correlation (the epoch's first with a zero update: 0) of the steps that moved."""
    norms = [float(u.norm()) for u in updates]
    corrs = [0.0] + [_corr(updates[i - 1], updates[i]) for i in range(1, len(updates))]
    return sum(norms) / len(norms), sum(corrs) / len(corrs)


@pytest.mark.parametrize("make_opt", [
    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
    lambda ps: torch.optim.Adam(ps, lr=1e-2),
    lambda ps: torch.optim.AdamW(ps, lr=1e-2, foreach=False),
], ids=["sgd-momentum", "adam", "adamw-loop"])
def test_a_module_skipped_on_some_steps_is_observed_only_when_updated(make_opt):
    torch.manual_seed(0)
    model = nn.ModuleDict({"a": nn.Linear(4, 4), "b": nn.Linear(4, 4)})
    opt = make_opt(model.parameters())
    ins = mw.PyTorchInspector([ParameterUpdateGeometry(opt)], visualizer="none", module=model)
    moved = []
    for step in range(7):
        y = model["a"](torch.randn(3, 4))
        if step % 2 == 0:  # "b" is skipped on odd steps: its .grad is None there (zero_grad sets to None)
            y = model["b"](y)
        before = model["b"].weight.detach().clone()
        opt.zero_grad()
        y.pow(2).mean().backward()
        opt.step()
        update = model["b"].weight.detach() - before
        assert (float(update.norm()) > 0) == (step % 2 == 0)
        if step % 2 == 0:
            moved.append(update)
    ins.tick_epoch()
    norm, corr = _by_hand(moved)
    assert corr > 0.3  # consecutive real updates are correlated: a zero update in between would give 0
    h = ins.history
    assert h.series("Weight Update Norm", "b", "mean")[-1] == pytest.approx(norm, rel=1e-5)
    assert h.series("Weight Update Correlation", "b", "mean")[-1] == pytest.approx(corr, rel=1e-4)
    ins.detach()


def test_parameters_another_optimizer_updates_make_no_observation():
    torch.manual_seed(0)
    model = nn.ModuleDict({"G": nn.Linear(4, 4), "D": nn.Linear(4, 1)})
    opt_g = torch.optim.Adam(model["G"].parameters(), 1e-2)
    opt_d = torch.optim.Adam(model["D"].parameters(), 1e-2)
    ins = mw.PyTorchInspector([ParameterUpdateGeometry(opt_g)], visualizer="none", module=model)
    g_updates = []
    for _ in range(4):
        z = torch.randn(8, 4)
        opt_d.zero_grad()
        model["D"](model["G"](z).detach()).mean().backward()  # D's steps: not the lens's optimizer
        opt_d.step()
        opt_g.zero_grad()
        (-model["D"](model["G"](z)).mean()).backward()  # also fills D's .grad, but opt_g does not hold D
        before = model["G"].weight.detach().clone()
        opt_g.step()
        g_updates.append(model["G"].weight.detach() - before)
    ins.tick_epoch()
    h = ins.history
    assert math.isnan(h.series("Weight Update Norm", "D", "mean")[-1])  # no observation, not a zero update
    norm, corr = _by_hand(g_updates)
    assert h.series("Weight Update Norm", "G", "mean")[-1] == pytest.approx(norm, rel=1e-5)
    assert h.series("Weight Update Correlation", "G", "mean")[-1] == pytest.approx(corr, rel=1e-4)
    ins.detach()


def test_assigning_a_new_optimizer_mid_training_observes_its_steps_only():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4))
    old = torch.optim.SGD(model.parameters(), lr=0.1)
    lens = ParameterUpdateGeometry(old)
    ins = mw.PyTorchInspector([lens], visualizer="none", module=model)

    def epoch(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
        updates = []
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(5, 4)).pow(2).mean().backward()
            before = model[0].weight.detach().clone()
            opt.step()
            updates.append(model[0].weight.detach() - before)
        ins.tick_epoch()
        return updates

    want1 = _by_hand(epoch(old))
    new = torch.optim.Adam(model.parameters(), lr=1e-2)
    lens.optimizer = new
    want2 = _by_hand(epoch(new))
    with pytest.warns(MonitorNotice, match="lens.optimizer = new_optimizer"):
        epoch(old)  # the old optimizer's steps are no longer observed (and the lens says so)
    norms = ins.history.series("Weight Update Norm", "0", "mean")
    corrs = ins.history.series("Weight Update Correlation", "0", "mean")
    assert norms[:2] == pytest.approx([want1[0], want2[0]], rel=1e-5)
    assert corrs[:2] == pytest.approx([want1[1], want2[1]], rel=1e-4, abs=1e-7)
    assert math.isnan(norms[2])
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        lens.optimizer = "adam"
    ins.detach()


def _notices(caught) -> list[str]:
    return [str(w.message) for w in caught
            if issubclass(w.category, MonitorNotice) and "[ParameterUpdateGeometry]" in str(w.message)]


@pytest.mark.parametrize("assign", [False, True], ids=["not-told", "assigned"])
def test_a_replaced_optimizer_the_lens_was_not_told_about_is_named_once(assign):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    lens = ParameterUpdateGeometry(opt)
    ins = mw.PyTorchInspector([lens], visualizer="none", module=model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(3):
            if epoch == 1:  # a notebook cell re-run builds a new optimizer
                opt = torch.optim.Adam(model.parameters(), lr=1e-2)
                if assign:
                    lens.optimizer = opt
            for _ in range(2):
                opt.zero_grad()
                model(torch.randn(5, 4)).pow(2).mean().backward()
                opt.step()
            ins.tick_epoch()
        ins.tick_epoch()  # an epoch without any step: nothing to say
    norms = ins.history.series("Weight Update Norm", "0", "mean")
    notices = _notices(caught)
    if assign:
        assert not np.isnan(norms[:3]).any() and notices == []
    else:
        assert np.isnan(norms[1:]).all()  # the new optimizer's steps are not observed...
        assert len(notices) == 1 and "lens.optimizer = new_optimizer" in notices[0]  # ...and that is said once
    ins.detach()


def test_no_notice_when_the_lens_optimizer_steps_next_to_another():
    torch.manual_seed(0)
    model = nn.ModuleDict({"G": nn.Linear(4, 4), "D": nn.Linear(4, 1)})
    opt_g = torch.optim.SGD(model["G"].parameters(), 0.1)
    opt_d = torch.optim.SGD(model["D"].parameters(), 0.1)
    ins = mw.PyTorchInspector([ParameterUpdateGeometry(opt_g)], visualizer="none", module=model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            for opt in (opt_d, opt_g):
                opt.zero_grad()
                model["D"](model["G"](torch.randn(8, 4))).mean().backward()
                opt.step()
            ins.tick_epoch()
    # no "replaced optimizer" notice; only D, which the lens's optimizer does not hold, is named (once)
    notices = _notices(caught)
    assert [n for n in notices if "new_optimizer" in n] == []
    assert len(notices) == 1 and "does not hold them: 'D.weight', 'D.bias'" in notices[0]
    ins.detach()


@pytest.mark.parametrize("make_opt", [
    lambda ps: torch.optim.SGD(ps, lr=0.1),
    lambda ps: torch.optim.LBFGS(ps, lr=0.1, max_iter=3),
], ids=["sgd-closure", "lbfgs"])
def test_a_step_whose_closure_makes_the_gradients_is_observed(make_opt):
    """Lightning's automatic optimisation and LBFGS run forward and backward inside ``step(closure)``: at the
    step's pre-hook the gradients are still None, so which parameters the step updates is decided after it."""
    torch.manual_seed(0)
    model = nn.ModuleDict({"a": nn.Linear(4, 4), "b": nn.Linear(4, 4)})
    opt = make_opt(model.parameters())
    ins = mw.PyTorchInspector([ParameterUpdateGeometry(opt)], visualizer="none", module=model)
    updates = []
    for _ in range(3):
        x = torch.randn(5, 4)

        def closure(x: torch.Tensor = x) -> torch.Tensor:
            opt.zero_grad()
            loss = model["a"](x).pow(2).mean()  # "b" takes no part: its .grad stays None
            loss.backward()
            return loss

        opt.zero_grad(set_to_none=True)
        before = model["a"].weight.detach().clone()
        opt.step(closure)
        updates.append(model["a"].weight.detach() - before)
    ins.tick_epoch()
    norm, corr = _by_hand(updates)
    h = ins.history
    assert h.series("Weight Update Norm", "a", "mean")[-1] == pytest.approx(norm, rel=1e-5)
    assert h.series("Weight Update Correlation", "a", "mean")[-1] == pytest.approx(corr, rel=1e-4, abs=1e-7)
    assert math.isnan(h.series("Weight Update Norm", "b", "mean")[-1])
    ins.detach()
