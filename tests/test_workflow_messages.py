"""Messages for training workflows that left series empty or misfiled without a true word (trial r5, findings 5, 6).

- A validation loop under ``model.eval()`` without ``torch.no_grad()``: LossMetrics counts those losses as
  training (monitorch's rule, values kept); said once, with the fix.
- A frozen backbone called under ``torch.no_grad()`` inside a training forward: its modules did run, in passes the
  output lenses do not count; they were reported as "never ran ... the forward pass does not call them".
- A frozen first layer: OutputGradientGeometry blamed the loss ("the loss does not use [its output]"); its output
  does not require grad.

Values are checked against plain torch on the same tensors.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from helpers import rates_by_hand
from torch import nn

import monitorch_widget as mw
from monitorch_widget import MonitorNotice
from monitorch_widget.lens import LossMetrics, OutputActivation, OutputGradientGeometry, OutputNorm


def _notices(caught, lens: str) -> list[str]:
    return [str(w.message) for w in caught
            if issubclass(w.category, MonitorNotice) and f"[{lens}]" in str(w.message)]


# --- finding 5: evaluation with grad enabled ----------------------------------------------------------------
EVAL_WITH_GRAD = (
    "monitorch_widget [model]: forward passes ran in eval mode with grad enabled next to training passes in one "
    "epoch (a validation loop under model.eval() without torch.no_grad()): LossMetrics counts a loss under grad as "
    "training (evaluation_from_grad=True, monitorch's rule), so their losses went into the training loss and the "
    "validation loss got none. Wrap evaluation in torch.no_grad() or torch.inference_mode(), or build "
    "LossMetrics(evaluation_from_grad=False) and switch the loss module with the model (loss_fn.eval() / "
    "loss_fn.train()): that rule reads its training flag")


def _epochs(no_grad_eval: bool, epochs: int = 2) -> tuple[mw.PyTorchInspector, list[list[float]], list[list[float]]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ins = mw.PyTorchInspector([LossMetrics(loss_fn=loss_fn)], visualizer="none", module=model)
    train, val = [], []
    for _ in range(epochs):
        train.append([])
        val.append([])
        model.train()
        for _ in range(3):
            opt.zero_grad()
            loss = loss_fn(model(torch.randn(6, 4)), torch.randint(0, 3, (6,)))
            loss.backward()
            opt.step()
            train[-1].append(float(loss.detach()))
        model.eval()
        with torch.no_grad() if no_grad_eval else torch.enable_grad():
            val[-1].append(float(loss_fn(model(torch.randn(6, 4)), torch.randint(0, 3, (6,))).detach()))
        ins.tick_epoch()
    return ins, train, val


def test_a_validation_pass_with_grad_enabled_is_said_once_and_its_loss_stays_in_training():
    with pytest.warns(MonitorNotice) as caught:
        ins, train, val = _epochs(no_grad_eval=False)
    assert _notices(caught, "model") == [EVAL_WITH_GRAD]
    h = ins.history
    # monitorch's values are kept: the eval batch's loss is one more training batch
    assert h.series("Loss", "Loss", "train_loss mean") == pytest.approx(
        [np.mean(t + v) for t, v in zip(train, val)], rel=1e-6)
    ins.detach()


def test_validation_under_no_grad_says_nothing_and_is_validation():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ins, train, val = _epochs(no_grad_eval=True)
    assert _notices(caught, "model") == []
    h = ins.history
    assert h.series("Loss", "Loss", "train_loss mean") == pytest.approx([np.mean(t) for t in train], rel=1e-6)
    assert h.series("Loss", "Loss", "val_loss mean") == pytest.approx([v[0] for v in val], rel=1e-6)
    ins.detach()


# --- finding 6: modules run in passes that are not counted --------------------------------------------------
class Probe(nn.Module):
    """A linear probe: the frozen backbone runs under no_grad inside forward; ``unused`` is never called."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
        self.unused = nn.ReLU()
        self.backbone.requires_grad_(False)
        self.features: list[torch.Tensor] = []  # the backbone's ReLU outputs (for the hand values)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            h = self.backbone(x)
        self.features.append(h.clone())
        return self.head(h)


