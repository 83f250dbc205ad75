"""A static picture of a record: one SVG of bounded size, pure Python (no JavaScript, no matplotlib).

It is what a notebook shows wherever the live widget cannot render (GitHub, nbviewer, nbconvert HTML, a
notebook reopened without its widget state) and the ``<noscript>`` part of the HTML export. It is an
overview, not every chart: the big panels (loss, metrics, warnings) as line charts of at most
``svg_charts.POINTS`` buckets per series (earlier runs faint, at most ``MAX_EARLIER`` of them), then per
per-layer panel a line naming the worst layers now and a heatmap per key (layers x epochs, at most
``svg_heatmap.MAX_ROWS`` x ``MAX_COLS`` cells). Its size therefore does not grow with the history: 32-45 kB
for a 50-block model with three lenses and three runs from 30 to 3,000 epochs (<= 100 kB tested in
tests/test_static_picture.py; time in benchmarks/README.md). Every name from the record is in a CDATA section or a quoted attribute.

The health checks' findings (:mod:`.findings_html`) are listed above the picture.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from ..record.health.rows import rates_by_construction
from . import svg_heatmap as hm
from .findings_html import findings_section
from .svg_charts import FG, MUTED, PALETTE, LineChart, fmt, legend, svg_text

WIDTH = 960
PAD = 8
BIG_W, BIG_H = 306, 160
TITLE_H = 22
LABEL_W = 170  # heatmap row labels
ROW_H = 9
MAX_EARLIER = 3  # earlier runs drawn faint in the line charts
WORST_N = 3
FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif"
SIBLING_CLASS = "mw-static-sibling"

def problems_note(problems: int, notices: int) -> str:
    """The title line's count of a run's reports: ``" · ⚠ 1 problem · 2 notes"``, no warning sign when there
    are only notices (information, not faults), ``""`` when there are none."""
    out = f" · ⚠ {problems} problem{'s' if problems != 1 else ''}" if problems else ""
    return out + (f" · {notices} note{'s' if notices != 1 else ''}" if notices else "")


def _final(run: Any) -> int:
    return int(run.n_rows - (1 if getattr(run, "provisional", False) else 0))


def _by_panel(run: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for c in run.columns:
        out.setdefault(c.panel, []).append(c)
    return out


def _line_chart(runs: list[Any], tag: str, prob: bool, logy: bool, colors: dict[str, str],
                hidden_runs: set[int], by_panel: dict[int, dict[str, list[Any]]]) -> LineChart:
    chart = LineChart(BIG_W, BIG_H, prob=prob, logy=logy)
    cur = len(runs) - 1
    earlier = [i for i in range(cur) if runs[i].id not in hidden_runs][-MAX_EARLIER:]
    for ri in [*earlier, cur]:
        run, faint = runs[ri], ri != cur
        final = _final(run)
        if final <= 0:
            continue
        x = np.asarray(run.epochs[:final], dtype=np.float64)
        data = run.data
        if ri not in by_panel:
            by_panel[ri] = _by_panel(run)
        for c in by_panel[ri].get(tag, []):
            color = colors.setdefault(c.key if c.role == "line" else (c.band_of or c.key),
                                      PALETTE[len(colors) % len(PALETTE)])
            if c.role == "line":
                label = c.key + (f" ({run.label})" if faint else "")
                chart.lines.append((x, np.asarray(data[:final, c.index], dtype=np.float64), color, faint, label))
            elif c.role == "lo":
                # invariant of the record: a band's "hi" column directly follows its "lo" column
                hi = run.columns[c.index + 1] if c.index + 1 < len(run.columns) else None
                if hi is not None and hi.role == "hi" and hi.group == c.group:
                    chart.bands.append((x, np.asarray(data[:final, c.index], dtype=np.float64),
                                        np.asarray(data[:final, hi.index], dtype=np.float64), color, faint))
    return chart


def worst_layers(run: Any, tag: str, key: str, n: int = WORST_N) -> tuple[float | None, list[tuple[str, float]]]:
    """The ``n`` worst layers of panel ``tag`` at the run's last final epoch, by ``key``: highest first for
    death rates and values, lowest first for activation rates (svg_heatmap.direction). Every layer counts,
    hidden or not, except for the rates the layers whose rates are set by their kind (dropout outputs, embedding
    gradients: :func:`~monitorch_widget.record.health.rows.rates_by_construction`). Returns (epoch, [(layer, value)]);
    NaN values are skipped, and so are rates at their best end (a death rate of 0, an activation rate of 1: nothing
    to point at), as in the widget's list (js/overview/topslot.ts)."""
    final = _final(run)
    if final <= 0:
        return None, []
    row = run.data[final - 1]
    rates = key in ("activation_rate", "death_rate")
    best = 0.0 if key == "death_rate" else 1.0 if key == "activation_rate" else None
    vals = [(c.group, float(row[c.index])) for c in run.columns
            if c.panel == tag and c.key == key and c.role == "line" and math.isfinite(float(row[c.index]))
            and not (rates and rates_by_construction(c.group, c.module_type)) and float(row[c.index]) != best]
    sign = -1.0 if hm.direction(key) < 0 else 1.0
    vals.sort(key=lambda gv: -sign * gv[1])
    return float(run.epochs[final - 1]), vals[:n]


