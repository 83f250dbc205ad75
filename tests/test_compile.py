"""torch.compile'd models (collect/compiled.py): no recompiles, the user's names, the same values as uncompiled,
and forward-hook lenses refused where they would sit inside a graph.

Each check runs after one warm-up step and reads dynamo's own counters. Expected values come from the same
model trained uncompiled on the same batches, and from gradients cloned by hand.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters

import monitorch_widget as mw
from monitorch_widget import MonitorWarning
from monitorch_widget.lens import (
    LossMetrics,
    OutputActivation,
    OutputGradientGeometry,
    OutputNorm,
    ParameterGradientActivation,
    ParameterGradientGeometry,
    ParameterNorm,
)

pytestmark = pytest.mark.filterwarnings("ignore::monitorch_widget.MonitorNotice")


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(12, 12)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(8, 12)
        self.relu = nn.ReLU()
        self.block = Block()
        self.head = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.relu(self.inp(x))))


def _data(n: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


def _train(model: nn.Module, params: nn.Module, lenses: list, epochs: int = 3, *, attach: nn.Module | None = None,
           batch: int = 8) -> tuple[mw.PyTorchInspector, dict[str, int]]:
    """Train ``model`` (maybe compiled) with SGD; returns the inspector and dynamo's counters after step 1."""
    x, y = _data()
    crit = next((lens._loss_fn for lens in lenses if isinstance(lens, LossMetrics)), None) or nn.CrossEntropyLoss()
    opt = torch.optim.SGD(params.parameters(), lr=0.2)
    inspector = mw.PyTorchInspector(lenses, visualizer="none")
    inspector.attach(attach if attach is not None else model)
    first = True
    compiled_at_first_step = 0
    for _ in range(epochs):
        for i in range(0, len(x), batch):
            opt.zero_grad()
            loss = crit(model(x[i:i + batch]), y[i:i + batch])
            loss.backward()
            opt.step()
            if first:
                compiled_at_first_step = counters["stats"]["unique_graphs"]
                counters.clear()
                first = False
        inspector.tick_epoch()
    return inspector, {"first": compiled_at_first_step, "recompiles": sum(counters["recompiles"].values()),
                       "graphs": counters["stats"]["unique_graphs"],
                       "breaks": sum(counters["graph_break"].values())}


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _series(inspector: mw.PyTorchInspector, panel: str) -> dict[tuple[str, str], np.ndarray]:
    """Every column of ``panel`` (lines and band edges) in the last run."""
    run = inspector.history.runs[-1]
    return {(c["group"], c["key"]): run.series(panel, c["group"], c["key"], c["role"])
            for c in run.column_dicts() if c["panel"] == panel}


def test_parameter_and_loss_lenses_on_a_compiled_model_match_uncompiled_without_recompiles():
    torch.manual_seed(0)
    base = Net()
    plain = copy.deepcopy(base)
    lenses = lambda: [LossMetrics(loss_fn=nn.CrossEntropyLoss()), ParameterGradientActivation(),  # noqa: E731
                      ParameterGradientGeometry(), ParameterNorm()]
    ref, _ = _train(plain, plain, lenses())
    model = copy.deepcopy(base)
    compiled = torch.compile(model)
    got, stats = _train(compiled, model, lenses())
    assert stats["first"] >= 1, "the model was not compiled at all"
    assert stats["recompiles"] == 0 and stats["graphs"] == 0 and stats["breaks"] == 0, stats
    for panel in ("Loss", "Weight Gradient Activation", "Weight Gradient Norm", "Weight Gradient Correlation",
                  "Weight Norm"):
        want, have = _series(ref, panel), _series(got, panel)
        assert want.keys() == have.keys() and want, panel
        for key in want:
            np.testing.assert_allclose(have[key], want[key], atol=1e-3, err_msg=str(key))
    # the user's names: no _orig_mod anywhere
    names = got.history.runs[-1].groups("Weight Gradient Activation")
    assert names == ["inp", "block.fc", "head"], names


