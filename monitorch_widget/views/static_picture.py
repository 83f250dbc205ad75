"""A static picture of a record: one compact SVG, pure Python (no JavaScript, no matplotlib).

It is the fallback shown wherever the live widget cannot render (GitHub, nbviewer, nbconvert HTML without
widget state, a notebook reopened without a kernel) and the ``<noscript>`` part of the HTML export.

Layout follows the widget: big panels (loss & metrics, warnings) in the top rows, then one section per
per-layer panel with a small chart per module (small multiples). Probability panels use y in [0, 1];
earlier runs are drawn faint behind the current one; lo/hi bands are shaded. Long runs are reduced to the
min and max per pixel column so the SVG stays small. Every name from the record is XML-escaped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#7F7F7F",
           "#8C564B", "#17BECF")
FG = "#444"
MUTED = "#888"
GRID = "#ddd"

WIDTH = 960
PAD = 8
BIG_W, BIG_H = 306, 190
SMALL_W, SMALL_H = 180, 104
TITLE_H = 22
FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif"


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return ""
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1e4 or a < 1e-3:
        return f"{v:.1e}"
    if a >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


def _n(v: float) -> str:
    """Compact coordinate (one decimal, no trailing .0)."""
    r = round(v, 1)
    return str(int(r)) if r == int(r) else f"{r:.1f}"


class _Series:
    __slots__ = ("color", "faint", "label", "x", "y")

    def __init__(self, x: np.ndarray, y: np.ndarray, color: str, faint: bool, label: str) -> None:
        self.x, self.y, self.color, self.faint, self.label = x, y, color, faint, label


def _reduce(x: np.ndarray, y: np.ndarray, x0: float, x1: float, px: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ~2 points per pixel column (its min and max, in x order), gaps (NaN) kept."""
    if x.size <= 2 * px or x1 <= x0:
        return x, y
    bucket = np.clip(((x - x0) / (x1 - x0) * px).astype(np.int64), 0, px - 1)
    keep = np.zeros(x.size, dtype=bool)
    finite = np.isfinite(y)
    # the first NaN after a finite value keeps the gap visible
    keep[1:] |= ~finite[1:] & finite[:-1]
    order = np.arange(x.size)
    for b in np.unique(bucket[finite]):
        idx = order[(bucket == b) & finite]
        keep[idx[np.argmin(y[idx])]] = True
        keep[idx[np.argmax(y[idx])]] = True
    return x[keep], y[keep]


def _path(xs: Sequence[float], ys: Sequence[float]) -> str:
    """SVG path data with a new subpath after each gap."""
    parts: list[str] = []
    pen = False
    for x, y in zip(xs, ys):
        if not (math.isfinite(x) and math.isfinite(y)):
            pen = False
            continue
        parts.append(("L" if pen else "M") + _n(x) + " " + _n(y))
        pen = True
    # a lone point (one epoch) is invisible as a path: draw a tiny segment
    if len(parts) == 1:
        px, py = parts[0][1:].split(" ")
        parts.append(f"L{float(px) + 0.5:g} {py}")
    return "".join(parts)


