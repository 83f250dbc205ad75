"""Against the PyPI release of monitorch (an optional extra): same calls, same numbers, and its inspector
can drive our record/widget."""

import pytest
import torch
from torch import nn

monitorch = pytest.importorskip("monitorch", reason="monitorch (optional extra) is not installed")

from monitorch.inspector import PyTorchInspector as TheirInspector
from monitorch.lens import LossMetrics as TheirLossMetrics
from monitorch.lens import OutputActivation as TheirOutputActivation
from monitorch.lens import ParameterGradientActivation as TheirGradientActivation

from monitorch_widget import PyTorchInspector, WidgetVisualizer
from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation


class Recorder:
    def __init__(self):
        self.calls = []

    def register_tags(self, tag, attrs):
        pass

    def plot_numerical_values(self, epoch, tag, values, ranges=None):
        self.calls.append((epoch, tag, {k: dict(v) for k, v in values.items()}))

    def plot_probabilities(self, epoch, tag, values):
        self.calls.append((epoch, tag, {k: dict(v) for k, v in values.items()}))

    def plot_relations(self, epoch, tag, values):
        self.calls.append((epoch, tag, {k: dict(v) for k, v in values.items()}))


def train(inspector_cls, lenses_factory, epochs=3):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2),
                          nn.Softmax(dim=1))
    loss_fn = nn.CrossEntropyLoss()
    rec = Recorder()
    ins = inspector_cls(lenses_factory(loss_fn), visualizer=rec)
    ins.attach(model)
    opt = torch.optim.Adam(model.parameters())
    g = torch.Generator().manual_seed(1)
    for _ in range(epochs):
        for _ in range(7):
            x, y = torch.randn(8, 2, generator=g), torch.randint(0, 2, (8,), generator=g)
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
        ins.tick_epoch()
    return rec.calls


def merged(calls):
    out = {}
    for epoch, tag, values in calls:
        for group, lines in values.items():
            for key, v in lines.items():
                out[(epoch, tag, group, key)] = v
    return out


def test_same_tags_keys_and_numbers_as_monitorch():
    theirs = merged(train(TheirInspector, lambda lf: [TheirLossMetrics(loss_fn=lf), TheirOutputActivation(),
                                                      TheirGradientActivation()]))
    ours = merged(train(PyTorchInspector, lambda lf: [LossMetrics(loss_fn=lf), OutputActivation(),
                                                      ParameterGradientActivation()]))
    assert set(ours) == set(theirs)
    for key, v in theirs.items():
        assert ours[key] == pytest.approx(v, rel=1e-5, abs=1e-6), key


def test_monitorch_inspector_drives_our_record_and_widget_visualizer():
    vis = WidgetVisualizer()
    calls = train(TheirInspector, lambda lf: [TheirLossMetrics(loss_fn=lf), TheirOutputActivation()])
    assert calls  # their inspector ran
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))
    loss_fn = nn.CrossEntropyLoss()
    ins = TheirInspector([TheirLossMetrics(loss_fn=loss_fn), TheirOutputActivation()], visualizer=vis)
    for _run in range(2):
        ins.attach(model)
        for _ in range(3):
            loss_fn(model(torch.randn(4, 2)), torch.zeros(4, dtype=torch.long)).backward()
            ins.tick_epoch()
        ins.detach()
    record = vis.record
    # monitorch restarts its counter at 0 after a detach; the record keeps whatever epochs it is given
    assert len(record.runs) == 2 and record.runs[0].epochs == [1.0, 2.0, 3.0] and record.runs[1].n_rows == 3
    assert record.panels() == ["Loss", "Output Activations", "Warning Output Activations"]
    assert record.runs[0].column("Loss", "Loss", "train_loss -σ", "lo") is not None
    assert 0 <= record.series("Output Activations", "1", "activation_rate")[-1] <= 1


def test_every_lens_registers_the_same_tag_attributes_as_monitorch_repr_included():
    """A monitorch visualizer receives the same ``register_tags`` calls: same tags, same TagAttributes, whose repr
    prints the type's name and ``ylim`` as monitorch's does (trial r7: ``type=<TagType.PROBABILITY: 1>`` and
    ``(1.0, -1.0)`` broke code comparing ``str(tag_attr)``)."""
    import monitorch.lens as theirs_lens

    import monitorch_widget.lens as ours_lens

    def registered(inspector_cls, lens_mod):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        tags = []

        class Tags(Recorder):
            def register_tags(self, tag, attrs):
                tags.append((tag, repr(attrs)))

        lenses = [lens_mod.LossMetrics(loss_fn=nn.MSELoss()), lens_mod.OutputActivation(),
                  lens_mod.ParameterGradientActivation(), lens_mod.OutputNorm(), lens_mod.OutputGradientGeometry(),
                  lens_mod.ParameterGradientGeometry(), lens_mod.ParameterNorm(),
                  lens_mod.ParameterUpdateGeometry(opt)]
        ins = inspector_cls(lenses, visualizer=Tags())
        ins.attach(model)
        return tags

    ours, theirs = registered(PyTorchInspector, ours_lens), registered(TheirInspector, theirs_lens)
    assert sorted(ours) == sorted(theirs)
    assert any("type=PROBABILITY" in r for _, r in ours) and any("ylim=(1, -1)" in r for _, r in ours)
