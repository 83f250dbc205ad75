"""One run of the record: its panels (charts), columns (series) and one row of values per epoch.

A :class:`Run` owns its storage: only its own methods write the value matrix and the lookup tables, so the
invariants below hold wherever a run is built (live ticks, an imported history, a loaded file):
column and panel indices never change once given; a band's ``hi`` column directly follows its ``lo``
column; rows only grow; NaN means "no value". At most the last row is *provisional* (an intra-epoch
estimate that the tick replaces); :attr:`Run.final_rows` counts the rows before it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .definitions import VERSION as DEFINITIONS_VERSION


@dataclass
class Panel:
    """One chart: a lens tag (e.g. ``"Output Activations"``) and how monitorch asks it to be drawn."""

    tag: str
    kind: str  # "numerical" | "probability" | "relations"
    big: bool
    logy: bool
    lens: str | None = None
    ylim: list[float] | None = None  # a fixed y range [lo, hi] (monitorch's TagAttributes.ylim), else automatic
    #: monitorch's TagAttributes.annotate as the lens declared it (a player replays it); None in older histories
    annotate: bool | None = None


@dataclass
class Column:
    """One series of a panel: ``group`` is the layer (or ``"loss"``), ``key`` the quantity."""

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
    #: optimizer steps taken in this run when each row was written (NaN: not counted, e.g. an older history)
    steps: list[float] = field(default_factory=list)
    provisional: bool = False
    problems: dict[tuple[str, str], int] = field(default_factory=dict)
    #: the keys of ``problems`` that are notices (information, a ``MonitorNotice``: a frozen parameter named, a
    #: module no lens watches), not problems (a ``MonitorWarning``: a hook failure, NaN/Inf values)
    notices: set[tuple[str, str]] = field(default_factory=set)
    #: group -> [[first epoch, last epoch or None (still stopped)], ...]: measurement stopped on purpose
    unrecorded: dict[str, list[list[float | None]]] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    open_row: int | None = None  # the row ticks currently write (None between ticks)
    definitions: int = DEFINITIONS_VERSION  # the measuring rules' version (record/definitions.py)
    imported: bool = False  # a copy of another record's run (Record.import_runs): shown, never written
    _data: np.ndarray = field(default_factory=lambda: np.full((16, 16), np.nan))
    _col_index: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    _panel_index: dict[str, int] = field(default_factory=dict)
    _column_dicts: list[dict[str, Any]] = field(default_factory=list)

    # --- shape ------------------------------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        return len(self.epochs)

    @property
    def empty(self) -> bool:
        """No row was written (an ``update_every`` estimate of an epoch that never ended is dropped, its columns
        carry no value): the next run started takes its place (``Record.start_run``)."""
        return not self.epochs and not self.imported

    @property
    def final_rows(self) -> int:
        """Rows that are final: the provisional last row, if any, excluded."""
        return self.n_rows - (1 if self.provisional else 0)

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

    # --- writing (the record's and the history file's only way in) ------------------------------------
    def has_panel(self, tag: str) -> bool:
        return tag in self._panel_index

    def panel(self, tag: str) -> Panel:
        return self.panels[self._panel_index[tag]]

    def add_panel(self, panel: Panel) -> Panel:
        self._panel_index[panel.tag] = len(self.panels)
        self.panels.append(panel)
        return panel

    def add_column(self, column: Column) -> Column:
        """Append ``column``; its ``index`` must be the next position (indices never change)."""
        if column.index != len(self.columns):
            raise ValueError(f"column index {column.index} != position {len(self.columns)}")
        if column.panel not in self._panel_index:
            raise ValueError(f"column of unknown panel {column.panel!r}")
        self.columns.append(column)
        self._col_index[(column.panel, column.group, column.key, column.role)] = column.index
        return column

    def append_row(self, epoch: float, elapsed: float, step: float = float("nan")) -> int:
        row = self.n_rows
        self.epochs.append(float(epoch))
        self.times.append(elapsed)
        self.steps.append(float(step))
        self._ensure(row + 1, len(self.columns))
        return row

    def clear_row(self, row: int) -> None:
        self._data[row, :] = np.nan

    def drop_last_row(self) -> None:
        """Remove the last row (an abandoned provisional one: the epoch never ended)."""
        self.clear_row(self.n_rows - 1)
        self.epochs.pop()
        self.times.pop()
        self.steps.pop()

    def write(self, row: int, cols: np.ndarray, values: np.ndarray) -> None:
        r, c = self._data.shape
        if row >= r or len(self.columns) > c:
            self._ensure(row + 1, len(self.columns))
        self._data[row].put(cols, values)  # as data[row, cols] = values (the last of repeated columns wins)

    def set_rows(self, epochs: list[float], times: list[float], data: np.ndarray,
                 steps: list[float] | None = None) -> None:
        """Replace every row at once (a loaded or imported history): ``data`` is [len(epochs), n_cols]."""
        self.epochs, self.times = list(epochs), list(times)
        self.steps = list(steps) if steps is not None else [float("nan")] * len(self.epochs)
        self.provisional, self.open_row = False, None
        self._ensure(max(len(epochs), 1), max(len(self.columns), 1))
        if len(epochs):
            self._data[: len(epochs), : len(self.columns)] = data

    def final_copy(self, new_id: int) -> Run:
        """A copy holding only the final rows, under id ``new_id`` (what import and saving keep)."""
        run = Run(id=new_id, label=self.label, module_types=dict(self.module_types),
                  problems=dict(self.problems), notices=set(self.notices), started=self.started, definitions=self.definitions,
                  unrecorded={g: [list(s) for s in spans] for g, spans in self.unrecorded.items()})
        for p in self.panels:
            run.add_panel(Panel(**asdict(p)))
        for c in self.columns:
            run.add_column(Column(**asdict(c)))
        final = self.final_rows
        run.set_rows(self.epochs[:final], self.times[:final], self.data[:final], self.steps[:final])
        return run

    # --- reading ----------------------------------------------------------------------------------
    def column(self, panel: str, group: str, key: str, role: str = "line") -> int | None:
        return self._col_index.get((panel, group, key, role))

    def series(self, panel: str, group: str, key: str, role: str = "line") -> np.ndarray:
        idx = self.column(panel, group, key, role)
        if idx is None:
            roles = [c.role for c in self.columns if (c.panel, c.group, c.key) == (panel, group, key)]
            if roles:  # the series exists under another role: a band's edge ("train_loss +σ" is role 'hi')
                raise KeyError(f"run {self.id}: series panel={panel!r} group={group!r} key={key!r} is a "
                               f"{' / '.join(repr(r) for r in roles)} column, not {role!r}: pass role="
                               f"{roles[0]!r} (roles: 'line' a series, 'lo' / 'hi' the lower / upper edge of its band)")
            raise KeyError(f"run {self.id} has no series panel={panel!r} group={group!r} key={key!r} role={role!r}; "
                           + self._nearest_known(panel, group))
        return self.data[:, idx].copy()

    def _nearest_known(self, panel: str, group: str) -> str:
        """What a mistyped series name most likely meant: the same panel's groups and keys (panel and group matched
        ignoring case and plurals), else the run's panels."""
        def loose(name: str) -> str:
            return name.lower().rstrip("s")

        same = [c for c in self.columns if loose(c.panel) == loose(panel) and c.role == "line"]
        if not same:
            return f"its panels: {list(dict.fromkeys(c.panel for c in self.columns))}"
        groups = list(dict.fromkeys(c.group for c in same))
        in_group = [c for c in same if loose(c.group) == loose(group)] or [c for c in same if c.group == groups[0]]
        return (f"panel {same[0].panel!r} has groups {groups[:12]}{' ...' if len(groups) > 12 else ''}; group "
                f"{in_group[0].group!r} has keys {list(dict.fromkeys(c.key for c in in_group))}")

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
        """``problems`` as the wire and the saved history carry them: ``{lens, message, count, kind}``, ``kind``
        ``"warning"`` (a problem) or ``"notice"`` (information)."""
        return [{"lens": lens, "message": msg, "count": n, "kind": "notice" if (lens, msg) in self.notices else "warning"}
                for (lens, msg), n in self.problems.items()]

    def problem_counts(self) -> tuple[int, int]:
        """(problems, notices): the distinct reports of each kind. A report repeated at every tick (an optimizer the
        lens does not hold, said once) is one thing to read, not one per tick (trial r11: "12 notes" over one
        notice); how often each was reported is its ``count`` in :meth:`problem_list`."""
        notices = len(self.notices.intersection(self.problems))
        return len(self.problems) - notices, notices
