"""Gradient norms under a GradScaler are the norms of the gradient the optimizer used: unscaled.

Found on real code (the AMP recipe: ``scaler.scale(loss).backward(); scaler.step(opt); scaler.update()``):
GradScaler unscales the gradients in place with ``torch._amp_foreach_non_finite_check_and_unscale_``, which
does not bump their version counters, so the step reused the read taken at the end of the backward pass --
of the *scaled* gradient -- and ParameterGradientGeometry recorded norms multiplied by the loss scale (2^16 by
default, changing whenever the scaler adapts). Rates do not depend on the scale, so the activation tests did
not see it. Expected values: the gradient right after backward divided by the scale, with plain torch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import monitorch_widget as mw
from monitorch_widget.lens import ParameterGradientActivation, ParameterGradientGeometry


def _corr_mean(xs: list[torch.Tensor]) -> float:
    cs = [0.0] + [float(torch.dot(a.flatten(), b.flatten()) / (a.norm() * b.norm() + 1e-8))
                  for a, b in zip(xs, xs[1:])]
    return float(np.mean(cs))


@pytest.mark.parametrize("variant", ["sgd", "sgd-unscale-first", "adam-scheduler", "adam-fused"])
def test_gradient_norms_under_a_gradscaler_are_unscaled(variant):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    if variant.startswith("sgd"):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-2, fused=variant == "adam-fused")
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, 0.9) if variant == "adam-scheduler" else None
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=2)  # the scale changes, too
    ins = mw.PyTorchInspector([ParameterGradientGeometry(), ParameterGradientActivation()], visualizer="none",
                              module=model)
    g = torch.Generator().manual_seed(1)
    used = []
    for _ in range(5):
        with torch.autocast("cpu", dtype=torch.float16):
            loss = model(torch.randn(6, 8, generator=g)).float().pow(2).mean()
        opt.zero_grad()
        scaler.scale(loss).backward()
        used.append(model[0].weight.grad.detach().float() / scaler.get_scale())
        if variant == "sgd-unscale-first":
            scaler.unscale_(opt)  # the recipe for clipping, here without clipping
        scaler.step(opt)
        scaler.update()
        if sched is not None:
            sched.step()
    ins.tick_epoch()
    h = ins.history
    assert h.series("Weight Gradient Norm", "0", "mean")[-1] == \
        pytest.approx(np.mean([float(u.norm()) for u in used]), rel=1e-3)
    assert h.series("Weight Gradient Correlation", "0", "mean")[-1] == pytest.approx(_corr_mean(used), rel=1e-3)
    ins.detach()


def test_a_step_without_a_scaler_still_reuses_the_backward_read():
    """The re-read is for scaler-driven steps only: a plain step still reuses the read of the backward pass
    (one read per gradient, README "Cost")."""
    from monitorch_widget.collect.optimizer_steps import STEPS

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ins = mw.PyTorchInspector([ParameterGradientGeometry()], visualizer="none", module=model)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    assert STEPS.scaled is False
    scaler = torch.amp.GradScaler("cpu")
    opt.zero_grad()
    scaler.scale(model(torch.randn(3, 4)).sum()).backward()
    scaler.step(opt)
    assert STEPS.scaled is True
    ins.detach()
