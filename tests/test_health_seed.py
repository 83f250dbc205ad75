"""The seed's models against the documented default thresholds (fixed before these were run; README, "Health
checks"): the quickstart MLP triggers nothing, the 2-D MLP's redundant relu2 is found and relu1 is not, the CNN
without dropout has a dead layer (conv.relu2 / dense.relu1) and with dropout dense.relu1 is healthy.

The CNN runs are cut to the first epochs the dead-layer check needs (its death rates are flat from epoch 1 on,
see notebooks/activations.ipynb); the full notebook runs (29 and 30 epochs with early stopping) gave the same
layer findings.
"""

from __future__ import annotations

import pytest
import seed_models as seed
import torch

pytest.importorskip("monitorch", reason="monitorch (optional extra) is not installed")
from monitorch.inspector import PyTorchInspector as MonitorchInspector
from monitorch.lens import LossMetrics as MonitorchLoss
from monitorch.lens import OutputActivation as MonitorchOutputActivation
from monitorch.lens import ParameterGradientGeometry, ParameterNorm, ParameterUpdateGeometry
from torch import nn

from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation
from monitorch_widget.record.health import HealthConfig
from monitorch_widget.views.monitorch_adapter import WidgetVisualizer


def seed_inspector() -> tuple[PyTorchInspector, nn.Module]:
    loss_fn = nn.CrossEntropyLoss()
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn, separate_loss_and_metrics=False, metrics=["val_accuracy"]),
                            OutputActivation(), ParameterGradientActivation()], visualizer="none")
    assert ins.health.config == HealthConfig()  # the documented defaults, unchanged
    return ins, loss_fn


def test_the_quickstart_mlp_triggers_no_finding():
    ins, loss_fn = seed_inspector()
    model, train, val = seed.quickstart()
    ins.attach(model)
    seed.run_epochs(ins, model, loss_fn, train, val, 15)
    assert ins.health.findings() == []


def test_the_quickstart_mlp_triggers_no_gradient_or_update_finding_either():
    """The checks our record runs on monitorch's gradient, norm and update lenses (full lens set)."""
    model, train, val = seed.quickstart()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters())
    vis = WidgetVisualizer()
    ins = MonitorchInspector([MonitorchLoss(loss_fn=loss_fn), MonitorchOutputActivation(), ParameterGradientGeometry(),
                              ParameterNorm(), ParameterUpdateGeometry(optimizer)], module=model, visualizer=vis)
    for _ in range(15):
        seed.train_one_epoch(model, loss_fn, optimizer, train)
        seed.validate_one_epoch(model, loss_fn, val)
        ins.tick_epoch()
    ins.detach()
    assert {"vanishing_gradient", "exploding_gradient", "update_ratio"}.isdisjoint(vis.record.health.skipped)
    assert vis.record.health.findings() == []


def test_the_2d_mlp_redundant_layer_is_found_and_the_first_is_not():
    ins, loss_fn = seed_inspector()
    torch.manual_seed(seed.RND_SEED)
    train, val = seed.two_d_data()
    torch.manual_seed(seed.RND_SEED)
    model = seed.two_d_mlp()
    ins.attach(model)
    seed.run_epochs(ins, model, loss_fn, train, val, 50)
    layers = {f.layer for f in ins.health.findings()}
    assert "relu2" in layers and "relu1" not in layers
    # the redundant layer, far above the first (the tutorial's "overcapacity"): the dying-layer check's trigger
    relu1 = ins.history.series("Output Activations", "relu1", "death_rate")
    relu2 = ins.history.series("Output Activations", "relu2", "death_rate")
    holds = (relu2 >= relu1 + 0.2) & (relu2 >= 2 * relu1)  # the other layers' median is relu1's value
    [dying] = [f for f in ins.health.findings() if f.check == "dying_layer"]
    assert dying.layer == "relu2" and holds[:3].all() and dying.since == 1


def cnn_findings(dropout: tuple[float, float, float], epochs: int = 3) -> dict[str, set[str]]:
    ins, loss_fn = seed_inspector()
    train, val = seed.digits_data()
    torch.manual_seed(seed.RND_SEED)
    model = seed.CNN(dropout)
    ins.attach(model)
    seed.run_epochs(ins, model, loss_fn, train, val, epochs)
    out: dict[str, set[str]] = {}
    for f in ins.health.findings():
        out.setdefault(f.layer or "-", set()).add(f.check)
    return out


def test_the_cnn_without_dropout_has_a_dead_layer():
    found = cnn_findings((0, 0, 0))
    assert "dead_layer" in found.get("conv.relu2", set()) | found.get("dense.relu1", set()), found


def test_the_cnn_with_dropout_keeps_dense_relu1_healthy():
    found = cnn_findings((0.5, 0.5, 0.2))
    assert "dense.relu1" not in found, found
