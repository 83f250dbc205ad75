"""A tick while ``is_active_fn`` says no, after passes it said yes to, is named once (a MonitorNotice).

Found on real code: README's loop (train, validate under ``model.eval()``, ``tick_epoch()``) with README's
``is_active_fn=lambda _: model.training`` ticks in eval mode every epoch; as in monitorch every such tick only
moves the counter, so the widget stayed empty for the whole run, silently. The values themselves keep
monitorch's rule (tests/test_is_active.py); here: the notice, and the loop that follows its advice records the
training batches' rates, computed by hand.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from monitorch_widget import MonitorNotice, PyTorchInspector
from monitorch_widget.lens import OutputActivation


def _loop(train_before_tick: bool, is_active_fn=None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    fn = (lambda _: model.training) if is_active_fn is None else is_active_fn
    ins = PyTorchInspector([OutputActivation()], visualizer="none", module=model, is_active_fn=fn)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    relu_out: list[torch.Tensor] = []
    model[1].register_forward_hook(lambda m, a, out: relu_out.append(out.detach().clone()))
    rates = []  # per epoch, the training batches' activation rate by hand (mean over batches)
    for _ in range(3):
        model.train()
        relu_out.clear()
        for _ in range(4):
            opt.zero_grad()
            model(torch.randn(8, 4, generator=g)).pow(2).mean().backward()
            opt.step()
        rates.append(sum(float((o > 1e-8).float().mean()) for o in relu_out) / len(relu_out))
        model.eval()
        with torch.no_grad():
            model(torch.randn(8, 4, generator=g))  # validation
        if train_before_tick:
            model.train()
        ins.tick_epoch()
    return ins, rates


def _notices(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, MonitorNotice) and "[is_active_fn]" in
            str(w.message)]


def test_ticking_in_eval_mode_with_the_training_gate_is_named_once():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ins, _ = _loop(train_before_tick=False)
    notices = _notices(caught)
    assert len(notices) == 1 and "call model.train() before tick_epoch()" in notices[0]
    assert ins.history.runs[-1].n_rows == 0  # monitorch's rule: nothing recorded (the reason for the notice)
    ins.detach()


@pytest.mark.parametrize("is_active_fn", [None, 2, lambda epoch: epoch != 2], ids=["training", "every-2", "fn"])
def test_no_notice_when_no_tick_defers_gathered_values(is_active_fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ins, rates = _loop(train_before_tick=True, is_active_fn=is_active_fn)
    assert _notices(caught) == []
    got = ins.history.series("Output Activations", "1", "activation_rate")
    if is_active_fn is None:
        assert got == pytest.approx(rates, rel=1e-6)  # the training batches only, every epoch
    ins.detach()
