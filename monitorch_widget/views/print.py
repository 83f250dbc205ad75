"""``'print'``: one line per epoch on stdout, read from the record, and a line for each health finding when it
appears or resolves (README, "Health checks")."""

from __future__ import annotations

import math
import sys
from typing import Any, TextIO

from ..record import Record
from . import svg_heatmap as hm
from .interface import RecordView
from .static_picture import worst_layers


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "nan"
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e4):
        return f"{v:.3e}"
    return f"{v:.4f}"


def _short(panel: str) -> str:
    """'Warning Output Activations' -> 'output ', 'Warning Gradient Activations' -> 'gradient ': warning
    panels of different lenses use the same keys."""
    if panel.startswith("Warning "):
        return panel.split()[1].lower() + " "
    return ""


def _per_layer(run: Any, panel: str, key: str) -> tuple[str, list[str]] | None:
    """For a warning panel's ``worst <rate>`` line: (rate, the per-layer panels it folds) -- the panels of the same
    lens (or, fed by monitorch's inspector, the panel named as the warning panel without "Warning ") -- else None.
    The warning's own value counts dropout modules, whose rates are their input's scaled by (1 - p) and so always
    the lowest (trial r7 #8); the line ranks the layers as the widget's worst-layers list does."""
    if not panel.startswith("Warning ") or not key.startswith("worst "):
        return None
    rate = key[len("worst "):]
    lens = next((p.lens for p in run.panels if p.tag == panel), None)
    tags = [p.tag for p in run.panels if not p.big and p.tag != panel and (
        (lens is not None and p.lens == lens) or p.tag == panel[len("Warning "):])]
    return (rate, tags) if tags else None


def _worst(run: Any, sources: tuple[str, list[str]]) -> tuple[str, float] | None:
    """The worst layer of ``sources``' panels at the last final epoch, dropout left out (``worst_layers``), and
    its value: ``('1', 0.587)``; with more than one panel the panel's first word names which (``'0' bias``)."""
    rate, tags = sources
    found = []
    for tag in tags:
        _, top = worst_layers(run, tag, rate, 1)
        if top:
            name = f"'{top[0][0]}'" + (f" {tag.split()[0].lower()}" if len(tags) > 1 else "")
            found.append((name, top[0][1]))
    if not found:
        return None
    sign = -1.0 if hm.direction(rate) < 0 else 1.0
    return max(found, key=lambda nv: sign * nv[1])


def epoch_line(record: Record, _labels: dict[str, Any] | None = None) -> str:
    """A compact summary of the latest final epoch: big panels' values (loss, metrics, warnings).

    ``_labels``: a cache of which columns the line shows, kept while the run and its number of columns and panels
    stay (columns and panels only grow)."""
    run = record.current
    if run is None or run.n_rows == 0:
        return "(no epoch recorded yet)"
    row = run.n_rows - 1 - (1 if run.provisional else 0)
    if row < 0:
        return "(no epoch recorded yet)"
    shape = (len(run.columns), len(run.panels))
    cached = _labels.get("run") if _labels is not None else None
    if cached is not None and cached[0] is run and cached[1] == shape:
        shown = cached[2]
    else:
        big = {p.tag for p in run.panels if p.big and p.kind != "relations"}
        shown = [(f"{_short(c.panel)}{c.key}", c.index, _per_layer(run, c.panel, c.key))
                 for c in run.columns if c.role == "line" and c.panel in big]
        if _labels is not None:
            _labels["run"] = (run, shape, shown)
    values = run.data[row].tolist()
    parts = [f"epoch {int(run.epochs[row])}"]
    for label, index, sources in shown:
        worst = _worst(run, sources) if sources else None
        if worst is not None:
            parts.append(f"{label} {_fmt(worst[1])} ({worst[0]})")
            continue
        value = values[index]
        if not math.isnan(value):
            parts.append(f"{label} {_fmt(value)}")
    problems, notices = run.problem_counts()
    if problems:
        parts.append(f"problems {problems}")
    if notices:
        parts.append(f"notes {notices}")
    return " | ".join(parts)


