import numpy as np
import pytest
import torch
from torch import nn

from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation

bqplot = pytest.importorskip("bqplot")


def test_to_bqplot_big_panel_small_multiples_and_errors():
    loss_fn = nn.MSELoss()
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn), OutputActivation()], visualizer="none")
    for _ in range(2):
        model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1), nn.Tanh())
        ins.attach(model)
        for _ in range(4):
            loss_fn(model(torch.randn(5, 2)), torch.zeros(5, 1)).backward()
            ins.tick_epoch()
    fig = ins.history.to_bqplot("Loss")
    lines = [m for m in fig.marks if m.fill != "between"]
    bands = [m for m in fig.marks if m.fill == "between"]
    assert len(lines) == 2 and len(bands) == 2  # train loss of each run, with its ±σ band
    np.testing.assert_array_equal(lines[1].y, ins.history.series("Loss", "Loss", "train_loss mean"))
    assert lines[0].opacities == [0.35] and lines[1].opacities == [1.0]
    grid = ins.history.to_bqplot("Output Activations", runs="last")
    assert [f.title for f in grid.children] == ["1", "3"]
    assert grid.children[0].marks[0].scales["y"].max == 1.0
    with pytest.raises(KeyError, match="panels: Loss"):
        ins.history.to_bqplot("Nope")
