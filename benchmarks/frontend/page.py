"""Times the real bundle in headless Chromium on a page built like the offline export (no kernel), in a
1400x1000 viewport (as the browser tests), so that only part of the ``--layers`` charts is on screen.

* **first render**: ``initialize`` + ``render`` of a record with ``--layers`` per-layer charts (one panel of
  small multiples, two lines each) plus the big panels, ``--epochs`` epochs each: the synchronous work (store
  from the snapshot, layout, every chart container, the charts on screen drawn), the same plus a forced page
  layout, and the same up to the end of the first frame after it (canvas raster included). Median over
  ``--loads`` page loads. Target: <= 300 ms.
* **one tick**: a protocol-2b ``delta`` message for one new epoch, produced by the kernel's own encoder
  (``sync.encode_delta``) from real record events, fed through the page model's ``msg:custom``; then every
  frame until the view reports no visible chart left to draw (``.mw-root[data-pending]``) and the charts on
  screen show the new epoch (checked, untimed). A frame's cost runs from its start (the rAF timestamp) to a
  message posted from a rAF callback queued after the view's, which runs once the browser has finished the
  frame: script, style, layout, paint and the raster of the canvases drawn (in software rendering the raster
  costs more than the script). Target: the longest frame of a tick <= 16 ms (no dropped frame at 60 Hz);
  the total work, frames used and latency are reported. Median over ``--ticks`` ticks.
* **scroll-through** (the deferred cost): the page is scrolled one viewport at a time to the bottom; the
  frames after each step are timed the same way until every chart on screen is drawn. Reported: the work of
  all those frames (the cost the first render deferred) and the longest one (target <= 16 ms).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

CHROMIUM = Path(os.environ.get("MW_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
TARGET_RENDER_MS = 300.0
TARGET_TICK_MS = 16.0
# as in the browser tests
VIEWPORT = {"width": 1400, "height": 1000}


class _Tag:
    def __init__(self, kind: str, big: bool, logy: bool = False) -> None:
        self.type = type("T", (), {"name": kind})()
        self.big_plot = big
        self.logy = logy


def _values(rng: np.random.Generator, epoch: int, layers: int) -> tuple[dict[str, Any], dict[str, Any],
                                                                         dict[str, Any], dict[str, Any]]:
    t = epoch / 100.0
    loss = {"Loss & Metrics": {"train_loss mean": float(np.exp(-t) + 0.05 * rng.random()),
                               "val_loss mean": float(np.exp(-0.8 * t) + 0.1 + 0.05 * rng.random())}}
    band = {"Loss & Metrics": {("train_loss -σ", "train_loss +σ"): (loss["Loss & Metrics"]["train_loss mean"] * 0.8,
                                                                   loss["Loss & Metrics"]["train_loss mean"] * 1.2)}}
    act = rng.random(layers) * 0.2 + 0.4 + 0.1 * np.sin(t + np.arange(layers))
    dead = np.clip(rng.random(layers) * 0.05 + 0.02 * t * (np.arange(layers) % 7 == 0), 0, 1)
    per_layer = {f"block{i // 4}.relu{i % 4}": {"activation_rate": float(act[i]), "death_rate": float(dead[i])}
                 for i in range(layers)}
    warn = {"Warning Output Activations": {"worst activation_rate": float(act.min()),
                                           "worst death_rate": float(dead.max())}}
    return loss, band, per_layer, warn


def build_record(layers: int, epochs: int, seed: int = 0) -> tuple[Any, Any]:
    """A record with `epochs` epochs of synthetic values, and a function adding one more epoch."""
    from monitorch_widget.record import Record

    rng = np.random.default_rng(seed)
    rec = Record()
    rec.register_tags("Loss & Metrics", _Tag("NUMERICAL", True, logy=True), lens="LossMetrics")
    rec.register_tags("Output Activations", _Tag("PROBABILITY", False), lens="OutputActivation")
    rec.register_tags("Warning Output Activations", _Tag("PROBABILITY", True), lens="OutputActivation")
    rec.start_run("run 1: Synthetic", {f"block{i // 4}.relu{i % 4}": "ReLU" for i in range(layers)})

    def add_epoch(e: int) -> None:
        loss, band, per_layer, warn = _values(rng, e, layers)
        rec.open_row(e)
        rec.plot_numerical_values(e, "Loss & Metrics", loss, band)
        rec.plot_probabilities(e, "Output Activations", per_layer)
        rec.plot_probabilities(e, "Warning Output Activations", warn)
        rec.close_row()

    for e in range(1, epochs + 1):
        add_epoch(e)
    return rec, add_epoch


def make_ticks(rec: Any, add_epoch: Any, first_epoch: int, n: int) -> list[dict[str, Any]]:
    """`n` delta messages (one epoch each) as the kernel's sync would send them, buffers base64-encoded."""
    from monitorch_widget.record.protocol import PendingDelta as _Pending
    from monitorch_widget.record.protocol import encode_delta

    out = []
    for k in range(n):
        pending = _Pending()
        unsubscribe = rec.subscribe(pending.add)
        try:
            add_epoch(first_epoch + k)
        finally:
            unsubscribe()
        msg, buffers = encode_delta(pending, seq=k + 1, last_status=None)
        out.append({"msg": msg, "buffers": [base64.b64encode(b).decode("ascii") for b in buffers],
                    "bytes": sum(len(b) for b in buffers)})
    return out


