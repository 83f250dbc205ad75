"""The attach notice: what no lens watches is said once, and only what the user did not choose."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from monitorch_widget import MonitorNotice, PyTorchInspector
from monitorch_widget.lens import OutputActivation, OutputNorm, ParameterGradientActivation


def attach_notices(lenses, model) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        PyTorchInspector(lenses, visualizer="none").attach(model)
    return [str(w.message) for w in caught if issubclass(w.category, MonitorNotice)]


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(nn.functional.relu(self.fc1(x))))


def test_output_lenses_that_watch_nothing_say_why():
    said = attach_notices([OutputActivation(), OutputNorm(), ParameterGradientActivation()], Functional())
    assert len(said) == 1
    assert "OutputActivation watches no module of this model" in said[0] and "F.relu" in said[0]
    assert "OutputNorm watches no module of this model" in said[0]
    assert "OutputActivation(include=[nn.Linear])" in said[0]


def test_watched_or_deliberately_excluded_modules_are_not_named():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    said = attach_notices([OutputActivation(exclude=[nn.Tanh]), ParameterGradientActivation()], model)
    assert not any("no output lens" in s or "watches no module" in s for s in said), said
    said = attach_notices([OutputActivation(activation=False, include=[nn.Linear])], model)
    assert not any("no output lens" in s for s in said), said
    # not chosen: a depth limit leaves the nested activation out, and that is named (quoted)
    nested = nn.Sequential(nn.Linear(4, 8), nn.Sequential(nn.ReLU(), nn.Linear(8, 2)))
    assert attach_notices([OutputActivation()], nested) == []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        PyTorchInspector([OutputActivation()], visualizer="none", depth=1).attach(copy.deepcopy(nested))
    said = [str(w.message) for w in caught if issubclass(w.category, MonitorNotice)]
    assert len(said) == 1 and "1 activation module(s) have no output lens: '1.0'" in said[0], said


def test_a_tied_parameter_is_one_series_under_its_first_name():
    """GPT-2 ties lm_head.weight to the embedding: one tensor, one series (its values once, counted once in the
    norm comparison), and the alias named in the attach notice."""
    from monitorch_widget.lens import ParameterNorm

    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("emb", nn.Embedding(10, 4))
    model.add_module("head", nn.Linear(4, 10, bias=False))
    model.head.weight = model.emb.weight
    ins = PyTorchInspector([ParameterNorm(), ParameterGradientActivation()], visualizer="none")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ins.attach(model)
    said = [str(w.message) for w in caught if issubclass(w.category, MonitorNotice)]
    assert any("1 tied parameter(s)" in s and "'head.weight' is 'emb.weight'" in s for s in said), said
    nn.functional.cross_entropy(model(torch.tensor([[1, 2, 3]])).view(-1, 10), torch.tensor([1, 2, 3])).backward()
    ins.tick_epoch()
    run = ins.history.runs[-1]
    assert run.groups("Weight Norm") == ["emb"]
    assert ins.history.series("Weight Norm", "emb", "mean")[0] == pytest.approx(float(model.emb.weight.norm()), rel=1e-6)
    shares = [c for c in run.columns if c.panel == "Weight Norm Comparison"]
    assert len(shares) == 1
    assert ins.history.series(shares[0].panel, shares[0].group, shares[0].key)[0] == pytest.approx(1.0)


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.act, self.unused = nn.Linear(4, 4), nn.ReLU(), nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x))  # self.unused is never called


def test_a_watched_module_the_forward_never_calls_is_named_once():
    from monitorch_widget.lens import OutputNorm as Norm

    model = Branchy()
    ins = PyTorchInspector([OutputActivation(), Norm()], visualizer="none", module=model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            model(torch.randn(3, 4)).sum().backward()
            ins.tick_epoch()
    said = [str(w.message) for w in caught if issubclass(w.category, MonitorNotice) and "never ran" in str(w.message)]
    assert len(said) == 2  # once per lens, not per epoch
    assert all("1 watched module(s) never ran" in s and "'unused'" in s and "'act'" not in s for s in said)
    assert np.isnan(ins.history.series("Output Activations", "unused", "activation_rate")).all()


def test_a_parameter_lens_missing_modules_another_one_watches_is_named():
    """weight_norm moves a Linear's weight to parametrizations.weight.original0/1: a lens told about them and two
    that are not; the two are named with the names to add (their panels lacked the layer without a word)."""
    from torch.nn.utils.parametrizations import weight_norm

    from monitorch_widget.lens import ParameterGradientGeometry, ParameterNorm

    model = nn.Sequential(weight_norm(nn.Linear(4, 4)), nn.ReLU(), nn.Linear(4, 2))
    said = attach_notices([ParameterGradientActivation(), ParameterNorm(),
                           ParameterGradientGeometry(parameters=["original*", "bias"])], model)
    text = " ".join(said)
    for lens in ("ParameterGradientActivation", "ParameterNorm"):
        assert f"{lens} watches no parameter of 1 module(s) another parameter lens watches: " \
               "'0.parametrizations.weight'" in text
        assert f"{lens}(parameters=[...]), e.g. 'original0', 'original1'" in text
    assert "ParameterGradientGeometry watches no parameter" not in text


def test_training_in_eval_mode_is_named_once():
    """model.eval() kept while training (frozen BatchNorm idiom): output lenses count training-mode passes only,
    so their panels stay empty; one notice says why and how. A validation in eval mode says nothing."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ins = PyTorchInspector([OutputActivation(), ParameterGradientActivation()], visualizer="none", module=model)

    def epoch(train_mode: bool) -> None:
        model.train(train_mode)
        for _ in range(2):
            opt.zero_grad()
            model(torch.randn(8, 4)).sum().backward()
            opt.step()
        model.eval()
        model(torch.randn(8, 4)).sum()  # a validation pass left with grad enabled: not training in eval mode
        ins.tick_epoch()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        epoch(True)
        epoch(True)
    assert not any("eval mode" in str(w.message) for w in caught)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        epoch(False)
        epoch(False)
    said = [str(w.message) for w in caught if "trained in eval mode" in str(w.message)]
    assert len(said) == 1 and "OutputActivation count training-mode passes only" in said[0]
    assert "record_eval=True" in said[0]
    assert np.isnan(ins.history.series("Output Activations", "1", "activation_rate")[2:]).all()


