"""Self-contained offline HTML export of a record: the real widget, no kernel, no network.

``to_html(record, path)`` writes ONE file holding

* the front-end bundle (``static/widget.js``, the very code the live widget runs), imported from a
  ``blob:`` URL, so nothing is fetched;
* the record's snapshot (docs/protocol.md 2a) with its binary columns base64-encoded, decoded to
  ``ArrayBuffer`` objects in the page;
* the loader (``static/export_page.js``, built from ``js/export/page.ts``): a small in-page model
  (``get``/``set``/``on``/``off``/``save_changes``/``send`` and ``change:<key>``
  events) standing in for the kernel-backed anywidget model, so hover, filters and the log-scale toggle work
  as in the notebook; filter changes simply stay in the page;
* a static SVG (:mod:`monitorch_widget.views.static_picture`) inside ``<noscript>`` for viewers without JavaScript.

Everything embedded is JSON inside ``<script type="application/json">`` with ``<``, ``>``, ``&`` and the
JavaScript line separators written as ``\\uXXXX`` escapes, so no user text (module names, labels) can end
the script element or be parsed as HTML; the page then only writes names with ``textContent``. A
Content-Security-Policy forbids every network fetch (``connect-src 'none'``; scripts only inline or
``blob:``).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import os
import pathlib
from typing import Any

from ..record.protocol import default_filters, normalize_filters
from .findings_html import findings_section

_STATIC = pathlib.Path(__file__).parent.parent / "static"
BUNDLE_PATH = _STATIC / "widget.js"
# The page's loader and in-page model: js/export/page.ts, built as the bundle's second entry.
LOADER_PATH = _STATIC / "export_page.js"

#: Marker key of a base64-encoded binary value in the embedded JSON.
B64_KEY = "__mw_b64__"

_CSP = ("default-src 'none'; script-src 'unsafe-inline' blob:; style-src 'unsafe-inline'; "
        "img-src data: blob:; font-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'")

_PAGE_CSS = """
:root { color-scheme: light dark; }
body { margin: 0; padding: 16px 20px 32px; font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       background: #fff; color: #222; }
@media (prefers-color-scheme: dark) { body { background: #111; color: #ddd; } }
header.mw-export-head h1 { font-size: 18px; margin: 0 0 2px; font-weight: 600; }
header.mw-export-head p { margin: 0 0 12px; opacity: 0.7; font-size: 12px; }
#mw-boot { opacity: 0.7; }
"""


def _find_record(obj: Any) -> Any:
    """A Record, or an inspector / widget / visualizer holding one."""
    if hasattr(obj, "snapshot") and hasattr(obj, "runs"):
        return obj
    for attr in ("history", "record", "_record"):
        inner = getattr(obj, attr, None)
        if inner is not None and hasattr(inner, "snapshot") and hasattr(inner, "runs"):
            return inner
    raise TypeError(f"to_html() needs a monitorch_widget Record (or an inspector holding one), got {type(obj).__name__}")


def _encode(value: Any) -> Any:
    """JSON-ready copy of a snapshot: bytes -> {B64_KEY: base64}; numpy scalars -> Python numbers."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {B64_KEY: base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, int, float, bool)):
        return value.item()
    return value


def _json_for_script(obj: Any) -> str:
    """JSON that is safe as the text of a <script> element (and still parses to the same value)."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _finite(value: Any) -> Any:
    """JSON has no NaN/Infinity: non-finite floats outside the binary columns become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _read_static(path: pathlib.Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(
            f"monitorch_widget's front-end bundle is missing: {path}. "
            "From a source checkout run `npm ci && npm run build` in the repository root.")
    return path.read_text(encoding="utf-8")


def read_bundle() -> str:
    return _read_static(BUNDLE_PATH)


def read_loader() -> str:
    """The loader's code, safe as the text of an inline ``<script>`` (it never holds user text)."""
    text = _read_static(LOADER_PATH)
    if "</script" in text.lower():
        raise ValueError(f"{LOADER_PATH} contains '</script'; it cannot be inlined")
    return text


def page_state(record: Any, filters: dict[str, Any] | None = None) -> dict[str, Any]:
    """The model state the page starts from: ``history`` (snapshot) and ``filters``."""

    snap = dict(record.snapshot())
    snap.setdefault("seq", 0)
    return {
        "history": _finite(_encode(snap)),
        "filters": normalize_filters(filters) if filters is not None else default_filters(),
    }


def render_html(record: Any, *, title: str | None = None, filters: dict[str, Any] | None = None,
                bundle: str | None = None, static_fallback: bool = True) -> str:
    """The export page as a string (see :func:`to_html`)."""
    record = _find_record(record)
    bundle_text = read_bundle() if bundle is None else bundle
    if title is None:
        run = record.runs[-1] if record.runs else None
        title = f"monitorch-widget: {run.label}" if run is not None else "monitorch-widget"
    payload = {
        "b64key": B64_KEY,
        "bundle": base64.b64encode(bundle_text.encode("utf-8")).decode("ascii"),
        "state": page_state(record, filters),
    }
    n_runs = len(record.runs)
    n_epochs = [r.n_rows - int(bool(r.provisional)) for r in record.runs]
    when = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M")
    sub = (f"{n_runs} run{'s' if n_runs != 1 else ''}, "
           f"{', '.join(str(n) for n in n_epochs) or '0'} epoch(s) · exported {when} · works offline")
    noscript = ""
    if static_fallback:
        try:
            from .static_picture import record_to_svg

            # the page's overview lists the findings itself (its top slot); without JavaScript, this does
            noscript = f"<noscript>{findings_section(record)}{record_to_svg(record)}</noscript>"
        except Exception:  # noqa: BLE001 - the static picture is a nicety; the page works without it
            noscript = ""
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{html.escape(_CSP, quote=False)}\">\n",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
        "<meta name=\"generator\" content=\"monitorch-widget\">\n",
        f"<title>{html.escape(title)}</title>\n<style>{_PAGE_CSS}</style>\n</head>\n<body>\n",
        f"<header class=\"mw-export-head\"><h1>{html.escape(title)}</h1><p>{html.escape(sub)}</p></header>\n",
        "<div id=\"mw-boot\">Loading panels…</div>\n<div id=\"mw-app\"></div>\n",
        noscript, "\n",
        f"<script type=\"application/json\" id=\"mw-payload\">{_json_for_script(payload)}</script>\n",
        f"<script type=\"module\">{read_loader()}</script>\n</body>\n</html>\n",
    ])


def to_html(record: Any, path: str | os.PathLike[str], *, title: str | None = None,
            filters: dict[str, Any] | None = None) -> pathlib.Path:
    """Write ``record`` (or an inspector's record) as one self-contained, offline, interactive HTML file.

    Returns the path written. ``title`` defaults to the latest run's label; ``filters`` (protocol 3) sets
    what starts hidden."""
    out = pathlib.Path(path)
    text = render_html(record, title=title, filters=filters)
    out.write_text(text, encoding="utf-8")
    return out