# One frame's cost, measured from outside: the frame's start (the rAF timestamp) to a message posted from a
# rAF callback queued after the view's, which runs once the browser has finished the frame (script, style,
# layout, paint and the canvas raster that follows the drawing calls, which in software rendering costs more
# than the script itself). ``pending`` is the view's count of visible charts still to draw.
_FRAME_JS = """
  const frame = () => new Promise((r) => requestAnimationFrame((ts) => {
    const t = performance.now();
    const ch = new MessageChannel();
    ch.port1.onmessage = () => { ch.port1.close(); r({ts, start: t, end: performance.now()}); };
    ch.port2.postMessage(0);
  }));
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const root = document.querySelector('.mw-root');
  // charts the view shows (a per-layer panel with many layers is a heatmap by default: its charts stay hidden)
  const panels = [...document.querySelectorAll('.mw-panel')].filter((p) => !p.hidden);
  const onScreen = () => panels.filter((p) => {
    if (p.hidden) return false;
    const r = p.getBoundingClientRect();
    return r.bottom > 0 && r.top < innerHeight && r.right > 0 && r.left < innerWidth && r.height > 0;
  });
  // frames until the view reports nothing visible left to draw (and `done()` holds), each frame's cost
  const drainFrames = async (since, done, maxFrames = 120) => {
    const costs = [];
    let last = since;
    for (let i = 0; i < maxFrames; i++) {
      const f = await frame();
      costs.push(f.end - Math.max(f.ts, last));
      last = f.end;
      if (root.dataset.pending === '0' && done()) return {costs, end: f.end, ok: true};
    }
    return {costs, end: last, ok: false};
  };
"""

_TICK_JS = """
async ([ticks, probe, gapMs]) => {
""" + _FRAME_JS + """
  const b64 = (s) => { const bin = atob(s); const u = new Uint8Array(bin.length);
                       for (let i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i); return u.buffer; };
  const probeEl = document.querySelector(probe);
  const out = [];
  for (const t of ticks) {
    const bufs = t.buffers.map(b64);
    const before = probeEl.dataset.drawnEpochs;
    await sleep(gapMs);
    await frame();                      // start right after a frame, like a message arriving mid-frame
    const t0 = performance.now();
    window.__mw.deliver(t.msg, bufs);   // store.applyDelta + the view schedules its redraw (rAF)
    const t1 = performance.now();
    const d = await drainFrames(t1, () => probeEl.dataset.drawnEpochs !== before);
    // untimed check: every chart on screen shows the new epoch
    const want = probeEl.dataset.epochs;
    const stale = onScreen().filter((p) => p.dataset.drawnEpochs !== want).length;
    out.push({handler: t1 - t0, frames: d.costs.length, work: (t1 - t0) + d.costs.reduce((a, b) => a + b, 0),
              maxFrame: Math.max(...d.costs), latency: d.end - t0, ok: d.ok, stale, visible: onScreen().length,
              epochs: Number(want)});
  }
  // floor of the method: the same measurement around a frame with nothing to draw
  const floor = [];
  for (let i = 0; i < 15; i++) {
    await sleep(gapMs);
    await frame();
    const t1 = performance.now();
    const f = await frame();
    floor.push(f.end - Math.max(f.ts, t1));
  }
  return {ticks: out, floor};
}
"""

# First render up to the end of the first frame drawn after it (canvas raster included): the page marks itself
# ready right after render + a forced layout (``layoutMs`` after render started); the frame after that is timed
# as in _FRAME_JS.
_FIRST_FRAME_JS = """
new MutationObserver((_, obs) => {
  if (!document.documentElement || document.documentElement.dataset.mwReady !== '1') return;
  obs.disconnect();
  const ready = performance.now();
  requestAnimationFrame(() => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => {
      ch.port1.close();
      window.__mwFirstFrame = performance.now() - ready + (window.__mw ? window.__mw.layoutMs : NaN);
    };
    ch.port2.postMessage(0);
  });
}).observe(document, {attributes: true, subtree: true, attributeFilter: ['data-mw-ready']});
"""