def _heatmap_section(run: Any, tag: str, prob: bool, logy: bool, groups: list[str], width: int,
                     y: float) -> tuple[str, float]:
    """Section of a per-layer panel: title, worst-layers lines, one heatmap per key side by side."""
    final = _final(run)
    keys: list[str] = []
    cols: dict[tuple[str, str], int] = {}
    for c in run.columns:
        if c.panel == tag and c.role == "line":
            cols[(c.group, c.key)] = c.index
            if c.key not in keys:
                keys.append(c.key)
    keys.sort(key=lambda k: -hm.direction(k))  # death rates first: the diagnosis
    out = [f'<g class="mw-static-section" data-panel={quoteattr(tag)}>'
           f'<text x="{PAD}" y="{round(y + 14)}" font-size="12" font-weight="600" fill="{FG}">{svg_text(tag)}'
           f'<tspan font-weight="400" fill="{MUTED}">'
           f'{svg_text(f" · {len(groups)} layer" + ("s" if len(groups) != 1 else ""))}</tspan></text>']
    y += TITLE_H
    for key in keys:
        epoch, worst = worst_layers(run, tag, key)
        if not worst:
            continue
        which = "lowest" if hm.direction(key) < 0 else "highest"
        names = ", ".join(f"{g} {fmt(v)}" for g, v in worst)
        out.append(f'<text class="mw-static-worst" x="{PAD}" y="{round(y + 10)}" font-size="11" fill="{FG}">'
                   f'{svg_text(f"{which} {key} at epoch {fmt(epoch or 0)}: {names}")}</text>')
        y += 15
    # layers x epochs per key; a layer without that key is all NaN (the extra last column of `padded`)
    padded = np.concatenate([run.data[:final], np.full((final, 1), np.nan)], axis=1)
    nan_col = padded.shape[1] - 1
    matrices = {k: padded[:, [cols.get((g, k), nan_col) for g in groups]].T for k in keys}
    gap = 16
    hw = (width - 2 * PAD - LABEL_W - gap * (len(keys) - 1)) / max(len(keys), 1)
    rows = hm.bins(len(groups), hm.MAX_ROWS)
    n_rows = int(rows.size)
    top = y + 16
    out.append(f'<g text-anchor="end" font-size="8" fill="{FG}">')
    for i, start in enumerate(rows.tolist()):
        end = int(rows[i + 1]) if i + 1 < n_rows else len(groups)
        label = groups[start] if end - start == 1 else f"{groups[start]} … {groups[end - 1]} ({end - start})"
        # cut in the middle, as the widget does: names share their start, their ends tell them apart
        shown = label if len(label) <= 30 else label[:12] + "…" + label[-17:]
        # the whole name as its tooltip (plain text: a sanitizer that drops the SVG leaves only these few names)
        title = f"<title>{escape(label)}</title>" if shown != label else ""
        out.append(f'<text class="mw-static-layer" x="{PAD + LABEL_W - 4}" y="{round(top + i * ROW_H + ROW_H - 1.5)}">'
                   f'{svg_text(shown)}{title}</text>')
    out.append("</g>")
    first, last = (float(run.epochs[0]), float(run.epochs[final - 1])) if final else (0.0, 0.0)
    for j, key in enumerate(keys):
        ox = PAD + LABEL_W + j * (hw + gap)
        m = matrices[key]
        binned, _, _ = hm.bin_matrix(m, hm.direction(key))
        finite = binned[np.isfinite(binned)]
        log = logy and not prob and finite.size > 0 and bool((finite > 0).all())
        lo, hi = (0.0, 1.0) if prob or not finite.size else (float(finite.min()), float(finite.max()))
        colors = hm.palette(hm.ramp_of(key))
        out.append(f'<g class="mw-static-heatmap" data-panel={quoteattr(tag)} data-key={quoteattr(key)}>'
                   f'<text x="{round(ox)}" y="{round(top - 5)}" font-size="10" fill="{FG}">{svg_text(key)}</text>'
                   + hm.colour_bar(colors, ox + hw - 90, top - 12, 70, fmt(lo), fmt(hi))
                   + (hm.image(hm.levels_of(binned, lo, hi, log), colors, ox, top, hw, n_rows * ROW_H)
                      if binned.size else "")
                   + f'<rect x="{round(ox)}" y="{round(top)}" width="{round(hw)}" height="{n_rows * ROW_H}" '
                   f'fill="none" stroke="#ccc"/>'
                   + f'<text x="{round(ox)}" y="{round(top + n_rows * ROW_H + 10)}" font-size="9" fill="{MUTED}">'
                   f'{svg_text(fmt(first))}</text><text x="{round(ox + hw)}" y="{round(top + n_rows * ROW_H + 10)}" '
                   f'text-anchor="end" font-size="9" fill="{MUTED}">{svg_text(f"{fmt(last)} epoch")}</text></g>')
    out.append("</g>")
    return "".join(out), top + n_rows * ROW_H + 14 + PAD


