"""A batch of no rows (an expert that no token reached, a filtered batch) is no observation for the output lenses.

Found on a real input: an empty batch made the epoch's activation rate NaN (0 active of 0 elements), made
OutputNorm's hook fail (``reshape(0, -1)``) and put a zero norm and zero correlations into
OutputGradientGeometry. The fix leaves such a batch out, so a run with an empty batch inserted records the
same output statistics as the run without it (a sum-reduced loss gives the empty batch zero gradients, so SGD
leaves the weights as they were).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import monitorch_widget as mw
from monitorch_widget.lens import OutputActivation, OutputGradientGeometry, OutputNorm
from tests.helpers import Recorder

OUTPUT_TAGS = ("Output Activations", "Output Norm", "Output Gradient Norm", "Output Gradient Correlation")


def _run(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[dict, nn.Module]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3), nn.Tanh())
    rec = Recorder()
    lenses = [OutputActivation(), OutputNorm(), OutputGradientGeometry()]
    ins = mw.PyTorchInspector(lenses, visualizer=rec, module=model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.MSELoss(reduction="sum")
    for _ in range(2):
        for x, y in batches:
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
        ins.tick_epoch()
    ins.detach()
    return rec.values, model


def _batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 4, generator=g), torch.randn(8, 3, generator=g)) for _ in range(n)]


@pytest.mark.parametrize("where", [0, 1, 3], ids=["first", "middle", "last"])
def test_an_empty_batch_changes_no_output_statistic(where):
    full = _batches(3)
    empty = (torch.zeros(0, 4), torch.zeros(0, 3))
    with_empty = full[:where] + [empty] + full[where:]
    got, model_got = _run(with_empty)  # MonitorWarning is an error here: no hook may fail
    want, model_want = _run(full)
    for p, q in zip(model_got.parameters(), model_want.parameters()):
        assert torch.equal(p, q)  # the empty batch's zero gradients left the weights as they were
    keys = [k for k in want if k[1] in OUTPUT_TAGS]
    assert len(keys) >= 24
    for k in keys:
        a, b = got[k], want[k]
        if isinstance(b, tuple):
            assert a == pytest.approx(b, rel=1e-6, abs=1e-9), k
        else:
            assert not math.isnan(a) and a == pytest.approx(b, rel=1e-6, abs=1e-9), k


def test_the_rate_without_the_empty_batch_is_the_hand_computed_one():
    """Independent of the comparison above: the ReLU's epoch activation rate is the mean over the non-empty
    batches of (elements > 0) / elements, computed with plain torch on the same inputs and weights."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    rec = Recorder()
    ins = mw.PyTorchInspector([OutputActivation()], visualizer=rec, module=model)
    xs = [torch.randn(8, 4), torch.zeros(0, 4), torch.randn(5, 4)]
    with torch.no_grad():
        want = sum(float((model(x) > 0).float().mean()) for x in xs if len(x)) / 2
    for x in xs:
        model(x).sum().backward()  # a training pass: the lens counts training batches
    ins.tick_epoch()
    assert rec.values[(1, "Output Activations", "1", "activation_rate")] == pytest.approx(want, rel=1e-6)
