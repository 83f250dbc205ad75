"""SVG line charts of bounded size: a fixed number of points per series, whatever the history length.

Used by :mod:`.static_picture` for the big panels (loss, metrics, warnings). A series of any length is
reduced to the minimum and maximum of each of ``POINTS`` buckets along x (spikes stay visible), plus one
marker per bucket where a gap (NaN) starts, so the lines break where the record has no value. Coordinates
are whole pixels. Every text is a CDATA section (:func:`svg_text`).
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape

import numpy as np

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#7F7F7F",
           "#8C564B", "#17BECF")
FG = "#444"
MUTED = "#888"
GRID = "#ddd"
POINTS = 60  # buckets per series: at most 2 points (min, max) + 1 gap marker each


def svg_text(s: str) -> str:
    """``s`` as the character data of an SVG ``<text>`` or ``<tspan>``: a CDATA section (``]]>`` split
    across two), which browsers and XML parsers read as the text, and which an HTML sanitizer that drops the SVG
    (JupyterLab's, for an untrusted notebook) drops with it, where escaped text stayed behind as one run-on paragraph
    of every label of the picture (trial r11). A text holding ``<`` is escaped instead: no tag ever stands raw, so
    the picture stays inert in any context (the HTML export's ``<noscript>`` reads raw text up to its end tag).
    Not for ``<title>``: HTML parsers (the sanitizer's too) read a title's content as text, CDATA markup included."""
    if "<" in s:
        return escape(s)
    return "<![CDATA[" + s.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def fmt(v: float) -> str:
    """A short label for an axis value."""
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


def downsample(x: np.ndarray, y: np.ndarray, buckets: int = POINTS) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` reduced to the min and max of each of ``buckets`` equal x-ranges (x order kept), plus the
    first NaN after a finite value in each bucket (a gap stays a gap). At most ``3 * buckets`` points."""
    n = x.size
    if n <= 2 * buckets:
        return x, y
    x0, x1 = float(np.nanmin(x)), float(np.nanmax(x))
    span = (x1 - x0) or 1.0
    b = np.clip(((x - x0) / span * buckets).astype(np.int64), 0, buckets - 1)
    keep = np.zeros(n, dtype=bool)
    fin = np.isfinite(y)
    idx = np.nonzero(fin)[0]
    if idx.size:
        order = idx[np.lexsort((y[idx], b[idx]))]  # by bucket, then by value
        bb = b[order]
        change = bb[1:] != bb[:-1]
        keep[order[np.concatenate(([True], change))]] = True  # each bucket's minimum
        keep[order[np.concatenate((change, [True]))]] = True  # and maximum
    gaps = np.nonzero(~fin[1:] & fin[:-1])[0] + 1
    if gaps.size:
        gb = b[gaps]
        keep[gaps[np.concatenate(([True], gb[1:] != gb[:-1]))]] = True
    return x[keep], y[keep]


def _pixels(v: np.ndarray) -> np.ndarray:
    """Whole pixels as int64, non-finite values as a sentinel far off the page."""
    return np.where(np.isfinite(v), np.rint(np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)), -(10**9)).astype(np.int64)


def path_data(xs: np.ndarray, ys: np.ndarray) -> str:
    """SVG path data in whole pixels, a new subpath after each gap (implicit line-tos after each M);
    a point on the same pixel as the previous one is dropped."""
    X, Y = _pixels(np.asarray(xs, dtype=np.float64)), _pixels(np.asarray(ys, dtype=np.float64))
    ok = (X != -(10**9)) & (Y != -(10**9))
    prev_ok = np.concatenate(([False], ok[:-1]))
    same = np.concatenate(([False], (X[1:] == X[:-1]) & (Y[1:] == Y[:-1]))) & prev_ok
    keep = ok & ~same
    start = (ok & ~prev_ok)[keep].tolist()
    parts = [("M" if st else " ") + f"{x} {y}" for st, x, y in zip(start, X[keep].tolist(), Y[keep].tolist())]
    if len(parts) == 1:  # a lone point is invisible as a path: draw a short segment
        parts.append(f" {int(X[keep][0]) + 1} {int(Y[keep][0])}")
    return "".join(parts)


class LineChart:
    """One chart: frame, three y labels, first/last x labels, shaded bands, then lines (faint first)."""

    def __init__(self, w: int, h: int, *, prob: bool, logy: bool) -> None:
        self.w, self.h, self.prob, self.logy = w, h, prob, logy
        # (x, y, colour, faint, label) and (x, lo, hi, colour, faint)
        self.lines: list[tuple[np.ndarray, np.ndarray, str, bool, str]] = []
        self.bands: list[tuple[np.ndarray, np.ndarray, np.ndarray, str, bool]] = []

    def _ranges(self) -> tuple[float, float, float, float, bool]:
        xs = [s[0] for s in self.lines] + [b[0] for b in self.bands]
        allx = np.concatenate(xs) if xs else np.zeros(0)
        allx = allx[np.isfinite(allx)]
        x0, x1 = (float(allx.min()), float(allx.max())) if allx.size else (0.0, 1.0)
        if x1 <= x0:
            x0, x1 = x0 - 0.5, x1 + 0.5
        ys = [s[1] for s in self.lines] + [b[1] for b in self.bands] + [b[2] for b in self.bands]
        ally = np.concatenate(ys) if ys else np.zeros(0)
        ally = ally[np.isfinite(ally)]
        logy = self.logy and not self.prob and ally.size > 0 and bool((ally > 0).all())
        if self.prob or not ally.size:
            return x0, x1, 0.0, 1.0, logy
        vals = np.log10(ally) if logy else ally
        y0, y1 = float(vals.min()), float(vals.max())
        if y1 <= y0:
            span = abs(y0) * 0.1 or 1.0
            return x0, x1, y0 - span, y1 + span, logy
        m = (y1 - y0) * 0.05
        return x0, x1, y0 - m, y1 + m, logy

    def render(self, ox: float, oy: float) -> str:
        left, right, top, bottom = 40, 6, 6, 16
        pw, ph = self.w - left - right, self.h - top - bottom
        x0, x1, y0, y1, logy = self._ranges()

        def tx(x: np.ndarray) -> np.ndarray:
            return ox + left + (x - x0) / (x1 - x0) * pw

        def ty(y: np.ndarray) -> np.ndarray:
            with np.errstate(divide="ignore", invalid="ignore"):
                v = np.log10(y) if logy else y
            return oy + top + (1.0 - (v - y0) / (y1 - y0)) * ph

        out = [f'<rect x="{round(ox + left)}" y="{round(oy + top)}" width="{pw}" height="{ph}" fill="none" '
               f'stroke="{GRID}"/>']
        for frac in (0.0, 0.5, 1.0):
            v = y0 + frac * (y1 - y0)
            py = round(oy + top + (1 - frac) * ph)
            if frac == 0.5:
                out.append(f'<line x1="{round(ox + left)}" x2="{round(ox + left + pw)}" y1="{py}" y2="{py}" '
                           f'stroke="{GRID}"/>')
            out.append(f'<text x="{round(ox + left - 3)}" y="{py + 3}" text-anchor="end" font-size="10" '
                       f'fill="{MUTED}">{svg_text(fmt(10 ** v if logy else v))}</text>')
        for tick, anchor in ((x0, "start"), (x1, "end")):
            out.append(f'<text x="{round(float(tx(np.float64(tick))))}" y="{round(oy + self.h - 4)}" '
                       f'text-anchor="{anchor}" font-size="10" fill="{MUTED}">{svg_text(fmt(tick))}</text>')
        for faint_pass in (True, False):
            for x, lo, hi, color, faint in self.bands:
                if faint == faint_pass:
                    out.append(self._band(x, lo, hi, color, faint, logy, tx, ty))
            for x, y, color, faint, label in self.lines:
                if faint != faint_pass:
                    continue
                y = np.where(y > 0, y, np.nan) if logy else y
                dx, dy = downsample(x, y)
                d = path_data(tx(dx), ty(dy))
                if d:
                    style = 'stroke-opacity="0.3" stroke-width="1"' if faint else 'stroke-width="1.4"'
                    # an earlier run's line says which run it is in a tooltip; the legend names the current run's
                    # (a title's text is what a sanitizer that drops the SVG leaves: only these few)
                    tip = f"<title>{escape(label)}</title>" if faint else ""
                    out.append(f'<path d="{d}" fill="none" stroke="{color}" {style} stroke-linejoin="round">'
                               f'{tip}</path>')
        return "".join(out)

    @staticmethod
    def _band(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, color: str, faint: bool, logy: bool,
              tx: object, ty: object) -> str:
        ok = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(x)
        if logy:
            ok &= (lo > 0) & (hi > 0)
        if ok.sum() < 2:
            return ""
        bx, blo, bhi = x[ok], lo[ok], hi[ok]
        if bx.size > POINTS:  # shading: one point per bucket is enough
            pick = np.unique(np.linspace(0, bx.size - 1, POINTS).round().astype(np.int64))
            bx, blo, bhi = bx[pick], blo[pick], bhi[pick]
        X, L, H = tx(bx), ty(blo), ty(bhi)  # type: ignore[operator]
        px = np.rint(np.concatenate([X, X[::-1]])).astype(np.int64).tolist()
        py = np.rint(np.concatenate([H, L[::-1]])).astype(np.int64).tolist()
        pts = " ".join(f"{a},{b}" for a, b in zip(px, py))
        return (f'<polygon points="{pts}" fill="{color}" fill-opacity="{0.06 if faint else 0.18}" '
                f'stroke="none"/>')


def legend(colors: dict[str, str], x: float, y: float, max_w: float) -> tuple[str, float]:
    """Swatches + keys in rows; returns (svg, height used)."""
    out: list[str] = []
    cx, cy = x, y
    for key, color in colors.items():
        w = 18 + 6.2 * len(key) + 12
        if cx + w > x + max_w and cx > x:
            cx, cy = x, cy + 14
        out.append(f'<line x1="{round(cx)}" x2="{round(cx + 14)}" y1="{round(cy - 3)}" y2="{round(cy - 3)}" '
                   f'stroke="{color}" stroke-width="2"/><text x="{round(cx + 18)}" y="{round(cy)}" font-size="10" '
                   f'fill="{FG}">{svg_text(key)}</text>')
        cx += w
    return "".join(out), (cy - y) + 14 if colors else 0.0
