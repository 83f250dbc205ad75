"""Saved histories: one JSON document holding every run (no pickle, no code execution on load).

Format ``monitorch-widget-history`` version 3::

    {"format": "monitorch-widget-history", "version": 3,
     "definitions": {"version": 3, "gradient_observation": "...", "units": "...", "activation_channels": "...",
                     "quantiles": "..."},
     "runs": [{"id", "label", "module_types": {name: type}, "panels": [Panel], "columns": [Column],
               "epochs": [float], "times": [float], "steps": [float|null] (optional: optimizer steps so far),
               "data": [[float|null, ...] per row],
               "problems": [{"lens", "message", "count", "kind"}], "definitions": 3,
               "findings": [Finding],
               "unrecorded": {group: [[first epoch, last epoch | null], ...]}}]}   # optional

``null`` stands for NaN (a gap). Panel and Column fields are those of ``docs/protocol.md``. ``definitions``
names the measuring rules the values were taken with (README, "What each statistic reads"); version 1
files (no ``definitions``) load with a :class:`DefinitionsWarning` saying what differs. ``findings`` (version 3)
are the health checks' results (``js/protocol.ts`` ``Finding``; README "Health checks"); a version 1 or 2 file
has none saved, so its runs are judged again on load with today's default thresholds. ``unrecorded``:
epochs whose measurement was stopped on purpose (``inspector.stop_recording``). A problem's ``kind`` is
``"warning"`` (a problem: ``MonitorWarning``) or ``"notice"`` (information: ``MonitorNotice``); optional, a file
saved without it (before kinds were kept) reads every entry as ``"warning"``, as it was shown then.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import asdict, fields
from typing import Any

import numpy as np

from .definitions import DEFINITIONS, DefinitionsWarning, differences_since
from .health import Finding
from .record import Record
from .run import Column, Panel, Run

FORMAT = "monitorch-widget-history"
VERSION = 3  # of the file format; DEFINITIONS["version"] is the measuring rules'


def to_dict(record: Record) -> dict[str, Any]:
    runs = []
    for run in record.runs:
        final = run.final_rows
        data = run.data[:final]
        runs.append({
            "id": run.id, "label": run.label, "module_types": dict(run.module_types),
            "panels": [asdict(p) for p in run.panels], "columns": [asdict(c) for c in run.columns],
            "epochs": run.epochs[:final], "times": run.times[:final],
            "steps": [None if math.isnan(s) else s for s in run.steps[:final]],
            "data": [[None if math.isnan(v) else float(v) for v in row] for row in data.tolist()],
            "problems": run.problem_list(), "definitions": run.definitions,
            "findings": [f.to_dict() for f in record.health.findings(run.id)],
            **({"unrecorded": {g: [list(sp) for sp in spans] for g, spans in run.unrecorded.items()}}
               if run.unrecorded else {}),
        })
    return {"format": FORMAT, "version": VERSION, "definitions": DEFINITIONS, "runs": runs}


def save(record: Record, path: str | os.PathLike[str]) -> None:
    text = json.dumps(to_dict(record), allow_nan=False, ensure_ascii=False)
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


class HistoryFormatError(ValueError):
    """The file is not a valid monitorch-widget history."""


def _need(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise HistoryFormatError(f"{where}: {what}")


def _build(cls: type, obj: Any, where: str) -> Any:
    _need(isinstance(obj, dict), where, "expected an object")
    names = {f.name for f in fields(cls)}
    missing = [n for n in names if n not in obj and n not in ("lens", "band_of", "module_type", "ylim", "annotate")]
    _need(not missing, where, f"missing field(s) {', '.join(missing)}")
    return cls(**{k: obj[k] for k in names if k in obj})


def from_dict(doc: Any, source: str = "history") -> Record:
    _need(isinstance(doc, dict) and doc.get("format") == FORMAT, source,
          f"not a monitorch-widget history (expected \"format\": \"{FORMAT}\")")
    version = doc.get("version")
    _need(version in (1, 2, VERSION), source, f"unsupported version {version!r} (this reads 1 to {VERSION})")
    if version == 1:
        warnings.warn(f"{source}: saved by an older monitorch-widget whose {differences_since(1)}; its gradient, "
                      "transformer-activation and quantile values are not comparable with runs recorded now",
                      DefinitionsWarning, stacklevel=3)
    runs = doc.get("runs")
    _need(isinstance(runs, list), source, "\"runs\" must be a list")
    record = Record()
    for i, r in enumerate(runs):
        where = f"{source}: runs[{i}]"
        _need(isinstance(r, dict), where, "expected an object")
        run = Run(id=len(record.runs), label=str(r.get("label", f"run {i + 1}")),
                  module_types={str(k): str(v) for k, v in (r.get("module_types") or {}).items()},
                  definitions=int(r.get("definitions", 1)))
        for j, p in enumerate(r.get("panels") or []):
            run.add_panel(_build(Panel, p, f"{where}.panels[{j}]"))
        for j, c in enumerate(r.get("columns") or []):
            col = _build(Column, c, f"{where}.columns[{j}]")
            _need(col.index == j, f"{where}.columns[{j}]", f"index {col.index} != position {j}")
            _need(run.has_panel(col.panel), f"{where}.columns[{j}]", f"unknown panel {col.panel!r}")
            run.add_column(col)
        epochs, times, data = r.get("epochs"), r.get("times"), r.get("data")
        _need(isinstance(epochs, list) and isinstance(times, list) and isinstance(data, list), where,
              "\"epochs\", \"times\" and \"data\" must be lists")
        _need(len(epochs) == len(times) == len(data), where, "\"epochs\", \"times\" and \"data\" differ in length")
        n_cols = len(run.columns)
        _need(all(isinstance(row, list) and len(row) == n_cols for row in data), where,
              f"every data row must have {n_cols} values (one per column)")
        try:
            arr = np.array([[np.nan if v is None else float(v) for v in row] for row in data], dtype=np.float64)
            steps = r.get("steps")  # optional (histories saved before the step count have none)
            _need(steps is None or (isinstance(steps, list) and len(steps) == len(epochs)), where,
                  "\"steps\" must be a list as long as \"epochs\"")
            step_list = [np.nan if s is None else float(s) for s in steps] if steps is not None else None
            run.set_rows([float(e) for e in epochs], [float(t) for t in times], arr.reshape(len(data), n_cols),
                         step_list)
        except (TypeError, ValueError) as exc:
            raise HistoryFormatError(f"{where}: non-numeric value in epochs/times/data ({exc})") from None
        for p in r.get("problems") or []:
            if isinstance(p, dict):
                key = (str(p.get("lens")), str(p.get("message")))
                run.problems[key] = int(p.get("count", 1))
                # any other kind is a problem: a file saved before kinds, or a kind of a newer version
                if p.get("kind") == "notice":
                    run.notices.add(key)
        unrecorded = r.get("unrecorded") or {}
        _need(isinstance(unrecorded, dict), f"{where}.unrecorded", "must map a group to its spans")
        for group, spans in unrecorded.items():
            _need(isinstance(spans, list) and all(
                isinstance(sp, list) and len(sp) == 2 and _number(sp[0]) and (sp[1] is None or _number(sp[1]))
                for sp in spans), f"{where}.unrecorded[{group!r}]", "spans must be [first epoch, last epoch or null]")
            run.unrecorded[str(group)] = [[float(a), None if b is None else float(b)] for a, b in spans]
        run.imported = True  # a finished run: shown, never written (a monitorch feed into this record starts its own)
        record.runs.append(run)
        if version == VERSION:
            saved = r.get("findings")
            _need(isinstance(saved, list), where, "\"findings\" must be a list")
            try:
                # saved under the run's id then, this run's position now (runs imported while one trained came first)
                record.health.set_findings(run.id, [Finding.from_dict(f).of_run(run.id) for f in saved])
            except (KeyError, TypeError, ValueError) as exc:
                raise HistoryFormatError(f"{where}.findings: malformed finding ({exc!r})") from None
        else:
            record.health.replay(run)
    record.state = "done"
    return record


def check_not_pickle(path: str | os.PathLike[str], owner: str) -> None:
    """Raise ``FileNotFoundError`` for a missing ``path`` and :class:`HistoryFormatError` for a pickle (monitorch's
    RecorderVisualizer writes one): never unpickled, the message says how to replay it. ``owner`` names the
    caller in messages."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except FileNotFoundError:
        raise FileNotFoundError(f"{owner}: {os.fspath(path)!r} does not exist (record one with "
                                "RecorderVisualizer(path) or inspector.save(path))") from None
    # pickle protocols 2-5 start with PROTO (0x80) and the protocol number; monitorch writes the default (4/5).
    named = os.fspath(path).endswith((".pkl", ".pickle"))
    if head[:1] == b"\x80" or (named and not head.lstrip().startswith(b"{")):
        raise HistoryFormatError(
            f"{os.fspath(path)!r} is a pickle, as monitorch's RecorderVisualizer writes; monitorch-widget never "
            "unpickles a file (loading a pickle can run any code it contains). To see it in our widget, replay it "
            "with monitorch's own player into our visualizer: monitorch.visualizer.PlayerVisualizer(path, "
            "monitorch_widget.WidgetVisualizer()).playback(), and only for a file you trust. To record new runs "
            "for replay, use monitorch_widget.visualizer.RecorderVisualizer(path), which writes JSON.")


def load(path: str | os.PathLike[str]) -> Record:
    check_not_pickle(path, "load")
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except json.JSONDecodeError as exc:
        raise HistoryFormatError(f"{os.fspath(path)}: not valid JSON (truncated or corrupted?): {exc}") from None
    return from_dict(doc, os.fspath(path))


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
