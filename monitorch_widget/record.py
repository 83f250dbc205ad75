"""The run record: runs -> panels -> columns (series) -> one value per epoch.

It is the single source of truth for every view (widget, ``'print'``, static export, saved files) and
the one interface between data collection and drawing. It speaks monitorch's visualizer vocabulary
(``register_tags`` / ``plot_numerical_values`` / ``plot_probabilities`` / ``plot_relations``), so both our
lenses and monitorch's own inspector can feed it, and it publishes every change as a small event to
subscribers (the widget sync turns those into binary deltas). Layout: ``docs/protocol.md``.

Invariants: column and panel indices never change once given; a band's "hi" column directly follows its
"lo" column; rows only grow; a row's values are rewritten only while it is the run's open (current or
provisional) row; NaN means "no value".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

Event = tuple[Any, ...]
KINDS = {"NUMERICAL": "numerical", "PROBABILITY": "probability", "RELATIONS": "relations"}


@dataclass
class Panel:
    tag: str
    kind: str
    big: bool
    logy: bool
    lens: str | None = None


@dataclass
class Column:
    index: int
    panel: str
    group: str
    key: str
    role: str  # "line" | "lo" | "hi"
    band_of: str | None = None
    module_type: str | None = None


@dataclass
class Run:
    id: int
    label: str
    module_types: dict[str, str] = field(default_factory=dict)
    panels: list[Panel] = field(default_factory=list)
    columns: list[Column] = field(default_factory=list)
    epochs: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    provisional: bool = False
    problems: dict[tuple[str, str], int] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    _data: np.ndarray = field(default_factory=lambda: np.full((16, 16), np.nan))
    _col_index: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    _panel_index: dict[str, int] = field(default_factory=dict)
    _column_dicts: list[dict[str, Any]] = field(default_factory=list)
    open_row: int | None = None

    @property
    def n_rows(self) -> int:
        return len(self.epochs)

    @property
    def data(self) -> np.ndarray:
        """[n_rows, n_cols] float64 view (NaN = gap). Copy it before keeping it."""
        return self._data[: self.n_rows, : len(self.columns)]

    def _ensure(self, rows: int, cols: int) -> None:
        r, c = self._data.shape
        if rows <= r and cols <= c:
            return
        grown = np.full((max(r, 1) * 2 if rows > r else r, max(c, 1) * 2 if cols > c else c), np.nan)
        grown[:r, :c] = self._data
        self._data = grown
        self._ensure(rows, cols)

    def column(self, panel: str, group: str, key: str, role: str = "line") -> int | None:
        return self._col_index.get((panel, group, key, role))

    def series(self, panel: str, group: str, key: str, role: str = "line") -> np.ndarray:
        idx = self.column(panel, group, key, role)
        if idx is None:
            known = sorted({(c.panel, c.group, c.key) for c in self.columns})
            raise KeyError(f"run {self.id} has no series panel={panel!r} group={group!r} key={key!r}; "
                           f"known: {known[:12]}{' ...' if len(known) > 12 else ''}")
        return self.data[:, idx].copy()

    def groups(self, panel: str) -> list[str]:
        seen: dict[str, None] = {}
        for c in self.columns:
            if c.panel == panel:
                seen.setdefault(c.group, None)
        return list(seen)

    def column_dicts(self) -> list[dict[str, Any]]:
        """Columns as plain dicts (cached: columns never change once created, only new ones are added)."""
        cache = self._column_dicts
        cache.extend(asdict(c) for c in self.columns[len(cache):])
        return list(cache)

    def problem_list(self) -> list[dict[str, Any]]:
        return [{"lens": lens, "message": msg, "count": n} for (lens, msg), n in self.problems.items()]


class Record:
    """All runs of one inspector. Also a monitorch-style visualizer (the calls feed the current run)."""

    def __init__(self) -> None:
        self.runs: list[Run] = []
        self._tags: dict[str, Panel] = {}
        self._subscribers: list[Callable[[Event], None]] = []
        self.state = "idle"

    # --- subscription -----------------------------------------------------------------------------
    def subscribe(self, fn: Callable[[Event], None]) -> Callable[[], None]:
        self._subscribers.append(fn)

        def unsubscribe() -> None:
            if fn in self._subscribers:
                self._subscribers.remove(fn)

        return unsubscribe

    def _emit(self, *event: Any) -> None:
        for fn in list(self._subscribers):
            fn(event)

    # --- runs and rows -----------------------------------------------------------------------------
    @property
    def current(self) -> Run | None:
        return self.runs[-1] if self.runs else None

    def start_run(self, label: str, module_types: Mapping[str, str] | None = None) -> Run:
        self._close_open_row()
        run = Run(id=len(self.runs), label=label, module_types=dict(module_types or {}))
        self.runs.append(run)
        self.state = "training"
        self._emit("run", run.id, {"id": run.id, "label": run.label})
        self._emit_status()
        return run

    def open_row(self, epoch: float, *, provisional: bool = False) -> int:
        """Make the row for ``epoch`` current; a provisional row for the same epoch is cleared and reused."""
        run = self.current or self.start_run("run 1")
        if run.open_row is not None and (run.provisional or run.epochs[run.open_row] == epoch):
            row = run.open_row
            run._data[row, :] = np.nan
            run.epochs[row] = float(epoch)
            if run.columns:
                self._emit("cells", run.id, row, np.arange(len(run.columns), dtype=np.int32),
                           np.full(len(run.columns), np.nan))
        else:
            self._close_open_row()
            row = run.n_rows
            run.epochs.append(float(epoch))
            run.times.append(time.time() - run.started)
            run._ensure(row + 1, len(run.columns))
            run.open_row = row
        run.provisional = provisional
        run.times[row] = time.time() - run.started
        self.state = "training"
        self._emit("row", run.id, {"row": row, "epoch": float(epoch), "time": run.times[row],
                                   "provisional": provisional})
        return row

    def close_row(self) -> None:
        """The open row becomes final (the epoch was ticked)."""
        run = self.current
        if run is None or run.open_row is None:
            return
        row = run.open_row
        run.times[row] = time.time() - run.started
        was_provisional = run.provisional
        run.provisional = False
        run.open_row = None
        if was_provisional:
            self._emit("row", run.id, {"row": row, "epoch": run.epochs[row], "time": run.times[row],
                                       "provisional": False})
        self._emit_status()

    def _close_open_row(self) -> None:
        run = self.current
        if run is not None and run.open_row is not None:
            if run.provisional:
                # An intra-epoch estimate that never became final: drop it rather than keep a partial row.
                row = run.open_row
                run._data[row, :] = np.nan
                run.provisional = False
                self._emit("cells", run.id, row, np.arange(len(run.columns), dtype=np.int32),
                           np.full(len(run.columns), np.nan))
            run.open_row = None

    def settle(self) -> None:
        """The code that was training stopped running (end of a notebook cell): show the record as idle."""
        if self.state == "training":
            self.state = "idle"
            self._emit_status()

    def import_runs(self, other: Record) -> list[Run]:
        """Append copies of ``other``'s runs (e.g. ``monitorch_widget.load(path)``) as earlier runs, so a new
        training run attached afterwards is drawn over them. Views are told through the usual events."""
        self._close_open_row()
        added = []
        for src in other.runs:
            final = src.n_rows - (1 if src.provisional else 0)
            run = Run(id=len(self.runs), label=src.label, module_types=dict(src.module_types),
                      epochs=list(src.epochs[:final]), times=list(src.times[:final]),
                      problems=dict(src.problems))
            self.runs.append(run)
            self._emit("run", run.id, {"id": run.id, "label": run.label})
            for panel in src.panels:
                run._panel_index[panel.tag] = len(run.panels)
                run.panels.append(Panel(**asdict(panel)))
                self._emit("panel", run.id, asdict(panel))
            for col in src.columns:
                run.columns.append(Column(**asdict(col)))
                run._col_index[(col.panel, col.group, col.key, col.role)] = col.index
                self._emit("column", run.id, asdict(col))
            run._ensure(max(final, 1), max(len(run.columns), 1))
            run._data[:final, : len(run.columns)] = src.data[:final]
            cols = np.arange(len(run.columns), dtype=np.int32)
            for row in range(final):
                self._emit("row", run.id, {"row": row, "epoch": run.epochs[row], "time": run.times[row],
                                           "provisional": False})
                self._emit("cells", run.id, row, cols, run._data[row, : len(run.columns)].copy())
            added.append(run)
        self._emit_status()
        return added

    def end(self) -> None:
        """Training finished (detach): close the open row and mark the record done."""
        self._close_open_row()
        self.state = "done"
        self._emit_status()

    # --- problems and status ----------------------------------------------------------------------
    def problem(self, lens: str, message: str, count: int) -> None:
        run = self.current or self.start_run("run 1")
        run.problems[(lens, message)] = count
        self._emit("problem", run.id, {"lens": lens, "message": message, "count": count})
        self._emit_status()

    def status(self) -> dict[str, Any]:
        run = self.current
        if run is None:
            return {"run": None, "label": None, "epoch": None, "sec_per_epoch": None, "state": self.state,
                    "problems": 0}
        final = run.n_rows - (1 if run.provisional else 0)
        spe = None
        if final >= 1:
            spe = run.times[final - 1] / final
        return {"run": run.id, "label": run.label, "epoch": run.epochs[final - 1] if final else None,
                "sec_per_epoch": spe, "state": self.state, "problems": sum(run.problems.values())}

    def _emit_status(self) -> None:
        self._emit("status", self.status())

    # --- monitorch visualizer interface ---------------------------------------------------------
    def register_tags(self, main_tag: str, tag_attr: Any, lens: str | None = None) -> None:
        kind = KINDS.get(getattr(getattr(tag_attr, "type", None), "name", "NUMERICAL"), "numerical")
        self._tags[main_tag] = Panel(main_tag, kind, bool(getattr(tag_attr, "big_plot", False)),
                                     bool(getattr(tag_attr, "logy", False)), lens)

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
        run = self.current or self.start_run("run 1")
        if run.open_row is None or run.epochs[run.open_row] != float(epoch):
            self.open_row(epoch)
        row = run.open_row
        assert row is not None
        self._panel(run, tag, kind)
        cols: list[int] = []
        vals: list[float] = []
        for group, lines in values.items():
            for key, value in lines.items():
                cols.append(self._column(run, tag, str(group), str(key), "line", None))
                vals.append(_as_float(value))
        for group, bands in (ranges or {}).items():
            line_keys = [str(k) for k in values.get(group, {})]
            for names, (lo, hi) in bands.items():
                lo_name, hi_name = (str(n) for n in names)
                owner = _band_owner(lo_name, line_keys)
                cols.append(self._column(run, tag, str(group), lo_name, "lo", owner))
                vals.append(_as_float(lo))
                cols.append(self._column(run, tag, str(group), hi_name, "hi", owner))
                vals.append(_as_float(hi))
        if not cols:
            return
        run._ensure(row + 1, len(run.columns))
        idx = np.asarray(cols, dtype=np.int32)
        arr = np.asarray(vals, dtype=np.float64)
        run._data[row, idx] = arr
        self._emit("cells", run.id, row, idx, arr)

    def _panel(self, run: Run, tag: str, kind: str) -> None:
        if tag in run._panel_index:
            return
        declared = self._tags.get(tag)
        panel = (Panel(declared.tag, declared.kind, declared.big, declared.logy, declared.lens) if declared
                 else Panel(tag, kind, False, False, None))
        run._panel_index[tag] = len(run.panels)
        run.panels.append(panel)
        self._emit("panel", run.id, asdict(panel))

    def _column(self, run: Run, panel: str, group: str, key: str, role: str, band_of: str | None) -> int:
        ckey = (panel, group, key, role)
        idx = run._col_index.get(ckey)
        if idx is not None:
            return idx
        idx = len(run.columns)
        big = run.panels[run._panel_index[panel]].big
        col = Column(idx, panel, group, key, role, band_of, None if big else run.module_types.get(group))
        run.columns.append(col)
        run._col_index[ckey] = idx
        self._emit("column", run.id, asdict(col))
        return idx

    # --- reading ----------------------------------------------------------------------------------
    def series(self, panel: str, group: str, key: str, run: int = -1, role: str = "line") -> np.ndarray:
        """Per-epoch values of one line of one run (default: the latest run); NaN where missing."""
        if not self.runs:
            raise LookupError("the record is empty: attach the inspector and tick at least one epoch")
        return self.runs[run].series(panel, group, key, role)

    def panels(self, run: int = -1) -> list[str]:
        return [p.tag for p in self.runs[run].panels] if self.runs else []

    def to_html(self, path: Any, *, title: str | None = None) -> Any:
        """One self-contained, offline, interactive HTML file of every run (see :mod:`monitorch_widget.export`)."""
        from .export import to_html

        return to_html(self, path, title=title)

    def _ipython_display_(self) -> None:
        """A record on its own (e.g. ``monitorch_widget.load(path)``) displays as a live widget."""
        from IPython.display import display

        from .widget import MonitorWidget

        display(MonitorWidget(self))

    def to_bqplot(self, panel: str, *, group: str | None = None, runs: str = "all") -> Any:
        """bqplot figure(s) of one panel (optional extra ``bqplot``); see :func:`monitorch_widget.bq.to_bqplot`."""
        from .bq import to_bqplot

        return to_bqplot(self, panel, group=group, runs=runs)

    def snapshot(self) -> dict[str, Any]:
        """Protocol 2a (without ``seq``): everything a new view needs, binary columns as bytes."""
        runs = []
        for run in self.runs:
            data = np.ascontiguousarray(run.data, dtype="<f8")
            runs.append({
                "id": run.id, "label": run.label, "provisional": run.provisional,
                "panels": [asdict(p) for p in run.panels], "columns": run.column_dicts(),
                "problems": run.problem_list(), "n_rows": run.n_rows, "n_cols": len(run.columns),
                "epochs": np.asarray(run.epochs, dtype="<f8").tobytes(),
                "times": np.asarray(run.times, dtype="<f8").tobytes(),
                "data": data.tobytes(),
            })
        return {"version": 1, "runs": runs, "status": self.status()}

    def __repr__(self) -> str:
        return f"Record(runs={len(self.runs)}, epochs={[r.n_rows for r in self.runs]})"


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _band_owner(lo_name: str, line_keys: list[str]) -> str | None:
    """The line a band surrounds: same prefix before the last space ('train_loss -σ' -> 'train_loss mean'),
    or the group's first line when the band names have no prefix (OutputNorm's '-σ')."""
    prefix = lo_name.rsplit(" ", 1)[0] + " " if " " in lo_name else ""
    for key in line_keys:
        if key.startswith(prefix):
            return key
    return line_keys[0] if line_keys else None