def _probe(lens, evaluated: bool = False) -> tuple[mw.PyTorchInspector, Probe, list]:
    """``evaluated``: is_active_fn=lambda _: model.training and an evaluation pass before each tick (the README's
    pattern), which turns the hooks off until the next training pass: the tick's notices are the same."""
    torch.manual_seed(0)
    model = Probe()
    opt = torch.optim.SGD(model.head.parameters(), lr=0.1)
    active = {"is_active_fn": lambda _: model.training} if evaluated else {}
    ins = mw.PyTorchInspector([lens], visualizer="none", module=model, **active)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            for _ in range(3):
                opt.zero_grad()
                model(torch.randn(5, 4) + 0.2).pow(2).mean().backward()
                opt.step()
            if evaluated:
                model.eval()
                with torch.no_grad():
                    model(torch.randn(5, 4))
                model.train()
                del model.features[-1]  # not a training batch
            ins.tick_epoch()
    return ins, model, caught


def _uncounted(lens: str) -> str:
    return (f"monitorch_widget [{lens}]: 1 watched module(s) ran only in passes this lens does not count, in an "
            "epoch in which the others ran in counted ones: 'backbone.1'; a pass counts when grad is enabled and the "
            "module is in training mode (monitorch's rule) (a frozen backbone called under torch.no_grad() inside "
            "forward, a module switched to eval()), so their series stay empty. To count them too, build the lens "
            "with record_eval=True (every pass counts, evaluation passes included)")


def _uncalled(lens: str) -> str:
    return (f"monitorch_widget [{lens}]: 1 watched module(s) never ran in a counted pass of an epoch in which the "
            "others did: 'unused'; the forward pass does not call them (a branch not taken, a module the attention "
            "kernel skips), so their series stay empty")


@pytest.mark.parametrize("evaluated", [False, True], ids=["", "evaluated"])
@pytest.mark.parametrize("make", [OutputActivation, OutputNorm], ids=["activation", "norm"])
def test_modules_run_under_no_grad_are_not_called_never_run(make, evaluated):
    ins, _, caught = _probe(make(), evaluated)
    name = make.__name__
    assert sorted(_notices(caught, name)) == sorted([_uncounted(name), _uncalled(name)])
    ins.detach()


def test_record_eval_counts_the_backbone_with_its_hand_values():
    ins, model, caught = _probe(OutputActivation(record_eval=True))
    assert [m for m in _notices(caught, "OutputActivation") if "backbone" in m] == []
    rates = ins.history.series("Output Activations", "backbone.1", "activation_rate")
    want = [np.mean([rates_by_hand(f.numpy())[0] for f in model.features[e * 3:(e + 1) * 3]]) for e in range(2)]
    assert rates == pytest.approx(want, rel=1e-6)
    ins.detach()


