"""monitorch's visualizer interface, and the base of our visualizers that keep a record.

:class:`AbstractVisualizer` is ``monitorch.visualizer.AbstractVisualizer``'s interface (same abstract methods
and signatures): subclass it to write a visualizer that our inspector *and* monitorch's drive alike.

:class:`RecordView` is a visualizer that draws or writes a :class:`~monitorch_widget.record.Record`
(``'print'``, ``'matplotlib'``, the recorder). Given to our inspector, an unused one is *bound* to the
inspector's own record (:func:`~.resolve.resolve_visualizer`): it then reads that record and hears the end of
each tick (:meth:`RecordView.on_tick`). Driven by anything else (monitorch's inspector, a player), the
monitorch calls fill a record of its own, one run per ``reset_fig()`` (monitorch's inspector calls it at
``detach``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Any

from ..lens.base import TagAttributes
from ..record import Record


class AbstractVisualizer(ABC):
    """monitorch's visualizer interface: tags are registered once, then each epoch brings plot calls.

    ``values_dict``: ``{group: {key: value}}`` (a group is a layer, or the tag itself for a big plot);
    ``ranges_dict``: ``{group: {(lo_key, hi_key): (lo, hi)}}`` (bands such as ``('-σ', '+σ')``).
    """

    @abstractmethod
    def register_tags(self, main_tag: str, tag_attr: TagAttributes) -> None:
        """Declare the plot ``main_tag`` and how it is drawn (``tag_attr.type``, ``logy``, ``big_plot``)."""

    @abstractmethod
    def plot_numerical_values(self, epoch: int, main_tag: str, values_dict: OrderedDict[str, dict[str, float]],
                              ranges_dict: OrderedDict[str, dict[tuple[str, str], tuple[float, float]]] | None = None
                              ) -> None:
        """One epoch's values (and optional bands) of a numerical plot."""

    @abstractmethod
    def plot_probabilities(self, epoch: int, main_tag: str, values_dict: OrderedDict[str, dict[str, float]]) -> None:
        """One epoch's proportions in [0, 1] (activation and death rates)."""

    @abstractmethod
    def plot_relations(self, epoch: int, main_tag: str, values_dict: OrderedDict[str, dict[str, float]]) -> None:
        """One epoch's values to compare with each other (e.g. layers' norms)."""


class DummyVisualizer(AbstractVisualizer):
    """Draws nothing (monitorch's ``'dummy'``). Our inspector still records: see ``inspector.history``."""

    def register_tags(self, main_tag: str, tag_attr: TagAttributes) -> None:
        pass

    def plot_numerical_values(self, epoch: int, main_tag: str, values_dict: OrderedDict[str, dict[str, float]],
                              ranges_dict: OrderedDict[str, dict[tuple[str, str], tuple[float, float]]] | None = None
                              ) -> None:
        pass

    def plot_probabilities(self, epoch: int, main_tag: str, values_dict: OrderedDict[str, dict[str, float]]) -> None:
        pass

    def plot_relations(self, epoch: int, main_tag: str, values_dict: OrderedDict[str, dict[str, float]]) -> None:
        pass


class RecordView(AbstractVisualizer):
    """A visualizer reading a :class:`Record`: bound to an inspector's, or filled by monitorch calls."""

    def __init__(self, record: Record | None = None) -> None:
        self._record = record
        self._new_run = record is None or record.current is None
        self.bound = record is not None  # reads a record an inspector writes (not one its own calls fill)
        self._open_epoch: float | None = None  # epoch whose calls arrive now (driven by monitorch calls)

    @property
    def record(self) -> Record:
        """The record this view reads (its own, created on first use, unless bound to an inspector's)."""
        if self._record is None:
            self._record = Record()
            self._new_run = True
        return self._record

    def bind(self, record: Record) -> None:
        """Read ``record`` (an inspector's) from now on; only an unused view can be bound."""
        if self._record is not None and self._record is not record and self._record.runs:
            raise ValueError(f"this {type(self).__name__} already holds runs of another record; "
                             "create a new one for this inspector")
        self._record = record
        self._new_run = False
        self.bound = True

    def on_tick(self) -> None:
        """The inspector that owns the bound record finished a tick (the epoch's row is final)."""

    def on_epoch_calls(self) -> None:
        """Driven by monitorch calls (its inspector, a player): one epoch's calls are complete. monitorch signals
        no end of epoch, so this runs when the next epoch's first call arrives, and at ``reset_fig()``."""

    def _arrive(self, epoch: float) -> None:
        if self._open_epoch is not None and self._open_epoch != epoch:
            self.on_epoch_calls()
        self._open_epoch = epoch

    def close_epoch(self) -> None:
        """The open epoch's calls are complete (``reset_fig``, ``show_fig``, ``close``)."""
        if self._open_epoch is not None:
            self._open_epoch = None
            self.on_epoch_calls()

    # --- monitorch's interface: calls fill this view's own record -----------------------------------
    def register_tags(self, main_tag: str, tag_attr: TagAttributes) -> None:
        self.record.register_tags(main_tag, tag_attr)

    def _ensure_run(self) -> Record:
        record = self.record
        if self._new_run:
            self._new_run = False
            record.start_run(f"run {len(record.runs) + 1}")
        return record

    def plot_numerical_values(self, epoch: int, main_tag: str, values_dict: OrderedDict[str, dict[str, float]],
                              ranges_dict: OrderedDict[str, dict[tuple[str, str], tuple[float, float]]] | None = None
                              ) -> None:
        self._arrive(epoch)
        self._ensure_run().plot_numerical_values(epoch, main_tag, values_dict, ranges_dict)

    def plot_probabilities(self, epoch: int, main_tag: str, values_dict: OrderedDict[str, dict[str, float]]) -> None:
        self._arrive(epoch)
        self._ensure_run().plot_probabilities(epoch, main_tag, values_dict)

    def plot_relations(self, epoch: int, main_tag: str, values_dict: OrderedDict[str, dict[str, float]]) -> None:
        self._arrive(epoch)
        self._ensure_run().plot_relations(epoch, main_tag, values_dict)

    def reset_fig(self) -> Any:
        """monitorch's inspector calls this at ``detach``: the next calls start a new run. (A view bound to
        an inspector's record leaves it alone: that inspector starts its runs itself.)"""
        self.close_epoch()
        if self.bound:
            return self
        if self._record is not None:
            self._record.end()
        self._new_run = True
        return self


def is_visualizer(obj: Any) -> bool:
    """Has monitorch's four visualizer methods (the duck type both inspectors accept)."""
    return all(callable(getattr(obj, m, None)) for m in
               ("register_tags", "plot_numerical_values", "plot_probabilities", "plot_relations"))
