"""A lens of the user's own, written for monitorch's lens interface, runs under our inspector with only the import
changed (trial r12: our AbstractLens raised a bare NotImplementedError). Its calls equal those monitorch's inspector
makes, its values land in the record, and its hooks go at detach."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

import monitorch_widget
from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import AbstractLens
from monitorch_widget.visualizer import TagAttributes, TagType


def mean_relu_lens(base: type) -> type:
    """monitorch's lens interface: the mean of every ReLU output of the epoch (its own hooks, host values)."""

    class MeanReLU(base):  # type: ignore[misc, valid-type]
        def __init__(self):
            self.values, self.handles, self.names = [], [], []

        def register_leaf_module(self, module, name, state):
            if isinstance(module, nn.ReLU):
                self.names.append(name)
                self.handles.append(module.register_forward_hook(
                    lambda m, a, out: self.values.append(float(out.mean())) if state.is_active else None))

        def register_non_leaf_module(self, module, name, state):
            pass

        def register_foreign_preprocessor(self, ext_ppr, state):
            pass

        def detach_from_module(self):
            for h in self.handles:
                h.remove()
            self.handles = []

        def introduce_tags(self, vizualizer):
            vizualizer.register_tags("Mean ReLU", TagAttributes(logy=False, big_plot=True, annotate=False,
                                                                type=TagType.NUMERICAL))

        def finalize_epoch(self):
            pass

        def vizualize(self, vizualizer, epoch):
            vizualizer.plot_numerical_values(epoch, "Mean ReLU", OrderedDict(
                [("Mean ReLU", {"mean": sum(self.values) / max(len(self.values), 1)})]))

        def reset_epoch(self):
            self.values = []

        def start_sync(self, dst_rank):
            pass

        def finish_sync(self):
            pass

    return MeanReLU


class Calls:
    def __init__(self):
        self.calls = []

    def register_tags(self, tag, attrs):
        self.calls.append(("tags", tag, repr(attrs)))

    def plot_numerical_values(self, epoch, tag, values, ranges=None):
        self.calls.append(("numerical", epoch, tag, {k: dict(v) for k, v in values.items()}))

    def plot_probabilities(self, epoch, tag, values):
        self.calls.append(("probability", epoch, tag, {k: dict(v) for k, v in values.items()}))

    def plot_relations(self, epoch, tag, values):
        self.calls.append(("relations", epoch, tag, {k: dict(v) for k, v in values.items()}))


def run(inspector_cls, lens, visualizer):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    ins = inspector_cls([lens], visualizer=visualizer)
    ins.attach(model)
    g = torch.Generator().manual_seed(1)
    outs = []
    for _ in range(2):
        epoch = []
        for _ in range(3):
            x = torch.randn(5, 4, generator=g)
            epoch.append(float(model[1](model[0](x)).mean()))
            model(x)
        outs.append(sum(epoch) / len(epoch))
        ins.tick_epoch()
    return ins, model, outs


def test_a_monitorch_style_lens_records_its_values_and_detaches():
    lens = mean_relu_lens(AbstractLens)()
    ins, model, by_hand = run(PyTorchInspector, lens, "none")
    assert list(ins.history.series("Mean ReLU", "Mean ReLU", "mean")) == pytest.approx(by_hand, rel=1e-6)
    assert lens.names == ["1"] and len(lens.handles) == 1
    ins.detach()
    assert lens.handles == [] and not model[1]._forward_hooks


def test_a_monitorch_style_lens_makes_the_calls_monitorchs_inspector_makes():
    pytest.importorskip("monitorch")
    from monitorch.inspector import PyTorchInspector as TheirInspector
    from monitorch.lens import AbstractLens as TheirAbstractLens

    ours, theirs = Calls(), Calls()
    run(PyTorchInspector, mean_relu_lens(monitorch_widget.lens.AbstractLens)(), ours)
    run(TheirInspector, mean_relu_lens(TheirAbstractLens)(), theirs)
    assert ours.calls == theirs.calls and len(theirs.calls) == 3
    # the same class written against monitorch's own AbstractLens runs under ours too
    mixed = Calls()
    run(PyTorchInspector, mean_relu_lens(TheirAbstractLens)(), mixed)
    assert mixed.calls == theirs.calls


def test_a_lens_with_neither_interface_is_refused_naming_both():
    with pytest.raises(TypeError, match="register_leaf_module"):
        PyTorchInspector([object()], visualizer="none")
