"""A float64 model (``model.double()``, scientific code) is measured by every norm-taking lens.

Found on real code: the norms were taken with ``dtype=torch.float32``, which torch refuses for a float64
tensor ("should be convertible without narrowing"), so OutputNorm, OutputGradientGeometry,
ParameterGradientGeometry, ParameterUpdateGeometry and ParameterNorm all failed at their first read and
recorded nothing. The expected values are computed with plain torch in float64 on the same tensors.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import monitorch_widget as mw
from monitorch_widget.lens import (
    OutputGradientGeometry,
    OutputNorm,
    ParameterGradientGeometry,
    ParameterNorm,
    ParameterUpdateGeometry,
)


def _corr_mean(xs: list[torch.Tensor]) -> float:
    cs = [0.0] + [float(torch.dot(a.flatten(), b.flatten()) / (a.norm() * b.norm() + 1e-8))
                  for a, b in zip(xs, xs[1:])]
    return float(np.mean(cs))


@pytest.mark.parametrize("when", ["before attach", "after attach"])
def test_every_norm_lens_measures_a_float64_model(when):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    if when == "before attach":
        model.double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    lenses = [OutputNorm(), OutputGradientGeometry(), ParameterGradientGeometry(), ParameterUpdateGeometry(opt),
              ParameterNorm()]
    ins = mw.PyTorchInspector(lenses, visualizer="none", module=model)  # MonitorWarning is an error here
    if when == "after attach":
        model.double()
    outs, out_grads, grads, updates = [], [], [], []
    model[1].register_forward_hook(lambda m, a, o: outs.append(o.detach().clone()))

    def keep_output_gradient(module: nn.Module, args: object, out: torch.Tensor) -> None:
        out.register_hook(lambda grad: out_grads.append(grad.clone()))

    model[2].register_forward_hook(keep_output_gradient)
    g = torch.Generator().manual_seed(1)
    for _ in range(4):
        x = torch.randn(5, 4, generator=g, dtype=torch.float64)
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        grads.append(model[0].weight.grad.clone())
        before = model[0].weight.detach().clone()
        opt.step()
        updates.append(model[0].weight.detach() - before)
    ins.tick_epoch()
    h = ins.history
    assert outs[0].dtype is torch.float64
    out_norm = np.mean([float(o.norm(dim=1).mean()) for o in outs])
    assert h.series("Output Norm", "1", "mean")[-1] == pytest.approx(out_norm, rel=1e-6)
    assert h.series("Output Gradient Norm", "2", "mean")[-1] == \
        pytest.approx(np.mean([float(x.norm()) for x in out_grads]), rel=1e-6)
    assert h.series("Output Gradient Correlation", "2", "mean")[-1] == pytest.approx(_corr_mean(out_grads), rel=1e-5)
    assert h.series("Weight Gradient Norm", "0", "mean")[-1] == \
        pytest.approx(np.mean([float(x.norm()) for x in grads]), rel=1e-6)
    assert h.series("Weight Gradient Correlation", "0", "mean")[-1] == pytest.approx(_corr_mean(grads), rel=1e-5)
    assert h.series("Weight Update Norm", "0", "mean")[-1] == \
        pytest.approx(np.mean([float(x.norm()) for x in updates]), rel=1e-6)
    assert h.series("Weight Update Correlation", "0", "mean")[-1] == pytest.approx(_corr_mean(updates), rel=1e-5)
    assert h.series("Weight Norm", "0", "mean")[-1] == pytest.approx(float(model[0].weight.detach().norm()), rel=1e-6)
    ins.detach()