class _Chart:
    """One chart: frame, a few grid lines with labels, then lines (faint first)."""

    def __init__(self, w: int, h: int, *, prob: bool, logy: bool, big: bool) -> None:
        self.w, self.h, self.prob, self.logy, self.big = w, h, prob, logy, big
        self.series: list[_Series] = []
        self.bands: list[tuple[np.ndarray, np.ndarray, np.ndarray, str, bool]] = []

    def add(self, s: _Series) -> None:
        self.series.append(s)

    def add_band(self, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, color: str, faint: bool) -> None:
        self.bands.append((x, lo, hi, color, faint))

    def render(self, ox: float, oy: float) -> str:
        left, right, top, bottom = (40 if self.big else 30), 6, 6, 16
        pw, ph = self.w - left - right, self.h - top - bottom
        xs = [s.x for s in self.series] + [b[0] for b in self.bands]
        allx = np.concatenate(xs) if xs else np.zeros(0)
        allx = allx[np.isfinite(allx)]
        x0, x1 = (float(allx.min()), float(allx.max())) if allx.size else (0.0, 1.0)
        if x1 <= x0:
            x0, x1 = x0 - 0.5, x1 + 0.5
        ys = [s.y for s in self.series] + [b[1] for b in self.bands] + [b[2] for b in self.bands]
        ally = np.concatenate(ys) if ys else np.zeros(0)
        ally = ally[np.isfinite(ally)]
        logy = self.logy and not self.prob and ally.size > 0 and bool((ally > 0).all())
        if self.prob:
            y0, y1 = 0.0, 1.0
        elif ally.size:
            vals = np.log10(ally) if logy else ally
            y0, y1 = float(vals.min()), float(vals.max())
            if y1 <= y0:
                span = abs(y0) * 0.1 or 1.0
                y0, y1 = y0 - span, y1 + span
            else:
                m = (y1 - y0) * 0.05
                y0, y1 = y0 - m, y1 + m
        else:
            y0, y1 = 0.0, 1.0

        def tx(x: np.ndarray) -> np.ndarray:
            return ox + left + (x - x0) / (x1 - x0) * pw

        def ty(y: np.ndarray) -> np.ndarray:
            with np.errstate(divide="ignore", invalid="ignore"):
                v = np.log10(y) if logy else y
            return oy + top + (1.0 - (v - y0) / (y1 - y0)) * ph

        out = [(f'<rect x="{_n(ox + left)}" y="{_n(oy + top)}" width="{pw}" height="{ph}" fill="none" '
                f'stroke="{GRID}"/>')]
        fs = 10 if self.big else 9
        for frac in (0.0, 0.5, 1.0):
            v = y0 + frac * (y1 - y0)
            py = oy + top + (1 - frac) * ph
            if 0 < frac < 1:
                out.append(f'<line x1="{_n(ox + left)}" x2="{_n(ox + left + pw)}" y1="{_n(py)}" y2="{_n(py)}" '
                           f'stroke="{GRID}"/>')
            label = _fmt(10 ** v if logy else v)
            out.append(f'<text x="{_n(ox + left - 3)}" y="{_n(py + 3)}" text-anchor="end" font-size="{fs}" '
                       f'fill="{MUTED}">{escape(label)}</text>')
        for tick, anchor in ((x0, "start"), (x1, "end")):
            out.append(f'<text x="{_n(float(tx(np.float64(tick))))}" y="{_n(oy + self.h - 4)}" '
                       f'text-anchor="{anchor}" font-size="{fs}" fill="{MUTED}">{escape(_fmt(tick))}</text>')
        px = max(pw, 1)
        for faint_pass in (True, False):
            for x, lo, hi, color, faint in self.bands:
                if faint != faint_pass:
                    continue
                ok = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(x)
                if logy:
                    ok &= (lo > 0) & (hi > 0)
                if ok.sum() < 2:
                    continue
                bx, blo, bhi = x[ok], lo[ok], hi[ok]
                if bx.size > 2 * px:  # bands: a plain stride is enough (they are shading)
                    step = math.ceil(bx.size / (2 * px))
                    bx, blo, bhi = bx[::step], blo[::step], bhi[::step]
                X, L, H = tx(bx), ty(blo), ty(bhi)
                pts = " ".join(f"{_n(a)},{_n(b)}" for a, b in zip(np.concatenate([X, X[::-1]]),
                                                                  np.concatenate([H, L[::-1]])))
                out.append(f'<polygon points="{pts}" fill="{color}" fill-opacity="{0.06 if faint else 0.18}" '
                           f'stroke="none"/>')
            for s in self.series:
                if s.faint != faint_pass:
                    continue
                y = s.y.astype(np.float64)
                if logy:
                    y = np.where(y > 0, y, np.nan)
                x, y = _reduce(s.x, y, x0, x1, px)
                d = _path(tx(x).tolist(), ty(y).tolist())
                if not d:
                    continue
                style = 'stroke-opacity="0.3" stroke-width="1"' if s.faint else 'stroke-width="1.4"'
                out.append(f'<path d="{d}" fill="none" stroke="{s.color}" {style} '
                           f'stroke-linejoin="round"><title>{escape(s.label)}</title></path>')
        return "".join(out)


