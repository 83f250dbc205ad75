"""The framework callbacks' shared routing: which unrecorded names are suggested as the losses."""

from __future__ import annotations

import pytest

from monitorch_widget import MonitorWarning, PyTorchInspector
from monitorch_widget.integrations.common import LoggedValues, loss_candidates
from monitorch_widget.lens import LossMetrics


@pytest.mark.parametrize(("names", "train", "val", "expected"), [
    (["train/loss", "val/loss", "val/acc"], True, True, {"train_loss": "train/loss", "val_loss": "val/loss"}),
    (["loss", "valid_loss_epoch"], True, True, {"train_loss": "loss", "val_loss": "valid_loss_epoch"}),
    (["train/loss", "train/loss_kl", "lr"], True, True, {"train_loss": "train/loss"}),  # the total, not a part
    (["train/loss", "val/loss"], False, True, {"val_loss": "val/loss"}),  # train_loss already arrives
    (["test/loss", "val/acc", "interval"], True, True, {}),  # a test loss is neither; no "loss", no candidate
    (["Eval-Loss"], True, True, {"val_loss": "Eval-Loss"}),
])
def test_loss_candidates(names, train, val, expected):
    assert loss_candidates(names, train=train, val=val) == expected


def test_a_loss_turned_off_is_not_suggested():
    values = LoggedValues(PyTorchInspector([LossMetrics()], visualizer="none"), train_loss="loss", val_loss=None,
                          owner="InspectorCallback")
    with pytest.warns(MonitorWarning) as caught:
        values.push_all([("val/loss", 1.0)])
    [message] = [str(w.message) for w in caught]
    assert "val_loss=" not in message and "LossMetrics(metrics=[...])" in message
