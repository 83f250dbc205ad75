"""The health checks say the right thing on real broken runs (user trial, entries 12-15).

Small digits MLPs (sklearn's ``load_digits``, CPU, a few epochs) trained into each state with our lenses; the
quantities the findings carry are computed by hand with plain torch on the same parameters and batches.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import (
    LossMetrics,
    OutputActivation,
    ParameterGradientGeometry,
    ParameterUpdateGeometry,
)
from monitorch_widget.record import Record

load_digits = pytest.importorskip("sklearn.datasets").load_digits  # the test extra (not in the floors venv)

LAYERS = ("0", "2", "4")  # the Linear layers of mlp()
BATCH = 64
LOSS = nn.CrossEntropyLoss()  # LossMetrics reads the loss at this module's calls


def digits(n: int = 1216) -> tuple[torch.Tensor, torch.Tensor]:
    d = load_digits()
    return torch.tensor(d.data[:n] / 16.0, dtype=torch.float32), torch.tensor(d.target[:n])


def mlp(width: int = 64) -> nn.Sequential:
    return nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))


def inspector(model: nn.Module, opt: torch.optim.Optimizer) -> PyTorchInspector:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # coverage notices
        return PyTorchInspector([LossMetrics(loss_fn=LOSS), OutputActivation(), ParameterGradientGeometry(),
                                 ParameterUpdateGeometry(opt)], module=model, visualizer="none")


def epoch(model: nn.Sequential, opt: torch.optim.Optimizer, X: torch.Tensor, y: torch.Tensor,
          ratios: dict[str, list[float]] | None = None) -> list[float]:
    """One epoch of cross-entropy steps; appends each step's ||w_after - w_before|| / ||w_before|| (plain torch)
    of every Linear weight to ``ratios``; returns the batches' losses."""
    losses = []
    for i in range(0, len(X), BATCH):
        before = {k: model[int(k)].weight.detach().clone() for k in LAYERS}
        opt.zero_grad()
        loss = LOSS(model(X[i:i + BATCH]), y[i:i + BATCH])
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if ratios is not None:
            for k in LAYERS:
                ratios.setdefault(k, []).append(
                    float((model[int(k)].weight.detach() - before[k]).norm() / before[k].norm()))
    return losses


def by_check(findings, check):
    return {f.layer: f for f in findings if f.check == check}


def advice_of(findings) -> str:
    return " ".join(f.message + " " + f.advice for f in findings)


def test_a_learning_rate_far_too_high_is_critical_in_the_epoch_it_blows_up():
    """SGD lr=20 (trial entry 12): the loss blows up inside epoch 1, then every ReLU dies. At epoch 1: the
    per-step update ratio (against the weights before each step) is critical on every layer, and divergence
    fires from the epoch's own spread; nothing ever says "raise the learning rate"."""
    torch.manual_seed(0)
    X, y = digits()
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=20.0)
    ins = inspector(model, opt)
    ratios: dict[str, list[float]] = {}
    losses = epoch(model, opt, X, y, ratios)
    ins.tick_epoch()
    first = ins.findings

    update = by_check(first, "update_ratio")
    assert set(update) == set(LAYERS)
    for k in LAYERS:
        f = update[k]
        assert f.severity == "critical" and f.since == 1 and "too high" in f.message
        assert f.value == pytest.approx(np.mean(ratios[k]), rel=1e-4)
        assert max(ratios[k]) >= 1 and f"at most {max(ratios[k]):.3g}" in f.message
    # the record keeps the per-step ratio's epoch mean and max (not a monitorch tag)
    assert ins.history.series("Weight Update Ratio", "4", "max")[0] == pytest.approx(max(ratios["4"]), rel=1e-4)

    # divergence from within the epoch: population std of the batches' losses over their mean, by hand
    mean, std = float(np.mean(losses)), float(np.std(losses))
    assert std / mean >= 3
    div = by_check(first, "divergence")[None]
    assert div.severity == "critical" and div.since == 1 and "blew up within epoch 1" in div.message
    assert f"{std / mean:.1f}x their mean" in div.message

    for _ in range(3):
        epoch(model, opt, X, y)
        ins.tick_epoch()
    findings = ins.findings
    assert "raise the learning rate" not in advice_of(findings)
    dead = by_check(findings, "dead_layer")
    assert {"1", "3"} <= set(dead) and all(f.severity == "critical" for f in dead.values())
    # the weights no longer move: because the ReLUs died, which the finding names
    assert "see dead_layer" in update_message(findings, "0")
    ins.detach()


