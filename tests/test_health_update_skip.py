"""``update_ratio`` says why it was skipped when ParameterUpdateGeometry observed no step (fresh-user trial):
its optimizer held none of the watched parameters, or no step was taken in an epoch. Before, the check read the
update-norm panel's all-NaN columns, found nothing and was listed neither among the findings nor in
``health.skipped``; with ParameterNorm missing it said "needs ParameterNorm", which would not have helped."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import monitorch_widget as mw
from monitorch_widget import MonitorNotice
from monitorch_widget.lens import ParameterGradientGeometry, ParameterNorm, ParameterUpdateGeometry
from monitorch_widget.record.health.gradients import NO_UPDATE


def _epoch(model: nn.Module, opt: torch.optim.Optimizer, ins: mw.PyTorchInspector, step: bool) -> None:
    opt.zero_grad()
    model(torch.randn(8, 3)).pow(2).mean().backward()
    if step:
        opt.step()
    ins.tick_epoch()


@pytest.mark.parametrize("with_norm", [True, False])
def test_update_ratio_is_skipped_when_the_optimizer_holds_none_of_the_watched_parameters(with_norm):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    other = nn.Linear(3, 3)
    opt = torch.optim.SGD([*model.parameters(), *other.parameters()], lr=0.1)
    wrong = torch.optim.SGD(other.parameters(), lr=0.1)  # holds none of the model's parameters
    lenses = [ParameterUpdateGeometry(wrong), ParameterGradientGeometry(), *([ParameterNorm()] if with_norm else [])]
    ins = mw.PyTorchInspector(lenses, visualizer="none")
    ins.attach(model)
    with pytest.warns(MonitorNotice, match="does not hold them"):
        for _ in range(2):
            opt.zero_grad()
            wrong.zero_grad()
            model(torch.randn(8, 3)).pow(2).mean().backward()
            opt.step()
            wrong.step()
            ins.tick_epoch()
    assert ins.health.skipped["update_ratio"] == NO_UPDATE
    assert "holds none of them" in NO_UPDATE and "lens.optimizer = optimizer" in NO_UPDATE
    assert not [f for f in ins.health.findings() if f.check == "update_ratio"]


def test_update_ratio_is_skipped_in_an_epoch_without_a_step_and_runs_again_after_one():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ins = mw.PyTorchInspector([ParameterUpdateGeometry(opt), ParameterGradientGeometry(), ParameterNorm()],
                              visualizer="none")
    ins.attach(model)
    _epoch(model, opt, ins, step=False)  # no step yet: no ratio panel, all-NaN update norms
    assert ins.health.skipped["update_ratio"] == NO_UPDATE
    _epoch(model, opt, ins, step=True)  # a step: the check reads the per-step ratio
    assert "update_ratio" not in ins.health.skipped
    _epoch(model, opt, ins, step=False)  # the ratio panel exists, but nothing was observed in this epoch
    assert ins.health.skipped["update_ratio"] == NO_UPDATE
    _epoch(model, opt, ins, step=True)  # not remembered as skipped: it depended on a row's values
    assert "update_ratio" not in ins.health.skipped