def _chart_for(record: Any, run_index: int, tag: str, group: str, prob: bool, logy: bool, big: bool,
               colors: dict[str, str], w: int, h: int, hidden_runs: set[int]) -> _Chart:
    chart = _Chart(w, h, prob=prob, logy=logy, big=big)
    runs = record.runs
    # earlier runs first (faint), current run last
    for ri, run in enumerate(runs[: run_index + 1]):
        faint = ri != run_index
        if faint and run.id in hidden_runs:
            continue
        final = run.n_rows - (1 if getattr(run, "provisional", False) else 0)
        if final <= 0:
            continue
        x = np.asarray(run.epochs[:final], dtype=np.float64)
        data = run.data
        cols = [c for c in run.columns if c.panel == tag and c.group == group]
        for c in cols:
            color = colors.setdefault(c.key if c.role == "line" else (c.band_of or c.key),
                                      PALETTE[len(colors) % len(PALETTE)])
            if c.role == "line":
                label = f"{c.key}" + (f" ({run.label})" if faint else "")
                chart.add(_Series(x, np.asarray(data[:final, c.index], dtype=np.float64), color, faint, label))
            elif c.role == "lo":
                # invariant of the record: a band's "hi" column directly follows its "lo" column
                hi = run.columns[c.index + 1] if c.index + 1 < len(run.columns) else None
                if hi is not None and hi.role == "hi" and hi.group == group:
                    chart.add_band(x, np.asarray(data[:final, c.index], dtype=np.float64),
                                   np.asarray(data[:final, hi.index], dtype=np.float64), color, faint)
    return chart


def _legend(colors: dict[str, str], x: float, y: float, max_w: float) -> tuple[str, float]:
    """Swatches + keys in rows; returns (svg, height used)."""
    out: list[str] = []
    cx, cy = x, y
    for key, color in colors.items():
        w = 18 + 6.2 * len(key) + 12
        if cx + w > x + max_w and cx > x:
            cx, cy = x, cy + 14
        out.append(f'<line x1="{_n(cx)}" x2="{_n(cx + 14)}" y1="{_n(cy - 3)}" y2="{_n(cy - 3)}" stroke="{color}" '
                   f'stroke-width="2"/><text x="{_n(cx + 18)}" y="{_n(cy)}" font-size="10" fill="{FG}">'
                   f'{escape(key)}</text>')
        cx += w
    return "".join(out), (cy - y) + 14 if colors else 0.0


