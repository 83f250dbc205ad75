"""``is_active_fn`` as monitorch defines it: asked while training runs, so ``lambda _: model.training`` turns
recording off for evaluation passes, and a tick while inactive only moves the epoch counter.

Each scenario runs the same script with PyPI monitorch's inspector and ours (values must agree), and the
values are also computed by hand from the training batches alone.
"""

import math

import pytest
import torch
from torch import nn

from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation

monitorch = pytest.importorskip("monitorch", reason="monitorch (optional extra) is not installed")
from monitorch.inspector import PyTorchInspector as TheirInspector  # noqa: E402
from monitorch.lens import LossMetrics as TheirLossMetrics  # noqa: E402
from monitorch.lens import OutputActivation as TheirOutputActivation  # noqa: E402
from monitorch.lens import ParameterGradientActivation as TheirGradientActivation  # noqa: E402

OURS = (PyTorchInspector, LossMetrics, OutputActivation, ParameterGradientActivation)
THEIRS = (TheirInspector, TheirLossMetrics, TheirOutputActivation, TheirGradientActivation)


class Calls:
    """A monitorch-style visualizer keeping {(epoch, tag, group, key): value}."""

    def __init__(self):
        self.values = {}

    def register_tags(self, tag, attrs):
        pass

    def _keep(self, epoch, tag, values):
        for group, lines in values.items():
            for key, v in lines.items():
                self.values[(epoch, tag, group, key)] = v

    def plot_numerical_values(self, epoch, tag, values, ranges=None):
        self._keep(epoch, tag, values)

    def plot_probabilities(self, epoch, tag, values):
        self._keep(epoch, tag, values)

    def plot_relations(self, epoch, tag, values):
        self._keep(epoch, tag, values)


