"""Python-side figures: record series as bqplot figures (optional extra ``bqplot``), to restyle or combine.

``to_bqplot(record, panel)`` gives one figure for a big panel (every line of every run, bands as a
filled area), or a grid of small figures (one per module) for a per-layer panel.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..record import Record, Run


def _require_bqplot() -> Any:
    try:
        import bqplot
    except ImportError:
        raise ImportError("to_bqplot needs bqplot: pip install 'monitorch-widget[bqplot]'") from None
    return bqplot


def _figure(bq: Any, record: Record, panel: str, group: str, runs: list[Run], title: str) -> Any:
    x_sc, y_sc = bq.LinearScale(), bq.LinearScale()
    kind = next((p.kind for r in runs for p in r.panels if p.tag == panel), "numerical")
    if kind == "probability":
        y_sc.min, y_sc.max = 0.0, 1.0
    marks = []
    last = runs[-1].id
    for run in runs:
        faint = run.id != last
        epochs = np.asarray(run.epochs[: run.n_rows], dtype=float)
        for col in run.columns:
            if col.panel != panel or col.group != group:
                continue
            if col.role == "line":
                marks.append(bq.Lines(x=epochs, y=run.data[:, col.index], scales={"x": x_sc, "y": y_sc},
                                      labels=[f"{col.key}" + (f" ({run.label})" if faint else "")],
                                      opacities=[0.35 if faint else 1.0], display_legend=True))
            elif col.role == "lo":
                # invariant of Record._ingest: a band's "hi" column directly follows its "lo" column
                hi = col.index + 1 if col.index + 1 < len(run.columns) and \
                    run.columns[col.index + 1].role == "hi" else None
                if hi is None:
                    continue
                marks.append(bq.Lines(x=epochs, y=[run.data[:, col.index], run.data[:, hi]], fill="between",
                                      fill_opacities=[0.15], opacities=[0.0, 0.0], scales={"x": x_sc, "y": y_sc}))
    axes = [bq.Axis(scale=x_sc, label="epoch"), bq.Axis(scale=y_sc, orientation="vertical")]
    return bq.Figure(marks=marks, axes=axes, title=title, legend_location="top-right")


def to_bqplot(record: Record, panel: str, *, group: str | None = None, runs: str = "all") -> Any:
    """A bqplot ``Figure`` (big panel, or one ``group``) or an ``ipywidgets.GridBox`` of figures (per-layer panel).

    ``runs='all'`` overlays earlier runs faintly; ``runs='last'`` shows only the latest run.
    """
    bq = _require_bqplot()
    if not record.runs:
        raise LookupError("the record is empty: tick at least one epoch first")
    if runs not in ("all", "last"):
        raise ValueError(f"runs={runs!r}: accepted 'all' or 'last'")
    chosen = record.runs if runs == "all" else record.runs[-1:]
    holders = [r for r in chosen if any(p.tag == panel for p in r.panels)]
    if not holders:
        known = sorted({p.tag for r in record.runs for p in r.panels})
        raise KeyError(f"no panel {panel!r} in the record; panels: {', '.join(known)}")
    groups: dict[str, None] = {}
    for r in holders:
        for g in r.groups(panel):
            groups.setdefault(g, None)
    if group is not None:
        if group not in groups:
            raise KeyError(f"panel {panel!r} has no group {group!r}; groups: {', '.join(groups)}")
        return _figure(bq, record, panel, group, holders, f"{panel}: {group}")
    if len(groups) == 1:
        only = next(iter(groups))
        return _figure(bq, record, panel, only, holders, panel)
    import ipywidgets

    figures = [_figure(bq, record, panel, g, holders, g) for g in groups]
    for f in figures:
        f.layout.height = "240px"
        f.layout.min_width = "280px"
    return ipywidgets.GridBox(figures, layout=ipywidgets.Layout(grid_template_columns="repeat(3, 1fr)"))
