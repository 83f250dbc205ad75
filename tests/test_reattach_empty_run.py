"""``detach(); attach(model)`` with no tick in between (an LR finder's reset, a re-run setup cell) left a run with no
rows in the record and in the widget's run legend (fresh-user trial). The run that never got a row is now taken
over by the next one: same id, the new label, none of its notices; a run with rows is kept as before."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import monitorch_widget as mw
from monitorch_widget.lens import LossMetrics, OutputActivation
from monitorch_widget.record.protocol import PendingDelta, encode_delta


def _inspector() -> mw.PyTorchInspector:
    return mw.PyTorchInspector([OutputActivation(), LossMetrics(loss_fn=nn.MSELoss())], visualizer="none")


def _epoch(model: nn.Module, ins: mw.PyTorchInspector) -> None:
    model(torch.randn(4, 3)).sum().backward()
    ins.tick_epoch()


@pytest.mark.filterwarnings("ignore::monitorch_widget.MonitorNotice")  # Tanh: "rates carry no information"
def test_reattaching_with_no_tick_in_between_reuses_the_empty_run():
    torch.manual_seed(0)
    first = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    second = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 1))
    ins = _inspector()
    pending = PendingDelta()
    ins.history.subscribe(pending.add)
    ins.attach(first)
    ins.history.problem("attach", "a notice about the first model", 1)  # as an attach notice reaches the record
    ins.detach()
    ins.attach(second, run_name="lr found")
    h = ins.history
    assert [(r.id, r.label) for r in h.runs] == [(0, "lr found")]
    assert h.runs[0].module_types["1"] == "Tanh"  # the second model's
    assert ("attach", "a notice about the first model") not in h.runs[0].problems  # the second model's own stay
    msg, _ = encode_delta(pending, 1, None)
    assert msg["new_runs"] == [{"id": 0, "label": "lr found"}]  # one announcement, the latest
    assert not [p for p in msg["problems"] if p["message"] == "a notice about the first model"]
    _epoch(second, ins)
    assert h.runs[0].epochs == [1.0] and h.status()["label"] == "lr found"
    # a run that got a row stays: the next attach starts run 2
    ins.detach()
    ins.attach(first)
    assert [(r.id, r.label, r.n_rows) for r in h.runs] == [(0, "lr found", 1), (1, "run 2: Sequential", 0)]
    # and re-attaching again with no tick reuses run 2, numbered as before
    ins.detach()
    ins.attach(second)
    assert [(r.id, r.label) for r in h.runs] == [(0, "lr found"), (1, "run 2: Sequential")]
    _epoch(second, ins)
    assert h.runs[1].n_rows == 1 and h.runs[1].module_types["1"] == "Tanh"
    ins.detach()