def test_loss_fn_may_be_the_compiled_model_itself():
    """monitorch's GPT client: ``model(x, y)`` returns the loss and ``LossMetrics(loss_fn=model)``."""

    class WithLoss(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = Net()

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return nn.functional.cross_entropy(self.net(x), y)

    torch.manual_seed(0)
    model = WithLoss()
    compiled = torch.compile(model)
    x, y = _data()
    inspector = mw.PyTorchInspector([LossMetrics(loss_fn=compiled)], visualizer="none", module=compiled)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for i in range(0, len(x), 8):
        opt.zero_grad()
        loss = compiled(x[i:i + 8], y[i:i + 8])
        losses.append(loss.item())
        loss.backward()
        opt.step()
        if i == 0:
            counters.clear()
    inspector.tick_epoch()
    assert sum(counters["recompiles"].values()) == 0
    got = inspector.history.series("Loss", "Loss", "train_loss mean")
    np.testing.assert_allclose(got, [np.mean(losses)], rtol=1e-6)


def test_forward_hook_lenses_refuse_modules_inside_the_graph_at_attach():
    torch.manual_seed(0)
    model = Net()
    compiled = torch.compile(model)
    lenses = [OutputActivation(), OutputNorm(), OutputGradientGeometry(), ParameterGradientActivation()]
    with pytest.warns(MonitorWarning) as caught:
        inspector, stats = _train(compiled, model, lenses, epochs=2)
    texts = [str(w.message) for w in caught]
    said_ogg = [t for t in texts if "[OutputGradientGeometry]" in t]
    assert len(said_ogg) == 1 and "torch.compile graph" in said_ogg[0] and "block.fc" in said_ogg[0], texts
    assert lenses[2].sites == []
    for lens in ("OutputActivation", "OutputNorm"):
        said = [t for t in texts if f"[{lens}]" in t]
        assert len(said) == 1 and "torch.compile graph" in said[0] and "'relu', 'block.act'" in said[0], texts
        # attached to the compiled model already: the advice is the uncompiled diagnostic epoch, not "attach to it"
        assert "inspector.attach(model) with the original model" in said[0]
        assert "attach to the compiled model itself" not in said[0]
    assert stats["recompiles"] == 0 and stats["breaks"] == 0
    assert lenses[0].sites == [] and lenses[1].sites == []
    # the parameter lens still records every weight
    assert inspector.history.runs[-1].groups("Weight Gradient Activation") == ["inp", "block.fc", "head"]


def test_a_compiled_submodule_is_refused_alone_and_named_as_the_user_named_it():
    torch.manual_seed(0)
    model = Net()
    model.block = torch.compile(model.block)
    with pytest.warns(MonitorWarning, match=r"1 module\(s\) run inside a torch.compile graph and are not watched "
                                            r"\('block.act'\)"):
        inspector, stats = _train(model, model, [OutputActivation(), ParameterGradientActivation()], epochs=2)
    assert stats["recompiles"] == 0
    run = inspector.history.runs[-1]
    assert run.groups("Output Activations") == ["relu"]
    assert run.groups("Weight Gradient Activation") == ["inp", "block.fc", "head"]
    # the eager ReLU's rates are those of its outputs (checked by hand on the last epoch's batches)
    assert np.isfinite(run.series("Output Activations", "relu", "activation_rate")).all()


def test_a_model_compiled_after_attach_is_reported_not_recompiled():
    torch.manual_seed(0)
    model = Net()
    lenses = [OutputActivation(), ParameterGradientActivation()]
    x, y = _data()
    inspector = mw.PyTorchInspector(lenses, visualizer="none", module=model)  # the uncompiled model
    compiled = torch.compile(model)  # ... but the compiled one is trained
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.warns(MonitorWarning) as caught:
        for epoch in range(2):
            for i in range(0, len(x), 8):
                opt.zero_grad()
                nn.functional.cross_entropy(compiled(x[i:i + 8]), y[i:i + 8]).backward()
                opt.step()
                if epoch == 0 and i == 0:
                    counters.clear()
            inspector.tick_epoch()
    said = [str(w.message) for w in caught if "[OutputActivation]" in str(w.message)]
    assert len(said) == 1 and "compiled after attach" in said[0] and "attach to the compiled model itself" in said[0] and "relu" in said[0], said
    assert sum(counters["recompiles"].values()) == 0 and sum(counters["graph_break"].values()) == 0
    assert np.isfinite(inspector.history.series("Weight Gradient Activation", "head",
                                                "activation_rate")).all()


def test_gradient_rates_on_a_compiled_model_equal_rates_computed_by_hand():
    torch.manual_seed(0)
    model = Net()
    compiled = torch.compile(model)
    x, y = _data(16)
    inspector = mw.PyTorchInspector([ParameterGradientActivation()], visualizer="none", module=compiled)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rates = []
    for i in range(0, 16, 8):
        opt.zero_grad()
        nn.functional.cross_entropy(compiled(x[i:i + 8]), y[i:i + 8]).backward()
        g = model.head.weight.grad.detach().clone()
        rates.append((g.abs() > 1e-8).float().mean(dim=1).mean().item())  # per output unit, then mean
        opt.step()
    inspector.tick_epoch()
    got = inspector.history.series("Weight Gradient Activation", "head", "activation_rate")
    np.testing.assert_allclose(got, [np.mean(rates)], atol=1e-6)


def test_attaching_after_the_first_compiled_call_changes_nothing():
    """Nothing of ours lives in the graph, so a graph compiled before attach needs no hooks of ours."""
    torch.manual_seed(0)
    base = Net()
    plain = copy.deepcopy(base)
    ref, _ = _train(plain, plain, [ParameterGradientActivation(), LossMetrics(loss_fn=nn.CrossEntropyLoss())])
    model = copy.deepcopy(base)
    compiled = torch.compile(model)
    x, _ = _data()
    with torch.no_grad():
        compiled(x[:8])  # the first compiled call happens before attach (the graph is built for no_grad)
    counters.clear()
    got, stats = _train(compiled, model, [ParameterGradientActivation(), LossMetrics(loss_fn=nn.CrossEntropyLoss())])
    assert stats["recompiles"] == 0
    for panel in ("Loss", "Weight Gradient Activation"):
        want, have = _series(ref, panel), _series(got, panel)
        assert want.keys() == have.keys() and want
        for key in want:
            np.testing.assert_allclose(have[key], want[key], atol=1e-3, err_msg=str(key))


def test_a_loss_module_inside_the_graph_is_refused_with_the_way_out():
    class WithCriterion(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = Net()
            self.criterion = nn.CrossEntropyLoss()

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.criterion(self.net(x), y)

    model = WithCriterion()
    compiled = torch.compile(model)
    with pytest.warns(MonitorWarning, match=r"loss_fn \(CrossEntropyLoss; record its value with "
                                            r"inspector.push_loss"):
        mw.PyTorchInspector([LossMetrics(loss_fn=model.criterion)], visualizer="none", module=compiled)
