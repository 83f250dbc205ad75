"""A monitor's warning points at the user's line (``model(x)``, ``loss.backward()``, ``tick_epoch()``,
``PyTorchInspector(...)``), not at a line inside monitorch_widget or torch: Python shows that line, and a
notebook user reads it to know which call of theirs the warning is about. (Found by a user trial: notices raised
inside ``tick_epoch`` pointed at ``inspector.py``.)"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import monitorch_widget as mw
from monitorch_widget import MonitorNotice, MonitorWarning
from monitorch_widget.lens import OutputActivation, OutputNorm


class Pair(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x


def _lines(caught) -> list[tuple[str, int]]:
    return [(w.filename, w.lineno) for w in caught]


def test_attach_notice_points_at_the_constructor_call():
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
    with pytest.warns(MonitorNotice) as caught:
        line = _here() + 1
        mw.PyTorchInspector([OutputActivation()], visualizer="none", module=model)
    assert _lines(caught) == [(__file__, line)]


def test_a_hook_failure_points_at_the_forward_call_and_a_tick_warning_at_the_tick():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), Pair())
    ins = mw.PyTorchInspector([OutputNorm(include=[Pair])], visualizer="none", module=model)
    with pytest.warns(MonitorWarning, match="not a tensor") as caught:
        line = _here() + 1
        model(torch.randn(3, 4))
    assert (__file__, line) in _lines(caught) and all(f == __file__ for f, _ in _lines(caught))

    relu = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    ins = mw.PyTorchInspector([OutputActivation()], visualizer="none", module=relu)
    x = torch.randn(8, 4)
    x[0, 0] = float("nan")
    relu(x).sum().backward()
    with pytest.warns(MonitorWarning, match="NaN/Inf") as caught:
        line = _here() + 1
        ins.tick_epoch()
    assert _lines(caught) == [(__file__, line)]


def _here() -> int:
    import sys

    return sys._getframe(1).f_lineno
