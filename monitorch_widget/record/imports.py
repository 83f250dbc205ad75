"""Runs of another record (a saved history) imported into this one, for comparison (``Record.import_runs``)."""

from __future__ import annotations

import warnings
from dataclasses import asdict
from typing import TYPE_CHECKING

import numpy as np

from .definitions import DefinitionsWarning, differences_since
from .run import Run

if TYPE_CHECKING:
    from .record import Record


def _same_run(a: Run, b: Run) -> bool:
    if a.label != b.label or a.epochs != b.epochs or [(c.panel, c.group, c.key, c.role) for c in a.columns] != \
            [(c.panel, c.group, c.key, c.role) for c in b.columns]:
        return False
    return bool(np.array_equal(a.data, b.data, equal_nan=True))


def import_runs(record: Record, other: Record) -> list[Run]:
    """Copies of ``other``'s runs into ``record`` (its open row closed first), after its runs -- before the current
    one while it trains (``record.attached``), which stays current; see ``Record.import_runs``.
    Warns (``DefinitionsWarning``) for runs measured under older definitions, and skips with a warning the runs
    already in ``record`` (the import cell re-run)."""
    added = []
    older = [r for r in other.runs if r.definitions != Run.definitions]
    if older:
        since = differences_since(min(r.definitions for r in older))
        warnings.warn(f"import_runs: {', '.join(r.label for r in older)} were measured with older definitions "
                      f"({since}); they are shown, but compare them with today's runs with care",
                      DefinitionsWarning, stacklevel=3)
    # a run already here (the import cell re-run): same label, epochs, columns and values -- not a second copy
    repeated = [src for src in other.runs if any(_same_run(src, r) for r in record.runs)]
    if repeated:
        warnings.warn(f"import_runs: {', '.join(r.label for r in repeated)} already in this record (imported "
                      "before?); not added again", UserWarning, stacklevel=3)
    for src in other.runs:
        if any(src is r for r in repeated):
            continue
        run = src.final_copy(record.next_id())
        run.imported = True
        if record.attached and record.runs:
            record.runs.insert(len(record.runs) - 1, run)
        else:
            record.runs.append(run)
        record._emit("run", run.id, {"id": run.id, "label": run.label})
        for panel in run.panels:
            record._emit("panel", run.id, asdict(panel))
        for col in run.columns:
            record._emit("column", run.id, asdict(col))
        cols = np.arange(len(run.columns), dtype=np.int32)
        for row in range(run.n_rows):
            record._emit("row", run.id, {"row": row, "epoch": run.epochs[row], "time": run.times[row],
                                       "step": run.steps[row], "provisional": False})
            record._emit("cells", run.id, row, cols, run.data[row].copy())
        added.append(run)
        record.health.set_findings(run.id, [f.of_run(run.id) for f in other.health.findings(src.id)])  # emits them
    record._emit_status()
    return added
