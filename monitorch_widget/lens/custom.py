"""A lens of the user's own, written for monitorch's lens interface, driven by our inspector.

monitorch's ``PyTorchInspector`` drives a lens through ``register_leaf_module(module, name, state)`` /
``register_non_leaf_module`` at attach, ``introduce_tags(visualizer)`` once, ``finalize_epoch()``,
``vizualize(visualizer, epoch)`` and ``reset_epoch()`` at each tick, and ``detach_from_module()``. A class that
implements these (a subclass of monitorch's ``AbstractLens``, or of ours after the import swap) is wrapped in
:class:`MonitorchStyleLens`, which calls them at the same points: its hooks are its own (run as it wrote them, host
syncs included), its plot calls go into the record and to a visualizer of the user's as our lenses' do. Not
called: ``register_foreign_preprocessor`` (monitorch's shared pre-processing of pushed losses and metrics, which our
inspector does not have) and ``start_sync`` / ``finish_sync`` (its distributed gathering; under
``torch.distributed`` the lens sees its own rank's data).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from torch import nn

from ..collect.summary import Summary
from .base import AbstractLens, Call, TagAttributes

#: what monitorch's inspector calls on a lens (the rest of its interface is optional here, see above)
METHODS = ("register_leaf_module", "register_non_leaf_module", "detach_from_module", "introduce_tags",
           "finalize_epoch", "vizualize", "reset_epoch")


def is_monitorch_style(lens: Any) -> bool:
    """Whether ``lens`` implements monitorch's lens interface rather than ours (one of our lenses overrides
    ``tags``)."""
    if isinstance(lens, type) or (isinstance(lens, AbstractLens) and type(lens).tags is not AbstractLens.tags):
        return False
    return all(callable(getattr(lens, m, None)) for m in METHODS)


class _Capture:
    """A visualizer that keeps what it is given: the tags, and the plot calls as :class:`Call` objects."""

    def __init__(self) -> None:
        self.tags: list[tuple[str, TagAttributes]] = []
        self.calls: list[Call] = []

    def register_tags(self, main_tag: str, tag_attr: TagAttributes) -> None:
        self.tags.append((main_tag, tag_attr))

    def plot_numerical_values(self, epoch: int, main_tag: str, values_dict: Any, ranges_dict: Any = None) -> None:
        self.calls.append(Call("numerical", main_tag, OrderedDict(values_dict), ranges_dict))

    def plot_probabilities(self, epoch: int, main_tag: str, values_dict: Any) -> None:
        self.calls.append(Call("probability", main_tag, OrderedDict(values_dict)))

    def plot_relations(self, epoch: int, main_tag: str, values_dict: Any) -> None:
        self.calls.append(Call("relations", main_tag, OrderedDict(values_dict)))


class MonitorchStyleLens(AbstractLens):
    """``lens`` (monitorch's interface, see the module docstring) as one of our lenses. ``state``: passed where
    monitorch passes its inspector state (``counter``, ``is_active``, ``attached``)."""

    def __init__(self, lens: Any) -> None:
        super().__init__()
        self.lens = lens
        self.state: Any = None  # the inspector's InspectorState, set by the inspector that owns this lens
        self._tags: list[tuple[str, TagAttributes]] | None = None

    @property
    def lens_name(self) -> str:
        return type(self.lens).__name__

    def tags(self) -> list[tuple[str, TagAttributes]]:
        if self._tags is None:
            capture = _Capture()
            self.lens.introduce_tags(capture)
            self._tags = capture.tags
        return self._tags

    def register_module(self, module: nn.Module, name: str, leaf: bool) -> None:
        (self.lens.register_leaf_module if leaf else self.lens.register_non_leaf_module)(module, name, self.state)

    def detach(self) -> None:
        super().detach()
        self.lens.detach_from_module()

    def compute(self, summaries: dict[int, list[Summary]]) -> list[Call]:
        self.lens.finalize_epoch()
        capture = _Capture()
        self.lens.vizualize(capture, self.state.counter if self.state is not None else 0)
        return capture.calls

    def reset_epoch(self) -> None:
        super().reset_epoch()
        self.lens.reset_epoch()
