"""The run record: runs -> panels -> columns (series) -> one value per epoch.

It is the single source of truth for every view (widget, ``'print'``, static export, saved files) and
the one interface between data collection and drawing. Its door in is monitorch's visualizer vocabulary
(``register_tags`` / ``plot_numerical_values`` / ``plot_probabilities`` / ``plot_relations``), so both our
lenses and monitorch's own inspector can feed it; its door out is a stream of small events to subscribers
(the widget sync turns those into binary deltas) and :mod:`.protocol`'s snapshot. Layout: ``docs/protocol.md``.

Invariant (besides :class:`~.run.Run`'s): a row's values are rewritten only while it is the run's open
(current or provisional) row.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from . import protocol
from .health import HealthMonitor
from .imports import import_runs
from .ingest import IngestPlan, TickWrite
from .monitorch_calls import MonitorchCalls
from .offers import offered
from .run import Panel, Run

Event = tuple[Any, ...]
#: a run problem's kinds (``Record.problem``): a problem (``MonitorWarning``), information (``MonitorNotice``)
PROBLEM_KINDS = ("warning", "notice")


class Record(MonitorchCalls):
    """All runs of one inspector. Also a monitorch-style visualizer (:class:`~.monitorch_calls.MonitorchCalls`: the
    calls feed the current run)."""

    #: a lens hands the record its calls' dicts as they are (no fresh copies, as a user's visualizer gets): the
    #: record reads them during the call and keeps no reference to them
    reads_calls_in_place = True
    #: and keeps the lenses' own series (``Call.record_only``: e.g. the per-step update ratio) that no
    #: monitorch-style visualizer receives
    keeps_record_only = True

    def __init__(self) -> None:
        self.runs: list[Run] = []
        self._tags: dict[str, Panel] = {}
        self._subscribers: list[Callable[[Event], None]] = []
        self.state = "idle"
        self.attached = False  # a run is being trained (start_run .. end): runs imported meanwhile go before it
        self.stopped_by: str | None = None  # the exception that ended the last training cell (read when "stopped")
        self._plans: dict[tuple[int, str], IngestPlan] = {}  # (run id, tag) -> the columns its last call wrote
        self._tick_write = TickWrite()
        # health checks judge each row once it is final (README, "Health checks")
        # a findings event carries only what changed: (upserted findings as protocol dicts, removed ids)
        self.health = HealthMonitor(notify=lambda changed, removed: self._emit(
                                        "findings", [f.to_dict() for f in changed], list(removed)),
                                    report=lambda source, message: self.problem(source, message, 1))

    # --- subscription -----------------------------------------------------------------------------
    def subscribe(self, fn: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``fn(event)`` for every change (``docs/protocol.md``); returns an unsubscribe function. The
        arrays of a ``cells`` event are never written again by the record (an ingested call's are read-only)."""
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
        """A new run, current from now on. A current run that never got a row (``detach(); attach(model)`` with no
        tick in between, an LR finder's reset) is not kept as a run of its own: the new run takes its place and
        id, and its attach notices and stopped spans go with it; the ``run`` event announces that id again."""
        self._close_open_row()
        previous = self.current
        reused = previous is not None and previous.empty
        run = Run(id=previous.id if reused and previous is not None else self.next_id(), label=label,
                  module_types=dict(module_types or {}))
        if reused:
            self.runs[-1] = run
            self.health.forget(run.id)
            # its column plans point into the replaced run's columns (an update_every estimate made some)
            self._plans = {k: v for k, v in self._plans.items() if k[0] != run.id}
        else:
            self.runs.append(run)
        self.state = "training"
        self.attached = True
        self._emit("run", run.id, {"id": run.id, "label": run.label})
        self._emit_status()
        return run

    def next_id(self) -> int:
        """An id no run of this record has (ids are not positions: runs imported while one trains go before it)."""
        return max((r.id for r in self.runs), default=-1) + 1

    def _writable(self) -> Run:
        """The run new rows go to: the current one, or a new run when there is none or it is an imported copy
        (a record fed by monitorch calls after ``import_runs``)."""
        run = self.current
        return run if run is not None and not run.imported else self.start_run(f"run {len(self.runs) + 1}")

    def open_row(self, epoch: float, *, provisional: bool = False, step: float = float("nan")) -> int:
        """Make the row for ``epoch`` current; a provisional row for the same epoch is cleared and reused.
        ``step``: optimizer steps taken in the run so far (NaN when not counted)."""
        run = self._writable()
        if run.open_row is not None and (run.provisional or run.epochs[run.open_row] == epoch):
            row = run.open_row
            run.clear_row(row)
            run.epochs[row] = float(epoch)
            if run.columns:
                self._emit("cells", run.id, row, np.arange(len(run.columns), dtype=np.int32),
                           np.full(len(run.columns), np.nan))
        else:
            self._close_open_row()
            row = run.append_row(epoch, time.time() - run.started)
            run.open_row = row
        run.provisional = provisional
        run.times[row] = time.time() - run.started
        run.steps[row] = float(step)
        self.state = "training"
        self._emit("row", run.id, {"row": row, "epoch": float(epoch), "time": run.times[row],
                                   "step": run.steps[row], "provisional": provisional})
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
                                       "step": run.steps[row], "provisional": False})
        self.health.evaluate(run, row)
        self._emit_status()

    def _close_open_row(self) -> None:
        run = self.current
        if run is not None and run.open_row is not None:
            if run.provisional:
                # An intra-epoch estimate that never became final (detach, an LR finder's reset, an import in the
                # middle of an epoch): the row goes, not only its values (trial r14a: an all-NaN epoch was left
                # as a final row, saved, and counted by the next epoch's numbering); the views blank it now and
                # drop it at their next snapshot
                row = run.open_row
                run.drop_last_row()
                run.provisional = False
                self._emit("cells", run.id, row, np.arange(len(run.columns), dtype=np.int32),
                           np.full(len(run.columns), np.nan))
            else:
                # a row written through the visualizer interface ends when the next one starts (or at end())
                self.health.evaluate(run, run.open_row)
            run.open_row = None

    def settle(self, stopped_by: str | None = None) -> None:
        """The code that was training stopped running (end of a notebook cell): the status reads "done" until
        the next row opens (training again); "stopped" with ``stopped_by`` (the exception's type name, e.g.
        ``KeyboardInterrupt`` for Kernel > Interrupt) when the cell ended by raising; "idle" when no epoch was
        recorded yet (attached, not trained)."""
        if self.state == "training":
            run = self.current
            self.state = "idle" if run is None or not run.final_rows else "stopped" if stopped_by else "done"
            self.stopped_by = stopped_by
            self._emit_status()

    def import_runs(self, other: Record) -> list[Run]:
        """Copies of ``other``'s runs (e.g. ``monitorch_widget.load(path)``) as earlier runs, for comparison: a run
        attached afterwards is drawn over them, and a run training now stays the current one (the copies go
        before it; the next ticks write to it). Imported copies are never written. Views are told through the
        usual events (the status names the current run)."""
        self._close_open_row()
        return import_runs(self, other)

    def end(self) -> None:
        """Training finished (detach): close the open row and mark the record done."""
        self._close_open_row()
        self.state = "done"
        self.attached = False
        self._emit_status()

    def mark_unrecorded(self, group: str, first: float, last: float | None) -> None:
        """Series ``group`` of the current run is not measured from epoch ``first`` on (``last`` None: an open
        span), or its open span starting at ``first`` ends at ``last`` (inclusive). Drawn as "not recorded"."""
        run = self._writable()
        spans = run.unrecorded.setdefault(group, [])
        if last is None:
            spans.append([float(first), None])
        else:
            for span in spans:
                if span[0] == float(first) and span[1] is None:
                    span[1] = float(last)
            spans[:] = [s for s in spans if s[1] is None or s[0] is None or s[1] >= s[0]]
            if not spans:  # closed before it began (resumed before any batch): nothing was left unrecorded
                del run.unrecorded[group]
        self._emit("unrecorded", run.id, {"group": group, "spans": [list(s) for s in spans]})

    # --- problems and status ----------------------------------------------------------------------
    def problem(self, lens: str, message: str, count: int, kind: str = "warning") -> None:
        """The current run's report ``(lens, message)`` was made ``count`` times so far. ``kind``: ``"warning"`` a
        problem (``MonitorWarning``), ``"notice"`` information (``MonitorNotice``); the views count them apart."""
        if kind not in PROBLEM_KINDS:
            raise ValueError(f"problem kind must be one of {PROBLEM_KINDS}, got {kind!r}")
        run = self._writable()
        run.problems[(lens, message)] = count
        if kind == "notice":
            run.notices.add((lens, message))
        else:
            run.notices.discard((lens, message))
        self._emit("problem", run.id, {"lens": lens, "message": message, "count": count, "kind": kind})
        self._emit_status()

    def status(self) -> dict[str, Any]:
        run = self.current
        if run is None:
            return {"run": None, "label": None, "epoch": None, "sec_per_epoch": None, "state": self.state,
                    "problems": 0, "notices": 0, "stopped_by": None}
        final = run.final_rows
        spe = None
        if final >= 1:
            spe = run.times[final - 1] / final
        problems, notices = run.problem_counts()
        return {"run": run.id, "label": run.label, "epoch": run.epochs[final - 1] if final else None,
                "sec_per_epoch": spe, "state": self.state, "problems": problems, "notices": notices,
                "stopped_by": self.stopped_by if self.state == "stopped" else None}

    def _emit_status(self) -> None:
        self._emit("status", self.status())

    # --- reading ----------------------------------------------------------------------------------
    def series(self, panel: str, group: str, key: str, run: int = -1, role: str = "line") -> np.ndarray:
        """Per-epoch values of one line of one run: ``run`` is a position in :attr:`runs` (default -1: the current
        run, always last), not a run id (ids stay unique; runs imported while one trains sit before it); NaN where
        missing."""
        if not self.runs:
            raise LookupError("the record is empty: attach the inspector and tick at least one epoch")
        if not isinstance(run, int):
            raise TypeError(f"series(panel, group, key, run=-1, role='line'): run is a position in runs, got {run!r}"
                            + ("; a band's edge is role=" + repr(run) if run in ("lo", "hi", "line") else ""))
        return self.runs[run].series(panel, group, key, role)

    def panels(self, run: int = -1) -> list[str]:
        return [p.tag for p in self.runs[run].panels] if self.runs else []

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write every run as one JSON document (no pickle); read back with ``monitorch_widget.load``."""
        from .history_file import save

        save(self, path)

    def snapshot(self) -> dict[str, Any]:
        """Protocol 2a (without ``seq``): everything a new view needs; see :func:`.protocol.snapshot`."""
        return protocol.snapshot(self)

    # --- conveniences the views offer (registered by monitorch_widget.views) ------------------------
    def to_html(self, path: Any, *, title: str | None = None) -> Any:
        """One self-contained, offline, interactive HTML file of every run (``views/html_export.py``)."""
        return offered("to_html")(self, path, title=title)

    def to_bqplot(self, panel: str, *, group: str | None = None, runs: str = "all") -> Any:
        """bqplot figure(s) of one panel (optional extra ``bqplot``; ``views/bqplot_figures.py``)."""
        return offered("to_bqplot")(self, panel, group=group, runs=runs)

    def _ipython_display_(self) -> None:
        """A record on its own (e.g. ``monitorch_widget.load(path)``) displays as a live widget."""
        offered("display")(self)

    def __repr__(self) -> str:
        return f"Record(runs={len(self.runs)}, epochs={[r.n_rows for r in self.runs]})"
