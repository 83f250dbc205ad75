import math

import numpy as np
import pytest
import torch
from torch import nn

from monitorch_widget import MonitorWarning, PyTorchInspector
from monitorch_widget.lens import LossMetrics


class Const(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, target):
        return self.w + target


def test_train_and_val_loss_from_loss_fn_mean_and_std_band():
    loss_fn = nn.L1Loss()
    model = Const()
    lens = LossMetrics(loss_fn=loss_fn)
    ins = PyTorchInspector([lens], visualizer="none").attach(model)
    train_values = [1.0, 2.0, 4.0]
    for v in train_values:
        loss_fn(model(torch.tensor([v])), torch.zeros(1)).backward()
    with torch.no_grad():
        loss_fn(model(torch.tensor([10.0])), torch.zeros(1))
    ins.tick_epoch()
    h = ins.history
    assert h.series("Loss", "Loss", "train_loss mean")[0] == pytest.approx(np.mean(train_values))
    assert h.series("Loss", "Loss", "train_loss -σ", role="lo")[0] == pytest.approx(np.mean(train_values) - np.std(train_values))
    assert h.series("Loss", "Loss", "train_loss +σ", role="hi")[0] == pytest.approx(np.mean(train_values) + np.std(train_values))
    assert h.series("Loss", "Loss", "val_loss mean")[0] == pytest.approx(10.0)
    assert lens.loss(train=False) == pytest.approx(10.0)
    assert lens.loss(train=True) == pytest.approx(7 / 3)
    band = [c for c in h.runs[0].columns if c.role == "lo"][0]
    assert band.band_of == "train_loss mean"


def test_metrics_in_one_panel_and_aggregations():
    lens = LossMetrics(metrics=["val_accuracy"], separate_loss_and_metrics=False, loss_line=["mean", "median"],
                       loss_range="min-max")
    ins = PyTorchInspector([lens], visualizer="none").attach(nn.Linear(1, 1))
    for v in (3.0, 1.0, 2.0, 10.0):
        ins.push_loss(v, train=True)
    ins.push_loss(torch.tensor(5.0), train=False)  # tensors are accepted without .item()
    ins.push_metric("val_accuracy", 0.5)
    ins.push_metric("val_accuracy", 0.7)
    ins.tick_epoch()
    h = ins.history
    assert h.panels() == ["Loss & Metrics"]
    # monitorch's median: the closest observation (Hyndman & Fan 3), the 2nd of [1, 2, 3, 10], not 2.5
    assert h.series("Loss & Metrics", "Loss & Metrics", "train_loss median")[0] == 2.0
    assert h.series("Loss & Metrics", "Loss & Metrics", "train_loss min", role="lo")[0] == 1.0
    assert h.series("Loss & Metrics", "Loss & Metrics", "train_loss max", role="hi")[0] == 10.0
    assert h.series("Loss & Metrics", "Loss & Metrics", "val_accuracy mean")[0] == pytest.approx(0.6)
    assert lens.loss(train=False, method="median") == 5.0


def test_non_finite_losses_are_counted_and_left_out_of_the_mean():
    lens = LossMetrics()
    ins = PyTorchInspector([lens], visualizer="none").attach(nn.Linear(1, 1))
    for v in (1.0, float("nan"), 3.0, float("inf")):
        ins.push_loss(v, train=True)
    with pytest.warns(MonitorWarning, match="2 non-finite train_loss"):
        ins.tick_epoch()
    assert ins.history.series("Loss", "Loss", "train_loss mean")[0] == 2.0
    assert ins.history.status()["problems"] >= 1


def test_loss_fn_nan_batches_do_not_poison_the_device_mean():
    loss_fn = nn.L1Loss()
    model = Const()
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn)], visualizer="none").attach(model)
    for v in (1.0, float("nan"), 3.0):
        loss_fn(model(torch.tensor([v])), torch.zeros(1))
    with pytest.warns(MonitorWarning):
        ins.tick_epoch()
    assert ins.history.series("Loss", "Loss", "train_loss mean")[0] == 2.0


def test_loss_without_validation_is_a_clear_error():
    lens = LossMetrics(loss_fn=nn.MSELoss())
    ins = PyTorchInspector([lens], visualizer="none").attach(nn.Linear(1, 1))
    ins.tick_epoch()
    with pytest.raises(LookupError, match="no validation loss"):
        lens.loss(train=False)
    assert math.isnan(ins.history.series("Loss", "Loss", "train_loss mean")[0])


def test_unknown_metric_warns_once_naming_declared_metrics():
    ins = PyTorchInspector([LossMetrics(metrics=["val_accuracy"])], visualizer="none").attach(nn.Linear(1, 1))
    with pytest.warns(MonitorWarning, match="declared metrics: val_accuracy"):
        ins.push_metric("val_acuracy", 0.5)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ins.push_metric("val_acuracy", 0.6)


@pytest.mark.parametrize("value", ["0.5", None, [1.0], True, torch.ones(3)])
def test_non_numeric_metric_values_are_rejected(value):
    ins = PyTorchInspector([LossMetrics(metrics=["m"])], visualizer="none").attach(nn.Linear(1, 1))
    with pytest.raises((TypeError, ValueError), match="push_metric"):
        ins.push_metric("m", value)


@pytest.mark.parametrize("centre, spread", [(100.0, 1e-7), (1e6, 1e-3), (0.3, 1e-12)])
def test_std_band_of_pushed_numbers_does_not_cancel(centre, spread):
    # Pushed Python floats keep float64 precision, where std/mean can sit near sqrt(eps): E[x²] − E[x]² then
    # cancels (trial r14a: a band of 3e-6 for a std of 1e-7). The band must be numpy's two-pass std (ddof 0).
    rng = np.random.default_rng(0)
    losses = (centre + spread * rng.standard_normal(300)).tolist()
    metric = (2 * centre + spread * rng.standard_normal(40)).tolist()
    ins = PyTorchInspector([LossMetrics(metrics=["val_score"], metrics_range="std")], visualizer="none")
    ins.attach(nn.Linear(1, 1))
    for v in losses:
        ins.push_loss(v, train=True)
    for v in metric:
        ins.push_metric("val_score", v)
    ins.tick_epoch()
    h = ins.history
    lo = h.series("Loss", "Loss", "train_loss -σ", role="lo")[0]
    hi = h.series("Loss", "Loss", "train_loss +σ", role="hi")[0]
    assert (hi - lo) / 2 == pytest.approx(np.std(losses), rel=1e-3)
    panel = [p for p in h.panels() if p != "Loss"][0]
    m_lo = h.series(panel, panel, "val_score -σ", role="lo")[0]
    m_hi = h.series(panel, panel, "val_score +σ", role="hi")[0]
    assert (m_hi - m_lo) / 2 == pytest.approx(np.std(metric), rel=1e-3)
