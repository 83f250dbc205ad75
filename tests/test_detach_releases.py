"""After ``detach()`` the inspector holds none of the model's tensors, and a closed widget lets its inspector go.

Trial r15b: a notebook that re-runs its build cell kept every old model alive -- ParameterGradientGeometry's cache
of its sites outlived detach (the parameters and two gradient copies: 12.7 MB for a 4.2 MB model), and each widget
was tied to a class-level file-change signal of anywidget's (its ``_esm`` was a Path), so no widget, inspector or
model it reached was ever collected."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import (
    LossMetrics,
    OutputActivation,
    OutputGradientGeometry,
    OutputNorm,
    ParameterGradientActivation,
    ParameterGradientGeometry,
    ParameterNorm,
)

LENSES = {
    "loss": lambda: [LossMetrics(loss_fn=nn.CrossEntropyLoss())],
    "outputs": lambda: [OutputActivation(), OutputNorm(), OutputGradientGeometry()],
    "gradients": lambda: [ParameterGradientActivation(), ParameterGradientGeometry()],
    "norms": lambda: [ParameterNorm()],
}


def _train(ins: PyTorchInspector) -> tuple[weakref.ref, weakref.ref]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = next((lens._loss_fn for lens in ins.lenses if isinstance(lens, LossMetrics)), nn.CrossEntropyLoss())
    ins.attach(model)
    for _ in range(2):
        for _ in range(3):
            opt.zero_grad()
            loss_fn(model(torch.randn(8, 32)), torch.randint(0, 4, (8,))).backward()
            opt.step()
        ins.tick_epoch()
    ins.detach()
    return weakref.ref(model), weakref.ref(model[0].weight)


@pytest.mark.parametrize("kind", sorted(LENSES))
def test_a_detached_inspector_holds_none_of_the_models_tensors(kind):
    ins = PyTorchInspector(LENSES[kind](), visualizer="none")
    model, weight = _train(ins)
    gc.collect()
    assert model() is None and weight() is None
    assert ins.history.runs[-1].n_rows == 2  # the record is what stays


def test_a_closed_widget_lets_its_inspector_and_model_go():
    ins = PyTorchInspector([LossMetrics(loss_fn=nn.CrossEntropyLoss()), ParameterGradientGeometry()],
                           visualizer="widget")
    widget = ins.widget
    model, weight = _train(ins)
    widget.close()
    refs = weakref.ref(ins), weakref.ref(widget)
    del ins, widget
    gc.collect()
    assert [r() is None for r in refs] == [True, True]
    assert model() is None and weight() is None
