"""The record's door in: monitorch's visualizer vocabulary (``register_tags``, ``plot_numerical_values``,
``plot_probabilities``, ``plot_relations``) and a tick's lens calls at once (``plot_calls``), written into the
current run's open row as columns (:mod:`.ingest`: one plan per tag, reused while a call keeps its shape).
Mixed into :class:`~.record.Record`, whose runs, rows and events these write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from typing import Any

from .ingest import KINDS, IngestPlan, TickWrite, columns_of, limits, write_values
from .run import Column, Panel, Run


class MonitorchCalls:
    """monitorch's visualizer interface on a record (the record provides what is declared below)."""

    _tags: dict[str, Panel]
    _plans: dict[tuple[int, str], IngestPlan]  # (run id, tag) -> the columns its last call wrote
    _tick_write: TickWrite

    def _writable(self) -> Run:
        raise NotImplementedError

    def open_row(self, epoch: float, *, provisional: bool = False, step: float = float("nan")) -> int:
        raise NotImplementedError

    def _emit(self, *event: Any) -> None:
        raise NotImplementedError

    def register_tags(self, main_tag: str, tag_attr: Any, lens: str | None = None) -> None:
        kind = KINDS.get(getattr(getattr(tag_attr, "type", None), "name", "NUMERICAL"), "numerical")
        annotate = getattr(tag_attr, "annotate", None)
        self._tags[main_tag] = Panel(main_tag, kind, bool(getattr(tag_attr, "big_plot", False)),
                                     bool(getattr(tag_attr, "logy", False)), lens, limits(getattr(tag_attr, "ylim", None)),
                                     None if annotate is None else bool(annotate))

    def plot_numerical_values(self, epoch: int, main_tag: str, values_dict: Mapping[str, Mapping[str, float]],
                              ranges_dict: Mapping[str, Mapping[tuple[str, str], tuple[float, float]]] | None = None
                              ) -> None:
        self._ingest(epoch, main_tag, "numerical", values_dict, ranges_dict)

    def plot_probabilities(self, epoch: int, main_tag: str, values_dict: Mapping[str, Mapping[str, float]]) -> None:
        self._ingest(epoch, main_tag, "probability", values_dict, None)

    def plot_relations(self, epoch: int, main_tag: str, values_dict: Mapping[str, Mapping[str, float]]) -> None:
        self._ingest(epoch, main_tag, "relations", values_dict, None)

    def _ingest(self, epoch: int, tag: str, kind: str, values: Mapping[str, Mapping[str, float]],
                ranges: Mapping[str, Mapping[tuple[str, str], tuple[float, float]]] | None) -> None:
        run = self._writable()
        if run.open_row is None or run.epochs[run.open_row] != float(epoch):
            self.open_row(epoch)
        row = run.open_row
        assert row is not None
        plan = self._plans.get((run.id, tag))
        raw = plan.match(values, ranges) if plan is not None else None
        if plan is not None and raw is not None:
            idx = plan.columns  # the same shape as the previous call of this tag: the same columns
        else:
            self._panel(run, tag, kind)
            idx, raw = columns_of(values, ranges, lambda *c: self._column(run, tag, *c))
            self._plans[(run.id, tag)] = IngestPlan.of(values, ranges, idx)
        if not idx.size:
            return
        self._emit("cells", run.id, row, idx, write_values(run, row, idx, raw))

    def plot_calls(self, epoch: int, calls: Sequence[tuple[Any, ...]]) -> None:
        """A tick's lens calls (method, tag, values, ranges) in order: what one visualizer call each writes,
        written at once with one ``cells`` event when every call has the shape its tag's last call had (the
        usual tick: :class:`~.ingest.TickWrite`); else call by call."""
        run = self._writable()
        if run.open_row is None or run.epochs[run.open_row] != float(epoch):
            self.open_row(epoch)
        row = run.open_row
        assert row is not None
        found = self._tick_write.values(self._plans, run.id, calls)
        if found is None:
            for method, tag, values, ranges, *_ in calls:  # a Call may carry more fields (record_only)
                self._ingest(epoch, tag, method, values, ranges if method == "numerical" else None)
            return
        idx, raw = found
        if idx.size:
            self._emit("cells", run.id, row, idx, write_values(run, row, idx, raw))

    def _panel(self, run: Run, tag: str, kind: str) -> None:
        if run.has_panel(tag):
            return
        declared = self._tags.get(tag)
        panel = run.add_panel(replace(declared) if declared else Panel(tag, kind, False, False, None))
        self._emit("panel", run.id, asdict(panel))

    def _column(self, run: Run, panel: str, group: str, key: str, role: str, band_of: str | None) -> int:
        idx = run.column(panel, group, key, role)
        if idx is not None:
            return idx
        idx = len(run.columns)
        big = run.panel(panel).big
        col = run.add_column(Column(idx, panel, group, key, role, band_of,
                                    None if big else run.module_types.get(group)))
        self._emit("column", run.id, asdict(col))
        return idx