class Script:
    """The client: training steps, then evaluation passes with ``model.eval()`` in the same epoch.

    ``plan`` is one string per epoch: ``"t"`` a training step, ``"v"`` a ``no_grad`` evaluation pass, ``"g"``
    an evaluation pass under grad with a backward pass and no step (a gradient probe), ``"e"`` / ``"T"``
    ``model.eval()`` / ``model.train()``, ``"|"`` a tick. Batches come from fixed generators, so every
    package and variant sees the same training batches.
    """

    def __init__(self, kit, plan, is_active_fn, record_eval=True):
        inspector_cls, loss_cls, act_cls, grad_cls = kit
        torch.manual_seed(0)
        self.model = model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
        self.loss_fn = loss_fn = nn.CrossEntropyLoss()
        self.calls = Calls()
        fn = is_active_fn(model) if callable(is_active_fn) else is_active_fn
        self.inspector = inspector_cls([loss_cls(loss_fn=loss_fn), act_cls(record_eval=record_eval), grad_cls()],
                                       visualizer=self.calls, is_active_fn=fn)
        self.inspector.attach(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        train_gen, eval_gen = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
        self.train_losses = [[]]     # per tick: the training batches' losses
        self.train_relu = [[]]       # per tick: the training batches' outputs of the first ReLU
        capture = []
        model[1].register_forward_hook(lambda m, a, out: capture.append(out.detach().clone()))
        for epoch_plan in plan:
            for op in epoch_plan:
                if op == "t":
                    x, y = torch.randn(8, 4, generator=train_gen), torch.randint(0, 3, (8,), generator=train_gen)
                    opt.zero_grad()
                    loss = loss_fn(model(x), y)
                    loss.backward()
                    opt.step()
                    self.train_losses[-1].append(loss.item())
                    self.train_relu[-1].append(capture[-1])
                elif op in "vg":
                    x, y = torch.randn(8, 4, generator=eval_gen), torch.randint(0, 3, (8,), generator=eval_gen)
                    if op == "v":
                        with torch.no_grad():
                            loss_fn(model(x), y)
                    else:
                        loss_fn(model(x), y).backward()
                        opt.zero_grad()
                elif op == "e":
                    model.eval()
                elif op == "T":
                    model.train()
                elif op == "|":
                    self.inspector.tick_epoch()
                    self.train_losses.append([])
                    self.train_relu.append([])


def training_mode(model):
    return lambda _: model.training


def assert_same(ours, theirs):
    assert set(ours) == set(theirs)
    for key, v in theirs.items():
        assert ours[key] == pytest.approx(v, rel=1e-5, abs=1e-6, nan_ok=True), key


def by_hand(losses, relu_outputs, eps=1e-8):
    """Train loss mean, and the first ReLU's activation / death rate, over the given training batches."""
    act = [float((y.abs() > eps).float().mean()) for y in relu_outputs]
    dead = [float(((y.abs() > eps).sum(0) == 0).float().mean()) for y in relu_outputs]
    return sum(losses) / len(losses), sum(act) / len(act), sum(dead) / len(dead)


def check_by_hand(values, epoch, losses, relu_outputs):
    loss, act, dead = by_hand(losses, relu_outputs)
    assert values[(epoch, "Loss", "Loss", "train_loss mean")] == pytest.approx(loss, rel=1e-5)
    assert values[(epoch, "Output Activations", "1", "activation_rate")] == pytest.approx(act, rel=1e-5)
    assert values[(epoch, "Output Activations", "1", "death_rate")] == pytest.approx(dead, abs=1e-6)


CLIENT = ["tttttevvggT|", "tttttevvggT|", "tttttevvggT|"]


def test_training_mode_switches_recording_off_for_evaluation_passes():
    ours = Script(OURS, CLIENT, training_mode)
    theirs = Script(THEIRS, CLIENT, training_mode)
    assert_same(ours.calls.values, theirs.calls.values)
    # the same script without its evaluation passes: the training batches alone
    plain = Script(OURS, ["tttttT|"] * 3, 1)
    assert_same(ours.calls.values, plain.calls.values)
    for epoch in (1, 2, 3):
        check_by_hand(ours.calls.values, epoch, ours.train_losses[epoch - 1], ours.train_relu[epoch - 1])


def test_evaluation_passes_would_change_the_values_without_the_gate():
    """The scenario is sharp: with is_active_fn=1 the evaluation passes are recorded (record_eval=True counts
    them; a pass under grad counts as a training loss), so the values differ."""
    always = Script(OURS, CLIENT, 1)
    gated = Script(OURS, CLIENT, training_mode)
    key = (1, "Loss", "Loss", "train_loss mean")
    assert always.calls.values[key] != pytest.approx(gated.calls.values[key], rel=1e-6)
    key = (1, "Output Activations", "1", "activation_rate")
    assert always.calls.values[key] != pytest.approx(gated.calls.values[key], rel=1e-6)


def test_a_tick_while_inactive_keeps_the_counter_and_the_gathered_values():
    plan = ["ttt|", "ttte|", "Tttt|"]  # the second tick comes while the model is in eval mode
    ours = Script(OURS, plan, training_mode)
    theirs = Script(THEIRS, plan, training_mode)
    assert_same(ours.calls.values, theirs.calls.values)
    assert {k[0] for k in ours.calls.values} == {1, 3}  # epoch 2 skipped, the counter moved on
    assert list(ours.inspector.history.current.epochs) == [1.0, 3.0]
    check_by_hand(ours.calls.values, 1, ours.train_losses[0], ours.train_relu[0])
    # epoch 3 holds what was gathered since the last active tick: the training batches of epochs 2 and 3
    check_by_hand(ours.calls.values, 3, ours.train_losses[1] + ours.train_losses[2],
                  ours.train_relu[1] + ours.train_relu[2])


def test_integer_is_active_fn_records_every_nth_epoch():
    plan = ["ttt|"] * 4
    ours = Script(OURS, plan, 2, record_eval=False)
    theirs = Script(THEIRS, plan, 2, record_eval=False)
    assert_same(ours.calls.values, theirs.calls.values)
    assert {k[0] for k in ours.calls.values} == {2, 4}
    check_by_hand(ours.calls.values, 2, ours.train_losses[1], ours.train_relu[1])  # epoch 1 was not gathered
    check_by_hand(ours.calls.values, 4, ours.train_losses[3], ours.train_relu[3])


def test_is_active_fn_is_asked_once_per_forward_and_once_per_backward_pass():
    asked = []

    def fn(counter):
        asked.append(counter)
        return True

    torch.manual_seed(0)
    model = nn.Sequential(*[m for _ in range(4) for m in (nn.Linear(8, 8), nn.ReLU())])
    loss_fn = nn.MSELoss()
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn), OutputActivation(), ParameterGradientActivation()],
                           visualizer="none", is_active_fn=fn).attach(model)
    x = torch.randn(4, 8)
    asked.clear()
    loss_fn(model(x), x).backward()
    assert asked == [1, 1]  # 8 hooked modules and 8 parameters, 2 questions
    with torch.no_grad():
        model(x)
    assert asked == [1, 1, 1]  # no backward pass, no output hook
    ins.tick_epoch()
    asked.clear()
    loss_fn(model(x), x).backward()
    assert asked == [2, 2]  # the counter of the epoch being gathered