def record_to_svg(record: Any, *, width: int = WIDTH, filters: dict[str, Any] | None = None,
                  max_width_px: int | None = None) -> str:
    """An SVG (a string starting with ``<svg``) of the record's current run, earlier runs faint.

    ``filters`` (protocol 3) leaves out hidden panels, modules, module types and earlier runs."""
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
        body.append(f'<text x="{PAD}" y="{y + 14}" font-size="12" fill="{MUTED}">No training data recorded yet.'
                    '</text>')
        y += 24
    else:
        cur_i = len(runs) - 1
        run = runs[cur_i]
        final = run.n_rows - (1 if getattr(run, "provisional", False) else 0)
        head = f"{run.label} · {final} epoch{'s' if final != 1 else ''}"
        if cur_i:
            head += f" · {cur_i} earlier run{'s' if cur_i != 1 else ''} (faint)"
        problems = sum(getattr(run, "problems", {}).values()) if isinstance(getattr(run, "problems", None), dict) else 0
        if problems:
            head += f" · ⚠ {problems} problem{'s' if problems != 1 else ''}"
        body.append(f'<text x="{PAD}" y="{y + 12}" font-size="12" font-weight="600" fill="{FG}">{escape(head)}</text>')
        y += 20
        panels = [p for p in run.panels if p.tag not in hidden_panels]
        bigs = [p for p in panels if p.big]
        smalls = [p for p in panels if not p.big]
        # --- big panels: up to 3 per row
        per_row = max(1, (width - PAD) // (BIG_W + PAD))
        for start in range(0, len(bigs), per_row):
            row_h = 0.0
            for k, p in enumerate(bigs[start:start + per_row]):
                ox = PAD + k * (BIG_W + PAD)
                colors: dict[str, str] = {}
                chart = _chart_for(record, cur_i, p.tag, p.tag, p.kind == "probability",
                                   logy_over.get(p.tag, p.logy), True, colors, BIG_W, BIG_H, hidden_runs)
                leg, leg_h = _legend(colors, ox + 4, y + TITLE_H + BIG_H + 12, BIG_W - 8)
                body.append(f'<g class="mw-static-panel" data-panel={quoteattr(p.tag)} data-group={quoteattr(p.tag)}>'
                            f'<text x="{_n(ox)}" y="{_n(y + 14)}" font-size="12" font-weight="600" fill="{FG}">'
                            f'{escape(p.tag)}</text>{chart.render(ox, y + TITLE_H)}{leg}</g>')
                row_h = max(row_h, TITLE_H + BIG_H + 4 + leg_h)
            y += row_h + PAD
        # --- small multiples: one section per panel, one chart per module
        per_row = max(1, (width - PAD) // (SMALL_W + PAD))
        for p in smalls:
            types = {c.group: c.module_type for c in run.columns if c.panel == p.tag}
            groups = [g for g in run.groups(p.tag) if g not in hidden_modules and types.get(g) not in hidden_types]
            if not groups:
                continue
            colors = {}
            charts = []
            for g in groups:
                charts.append((g, _chart_for(record, cur_i, p.tag, g, p.kind == "probability",
                                             logy_over.get(p.tag, p.logy), False, colors, SMALL_W, SMALL_H,
                                             hidden_runs)))
            title = (f'<text x="{PAD}" y="{_n(y + 14)}" font-size="12" font-weight="600" fill="{FG}">'
                     f'{escape(p.tag)}</text>')
            leg, leg_h = _legend(colors, PAD + 8 + 7.2 * len(p.tag) + 16, y + 14, width - 3 * PAD - 7.2 * len(p.tag) - 16)
            parts = [f'<g class="mw-static-section" data-panel={quoteattr(p.tag)}>', title, leg]
            y += max(TITLE_H, leg_h + 6)
            for k, (g, chart) in enumerate(charts):
                col, row = k % per_row, k // per_row
                ox = PAD + col * (SMALL_W + PAD)
                oy = y + row * (SMALL_H + 16 + PAD)
                mtype = types.get(g) or run.module_types.get(g)
                label = f"{g} ({mtype})" if mtype else g
                shown = label if len(label) <= 30 else label[:29] + "…"
                parts.append(f'<g class="mw-static-panel" data-panel={quoteattr(p.tag)} data-group={quoteattr(g)}>'
                             f'<text x="{_n(ox + 2)}" y="{_n(oy + 11)}" font-size="10" fill="{FG}">'
                             f'<title>{escape(label)}</title>{escape(shown)}</text>'
                             f'{chart.render(ox, oy + 14)}</g>')
            n_rows = (len(charts) + per_row - 1) // per_row
            y += n_rows * (SMALL_H + 16 + PAD)
            parts.append("</g>")
            body.append("".join(parts))
    height = math.ceil(y + PAD)
    style = f"max-width:{max_width_px}px;" if max_width_px else "max-width:100%;"
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="mw-static-svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" style="{style}height:auto;background:#fff;{FONT}">'
            f'<title>monitorch-widget training panels</title>{"".join(body)}</svg>')


def fallback_html(record: Any, *, filters: dict[str, Any] | None = None) -> str:
    """The ``text/html`` fallback of the widget: the SVG in a div with a one-line caption."""
    try:
        svg = record_to_svg(record, filters=filters)
    except Exception as exc:  # noqa: BLE001 - a broken picture must never break display()
        svg = f"<pre>{escape(f'monitorch-widget: static picture unavailable ({exc!r})')}</pre>"
    from .findings_html import findings_section

    return ('<div class="mw-static" style="overflow-x:auto">' + findings_section(record) + svg +
            '<div style="font-size:11px;color:#888">Static snapshot of the monitorch-widget panels '
            '(the interactive widget needs a running kernel).</div></div>')


def iter_groups(svg_root: Any) -> Iterable[Any]:
    """Test helper: the per-chart ``<g>`` elements of a parsed SVG (xml.etree)."""
    ns = "{http://www.w3.org/2000/svg}"
    return [g for g in svg_root.iter(ns + "g") if g.get("class") == "mw-static-panel"]