def record_to_svg(record: Any, *, width: int = WIDTH, filters: dict[str, Any] | None = None,
                  max_width_px: int | None = None) -> str:
    """An SVG (a string starting with ``<svg``) of the record: the current run, earlier runs faint in the
    line charts. ``filters`` (protocol 3) leaves out hidden panels, modules, module types and earlier runs."""
    f = filters or {}
    hidden_panels = set(f.get("hidden_panels") or [])
    hidden_modules = set(f.get("hidden_modules") or [])
    hidden_types = set(f.get("hidden_types") or [])
    hidden_runs = {int(r) for r in f.get("hidden_runs") or []}
    logy_over = dict(f.get("logy") or {})

    runs = list(getattr(record, "runs", []))
    body: list[str] = []
    y: float = PAD
    if not runs:
        body.append(f'<text x="{PAD}" y="{y + 14}" font-size="12" fill="{MUTED}">'
                    f'{svg_text("No training data recorded yet.")}</text>')
        y += 24
    else:
        run = runs[-1]
        final, cur = _final(run), len(runs) - 1
        head = f"{run.label} · {final} epoch{'s' if final != 1 else ''}"
        if cur:
            head += f" · {cur} earlier run{'s' if cur != 1 else ''} (faint"
            head += f", last {MAX_EARLIER} drawn)" if cur > MAX_EARLIER else ")"
        problems, notices = run.problem_counts() if hasattr(run, "problem_counts") else (0, 0)
        head += problems_note(problems, notices)
        body.append(f'<text x="{PAD}" y="{y + 12}" font-size="12" font-weight="600" fill="{FG}">{svg_text(head)}</text>')
        y += 20
        panels = [p for p in run.panels if p.tag not in hidden_panels]
        bigs = [p for p in panels if p.big]
        per_row = max(1, (width - PAD) // (BIG_W + PAD))
        by_panel: dict[int, dict[str, list[Any]]] = {}  # run index -> panel -> columns, for this call
        for start in range(0, len(bigs), per_row):
            row_h = 0.0
            for k, p in enumerate(bigs[start:start + per_row]):
                ox = PAD + k * (BIG_W + PAD)
                colors: dict[str, str] = {}
                chart = _line_chart(runs, p.tag, p.kind == "probability", logy_over.get(p.tag, p.logy), colors,
                                    hidden_runs, by_panel)
                leg, leg_h = legend(colors, ox + 4, y + TITLE_H + BIG_H + 12, BIG_W - 8)
                body.append(f'<g class="mw-static-panel" data-panel={quoteattr(p.tag)} data-group={quoteattr(p.tag)}>'
                            f'<text x="{ox}" y="{round(y + 14)}" font-size="12" font-weight="600" fill="{FG}">'
                            f'{svg_text(p.tag)}</text>{chart.render(ox, y + TITLE_H)}{leg}</g>')
                row_h = max(row_h, TITLE_H + BIG_H + 4 + leg_h)
            y += row_h + PAD
        for p in panels:
            if p.big:
                continue
            types = {c.group: c.module_type for c in run.columns if c.panel == p.tag}
            groups = [g for g in run.groups(p.tag) if g not in hidden_modules and types.get(g) not in hidden_types]
            if groups and _final(run) > 0:
                svg, y = _heatmap_section(run, p.tag, p.kind == "probability", logy_over.get(p.tag, p.logy),
                                          groups, width, y)
                body.append(svg)
    height = math.ceil(y + PAD)
    style = f"max-width:{max_width_px}px;" if max_width_px else "max-width:100%;"
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="mw-static-svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="monitorch-widget training overview" '
            f'style="{style}height:auto;background:#fff;{FONT}">'
            f'{"".join(body)}</svg>')


