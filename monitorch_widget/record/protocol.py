"""The wire format between the record and every view (docs/protocol.md), in one place.

* **Snapshot** (protocol 2a): :func:`snapshot` -- everything a new view needs, columns as binary buffers.
* **Delta** (protocol 2b): :class:`PendingDelta` merges the record's events since the last message;
  :func:`encode_delta` turns them into one JSON message plus four little-endian buffers
  (run, row, column as int32; value as float64), so a tick's size does not depend on the history's length.
* **Filters** (protocol 3): what a view hides; :func:`normalize_filters` accepts whatever a front-end sent.

Pure data: no widget, comm or IPython here (the record room must not know its views).
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .record import Record

Event = tuple[Any, ...]
#: Protocol version (docs/protocol.md): 2 since a delta carries only the findings that changed (upserts by id
#: plus removed ids) instead of the whole list.
SNAPSHOT_VERSION = 2


def snapshot(record: Record) -> dict[str, Any]:
    """Protocol 2a (without ``seq``): every run with its binary columns as bytes, and the status."""
    runs = []
    for run in record.runs:
        data = np.ascontiguousarray(run.data, dtype="<f8")
        runs.append({
            "id": run.id, "label": run.label, "provisional": run.provisional,
            "panels": [asdict(p) for p in run.panels], "columns": run.column_dicts(),
            "problems": run.problem_list(), "n_rows": run.n_rows, "n_cols": len(run.columns),
            "epochs": np.asarray(run.epochs, dtype="<f8").tobytes(),
            "times": np.asarray(run.times, dtype="<f8").tobytes(),
            "steps": np.asarray(run.steps, dtype="<f8").tobytes(),
            "data": data.tobytes(),
            **({"unrecorded": _spans(run.unrecorded)} if run.unrecorded else {}),
        })
    return {"version": SNAPSHOT_VERSION, "runs": runs, "status": record.status(),
            "findings": record.health.as_dicts()}


def _step(value: Any) -> float | None:
    """A row's optimizer-step count for JSON: null when not counted (NaN is not valid JSON)."""
    return None if value is None or math.isnan(float(value)) else float(value)


def empty_history() -> dict[str, Any]:
    """The snapshot of a record with no run (a widget's initial ``history`` trait)."""
    return {"version": SNAPSHOT_VERSION, "seq": 0, "runs": [], "status": None, "findings": []}