def update_message(findings, layer: str) -> str:
    """The update_ratio finding about ``layer``: its own, or the one naming every layer the dead layers starve."""
    found = by_check(findings, "update_ratio")
    f = found.get(layer) or found.get(None)
    assert f is not None and (f.layer == layer or f"'{layer}'" in f.message), (layer, found)
    return f.message


def test_adam_far_too_high_points_at_the_dead_layers_not_at_a_low_learning_rate():
    """Adam lr=1.0 (trial entry 14): the update ratio is critical at epoch 1; later tiny updates and vanishing
    gradients point at dead_layer, never at "raise the learning rate" or at sigmoid/tanh (a pure-ReLU net)."""
    torch.manual_seed(0)
    X, y = digits()
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1.0)
    ins = inspector(model, opt)
    ratios: dict[str, list[float]] = {}
    epoch(model, opt, X, y, ratios)
    ins.tick_epoch()
    update = by_check(ins.findings, "update_ratio")
    assert update["0"].severity == "critical" and update["0"].value == pytest.approx(np.mean(ratios["0"]), rel=1e-4)
    for _ in range(5):
        epoch(model, opt, X, y)
        ins.tick_epoch()
    findings = ins.findings
    text = advice_of(findings)
    assert "raise the learning rate" not in text and "sigmoid" not in text.lower()
    dead = [k for k, f in by_check(findings, "dead_layer").items() if f.severity == "critical"]
    assert dead
    vanishing = by_check(findings, "vanishing_gradient")
    assert vanishing
    for f in vanishing.values():
        assert "see dead_layer" in f.message and f"'{dead[0]}'" in f.message
        assert "(layer '" in f.message  # the largest layer, quoted
    ins.detach()


def test_a_dead_layer_is_not_also_called_over_capacity_and_a_partly_dead_one_is():
    """Trial entry 13: a ReLU killed by a bias of -10 is 100% dead (by hand); dead_layer is critical and
    dying_layer ("make it narrower, or add dropout") stays silent for it; the layers before and after it,
    whose weights no longer move, say why. A layer 40/64 dead still gets both (they agree)."""
    torch.manual_seed(0)
    X, y = digits()
    for killed, expect_dying in ((64, False), (40, True)):
        model = mlp()
        with torch.no_grad():
            model[2].bias[:killed] = -10.0
        # by hand: per batch, the share of ReLU '3''s units with |y| <= 1e-8 on every sample (README "Definitions")
        silent: list[float] = []
        hook = model[3].register_forward_hook(
            lambda m, i, out, silent=silent: silent.append((out.abs() <= 1e-8).all(0).float().mean().item()))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        ins = inspector(model, opt)
        for _ in range(3):
            silent.clear()
            epoch(model, opt, X, y)
            ins.tick_epoch()
        hook.remove()
        findings = ins.findings
        dead = by_check(findings, "dead_layer")["3"]
        assert dead.value == pytest.approx(np.mean(silent), abs=1e-6)
        assert ("3" in by_check(findings, "dying_layer")) == expect_dying
        if not expect_dying:
            assert np.mean(silent) == 1.0 and dead.severity == "critical" and "bias" in dead.advice
            assert "[critical] layer '3' dead_layer" in dead.line()
            for k in ("0", "4"):  # upstream: no gradient; downstream: constant (zero) input
                assert "see dead_layer" in update_message(findings, k)
            assert "raise the learning rate" not in advice_of(findings)
        ins.detach()