def test_a_failing_is_active_fn_is_reported_once_and_training_goes_on():
    from monitorch_widget import MonitorWarning

    state = {"fail": False}

    def fn(_):
        if state["fail"]:
            raise RuntimeError("flaky")
        return True

    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    ins = PyTorchInspector([OutputActivation()], visualizer="none", is_active_fn=fn).attach(model)
    state["fail"] = True
    with pytest.warns(MonitorWarning, match="is_active_fn raised RuntimeError"):
        for _ in range(3):
            model(torch.randn(3, 2, requires_grad=True)).sum().backward()
    state["fail"] = False
    ins.tick_epoch()
    assert not math.isnan(ins.history.series("Output Activations", "1", "activation_rate")[0])


class LossModel(nn.Module):
    """The pre-training client's shape: ``model(x, y)`` returns the loss, hooked as ``LossMetrics(loss_fn=model)``."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x, y):
        return nn.functional.cross_entropy(self.body(x), y)


def loss_model_run(kit):
    inspector_cls, loss_cls, _, grad_cls = kit
    torch.manual_seed(0)
    model = LossModel()
    calls = Calls()
    ins = inspector_cls([loss_cls(loss_fn=model, metrics=["val_loss_pushed"]), grad_cls(parameters=["weight"])],
                        module=model, visualizer=calls, is_active_fn=lambda _: model.training)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train_gen, eval_gen = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    losses = []
    for _ in range(3):
        model.train()
        for _ in range(4):
            x, y = torch.randn(8, 4, generator=train_gen), torch.randint(0, 3, (8,), generator=train_gen)
            opt.zero_grad()
            loss = model(x, y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        model.eval()
        with torch.no_grad():
            val = [model(torch.randn(8, 4, generator=eval_gen), torch.randint(0, 3, (8,), generator=eval_gen))
                   for _ in range(2)]
        ins.push_metric("val_loss_pushed", float(sum(val) / 2))
        model.train()
        ins.tick()
    return calls.values, losses


def test_loss_returning_model_records_training_losses_only():
    ours, losses = loss_model_run(OURS)
    theirs, _ = loss_model_run(THEIRS)
    assert_same(ours, theirs)
    for epoch in (1, 2, 3):
        assert ours[(epoch, "Loss", "Loss", "train_loss mean")] == pytest.approx(
            sum(losses[4 * (epoch - 1): 4 * epoch]) / 4, rel=1e-5)
        assert math.isnan(ours.get((epoch, "Loss", "Loss", "val_loss mean"), math.nan))  # evaluation passes gated


@pytest.mark.parametrize("package", ["ours", "monitorch"])
def test_parameter_norms_are_read_at_a_tick_after_an_evaluation_pass_turned_the_hooks_off(package):
    """``is_active_fn=lambda _: model.training``, an evaluation pass, ``model.train()``, then the tick: the tick is
    active and reads every weight's norm, although the last pass turned the hooks off (trial r10: every norm was
    NaN). Values by hand, and monitorch's the same."""
    if package == "ours":
        from monitorch_widget.lens import ParameterNorm
        inspector_cls = PyTorchInspector
    else:
        from monitorch.lens import ParameterNorm
        inspector_cls = TheirInspector
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = Calls()
    ins = inspector_cls([ParameterNorm()], visualizer=calls, is_active_fn=training_mode(model))
    ins.attach(model)
    gen = torch.Generator().manual_seed(3)
    for epoch in (1, 2):
        for _ in range(3):
            opt.zero_grad()
            model(torch.randn(8, 4, generator=gen)).pow(2).mean().backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            model(torch.randn(8, 4, generator=gen))
        model.train()
        want = {(epoch, f"{kind.title()} Norm", layer, "mean"): float(getattr(model[int(layer)], kind).norm())
                for kind in ("weight", "bias") for layer in ("0", "2")}
        ins.tick_epoch()
        got = {k: v for k, v in calls.values.items() if k[0] == epoch and k[1] in ("Weight Norm", "Bias Norm")}
        assert got == pytest.approx(want, rel=1e-6)