# --- finding 6: a frozen first layer is not "a loss that does not use it" ------------------------------------
def test_a_layer_frozen_mid_training_is_named_as_frozen_not_as_unused_by_the_loss():
    """The first layer trains in epoch 1 and is frozen (requires_grad_(False)) from epoch 2 on, as in a
    fine-tuning schedule; a module whose output never required grad is not drawn at all (as in monitorch)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ins = mw.PyTorchInspector([OutputGradientGeometry(compute_correlation=False)], visualizer="none", module=model)
    seen: list[list[float]] = []
    with pytest.warns(MonitorNotice) as caught:
        for epoch in range(2):
            if epoch == 1:
                model[0].requires_grad_(False)
            seen.append([])
            for _ in range(2):
                opt.zero_grad()
                out = model(torch.randn(5, 4))
                out.register_hook(lambda g: seen[-1].append(float(g.norm())))
                out.pow(2).mean().backward()
                opt.step()
            ins.tick_epoch()
    assert _notices(caught, "OutputGradientGeometry") == [
        "monitorch_widget [OutputGradientGeometry]: 1 module(s) got no gradient for their output in an epoch in which "
        "the others did: '0'; their output did not require grad, because nothing before it does, their own "
        "parameters included (frozen layers, requires_grad_(False), at the start of the model, or a detach() before "
        "them): no gradient flows to them, so their series stay empty (expected for frozen layers)"]
    h = ins.history
    assert h.series("Output Gradient Norm", "1", "mean") == pytest.approx([np.mean(e) for e in seen], rel=1e-5)
    assert np.isnan(h.series("Output Gradient Norm", "0", "mean")[1])
    ins.detach()


# --- finding 6: a frozen parameter that still holds a zero .grad ---------------------------------------------
FROZEN = ("monitorch_widget [ParameterGradientActivation]: 2 watched parameter(s) do not require grad (frozen with "
          "requires_grad_(False)) but still hold a .grad tensor: '0.weight', '0.bias'; no gradient reaches them by "
          "design, so their gradient series (and update ratio) have no value while they are frozen, and no health "
          "check judges them. Their .grad is a zero tensor kept by optimizer.zero_grad(set_to_none=False), so the "
          "optimizer still steps them (momentum, weight decay move the frozen weights): zero_grad() "
          "(set_to_none=True, the default) or param.grad = None ends both")


@pytest.mark.parametrize("set_to_none", [False, True], ids=["zeroed", "none"])
def test_a_frozen_parameter_holding_a_zero_grad_is_named_once(set_to_none):
    from monitorch_widget.lens import ParameterGradientActivation

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ins = mw.PyTorchInspector([ParameterGradientActivation()], visualizer="none", module=model)
    deaths: list[list[float]] = []  # death rate of model[0].weight's gradient per step, by hand (units: rows)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(3):
            if epoch == 1:
                model[0].requires_grad_(False)
            deaths.append([])
            for _ in range(2):
                opt.zero_grad(set_to_none=set_to_none)
                model(torch.randn(3, 4)).pow(2).mean().backward()
                g = model[0].weight.grad
                if g is not None:
                    deaths[-1].append(rates_by_hand(g.numpy(), channel_axis=0)[1])
                opt.step()
            ins.tick_epoch()
    death = ins.history.series("Weight Gradient Activation", "0", "death_rate")
    if set_to_none:  # no .grad left: named as frozen while the optimizer holds it (its series' gap explained)
        said = _notices(caught, "ParameterGradientActivation")
        assert len(said) == 1 and "2 watched parameter(s) are frozen (requires_grad=False) but held by the " \
            "optimizer: '0.weight', '0.bias'" in said[0]
        assert death[0] == pytest.approx(np.mean(deaths[0]))
        assert np.isnan(death[1:]).all()  # no gradient, no observation
    else:
        assert _notices(caught, "ParameterGradientActivation") == [FROZEN]
        assert deaths[1] == deaths[2] == [1.0, 1.0]  # the stale zero .grad: every row "dead"
        # ... which is no gradient: no value while frozen (as with set_to_none, and as in monitorch)
        assert death[0] == pytest.approx(np.mean(deaths[0]))
        assert np.isnan(death[1:]).all()
    ins.detach()


def test_a_stale_grad_on_a_frozen_parameter_no_optimizer_holds_is_not_named():
    """Transfer learning: a backbone pre-trained, then frozen with its last .grad left in place; the optimizer holds
    the head only, so nothing reads or steps that stale gradient and there is nothing to say."""
    from monitorch_widget.lens import ParameterGradientActivation

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    model(torch.randn(3, 4)).pow(2).mean().backward()  # pre-training's last backward: .grad left on the backbone
    model[0].requires_grad_(False)
    opt = torch.optim.SGD(model[2].parameters(), lr=0.1)
    ins = mw.PyTorchInspector([ParameterGradientActivation()], visualizer="none", module=model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            opt.zero_grad()
            model(torch.randn(3, 4)).pow(2).mean().backward()
            opt.step()
        ins.tick_epoch()
    assert model[0].weight.grad is not None
    assert _notices(caught, "ParameterGradientActivation") == []
    groups = {c.group for c in ins.history.runs[-1].columns if c.panel == "Weight Gradient Activation"}
    assert groups == {"2"}  # the frozen layer had no observation: no series at all
    ins.detach()
