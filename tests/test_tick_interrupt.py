"""A Ctrl-C (SIGINT) that lands inside ``tick_epoch`` takes effect when the tick ends (monitorch_widget/interrupts.py).

Trial r15b: a KeyboardInterrupt raised between the tick's steps lost the epoch (the next one written under its
number), wrote it all-NaN, or counted it twice. Here a real SIGINT (``signal.raise_signal``) is sent at each step of
the tick; every time the tick completes, then raises KeyboardInterrupt, and training goes on: the rows are the
epochs 1, 2, 3, ... with the means of their own batches' losses (by hand)."""

from __future__ import annotations

import signal

import numpy as np
import pytest
import torch
from torch import nn

from monitorch_widget import PyTorchInspector, record, ticking
from monitorch_widget.lens import LossMetrics, OutputActivation

POINTS = {
    "gather": (ticking, "gather"),
    "lens calls": (LossMetrics, "compute"),
    "open row": (record.Record, "open_row"),
    "write": (ticking, "write"),
    "end of epoch": (ticking, "end_epoch"),
}


@pytest.mark.parametrize("point", sorted(POINTS))
def test_a_sigint_inside_the_tick_acts_after_it(point, monkeypatch):
    owner, name = POINTS[point]
    original = getattr(owner, name)
    sent = []

    def interrupted(*args, **kwargs):
        if not sent:
            sent.append(True)
            signal.raise_signal(signal.SIGINT)  # delivered at the next bytecode: inside the tick
        return original(*args, **kwargs)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    loss_fn = nn.MSELoss()
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn), OutputActivation()], visualizer="none", module=model)
    handler = signal.getsignal(signal.SIGINT)
    losses: list[list[float]] = []
    g = torch.Generator().manual_seed(1)
    for epoch in range(3):
        losses.append([])
        for _ in range(4):
            loss = loss_fn(model(torch.randn(5, 4, generator=g)), torch.randn(5, 2, generator=g))
            loss.backward()
            losses[-1].append(float(loss))
        if epoch == 1:
            with monkeypatch.context() as patch:
                patch.setattr(owner, name, interrupted)
                with pytest.raises(KeyboardInterrupt):
                    ins.tick_epoch()
            assert sent
        else:
            ins.tick_epoch()
        assert signal.getsignal(signal.SIGINT) is handler
    h = ins.history
    assert list(h.runs[-1].epochs) == [1, 2, 3]
    assert h.series("Loss", "Loss", "train_loss mean") == pytest.approx(np.mean(losses, axis=1), rel=1e-6)
    assert np.isfinite(h.series("Output Activations", "1", "activation_rate")).all()
    ins.detach()


def test_a_second_sigint_goes_through_at_once(monkeypatch):
    """A tick that hangs (a visualizer of the user's, a rank waiting for the others) can still be interrupted."""
    model = nn.Linear(2, 2)
    ins = PyTorchInspector([LossMetrics()], visualizer="none", module=model)
    reached = []

    def hangs(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)  # held
        signal.raise_signal(signal.SIGINT)  # goes through
        reached.append("after")  # never reached

    ins.push_loss(1.0, train=True)
    monkeypatch.setattr(ticking, "write", hangs)
    with pytest.raises(KeyboardInterrupt):
        ins.tick_epoch()
    assert reached == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
