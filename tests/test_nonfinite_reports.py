"""A diverged run is reported once per lens, not once per layer and tick (trial r13b).

Found on a 30-block model trained with SGD lr=3: with Python's default warning filters the user saw 242
MonitorWarning lines in the first NaN epoch and 478 by the next, one per layer per lens, repeated because the
batch count was part of each message; the status line counted 478 problems. Now each lens warns once per run,
naming the first layers and how many more; each layer keeps one problem (its count: the ticks with NaN/Inf),
from which the health check names the layers.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

import monitorch_widget as mw
from monitorch_widget import MonitorWarning
from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation, ParameterGradientGeometry


def _diverging_run(ins: mw.PyTorchInspector, model: nn.Module, loss_fn: nn.Module, epochs: int,
                   lr: float = 1e3, scale: float = 100, target: float = 0.0) -> list[str]:
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # the user's view: each distinct message once per location
        for _ in range(epochs):
            for _ in range(4):
                x = torch.randn(16, 8, generator=g) * scale
                opt.zero_grad()
                loss_fn(model(x), torch.full((16, 1), target)).backward()
                opt.step()
            ins.tick_epoch()
    return [str(w.message) for w in caught if issubclass(w.category, MonitorWarning)]


def _model(width: int = 8, depth: int = 6) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 1))


def test_a_diverged_run_warns_once_per_lens_and_keeps_one_problem_per_layer():
    model, loss_fn = _model(), nn.MSELoss()
    lenses = [LossMetrics(loss_fn=loss_fn), OutputActivation(), ParameterGradientActivation(),
              ParameterGradientGeometry()]
    ins = mw.PyTorchInspector(lenses, visualizer="none", module=model)
    said = _diverging_run(ins, model, loss_fn, epochs=4)
    run = ins.history.runs[-1]
    nan_epochs = [bool(v != v) for v in ins.history.series("Loss", "Loss", "train_loss mean")]
    assert sum(nan_epochs) >= 2  # the case: NaN in several epochs (every batch's loss non-finite)
    per_lens = {lens: [m for m in said if f"[{lens}]" in m and ("NaN/Inf" in m or "non-finite" in m)]
                for lens in ("LossMetrics", "OutputActivation", "ParameterGradientActivation",
                             "ParameterGradientGeometry")}
    assert all(len(v) == 1 for v in per_lens.values()), per_lens
    assert "more layers" in per_lens["OutputActivation"][0]  # 6 ReLUs: three named, then how many more
    # one problem per layer and lens, counted once per tick that had NaN/Inf there
    relu_problems = {msg: n for (lens, msg), n in run.problems.items() if lens == "OutputActivation"}
    relus = [name for name, m in model.named_modules() if isinstance(m, nn.ReLU)]
    assert sorted(msg.split(": ", 1)[0] for msg in relu_problems) == sorted(relus)
    assert all(1 <= n <= 4 for n in relu_problems.values())
    # the health check still names the layers
    layers = {f.layer for f in ins.health.findings() if f.check == "nonfinite"}
    assert set(relus) <= layers
    # a new run warns again, once
    model2 = _model()
    ins.attach(model2)
    again = _diverging_run(ins, model2, loss_fn, epochs=2)
    assert len([m for m in again if "[OutputActivation]" in m and "NaN/Inf" in m]) == 1
    ins.detach()


def test_no_finding_resolves_in_an_epoch_whose_values_are_nan():
    """Trial r13b: SGD lr=3 on a 30-block model, NaN in every batch from epoch 3: the print said 'resolved
    divergence', 'resolved exploding_gradient in 53 layers' at epoch 3. Not measured is not resolved."""
    model, loss_fn = _model(), nn.MSELoss()
    lenses = [LossMetrics(loss_fn=loss_fn), OutputActivation(), ParameterGradientActivation(),
              ParameterGradientGeometry()]
    ins = mw.PyTorchInspector(lenses, visualizer="none", module=model)
    _diverging_run(ins, model, loss_fn, epochs=5, lr=0.1, scale=10, target=10)  # finite epochs 1-2, NaN from epoch 3
    h = ins.history
    loss = dict(zip(h.runs[-1].epochs, h.series("Loss", "Loss", "train_loss mean")))
    nan_from = min(e for e, v in loss.items() if v != v)
    before = [f for f in ins.health.findings() if f.since < nan_from and f.check != "nonfinite"]
    assert before  # the case: findings raised while the values were finite
    assert all(f.until is None or loss[f.until] == loss[f.until] for f in ins.health.findings()), \
        [(f.check, f.layer, f.since, f.until) for f in ins.health.findings()]
    assert all(f.active for f in before if "#" not in f.id)
    ins.detach()
