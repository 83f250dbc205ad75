"""Hooks survive every autograd context, silently: no warning of the monitor's own, values right."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from monitorch_widget import MonitorNotice, PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation

OA, W = "Output Activations", "Weight Gradient Activation"


def make():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    loss_fn = nn.CrossEntropyLoss()
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn), OutputActivation(), ParameterGradientActivation()],
                           visualizer="none").attach(model)
    return model, loss_fn, ins, torch.optim.SGD(model.parameters(), lr=0.05)


def train_step(model, loss_fn, opt, **backward_kw):
    opt.zero_grad()
    loss = loss_fn(model(torch.randn(8, 4)), torch.randint(0, 3, (8,)))
    loss.backward(**backward_kw)
    grad = model[0].weight.grad.detach().clone()
    opt.step()
    return grad


@pytest.mark.parametrize("context", ["create_graph", "anomaly", "no_grad_eval", "inference_eval_first",
                                     "inference_many", "autocast"])
def test_no_warning_and_finite_values_in(context):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", "Using backward\\(\\) with create_graph=True", UserWarning)
        warnings.filterwarnings("ignore", "Anomaly Detection has been enabled", UserWarning)
        model, loss_fn, ins, opt = make()
        grads = []
        for epoch in range(2):
            if context == "inference_eval_first" or (context == "inference_many" and epoch == 1):
                with torch.inference_mode():  # buffers first created here must not become inference tensors
                    for _ in range(300 if context == "inference_many" else 2):
                        loss_fn(model(torch.randn(8, 4)), torch.randint(0, 3, (8,)))
            if context == "no_grad_eval":
                model.eval()
                with torch.no_grad():
                    loss_fn(model(torch.randn(8, 4)), torch.randint(0, 3, (8,)))
                model.train()
            for _ in range(3):
                if context == "create_graph":
                    grads.append(train_step(model, loss_fn, opt, create_graph=True))
                elif context == "anomaly":
                    with torch.autograd.detect_anomaly():
                        grads.append(train_step(model, loss_fn, opt))
                elif context == "autocast":
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        grads.append(train_step(model, loss_fn, opt))
                else:
                    grads.append(train_step(model, loss_fn, opt))
            if context == "create_graph":
                model.zero_grad(set_to_none=True)  # break the graph's reference cycle, as torch advises
            ins.tick_epoch()
    h = ins.history
    for series in (h.series(OA, "1", "activation_rate"), h.series(W, "0", "activation_rate"),
                   h.series("Loss", "Loss", "train_loss mean")):
        assert np.isfinite(series).all()
    last = grads[-3:]
    expected = np.mean([(g.abs() > 1e-8).double().mean().item() for g in last])
    assert h.series(W, "0", "activation_rate")[-1] == pytest.approx(expected, abs=1e-9)
    if context in ("no_grad_eval", "inference_eval_first", "inference_many"):
        assert np.isfinite(h.series("Loss", "Loss", "val_loss mean")[-1])


def test_one_dimensional_activation_output_is_measured_without_a_resize_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = nn.Sequential(nn.Linear(3, 1), nn.Flatten(0), nn.ReLU())
        ins = PyTorchInspector([OutputActivation()], visualizer="none").attach(model)
        y = model(torch.randn(10, 3))
        ins.tick_epoch()
    assert ins.history.series(OA, "2", "activation_rate")[0] == pytest.approx((y > 1e-8).double().mean().item())


class SiLUActivation(nn.Module):
    """Named as transformers names it (an nn.Module, not a torch.nn activation)."""

    def forward(self, x):
        return nn.functional.silu(x)


class TokenMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 6, 1)
        self.conv_act = nn.ReLU()
        self.fc = nn.Linear(5, 7)
        self.fc_act = nn.ReLU()
        self.smooth = SiLUActivation()

    def forward(self, x):  # x [B, 4, 5]: a conv feature map [B, 6, 5], then a token MLP over its 5 features
        h = self.conv_act(self.conv(x))
        return self.smooth(self.fc_act(self.fc(h)))


def test_channel_axis_follows_the_feeding_layer_and_library_activations_are_recognised():
    torch.manual_seed(1)
    model = TokenMLP()
    with pytest.warns(MonitorNotice, match="smooth \\('smooth'\\)"):
        ins = PyTorchInspector([OutputActivation()], visualizer="none").attach(model)
    x = torch.randn(3, 4, 5)
    conv_out = model.conv_act(model.conv(x))
    fc_out = model.fc_act(model.fc(conv_out))
    model(x)
    ins.tick_epoch()

    def death(y, dim):
        return (~(y.abs() > 1e-8).movedim(dim, -1).reshape(-1, y.shape[dim]).any(0)).double().mean().item()

    h = ins.history
    assert h.series(OA, "conv_act", "death_rate")[0] == pytest.approx(death(conv_out, 1))
    assert h.series(OA, "fc_act", "death_rate")[0] == pytest.approx(death(fc_out, -1))
    assert "smooth" in h.runs[-1].groups(OA)


def test_unwatched_parameters_are_named_once_with_how_to_watch_them():
    torch.manual_seed(2)
    model = nn.ModuleDict({
        "emb": nn.Embedding(10, 4), "lstm": nn.LSTM(4, 4, batch_first=True),
        "attn": nn.MultiheadAttention(4, 2, batch_first=True),
        "head": nn.utils.parametrizations.weight_norm(nn.Linear(4, 2)),
    })
    with pytest.warns(MonitorNotice) as caught:
        first = PyTorchInspector([ParameterGradientActivation()], visualizer="none").attach(model)
    text = " ".join(str(w.message) for w in caught)
    for name in ("lstm.weight_ih_l0", "lstm.weight_hh_l0", "attn.in_proj_weight",
                 "head.parametrizations.weight.original0"):
        assert name in text
    assert "parameters=[" in text
    first.detach()  # (a second inspector on a still-hooked model would replace it, with a notice)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every parameter watched: no notice
        PyTorchInspector([ParameterGradientActivation(
            parameters=["weight", "bias", "weight_*", "bias_*", "in_proj_*", "original*"])],
            visualizer="none").attach(model)


@pytest.mark.parametrize("outer", ["grad", "no_grad", "inference_mode", "enable_grad_in_inference"])
def test_monitor_mode_is_grad_off_and_outside_inference_mode_whatever_the_caller(outer):
    from monitorch_widget.collect.modes import monitor_mode

    seen = []

    @monitor_mode
    def probe():
        seen.append((torch.is_grad_enabled(), torch.is_inference_mode_enabled()))
        probe_inner()

    @monitor_mode
    def probe_inner():
        seen.append((torch.is_grad_enabled(), torch.is_inference_mode_enabled()))

    contexts = {"grad": torch.enable_grad, "no_grad": torch.no_grad, "inference_mode": torch.inference_mode,
                "enable_grad_in_inference": lambda: torch.inference_mode()}
    with contexts[outer]():
        if outer == "enable_grad_in_inference":
            with torch.enable_grad():
                probe()
        else:
            probe()
    assert seen == [(False, False), (False, False)]
