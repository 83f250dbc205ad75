"""How one visualizer call lands in a run's columns: the column plan of a tag's call, band owners, values.

monitorch's visualizer interface passes nested dicts (group -> key -> value, and group -> (lo name, hi name)
-> (lo, hi)); the record turns each call into (column indices, values). The first call of a tag in a run
looks its columns up by name; later calls of the same shape reuse the :class:`IngestPlan`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .run import Run


#: monitorch's TagType names -> the record's panel kinds
KINDS = {"NUMERICAL": "numerical", "PROBABILITY": "probability", "RELATIONS": "relations"}


def limits(ylim: Any) -> list[float] | None:
    """monitorch's ``ylim`` (either order, e.g. its correlation tags' ``(1, -1)``) as [lo, hi], or None."""
    try:
        lo, hi = sorted(float(v) for v in ylim)
    except (TypeError, ValueError):
        return None
    return [lo, hi] if math.isfinite(lo) and math.isfinite(hi) and lo < hi else None


class IngestPlan:
    """Which columns one tag's call wrote, by the shape of its arguments (groups, keys and band names in
    order). A later call of the same tag in the same run with an equal shape writes the same columns, so its
    values are read without looking up each column (what a tick's record side spent most of its time on).
    Names are compared with ``==`` against the ``str`` names the columns were made from (monitorch's
    visualizer interface passes ``str``; any other key type makes a new plan at each call, as before)."""

    __slots__ = ("groups", "keys", "bands", "columns")

    def __init__(self, groups: tuple[str, ...], keys: tuple[tuple[str, ...], ...],
                 bands: tuple[tuple[str, tuple[Any, ...]], ...], columns: np.ndarray) -> None:
        self.groups, self.keys, self.bands, self.columns = groups, keys, bands, columns
        columns.flags.writeable = False  # shared by every call's "cells" event, never written

    @classmethod
    def of(cls, values: Mapping[Any, Mapping[Any, Any]], ranges: Mapping[Any, Mapping[Any, Any]] | None,
           columns: np.ndarray) -> IngestPlan:
        groups = tuple(str(g) for g in values)
        keys = tuple(tuple(str(k) for k in lines) for lines in values.values())
        bands = tuple((str(g), tuple(tuple(str(n) for n in names) for names in b)) for g, b in (ranges or {}).items())
        return cls(groups, keys, bands, columns)

    def match(self, values: Mapping[Any, Mapping[Any, Any]],
              ranges: Mapping[Any, Mapping[Any, Any]] | None) -> list[Any] | None:
        """The call's raw values in column order, or None when its shape differs from this plan's."""
        if tuple(values) != self.groups:
            return None
        raw: list[Any] = []
        for lines, keys in zip(values.values(), self.keys):
            if tuple(lines) != keys:
                return None
            raw += lines.values()
        if not ranges:
            return raw if not self.bands else None
        if len(ranges) != len(self.bands):
            return None
        for (group, by_names), (name, names) in zip(ranges.items(), self.bands):
            if group != name or tuple(by_names) != names:
                return None
            for lo, hi in by_names.values():
                raw.append(lo)
                raw.append(hi)
        return raw


def as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def band_owner(lo_name: str, line_keys: list[str]) -> str | None:
    """The line a band surrounds: same prefix before the last space ('train_loss -σ' -> 'train_loss mean'),
    or the group's first line when the band names have no prefix (OutputNorm's '-σ')."""
    prefix = lo_name.rsplit(" ", 1)[0] + " " if " " in lo_name else ""
    for key in line_keys:
        if key.startswith(prefix):
            return key
    return line_keys[0] if line_keys else None


def columns_of(values: Mapping[Any, Mapping[Any, Any]], ranges: Mapping[Any, Mapping[Any, Any]] | None,
               column: Callable[[str, str, str, str | None], int]) -> tuple[np.ndarray, list[Any]]:
    """(column indices, raw values) of a call of a new shape: lines, then each band's lo and hi, each column found
    or made by ``column(group, key, role, band_of)``."""
    cols: list[int] = []
    raw: list[Any] = []
    for group, lines in values.items():
        for key, value in lines.items():
            cols.append(column(str(group), str(key), "line", None))
            raw.append(value)
    for group, bands in (ranges or {}).items():
        line_keys = [str(k) for k in values.get(group, {})]
        for names, (lo, hi) in bands.items():
            lo_name, hi_name = (str(n) for n in names)
            owner = band_owner(lo_name, line_keys)
            cols.append(column(str(group), lo_name, "lo", owner))
            raw.append(lo)
            cols.append(column(str(group), hi_name, "hi", owner))
            raw.append(hi)
    return np.asarray(cols, dtype=np.int32), raw


class TickWrite:
    """Every call of one tick written as one: the calls' plans matched in turn, their values converted and put
    into the row at once, one ``cells`` event (instead of one array, one write and one event per call, each
    event merged by the widget's sync). The concatenated columns are kept while the calls keep the same plans
    (the usual tick); calls whose columns repeat one another go call by call (the last write must win)."""

    __slots__ = ("plans", "columns")

    def __init__(self) -> None:
        self.plans: list[IngestPlan] = []
        self.columns: np.ndarray | None = None  # None: these plans' columns repeat, write call by call

    def values(self, plans: dict[tuple[int, str], IngestPlan], run_id: int,
               calls: Sequence[tuple[Any, ...]]
               ) -> tuple[np.ndarray, list[Any]] | None:
        """(columns, raw values in column order) of ``calls`` = (method, tag, values, ranges), or None when a
        call has no plan of its shape yet or the columns repeat (the record then ingests call by call)."""
        raw: list[Any] = []
        seen: list[IngestPlan] = []
        for method, tag, values, ranges, *_ in calls:  # a Call may carry more fields (record_only)
            plan = plans.get((run_id, tag))
            got = plan.match(values, ranges if method == "numerical" else None) if plan is not None else None
            if got is None:
                return None
            assert plan is not None
            seen.append(plan)
            raw += got
        if seen != self.plans:  # compared by identity (IngestPlan defines no __eq__)
            columns = np.concatenate([p.columns for p in seen]) if seen else np.zeros(0, np.int32)
            self.plans = seen
            self.columns = columns if np.unique(columns).size == columns.size else None
            if self.columns is not None:
                self.columns.flags.writeable = False
        if self.columns is None:
            return None
        return self.columns, raw


def write_values(run: Run, row: int, columns: np.ndarray, raw: list[Any]) -> np.ndarray:
    """Write ``raw`` (numbers, or anything ``float`` accepts; else NaN) into ``columns`` of ``row``; returns
    the values written (float64, read-only: handed to the subscribers as they are)."""
    try:
        vals = [float(v) for v in raw]
    except (TypeError, ValueError):
        vals = [as_float(v) for v in raw]
    arr = np.array(vals, dtype=np.float64)
    run.write(row, columns, arr)
    arr.flags.writeable = False  # protocol.PendingDelta keeps it
    return arr
