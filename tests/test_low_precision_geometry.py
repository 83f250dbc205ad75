"""Inner products of float16 / bfloat16 tensors are accumulated in float32 (trial r13a).

Found on real code: fp16 autocast with a GradScaler (the standard AMP recipe) made OutputGradientGeometry report
"NaN/Inf gradients" (a critical finding advising a lower learning rate) for a layer whose gradients were all
finite, and drop 5 of its 6 observations: ``torch.dot`` of two float16 tensors returns float16, and the scaled
output gradient's square (~1.5e7) overflows float16's 65504. With bfloat16 the correlations kept bfloat16's 3
digits (0.6200 for 0.6212). The expected values are computed in float64 from the same tensors.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import monitorch_widget as mw
from monitorch_widget.lens import OutputGradientGeometry, ParameterGradientGeometry, ParameterUpdateGeometry


def _norms_and_corr(xs: list[torch.Tensor]) -> tuple[float, float]:
    wide = [x.double().flatten() for x in xs]
    norms = [float(x.norm()) for x in wide]
    corr = [0.0] + [float(a @ b) / (na * nb + 1e-8) for a, b, na, nb in zip(wide, wide[1:], norms, norms[1:])]
    return float(np.mean(norms)), float(np.mean(corr))


def _keep_output_gradients(module: nn.Module, into: list[torch.Tensor]) -> None:
    def hook(mod: nn.Module, args: object, out: torch.Tensor) -> None:
        out.register_hook(lambda grad: into.append(grad.detach().clone()))
    module.register_forward_hook(hook)


def test_scaled_float16_output_gradients_are_finite_observations():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
    ins = mw.PyTorchInspector([OutputGradientGeometry()], visualizer="none", module=model)  # MonitorWarning: error
    out_grads: list[torch.Tensor] = []
    _keep_output_gradients(model[2], out_grads)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(6):
        x, y = torch.randn(256, 64), torch.randint(0, 10, (256,))
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16):
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    ins.tick_epoch()
    assert out_grads[0].dtype is torch.float16 and scaler.get_scale() == 2.0 ** 16  # no step was skipped
    assert all(bool(torch.isfinite(g).all()) for g in out_grads)
    # the case: float16 dots of consecutive gradients overflow
    assert not torch.isfinite(torch.dot(out_grads[0].flatten(), out_grads[1].flatten()))
    norm, corr = _norms_and_corr(out_grads)
    h = ins.history
    assert h.series("Output Gradient Norm", "2", "mean")[-1] == pytest.approx(norm, rel=1e-4)
    assert h.series("Output Gradient Correlation", "2", "mean")[-1] == pytest.approx(corr, abs=1e-5)
    assert h.runs[-1].problem_list() == []
    assert not [f for f in ins.health.findings() if f.check == "nonfinite"]
    ins.detach()


def test_bfloat16_correlations_are_not_rounded_to_bfloat16():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 256), nn.Linear(256, 4)).to(torch.bfloat16)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    ins = mw.PyTorchInspector([ParameterGradientGeometry(), OutputGradientGeometry(), ParameterUpdateGeometry(opt)],
                              visualizer="none", module=model)
    grads, out_grads, updates = [], [], []
    _keep_output_gradients(model[0], out_grads)
    for _ in range(3):
        x = torch.randn(64, 256, dtype=torch.bfloat16) + 0.3
        opt.zero_grad()
        model(x).float().pow(2).mean().backward()
        grads.append(model[0].weight.grad.detach().clone())
        before = model[0].weight.detach().clone()
        opt.step()
        updates.append(model[0].weight.detach() - before)
    ins.tick_epoch()
    h = ins.history
    # bfloat16 rounding of these correlations is off by ~1e-3; float32 accumulation by < 1e-5
    for panel, xs in (("Weight Gradient Correlation", grads), ("Output Gradient Correlation", out_grads),
                      ("Weight Update Correlation", updates)):
        _, corr = _norms_and_corr(xs)
        assert h.series(panel, "0", "mean")[-1] == pytest.approx(corr, abs=1e-5), panel
    ins.detach()
