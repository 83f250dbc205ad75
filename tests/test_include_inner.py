"""``include=[T]`` for a type whose modules hold submodules is named at attach, not skipped silently.

Found on real code: ``OutputNorm(include=[nn.MultiheadAttention])`` (or a user's block type) watched nothing
and said nothing -- output lenses hook leaf modules only (monitorch's rule, kept), and such modules are not
leaves. The notice names them and the way to watch them (the inspector's ``depth=``), which is checked here
against a hand-computed output norm.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from monitorch_widget import MonitorNotice, PyTorchInspector
from monitorch_widget.lens import OutputActivation, OutputNorm


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.lin(x))


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(Block(), nn.Linear(4, 2))


def _attach_notices(lens, **kw) -> tuple[list[str], PyTorchInspector, nn.Module]:
    model = _model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ins = PyTorchInspector([lens], visualizer="none", module=model, **kw)
    notes = [str(w.message) for w in caught if issubclass(w.category, MonitorNotice) and "include=" in str(w.message)]
    return notes, ins, model


@pytest.mark.parametrize("make", [lambda: OutputNorm(include=[Block]), lambda: OutputActivation(include=[Block])],
                         ids=["OutputNorm", "OutputActivation"])
def test_an_included_type_that_is_not_a_leaf_is_named(make):
    notes, ins, _ = _attach_notices(make())
    assert len(notes) == 1 and "0 (Block)" in notes[0] and "depth=" in notes[0]
    ins.detach()


def test_following_the_notice_watches_the_block():
    notes, ins, model = _attach_notices(OutputNorm(include=[Block]), depth=1)
    assert notes == []
    xs = [torch.randn(5, 4) for _ in range(2)]
    for x in xs:
        model(x).sum().backward()
    ins.tick_epoch()
    with torch.no_grad():
        want = sum(float(model[0](x).norm(dim=1).mean()) for x in xs) / len(xs)
    assert ins.history.series("Output Norm", "0", "mean")[-1] == pytest.approx(want, rel=1e-6)
    ins.detach()


def test_a_leaf_include_type_gives_no_such_notice():
    notes, ins, _ = _attach_notices(OutputNorm(include=[nn.Linear]))
    assert notes == []
    ins.detach()