#: more findings of one check than this appearing (or resolved) at one tick print as two lines (one per layer below)
GROUPED_OVER = 3
_NAMED = 8  # layers named in a grouped line; the rest counted


def _by_check(findings: list[Any]) -> list[list[Any]]:
    """``findings`` grouped by (check, severity), in first-seen order."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for f in findings:
        groups.setdefault((f.check, f.severity), []).append(f)
    return list(groups.values())


def _names(findings: list[Any]) -> str:
    named = ", ".join(f"'{f.layer}'" for f in findings[:_NAMED])
    return named + (f" and {len(findings) - _NAMED} more" if len(findings) > _NAMED else "")


class PrintVisualizer(RecordView):
    """Prints one line per epoch (big panels: loss, metrics, warnings); ``show_fig()`` prints a per-layer
    summary of the latest epoch.

    ``PrintVisualizer()`` given to our inspector prints at each tick. Driven by monitorch's inspector (or a
    player) it prints an epoch's line when the next epoch's first call arrives, and the last one at
    ``reset_fig()`` (monitorch's inspector calls it at ``detach``) or ``show_fig()``.
    """

    def __init__(self, record: Record | None = None, stream: TextIO | None = None) -> None:
        super().__init__(record)
        self.stream = stream
        self._shown: dict[str, bool] = {}  # finding id -> whether it was active when last printed
        self._labels: dict[str, Any] = {}  # epoch_line's columns of the current run

    def on_epoch(self) -> None:
        out = self.stream or sys.stdout
        print(epoch_line(self.record, self._labels), file=out, flush=True)
        for line in self.finding_lines():
            print(line, file=out, flush=True)

    def finding_lines(self) -> list[str]:
        """Lines for the current run's findings that appeared, reopened or resolved since the last call. More than
        :data:`GROUPED_OVER` of one check at once (a deep model's layers) print as the first in full and one line
        naming the other layers: a 30-block model's 27 ``dead_layer`` findings are two lines, not 27."""
        run = self.record.current
        if run is None:
            return []
        opened, closed = [], []
        for f in self.record.health.findings(run.id):
            before = self._shown.get(f.id)
            if f.active and before is not True:
                opened.append(f)
            elif not f.active and before is True:
                closed.append(f)
            self._shown[f.id] = f.active
        lines = []
        for same in _by_check(opened):
            if len(same) <= GROUPED_OVER:
                lines += [f"  health: {f.line()}" for f in same]
            else:
                lines.append(f"  health: {same[0].line()}")
                lines.append(f"  health: [{same[0].severity}] {same[0].check} also in {len(same) - 1} more layers: "
                             f"{_names(same[1:])} (inspector.findings has each)")
        for same in _by_check(closed):
            if len(same) <= GROUPED_OVER:
                for f in same:
                    where = f" layer '{f.layer}'" if f.layer else ""
                    lines.append(f"  health: resolved{where} {f.check} ({f.span()})")
            else:
                lines.append(f"  health: resolved {same[0].check} in {len(same)} layers: {_names(same)}")
        return lines

    on_tick = on_epoch

    on_epoch_calls = on_epoch

    def show_fig(self) -> Any:
        self.close_epoch()
        out = self.stream or sys.stdout
        run = self.record.current
        if run is None or run.n_rows == 0:
            print("(no epoch recorded yet)", file=out)
            return None
        row = run.n_rows - 1
        print(f"{run.label}: {run.n_rows} epoch(s)", file=out)
        for panel in run.panels:
            print(f"  {panel.tag}", file=out)
            for group in run.groups(panel.tag):
                vals = [f"{c.key}={_fmt(run.data[row, c.index])}" for c in run.columns
                        if c.panel == panel.tag and c.group == group and c.role == "line"]
                print(f"    {group}: {', '.join(vals)}", file=out)
        return None