class PendingDelta:
    """Everything that changed since the last delta message, merged (later events win)."""

    def __init__(self) -> None:
        self.new_runs: list[dict[str, Any]] = []
        self.new_panels: list[dict[str, Any]] = []
        self.new_columns: list[dict[str, Any]] = []
        self.rows: dict[tuple[int, int], dict[str, Any]] = {}
        self.cell_chunks: list[tuple[int, int, np.ndarray, np.ndarray]] = []  # (run, row, columns, values)
        self.problems: dict[tuple[int, str, str], dict[str, Any]] = {}
        self.status: dict[str, Any] | None = None
        # findings upserted since the last message by id (new ones in the order the front-end appends them), and
        # ids removed (applied before the upserts: an id in both is dropped, then appended again)
        self.findings: dict[str, dict[str, Any]] = {}
        self.findings_removed: dict[str, None] = {}
        self.unrecorded: dict[tuple[int, str], list[Any]] = {}

    def empty(self) -> bool:
        return not (self.new_runs or self.new_panels or self.new_columns or self.rows or self.cell_chunks
                    or self.problems or self.status is not None or self.findings or self.findings_removed or self.unrecorded)

    def add(self, event: Event) -> None:
        kind = event[0]
        if kind == "run":
            _, run_id, info = event
            rid = int(run_id)
            # announced again: the record reused an empty run (Record.start_run); what is pending of it is gone
            self.new_runs = [r for r in self.new_runs if r["id"] != rid]
            self.problems = {k: v for k, v in self.problems.items() if k[0] != rid}
            self.unrecorded = {k: v for k, v in self.unrecorded.items() if k[0] != rid}
            self.new_runs.append({"id": rid, "label": str(info.get("label", f"run {run_id}"))})
        elif kind == "panel":
            _, run_id, info = event
            self.new_panels.append({"run": int(run_id), **_plain(info)})
        elif kind == "column":
            _, run_id, info = event
            self.new_columns.append({"run": int(run_id), **_plain(info)})
        elif kind == "row":
            _, run_id, info = event
            row = int(info["row"])
            self.rows[(int(run_id), row)] = {
                "run": int(run_id), "row": row, "epoch": float(info["epoch"]),
                "time": float(info.get("time", float("nan"))), "step": _step(info.get("step")),
                "provisional": bool(info.get("provisional", False)),
            }
        elif kind == "cells":
            _, run_id, row, cols, vals = event
            # copies: an emitter may reuse its arrays after the callback returns, unless it handed them over
            # read-only (the record's own: a column plan's indices and each call's fresh values)
            cols = _kept(cols, np.int32)
            vals = _kept(vals, np.float64)
            if cols.shape != vals.shape:
                raise ValueError(f"cells event with {cols.size} columns but {vals.size} values")
            if cols.size:
                self.cell_chunks.append((int(run_id), int(row), cols, vals))
        elif kind == "problem":
            _, run_id, info = event
            key = (int(run_id), str(info["lens"]), str(info["message"]))
            self.problems[key] = {"run": key[0], "lens": key[1], "message": key[2], "count": int(info["count"]),
                                  "kind": str(info.get("kind", "warning"))}
        elif kind == "status":
            self.status = _plain(event[1])
        elif kind == "findings":
            self._merge_findings(event[1], event[2])
        elif kind == "unrecorded":
            _, run_id, info = event
            self.unrecorded[(int(run_id), str(info["group"]))] = [list(s) for s in info["spans"]]

    def _merge_findings(self, upserts: list[dict[str, Any]], removed: list[str]) -> None:
        """Merge one ``findings`` event: ``removed`` ids (dropped first: a reopened finding, which moves last; a
        run's replaced findings), then ``upserts`` (``Finding.to_dict`` dicts, JSON-safe and fresh, kept as
        they are). An upsert of a pending id replaces it in place; a removed id leaves the pending upserts and
        is appended again by a later upsert, so the front-end's appends keep the kernel's order."""
        for fid in removed:
            self.findings.pop(fid, None)
            self.findings_removed[fid] = None
        for f in upserts:
            self.findings[f["id"]] = f

    def cells(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Concatenated cells with repeated (run, row, col) reduced to the last value written, order kept."""
        if not self.cell_chunks:
            z = np.zeros(0, np.int32)
            return z, z, z, np.zeros(0, np.float64)
        if len(self.cell_chunks) == 1:  # one event (a tick sent at once): its cells as they are
            run_id, row_id, cols, vals = self.cell_chunks[0]
            return np.full(cols.size, run_id, np.int32), np.full(cols.size, row_id, np.int32), cols, vals
        run_ids, row_ids, col_parts, val_parts = zip(*self.cell_chunks)
        sizes = [c.size for c in col_parts]
        runs = np.repeat(np.array(run_ids, dtype=np.int32), sizes)
        rows = np.repeat(np.array(row_ids, dtype=np.int32), sizes)
        cols, vals = np.concatenate(col_parts), np.concatenate(val_parts)
        # Indices too large to pack into one int64 key are left as they are: every write is kept and,
        # applied in order, the last one still wins.
        if bool((rows < (1 << 21)).all() and (cols < (1 << 21)).all() and (runs < (1 << 21)).all()):
            key = (runs.astype(np.int64) << 42) | (rows.astype(np.int64) << 21) | cols.astype(np.int64)
            _, first_from_end = np.unique(key[::-1], return_index=True)
            if first_from_end.size < key.size:
                keep = np.sort(key.size - 1 - first_from_end)
                runs, rows, cols, vals = runs[keep], rows[keep], cols[keep], vals[keep]
        return runs, rows, cols, vals


def _kept(a: Any, dtype: type) -> np.ndarray:
    """``a`` as a 1-D array of ``dtype`` that nobody writes later: a read-only array of that dtype as it is,
    anything else copied."""
    if type(a) is np.ndarray and a.dtype == dtype and a.ndim == 1 and not a.flags.writeable:
        return a
    return np.array(a, dtype=dtype).ravel()


def _spans(unrecorded: dict[str, list[list[float | None]]]) -> list[dict[str, Any]]:
    return [{"group": g, "spans": [list(s) for s in spans]} for g, spans in unrecorded.items() if spans]


def _plain(d: Any) -> dict[str, Any]:
    """A JSON-safe shallow copy (numpy scalars -> Python numbers)."""
    out = dict(d)
    if not all(type(k) is str for k in out):
        out = {str(k): v for k, v in out.items()}
    for k, v in out.items():
        if isinstance(v, np.generic):
            out[k] = v.item()  # a value replaced, no key added: iterating stays valid
    return out


def encode_delta(pending: PendingDelta, seq: int, last_status: dict[str, Any] | None,
                 findings_sent: dict[str, dict[str, Any]] | None = None) -> tuple[dict[str, Any], list[bytes]]:
    """The protocol-2b message and its four little-endian buffers.

    ``findings_sent``: the findings the front-end holds (the last snapshot's, merged with every delta since; by
    id), updated here: an upsert of a finding it holds then carries only ``id`` and the fields that changed. None:
    every upsert whole (also valid)."""
    runs, rows, cols, vals = pending.cells()
    msg: dict[str, Any] = {
        "type": "delta",
        "seq": seq,
        "new_runs": pending.new_runs,
        "new_panels": pending.new_panels,
        "new_columns": pending.new_columns,
        "rows": list(pending.rows.values()),
        "cells": {"count": int(runs.size)},
        "problems": list(pending.problems.values()),
    }
    status = pending.status if pending.status is not None else last_status
    if pending.unrecorded:  # absent when nothing changed: the group's whole span list replaces the old one
        msg["unrecorded"] = [{"run": r, "group": g, "spans": spans} for (r, g), spans in pending.unrecorded.items()]
    if status is not None:  # absent rather than null: "no status known yet" must not erase one
        msg["status"] = status
    if pending.findings_removed:  # absent when none: applied before the upserts
        msg["findings_removed"] = list(pending.findings_removed)
    if findings_sent is not None:
        upserts = _patches(pending, findings_sent)
    else:
        upserts = list(pending.findings.values())
    if upserts:  # only the findings raised, changed or resolved since the previous message
        msg["findings"] = upserts
    buffers = [np.asarray(runs, "<i4").tobytes(), np.asarray(rows, "<i4").tobytes(),
               np.asarray(cols, "<i4").tobytes(), np.asarray(vals, "<f8").tobytes()]
    return msg, buffers


def _patches(pending: PendingDelta, sent: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The pending upserts against what the front-end holds (``sent``, brought up to date): a finding it lacks
    whole, one it holds as ``{"id", changed fields...}`` (a dead layer's rate and message move every epoch; its
    advice, tag, since... do not), one whose fields are all unchanged not at all."""
    for fid in pending.findings_removed:
        sent.pop(fid, None)
    out = []
    for fid, f in pending.findings.items():
        old = sent.get(fid)
        sent[fid] = f
        if old is None:
            out.append(f)
            continue
        patch = {k: v for k, v in f.items() if old.get(k) != v}
        if patch:
            out.append({"id": fid, **patch})
    return out


def decode_delta_buffers(buffers: list[bytes | memoryview]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of the buffer part of :func:`encode_delta` (used by tests and tools)."""
    runs, rows, cols = (np.frombuffer(bytes(b), dtype="<i4") for b in buffers[:3])
    vals = np.frombuffer(bytes(buffers[3]), dtype="<f8")
    return runs, rows, cols, vals


def default_filters() -> dict[str, Any]:
    return {"hidden_modules": [], "hidden_types": [], "hidden_panels": [], "hidden_runs": [], "logy": {}}


def normalize_filters(value: Any) -> dict[str, Any]:
    """A complete filters dict (protocol 3) from whatever the front-end sent."""
    out = default_filters()
    if not isinstance(value, dict):
        return out
    for key in ("hidden_modules", "hidden_types", "hidden_panels"):
        out[key] = [str(v) for v in value.get(key) or [] if isinstance(v, str)]
    out["hidden_runs"] = [int(v) for v in value.get("hidden_runs") or []
                          if isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer()]
    logy = value.get("logy") or {}
    if isinstance(logy, dict):
        out["logy"] = {str(k): bool(v) for k, v in logy.items() if isinstance(v, bool)}
    return out

