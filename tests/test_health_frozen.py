"""A parameter frozen mid-run that keeps a zero ``.grad`` (``zero_grad(set_to_none=False)``) is not judged by the
health checks (fresh-user trial): before, its stale zero gradient raised a ``vanishing_gradient`` finding ("check
that the loss depends on it"), a dead layer from its gradient death rate 1 and an ``update_ratio`` "did not move"
finding, next to the notice saying the parameter is frozen. Its gradient series and update ratio now have no
value while it is frozen (monitorch's hook-based lens reads nothing for it either); the others are unchanged,
checked against norms computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import monitorch_widget as mw
from monitorch_widget import MonitorNotice
from monitorch_widget.lens import ParameterGradientActivation, ParameterGradientGeometry, ParameterUpdateGeometry


@pytest.mark.parametrize("with_activation", [False, True], ids=["norms", "norms+rates"])
def test_a_layer_frozen_mid_run_with_a_kept_zero_grad_raises_no_gradient_or_update_finding(with_activation):
    """Old code: without ParameterGradientActivation, vanishing_gradient on layer '0' ("check that the loss depends
    on it") and update_ratio ("did not move"); with it, dead_layer (death rate 1) and update_ratio."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)  # no momentum: the frozen weights do not move at all
    lenses = [ParameterGradientGeometry(compute_correlation=False), ParameterUpdateGeometry(opt, compute_correlation=False),
              *([ParameterGradientActivation()] if with_activation else [])]
    ins = mw.PyTorchInspector(lenses, visualizer="none", module=model)
    norms: dict[str, list[list[float]]] = {"0": [], "2": []}  # weight-gradient norm per step, by hand
    ratios: list[list[float]] = []  # ||update|| / ||weight before|| of model[2].weight per step, by hand
    with pytest.warns(MonitorNotice) as caught:
        for epoch in range(5):
            if epoch == 1:
                model[0].requires_grad_(False)  # frozen from epoch 2 on; its .grad stays, zeroed
            for v in norms.values():
                v.append([])
            ratios.append([])
            for _ in range(3):
                opt.zero_grad(set_to_none=False)
                model(torch.randn(6, 4)).pow(2).mean().backward()
                for name, v in norms.items():
                    v[-1].append(float(model[int(name)].weight.grad.norm()))
                before = model[2].weight.detach().clone()
                opt.step()
                ratios[-1].append(float((model[2].weight.detach() - before).norm() / before.norm()))
            ins.tick_epoch()
    assert norms["0"][1:] == [[0.0] * 3] * 4  # what the old code read: the stale zero .grad
    messages = [str(w.message) for w in caught]
    assert sum("do not require grad" in m for m in messages) >= 1
    findings = ins.health.findings()
    assert not [f for f in findings if f.layer == "0"], [(f.check, f.message) for f in findings]
    assert not [f for f in findings if "loss depends on it" in (f.advice or "")]
    h = ins.history
    grad0 = h.series("Weight Gradient Norm", "0", "mean")
    assert grad0[0] == pytest.approx(np.mean(norms["0"][0]), rel=1e-5)
    assert np.isnan(grad0[1:]).all()  # frozen: no value
    if with_activation:
        assert np.isnan(h.series("Weight Gradient Activation", "0", "death_rate")[1:]).all()
    assert np.isnan(h.series("Weight Update Ratio", "0", "mean")[1:]).all()
    # the layers that train are read as before
    assert h.series("Weight Gradient Norm", "2", "mean") == pytest.approx([np.mean(e) for e in norms["2"]], rel=1e-5)
    assert h.series("Weight Update Ratio", "2", "mean") == pytest.approx([np.mean(e) for e in ratios], rel=1e-5)
    ins.detach()


def test_a_discriminator_switched_off_between_its_steps_keeps_its_update_ratio():
    """Review (GAN idiom): D's parameters require grad for D's step and are switched off for G's step, so D reads as
    frozen at every tick. Whether a step updated a parameter is decided at that step: D's update ratio is each
    epoch's mean of ||w_after - w_before|| / ||w_before|| over D's own steps, by hand (it was dropped at every tick)."""
    torch.manual_seed(0)
    G, D = nn.Sequential(nn.Linear(2, 4)), nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
    opt_d = torch.optim.SGD(D.parameters(), lr=0.05)
    opt_g = torch.optim.SGD(G.parameters(), lr=0.05)
    both = nn.ModuleDict({"G": G, "D": D})
    ins = mw.PyTorchInspector([ParameterUpdateGeometry(opt_d, compute_correlation=False)], visualizer="none",
                              module=both)
    ratios: list[list[float]] = []
    for _ in range(2):
        ratios.append([])
        for _ in range(3):
            D.requires_grad_(True)
            opt_d.zero_grad()
            D(G(torch.randn(5, 2)).detach()).mean().backward()
            before = D[0].weight.detach().clone()
            opt_d.step()
            ratios[-1].append(float((D[0].weight.detach() - before).norm() / before.norm()))
            D.requires_grad_(False)  # G's step: D is a fixed critic
            opt_g.zero_grad()
            (-D(G(torch.randn(5, 2))).mean()).backward()
            opt_g.step()
        ins.tick_epoch()
    got = ins.history.series("Weight Update Ratio", "D.0", "mean")
    np.testing.assert_allclose(got, [np.mean(r) for r in ratios], rtol=1e-5)
    ins.detach()
