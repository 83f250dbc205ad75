"""Heatmaps for the static picture: layers x epochs, one colour per cell, of bounded size.

A per-layer series (one value per epoch) of any length is binned to at most ``MAX_COLS`` columns, and a
model with more than ``MAX_ROWS`` layers is shown with consecutive layers grouped into one row, so the
picture's size does not grow with the history. Within a bin the *worst* value is shown for the rates whose
direction is known (the highest death rate, the lowest activation rate: a layer that died for a while stays
visible), the mean otherwise. The cells are a palette PNG (pure Python: zlib + struct) drawn with
``image-rendering: pixelated``; the layer names beside it are SVG ``<text>``.
"""

from __future__ import annotations

import base64
import functools
import struct
import zlib

import numpy as np

MAX_COLS = 96
MAX_ROWS = 64
LEVELS = 32  # colour steps; palette index LEVELS is "no value"
NO_VALUE = (238, 238, 238)

# Colour ramps (low -> high), interpolated in LEVELS steps. Death: white -> dark red (high is bad);
# activation: dark blue -> white (low is bad); anything else: a viridis-like ramp.
_RAMPS = {
    "death": ((255, 255, 255), (252, 146, 114), (203, 24, 29), (103, 0, 13)),
    "activation": ((8, 48, 107), (33, 113, 181), (158, 202, 225), (255, 255, 255)),
    "value": ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)),
}


def direction(key: str) -> int:
    """+1 when a high value is bad (death rates), -1 when a low value is bad (activation rates), else 0."""
    k = key.lower()
    if "death" in k:
        return 1
    if "activation" in k:
        return -1
    return 0


def ramp_of(key: str) -> str:
    d = direction(key)
    return "death" if d > 0 else "activation" if d < 0 else "value"


@functools.cache
def palette(ramp: str) -> tuple[tuple[int, int, int], ...]:
    stops = np.asarray(_RAMPS[ramp], dtype=np.float64)
    pos = np.linspace(0.0, 1.0, len(stops))
    t = np.linspace(0.0, 1.0, LEVELS)
    rgb = np.stack([np.interp(t, pos, stops[:, c]) for c in range(3)], axis=1).round().astype(int)
    return tuple(tuple(int(v) for v in row) for row in rgb) + (NO_VALUE,)  # type: ignore[return-value]


def _reduce(m: np.ndarray, starts: np.ndarray, axis: int, worst: int) -> np.ndarray:
    """Reduce runs of ``m`` along ``axis`` starting at ``starts``: max / min ignoring NaN, or NaN-mean."""
    if worst > 0:
        return np.fmax.reduceat(m, starts, axis=axis)
    if worst < 0:
        return np.fmin.reduceat(m, starts, axis=axis)
    fin = np.isfinite(m)
    total = np.add.reduceat(np.where(fin, m, 0.0), starts, axis=axis)
    count = np.add.reduceat(fin.astype(np.float64), starts, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def bins(n: int, most: int) -> np.ndarray:
    """Start indices of at most ``most`` nearly equal consecutive bins over ``n`` items."""
    if n <= most:
        return np.arange(n)
    return np.unique(np.floor(np.arange(most) * (n / most)).astype(np.int64))


def bin_matrix(m: np.ndarray, worst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``m`` (layers x epochs) binned to at most MAX_ROWS x MAX_COLS; returns (binned, row starts, col starts)."""
    rows = bins(m.shape[0], MAX_ROWS)
    cols = bins(m.shape[1], MAX_COLS)
    out = m
    if cols.size < m.shape[1]:
        out = _reduce(out, cols, 1, worst)
    if rows.size < m.shape[0]:
        out = _reduce(out, rows, 0, worst)
    return out, rows, cols


def png(levels: np.ndarray, colors: tuple[tuple[int, int, int], ...]) -> bytes:
    """A palette PNG (colour type 3, 8 bits) of the 2-D array of palette indices ``levels``."""
    h, w = levels.shape
    raw = np.zeros((h, w + 1), dtype=np.uint8)  # filter byte 0 (None) before every scanline
    raw[:, 1:] = levels

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
            + chunk(b"PLTE", bytes(v for c in colors for v in c))
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 9)) + chunk(b"IEND", b""))


def levels_of(m: np.ndarray, lo: float, hi: float, log: bool = False) -> np.ndarray:
    """Palette indices of values in [lo, hi] (linear, or log10 when ``log``); NaN -> the no-value index."""
    with np.errstate(invalid="ignore", divide="ignore"):
        v = np.log10(np.where(m > 0, m, np.nan)) if log else m.astype(np.float64)
        lo_, hi_ = (np.log10(lo), np.log10(hi)) if log else (lo, hi)
        t = (v - lo_) / ((hi_ - lo_) or 1.0)
    idx = np.clip(np.floor(np.nan_to_num(t, nan=0.0) * LEVELS), 0, LEVELS - 1).astype(np.uint8)
    idx[~np.isfinite(t)] = LEVELS
    return idx


def image(levels: np.ndarray, colors: tuple[tuple[int, int, int], ...], x: float, y: float, w: float,
          h: float, cls: str = "mw-static-cells") -> str:
    """An SVG ``<image>`` showing ``levels`` stretched to w x h pixels, cells kept sharp."""
    data = base64.b64encode(png(levels, colors)).decode("ascii")
    return (f'<image class="{cls}" x="{round(x)}" y="{round(y)}" width="{round(w)}" height="{round(h)}" '
            f'preserveAspectRatio="none" style="image-rendering:pixelated" '
            f'href="data:image/png;base64,{data}"/>')


@functools.lru_cache(maxsize=64)
def colour_bar(colors: tuple[tuple[int, int, int], ...], x: float, y: float, w: float, lo: str, hi: str) -> str:
    """A horizontal colour bar with its end labels (already formatted)."""
    from .svg_charts import svg_text

    bar = image(np.arange(LEVELS, dtype=np.uint8)[None, :], colors, x, y, w, 7, "mw-static-colourbar")
    return (bar + f'<text x="{round(x - 3)}" y="{round(y + 7)}" text-anchor="end" font-size="9" fill="#888">'
            f'{svg_text(lo)}</text><text x="{round(x + w + 3)}" y="{round(y + 7)}" font-size="9" fill="#888">'
            f'{svg_text(hi)}</text>')