def test_vanishing_advice_follows_the_models_activations():
    """A layer behind a near-zero weight matrix gets a vanishing gradient (its norm by hand). A pure-ReLU net is
    not told to replace sigmoid/tanh; a tanh net is, with its tanh layers named; a run without module types
    (monitorch's own inspector) gets the conditional advice."""
    from monitorch_widget.lens.base import TagAttributes, TagType
    from monitorch_widget.record.health.gradients import _vanishing_advice
    from monitorch_widget.record.health.rows import RowView

    for act, expected in ((nn.ReLU, "the model has no saturating activation"), (nn.Tanh, "(Tanh: layers '1', '3')")):
        torch.manual_seed(0)
        X, y = digits(512)
        model = nn.Sequential(nn.Linear(64, 32), act(), nn.Linear(32, 32), act(), nn.Linear(32, 10))
        with torch.no_grad():
            model[2].weight.mul_(1e-6)  # the gradient reaching layer '0' passes through it
        opt = torch.optim.SGD(model.parameters(), lr=1e-6)  # small enough to keep it near zero
        ins = inspector(model, opt)
        grads: dict[str, list[float]] = {k: [] for k in LAYERS}
        for _ in range(2):
            for i in range(0, len(X), BATCH):
                opt.zero_grad()
                LOSS(model(X[i:i + BATCH]), y[i:i + BATCH]).backward()
                for k in LAYERS:
                    grads[k].append(float(model[int(k)].weight.grad.norm()))
                opt.step()
            ins.tick_epoch()
        vanishing = by_check(ins.findings, "vanishing_gradient")
        last = {k: float(np.mean(v[-(len(X) // BATCH):])) for k, v in grads.items()}
        top = max(last.values())
        assert last["0"] / top < 1e-3 and "0" in vanishing
        assert vanishing["0"].value == pytest.approx(last["0"], rel=1e-4)
        assert expected in vanishing["0"].advice
        assert ("sigmoid" in vanishing["0"].advice.lower()) == (act is not nn.ReLU and "sigmoid" in expected)
        if act is nn.ReLU:
            assert "tanh" not in vanishing["0"].advice.lower()
        assert "after clipping if any" in vanishing["0"].message
        ins.detach()
    record = Record()
    record.register_tags("Weight Gradient Norm", TagAttributes(False, False, True, TagType.NUMERICAL))
    record.start_run("r")  # no module types: fed by monitorch's own inspector
    record.plot_numerical_values(1, "Weight Gradient Norm", {"a": {"mean": 1.0}})
    view = RowView(record.runs[0], 0, ("train_loss", "val_loss"))
    assert _vanishing_advice(view).startswith("gradients vanish on the way back: if the model uses sigmoid/tanh")


class _Calls:
    """A user's monitorch-style visualizer: keeps the tags registered and the calls made."""

    def __init__(self):
        self.tags, self.calls = [], []

    def register_tags(self, tag, attrs):
        self.tags.append(tag)

    def plot_numerical_values(self, epoch, tag, values, ranges=None):
        self.calls.append(tag)

    def plot_probabilities(self, epoch, tag, values):
        self.calls.append(tag)

    def plot_relations(self, epoch, tag, values):
        self.calls.append(tag)


@pytest.mark.parametrize("normalize", [False, True])
def test_the_per_step_ratio_is_recorded_for_the_checks_and_never_sent_to_a_users_visualizer(normalize):
    """Adam, weights and biases, with and without normalize_by_size (the ratio is of plain L2 norms either way):
    the record's ``<Parameter> Update Ratio`` mean / max equal ||w_after - w_before|| / ||w_before|| per step
    by hand; a user's visualizer gets monitorch's tags and calls only."""
    torch.manual_seed(0)
    X, y = digits(320)
    model = mlp(16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    user = _Calls()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ins = PyTorchInspector([ParameterUpdateGeometry(opt, normalize_by_size=normalize)], module=model,
                               visualizer=user)
    hand: dict[tuple[str, str], list[float]] = {}
    for _ in range(2):
        hand.clear()
        for i in range(0, len(X), BATCH):
            before = {(k, p): getattr(model[int(k)], p).detach().clone() for k in LAYERS for p in ("weight", "bias")}
            opt.zero_grad()
            LOSS(model(X[i:i + BATCH]), y[i:i + BATCH]).backward()
            opt.step()
            for (k, p), b in before.items():
                hand.setdefault((k, p), []).append(float((getattr(model[int(k)], p).detach() - b).norm() / b.norm()))
        ins.tick_epoch()
    for (k, p), values in hand.items():
        tag = f"{p} Update Ratio".title()
        assert ins.history.series(tag, k, "mean")[-1] == pytest.approx(np.mean(values), rel=1e-4)
        assert ins.history.series(tag, k, "max")[-1] == pytest.approx(max(values), rel=1e-4)
    assert user.tags and user.calls
    assert not [t for t in user.tags + user.calls if "Ratio" in t]
    assert ins.history.current.panel("Weight Update Ratio").lens == "ParameterUpdateGeometry"
    ins.detach()


def _gradient_norm_rows(norms: dict[str, list[float]], types: dict[str, str]) -> Record:
    from monitorch_widget.lens.base import TagAttributes, TagType

    record = Record()
    record.register_tags("Weight Gradient Norm", TagAttributes(False, False, True, TagType.NUMERICAL))
    record.start_run("r", types)
    for e in range(len(next(iter(norms.values())))):
        record.plot_numerical_values(e + 1, "Weight Gradient Norm", {g: {"mean": v[e]} for g, v in norms.items()})
        record.close_row()
    return record


def test_normalisation_gains_are_not_judged_for_vanishing_and_an_underflowed_layer_gets_the_vanishing_advice():
    """A pre-LN residual net: LayerNorm gains of 64 entries have gradient norms 1e-3 of a big weight's for that
    reason alone (trial r4 #6): not flagged. A deep sigmoid stack whose first layers' gradients rounded to 0 while
    the next ones shrink by degrees: 'vanishing through saturating activations', not 'no gradient reaches it'
    (trial r4 #9)."""
    healthy = _gradient_norm_rows({"0": [1.8, 1.0], "3.fc": [2e-2, 1e-2], "3.ln": [9e-4, 9e-4]},
                                  {"0": "Linear", "3.fc": "Linear", "3.ln": "LayerNorm"})
    assert [f for f in healthy.health.findings(0) if f.check == "vanishing_gradient"] == []
    norms = {"0": [0.0, 0.0], "2": [8.6e-22, 7e-22], "4": [3e-9, 2e-9], "6": [0.16, 0.15]}
    deep = _gradient_norm_rows(norms, {"0": "Linear", "1": "Sigmoid", "2": "Linear", "3": "Sigmoid", "4": "Linear",
                                       "5": "Sigmoid", "6": "Linear"})
    found = {f.layer: f for f in deep.health.findings(0) if f.check == "vanishing_gradient"}
    assert set(found) == {"0", "2", "4"}  # every layer below 1e-3 of '6' (0.15) for two epochs
    assert "rounds to 0" in found["0"].message and "No gradient reaches it" not in found["0"].message
    assert found["0"].advice == found["2"].advice and "saturating activations (Sigmoid" in found["0"].advice
    alone = _gradient_norm_rows({"0": [0.0, 0.0], "2": [0.5, 0.4]}, {"0": "Linear", "2": "Linear"})
    only = [f for f in alone.health.findings(0) if f.check == "vanishing_gradient"]
    assert len(only) == 1 and "No gradient reaches it at all" in only[0].message  # nothing shrinks towards it
    # a norm of exactly 0 is said so, not "0 is 0 of the largest layer's" (trial r6); the largest is '2' at 0.4
    assert only[0].message.startswith("its weight-gradient norm is 0 (the largest: layer '2', 0.4)")


def test_one_dead_layer_in_a_deep_model_is_one_cause_not_a_finding_per_starved_layer():
    """Trial r6: one ReLU killed in a 12-block MLP gave dozens of findings, a vanishing_gradient and an
    update_ratio per layer before it, each pointing at the same dead layer. Now: the dead layer's finding, and one
    vanishing_gradient and one update_ratio finding naming the starved layers (by hand: the Linear layers whose
    weight gradient is exactly 0 at every step)."""
    torch.manual_seed(0)
    X, y = digits(512)
    blocks = [nn.Linear(64, 32), nn.ReLU()] + [m for _ in range(11) for m in (nn.Linear(32, 32), nn.ReLU())]
    model = nn.Sequential(*blocks, nn.Linear(32, 10))
    with torch.no_grad():
        model[14].bias.fill_(-10.0)  # block 7's ReLU (module '15') never fires
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    ins = inspector(model, opt)
    zero_always: set[str] | None = None
    for _ in range(4):
        for i in range(0, len(X), BATCH):
            opt.zero_grad()
            LOSS(model(X[i:i + BATCH]), y[i:i + BATCH]).backward()
            zero = {str(k) for k in range(0, 25, 2) if float(model[k].weight.grad.norm()) == 0.0}
            zero_always = zero if zero_always is None else zero_always & zero
            opt.step()
        ins.tick_epoch()
    # by hand: every Linear up to the dead block's (no gradient passes it) and the one after it (zero input)
    assert zero_always == {str(k) for k in range(0, 17, 2)}
    findings = ins.findings
    dead = by_check(findings, "dead_layer")
    assert dead["15"].severity == "critical"
    vanishing = by_check(findings, "vanishing_gradient")
    assert list(vanishing) == [None]  # one finding, not one per layer
    assert "layer '15' is dead: see dead_layer" in vanishing[None].message
    assert "layers '0', '2', '4' and 6 more" in vanishing[None].message  # the 9 starved layers
    update = by_check(findings, "update_ratio")
    assert list(update) == [None] and "see dead_layer" in update[None].message
    assert "did not move in this epoch's steps" in update[None].message  # by hand: their gradients are exactly 0
    assert {f.check for f in findings} == {"dead_layer", "vanishing_gradient", "update_ratio"}
    ins.detach()