# The deferred cost: scroll the page through, one viewport at a time, until every chart was drawn; the work of
# every frame that follows a scroll step, until the view has nothing visible left to draw, is summed.
_SCROLL_JS = """
async ([gapMs]) => {
""" + _FRAME_JS + """
  const se = document.scrollingElement;
  const drawnBefore = panels.filter((p) => p.dataset.drawnEpochs === p.dataset.epochs).length;
  const costs = [];
  let steps = 0, incomplete = 0;
  while (true) {
    await sleep(gapMs);
    await frame();
    const top = se.scrollTop;
    se.scrollTop = top + Math.round(innerHeight * 0.9);
    if (se.scrollTop === top) break;
    steps++;
    const t1 = performance.now();
    // the observer reports after the next frame's layout, the view draws in the frame after that
    const d = await drainFrames(t1, () => onScreen().every((p) => p.dataset.drawnEpochs === p.dataset.epochs), 240);
    if (!d.ok) incomplete++;
    costs.push(...d.costs);
  }
  se.scrollTop = 0;
  const drawnAfter = panels.filter((p) => p.dataset.drawnEpochs === p.dataset.epochs).length;
  return {steps, incomplete, frames: costs.length, work: costs.reduce((a, b) => a + b, 0),
          maxFrame: costs.length ? Math.max(...costs) : 0, drawnBefore, drawnAfter, total: panels.length};
}
"""


def _launch() -> tuple[Any, Any]:
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install -y chromium (or set MW_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    return pw, browser


def run(layers: int = 100, epochs: int = 1000, ticks: int = 30, loads: int = 5, gap_ms: float = 80.0,
        verbose: bool = True) -> dict[str, Any]:
    from monitorch_widget.views.html_export import render_html

    rec, add_epoch = build_record(layers, epochs)
    html = render_html(rec, title=f"benchmark: {layers} layers x {epochs} epochs", static_fallback=False)
    deltas = make_ticks(rec, add_epoch, epochs + 1, ticks)
    n_charts = layers + 2
    with tempfile.TemporaryDirectory(prefix="mw-bench-") as tmp:
        path = Path(tmp) / "bench.html"
        path.write_text(html, encoding="utf-8")
        pw, browser = _launch()
        try:
            context = browser.new_context(viewport=VIEWPORT)
            external: list[str] = []
            context.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:")
                          else (external.append(r.request.url), r.abort()))
            page = context.new_page()
            page.add_init_script(_FIRST_FRAME_JS)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            renders, layouts, drawn_first, first_frames = [], [], [], []
            for _ in range(loads):
                page.goto(path.as_uri())
                page.wait_for_function("() => document.documentElement.dataset.mwReady", timeout=120_000)
                page.wait_for_function("() => window.__mwFirstFrame !== undefined || window.__mw.error", timeout=30_000)
                got = page.evaluate("() => ({ok: window.__mw.ready, err: window.__mw.error, r: window.__mw.renderMs,"
                                    " l: window.__mw.layoutMs, f: window.__mwFirstFrame, n: document.querySelectorAll('.mw-panel').length,"
                                    " e: document.querySelector('.mw-big .mw-panel')"
                                    "    .dataset.epochs, d: [...document.querySelectorAll('.mw-panel')]"
                                    "    .filter((p) => p.dataset.drawnEpochs).length})")
                if not got["ok"]:
                    raise RuntimeError(f"page failed: {got['err']} {errors}")
                if got["n"] != n_charts or got["e"] != str(epochs):
                    raise RuntimeError(f"expected {n_charts} charts with {epochs} epochs, got {got}")
                renders.append(got["r"])
                drawn_first.append(got["d"])
                layouts.append(got["l"])
                first_frames.append(got["f"])
            probe = ".mw-big .mw-panel"
            got_ticks = page.evaluate(_TICK_JS, [[{"msg": d["msg"], "buffers": d["buffers"]} for d in deltas], probe,
                                           gap_ms])
            res, floor = got_ticks["ticks"], got_ticks["floor"]
            if res[-1]["epochs"] != epochs + ticks:
                raise RuntimeError(f"ticks not applied: last panel shows {res[-1]['epochs']} epochs")
            bad = [r for r in res if not r["ok"] or r["stale"]]
            if bad:
                raise RuntimeError(f"ticks left charts on screen undrawn: {bad[:3]}")
            scroll = page.evaluate(_SCROLL_JS, [gap_ms])
            if scroll["drawnAfter"] != scroll["total"] or scroll["incomplete"]:
                raise RuntimeError(f"scrolling through did not draw every chart: {scroll}")
            if external:
                raise RuntimeError(f"the page tried to reach the network: {external}")
            if errors:
                raise RuntimeError(f"page errors: {errors}")
            context.close()
        finally:
            browser.close()
            pw.stop()

    work = [r["work"] for r in res]
    result = {
        "layers": layers, "epochs": epochs, "charts": n_charts, "loads": loads, "ticks": ticks,
        "viewport": [VIEWPORT["width"], VIEWPORT["height"]],
        "html_bytes": len(html.encode("utf-8")),
        "delta_bytes_median": statistics.median(d["bytes"] for d in deltas),
        "first_render_ms": statistics.median(renders),
        "first_render_layout_ms": statistics.median(layouts),
        "first_render_frame_ms": statistics.median(first_frames),
        "charts_drawn_at_first_render": statistics.median(drawn_first),
        "charts_on_screen": statistics.median(r["visible"] for r in res),
        "tick_handler_ms": statistics.median(r["handler"] for r in res),
        "tick_work_ms": statistics.median(work),
        "tick_work_p90_ms": float(np.percentile(work, 90)),
        "tick_max_frame_ms": statistics.median(r["maxFrame"] for r in res),
        "tick_max_frame_p90_ms": float(np.percentile([r["maxFrame"] for r in res], 90)),
        "tick_frames_median": statistics.median(r["frames"] for r in res),
        "tick_frames_max": max(r["frames"] for r in res),
        "tick_latency_ms": statistics.median(r["latency"] for r in res),
        "method_floor_ms": statistics.median(floor),
        "scroll_steps": scroll["steps"],
        "scroll_charts_drawn": scroll["drawnAfter"] - scroll["drawnBefore"],
        "scroll_work_ms": scroll["work"],
        "scroll_frames": scroll["frames"],
        "scroll_max_frame_ms": scroll["maxFrame"],
    }
    if verbose:
        print_report(result)
    return result