def test_module_name_prefix_names_the_notice_as_the_sites_are_named():
    """Trial r13c: with module_name_prefix='/' the notice compared '.'-joined names with the sites' '/'-joined ones
    and said every watched activation had no output lens (the smooth-activation part was lost)."""
    model = nn.Sequential(nn.Sequential(nn.Linear(3, 4), nn.ReLU()), nn.Sequential(nn.Linear(4, 2), nn.Tanh()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ins = PyTorchInspector([OutputActivation(), ParameterGradientActivation(parameters=["weight"])],
                               visualizer="none", module=model, module_name_prefix="/")
    said = " ".join(str(w.message) for w in caught if issubclass(w.category, MonitorNotice))
    assert [s.name for s in ins.lenses[0].sites] == ["0/1", "1/1"]
    assert "no output lens" not in said
    assert "1 watched activation(s) are smooth ('1/1')" in said
    assert "have no gradient lens: '0/0/bias', '1/0/bias'" in said
    ins.detach()


def test_parameters_below_the_inspectors_depth_are_a_notice_not_an_error():
    """Trial r13c: depth=1 on a model of two nn.Sequential blocks raised 'no module of the model has a parameter
    matching weight, bias; parameter names in this model: bias, weight'; monitorch runs and records nothing."""
    model = nn.Sequential(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), nn.Sequential(nn.Linear(8, 2)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ins = PyTorchInspector([ParameterGradientActivation()], visualizer="none", module=model, depth=1)
    said = [str(w.message) for w in caught if issubclass(w.category, MonitorNotice)]
    assert len(said) == 1 and "ParameterGradientActivation watches no parameter" in said[0]
    assert "('0.0.weight', '0.0.bias', '1.0.weight', '1.0.bias')" in said[0] and "raise depth=" in said[0]
    model(torch.randn(2, 4)).sum().backward()
    ins.tick_epoch()  # runs, as in monitorch
    assert ins.history.runs[-1].notices  # and the status line counts the notice
    with pytest.raises(ValueError, match="no module of the model has a parameter matching wieght"):
        PyTorchInspector([ParameterGradientActivation(parameters=["wieght"])], visualizer="none", module=model)


def test_activations_below_depth_are_not_also_said_to_be_missing():
    """Trial r15a: with depth=1 the notice named the nested ReLUs as deeper than depth=, then said OutputActivation
    'watches no module: it holds no activation or dropout module' -- the second half contradicted the first."""
    nested = nn.Sequential(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), nn.Sequential(nn.Linear(8, 8), nn.ReLU()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        PyTorchInspector([OutputActivation(), OutputNorm()], visualizer="none", depth=1).attach(nested)
    said = [str(w.message) for w in caught if issubclass(w.category, MonitorNotice)]
    assert len(said) == 1 and "2 activation module(s) have no output lens: '0.1', '1.1'" in said[0], said
    assert "holds no" not in said[0]


@pytest.mark.parametrize("activation, named", [("relu", True), ("gelu", True), (nn.ReLU(), False)])
def test_transformer_layers_with_a_functional_activation_are_named(activation, named):
    """Trial r15a: nn.TransformerEncoderLayer(activation='relu') (the default) calls F.relu, so OutputActivation
    watched only its dropouts and said nothing about the feed-forward units no hook could see."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's note on nested tensors
        model = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True,
                                                                 activation=activation), 2)
    said = attach_notices([OutputActivation()], model)
    text = " ".join(said)
    assert ("2 transformer layer(s) call their feed-forward activation as a function" in text) == named, said
    if named:
        assert "'layers.0', 'layers.1'" in text and "activation=nn.ReLU()" in text