# While a live view of the widget is in the same output area (JupyterLab, Notebook 7: .mw-root is the
# front-end's root element), the sibling picture is hidden; a dead or absent widget leaves it visible.
HIDE_WHEN_LIVE = (f"<style>.jp-OutputArea:has(.mw-root)>.jp-OutputArea-child:has(.{SIBLING_CLASS})"
                  "{display:none}.mw-static-untrusted{display:none}</style>")
# Shown only where the <style> above was stripped: JupyterLab sanitizes an untrusted notebook's HTML (no SVG,
# no inline images survive it); the same rule hides this note everywhere the picture renders.
UNTRUSTED_NOTE = ('<div class="mw-static-untrusted" style="font-size:12px;color:#a60">monitorch-widget: the '
                  'training picture of this output needs a trusted notebook (JupyterLab: File → Trust Notebook, '
                  'or run the cells again).</div>')


def fallback_html(record: Any, *, filters: dict[str, Any] | None = None, sibling: bool = False) -> str:
    """The static picture as ``text/html``: extra top sections, the SVG and a one-line caption.

    ``sibling=True`` gives the variant published as its own output next to the widget: it carries the
    style rule that hides it while a live view of the widget shows in the same output area."""
    try:
        svg = record_to_svg(record, filters=filters)
    except Exception as exc:  # noqa: BLE001 - a broken picture must never break display()
        svg = f"<pre>{escape(f'monitorch-widget: static picture unavailable ({exc!r})')}</pre>"
    cls = f"mw-static {SIBLING_CLASS}" if sibling else "mw-static"
    return (f'<div class="{cls}" style="overflow-x:auto">' + (HIDE_WHEN_LIVE + UNTRUSTED_NOTE if sibling else "")
            + findings_section(record, (filters or {}).get("hidden_runs") or ()) + svg +
            '<div style="font-size:11px;color:#888">Static snapshot of the monitorch-widget panels '
            '(the interactive widget needs a running kernel).</div></div>')


def iter_groups(svg_root: Any) -> Iterable[Any]:
    """Test helper: the line charts' ``<g>`` elements of a parsed SVG (xml.etree)."""
    ns = "{http://www.w3.org/2000/svg}"
    return [g for g in svg_root.iter(ns + "g") if g.get("class") == "mw-static-panel"]


def iter_heatmaps(svg_root: Any) -> Iterable[Any]:
    """Test helper: the heatmaps' ``<g>`` elements (``data-panel``, ``data-key``) of a parsed SVG."""
    ns = "{http://www.w3.org/2000/svg}"
    return [g for g in svg_root.iter(ns + "g") if g.get("class") == "mw-static-heatmap"]