def print_report(r: dict[str, Any], file: Any = None) -> None:
    file = file or sys.stdout

    def verdict(v: float, target: float) -> str:
        return "PASS" if v <= target else "MISS"

    rows = [
        ("first render (snapshot -> visible charts drawn)", r["first_render_ms"], TARGET_RENDER_MS),
        ("first render + page layout", r["first_render_layout_ms"], TARGET_RENDER_MS),
        ("first render -> end of its first frame (raster incl.)", r["first_render_frame_ms"], TARGET_RENDER_MS),
        ("one tick: longest frame (median)", r["tick_max_frame_ms"], TARGET_TICK_MS),
        ("one tick: longest frame, p90", r["tick_max_frame_p90_ms"], TARGET_TICK_MS),
        ("scroll-through: longest frame", r["scroll_max_frame_ms"], TARGET_TICK_MS),
    ]
    print(f"front-end: {r['charts']} charts ({r['layers']} per-layer + 2 big), {r['epochs']} epochs; "
          f"viewport {r['viewport'][0]}x{r['viewport'][1]}; page {r['html_bytes'] / 1e6:.2f} MB; "
          f"delta {r['delta_bytes_median']:.0f} B/tick; median of {r['loads']} loads / {r['ticks']} ticks", file=file)
    w = max(len(x[0]) for x in rows) + 14
    print(f"{'measure'.ljust(w)}  {'ms':>8}  {'target':>7}  verdict", file=file)
    for name, v, target in rows:
        print(f"{name.ljust(w)}  {v:8.1f}  {target:7.0f}  {verdict(v, target)}", file=file)
    info = [
        ("charts drawn at first render (rest: when scrolled to)", f"{r['charts_drawn_at_first_render']:.0f}"),
        ("charts on screen", f"{r['charts_on_screen']:.0f}"),
        ("one tick: all on-screen charts drawn: work (median)", f"{r['tick_work_ms']:.1f}"),
        ("one tick: same, p90", f"{r['tick_work_p90_ms']:.1f}"),
        ("one tick: frames used (median / max)", f"{r['tick_frames_median']:.0f} / {r['tick_frames_max']}"),
        ("one tick: message -> last chart drawn (incl. vsync waits)", f"{r['tick_latency_ms']:.1f}"),
        ("one tick: handler alone", f"{r['tick_handler_ms']:.2f}"),
        ("floor: one frame with nothing to draw", f"{r['method_floor_ms']:.2f}"),
        (f"scroll-through ({r['scroll_steps']} steps): charts drawn on the way", f"{r['scroll_charts_drawn']}"),
        ("scroll-through: work of all its frames (deferred cost)", f"{r['scroll_work_ms']:.1f}"),
        ("scroll-through: frames", f"{r['scroll_frames']}"),
    ]
    for name, v in info:
        print(f"{('(info) ' + name).ljust(w)}  {v:>8}", file=file)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.frontend", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--ticks", type=int, default=30)
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args(argv)
    result = run(args.layers, args.epochs, args.ticks, args.loads)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0
