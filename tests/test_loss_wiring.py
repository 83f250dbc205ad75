"""LossMetrics wired to a loss the training loop never calls: the empty training-loss chart is explained once."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from monitorch_widget import MonitorNotice, PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation


def run(lenses, loop_loss, epochs=2, push=False) -> tuple[PyTorchInspector, list[str]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ins = PyTorchInspector(lenses, visualizer="none", module=model)
        for _ in range(epochs):
            for _ in range(3):
                opt.zero_grad()
                loss = loop_loss(model(torch.randn(8, 4)), torch.randint(0, 3, (8,)))
                loss.backward()
                opt.step()
                if push:
                    ins.push_loss(loss.detach(), train=True)
            ins.tick_epoch()
    return ins, [str(w.message) for w in caught if issubclass(w.category, MonitorNotice)
                 and "training loss chart" in str(w.message)]


def test_a_loss_fn_the_loop_never_calls_is_named_once():
    criterion = nn.CrossEntropyLoss()
    ins, said = run([LossMetrics(loss_fn=criterion), OutputActivation()], nn.functional.cross_entropy)
    assert len(said) == 1 and "LossMetrics(loss_fn=CrossEntropyLoss) was never called" in said[0]
    assert "push_loss(loss.detach(), train=True)" in said[0]
    assert ins.history.series("Loss", "Loss", "train_loss mean").tolist() == pytest.approx([float("nan")] * 2,
                                                                                          nan_ok=True)


def test_no_loss_fn_and_no_push_is_named_once():
    _, said = run([LossMetrics()], nn.functional.cross_entropy)
    assert len(said) == 1 and "no training loss was pushed" in said[0]


def test_a_wired_loss_says_nothing():
    criterion = nn.CrossEntropyLoss()
    ins, said = run([LossMetrics(loss_fn=criterion)], criterion)
    assert said == [] and all(v > 0 for v in ins.history.series("Loss", "Loss", "train_loss mean"))
    _, said = run([LossMetrics()], nn.functional.cross_entropy, push=True)
    assert said == []


def test_ticks_without_optimizer_steps_say_nothing():
    """An evaluation-only run (no optimizer step) has no training loss to miss."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error", MonitorNotice)
        ins = PyTorchInspector([LossMetrics(loss_fn=nn.CrossEntropyLoss())], visualizer="none", module=model)
        with torch.no_grad():
            model(torch.randn(8, 4))
        ins.tick_epoch()


def test_an_extra_tick_without_steps_after_a_wired_epoch_says_nothing():
    criterion = nn.CrossEntropyLoss()
    ins, said = run([LossMetrics(loss_fn=criterion)], criterion)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MonitorNotice)
        ins.tick_epoch()  # no batch, no step: nothing to miss


def test_a_loss_of_no_grad_outputs_scored_outside_the_block_counts_as_validation():
    """Trial r15a: logits computed under torch.no_grad(), the loss computed after the block (grad enabled again)
    went into train_loss (0.8115 = (3 training + 1 validation) / 4 for a hand training mean of 0.6295). No backward
    can use such a loss: it is validation, said once."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn)], visualizer="none", module=model)
    g = torch.Generator().manual_seed(1)
    train, val = [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            for _ in range(3):
                opt.zero_grad()
                loss = loss_fn(model(torch.randn(4, 3, generator=g)), torch.randint(0, 2, (4,), generator=g))
                loss.backward()
                opt.step()
                train.append(float(loss))
            with torch.no_grad():
                logits = model(torch.randn(4, 3, generator=g))
            val.append(float(loss_fn(logits, torch.randint(0, 2, (4,), generator=g))))  # outside the block
            ins.tick_epoch()
    said = [str(c.message) for c in caught if issubclass(c.category, MonitorNotice) and "do not require grad" in
            str(c.message)]
    assert len(said) == 1, said
    h = ins.history
    assert h.series("Loss", "Loss", "train_loss mean") == pytest.approx([np.mean(train[:3]), np.mean(train[3:])])
    assert h.series("Loss", "Loss", "val_loss mean") == pytest.approx(val)
