"""Times the real bundle in headless Chromium on a page built like the offline export (no kernel).

* **first render**: ``initialize`` + ``render`` of a record with ``--layers`` per-layer charts (one panel of
  small multiples, two lines each) plus the big panels, ``--epochs`` epochs each; the synchronous work
  (store from the snapshot, layout, every uPlot drawn) and the same plus a forced style/layout of the page.
  Median over ``--loads`` page loads. Target: <= 300 ms.
* **one tick**: a protocol-2b ``delta`` message for one new epoch, produced by the kernel's own encoder
  (``sync.encode_delta``) from real record events, fed through the page model's ``msg:custom``; timed from
  the handler call to the end of the animation frame that redraws (``performance.now()`` around the handler,
  then a ``requestAnimationFrame`` callback queued after the view's: the frame's start time is its
  timestamp, so "work" = handler + redraw inside that frame, "latency" also counts the wait for the frame).
  Median over ``--ticks`` ticks, spaced so the view's redraw throttle never delays one. Target: <= 16 ms
  (one frame at 60 Hz).
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
    from monitorch_widget.sync import _Pending, encode_delta

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


_TICK_JS = """
async ([ticks, probe, gapMs]) => {
  const b64 = (s) => { const bin = atob(s); const u = new Uint8Array(bin.length);
                       for (let i = 0; i < bin.length; i++) u[i] = bin.charCodeAt(i); return u.buffer; };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const frame = () => new Promise((r) => requestAnimationFrame((ts) => r(ts)));
  const panel = document.querySelector(probe);
  const out = [];
  for (const t of ticks) {
    const bufs = t.buffers.map(b64);
    const before = panel.dataset.epochs;
    await sleep(gapMs);
    await frame();                      // start right after a frame, like a message arriving mid-frame
    const t0 = performance.now();
    window.__mw.deliver(t.msg, bufs);   // store.applyDelta + the view schedules its redraw (rAF)
    const t1 = performance.now();
    const ts = await frame();           // queued after the view's callback: runs once it has drawn
    const t2 = performance.now();
    let inFrame = panel.dataset.epochs !== before;
    if (!inFrame) {                     // the view deferred the redraw (throttle): wait for it, flag it
      while (panel.dataset.epochs === before) await frame();
    }
    const t3 = performance.now();
    out.push({handler: t1 - t0, draw: inFrame ? t2 - Math.max(ts, t1) : NaN, latency: t3 - t0, inFrame,
              epochs: Number(panel.dataset.epochs)});
  }
  // floor of the method: the same measurement around a frame with nothing to draw
  const floor = [];
  for (let i = 0; i < 15; i++) {
    await sleep(gapMs);
    await frame();
    const t1 = performance.now();
    const ts = await frame();
    floor.push(performance.now() - Math.max(ts, t1));
  }
  return {ticks: out, floor};
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
    from monitorch_widget.export import render_html

    rec, add_epoch = build_record(layers, epochs)
    html = render_html(rec, title=f"benchmark: {layers} layers x {epochs} epochs", static_fallback=False)
    deltas = make_ticks(rec, add_epoch, epochs + 1, ticks)
    n_charts = layers + 2
    with tempfile.TemporaryDirectory(prefix="mw-bench-") as tmp:
        path = Path(tmp) / "bench.html"
        path.write_text(html, encoding="utf-8")
        pw, browser = _launch()
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            external: list[str] = []
            context.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:")
                          else (external.append(r.request.url), r.abort()))
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            renders, layouts = [], []
            for _ in range(loads):
                page.goto(path.as_uri())
                page.wait_for_function("() => document.documentElement.dataset.mwReady", timeout=120_000)
                got = page.evaluate("() => ({ok: window.__mw.ready, err: window.__mw.error, r: window.__mw.renderMs,"
                                    " l: window.__mw.layoutMs, n: document.querySelectorAll('.mw-panel').length,"
                                    " e: document.querySelector('.mw-panel[data-panel=\"Output Activations\"]')"
                                    "    .dataset.epochs})")
                if not got["ok"]:
                    raise RuntimeError(f"page failed: {got['err']} {errors}")
                if got["n"] != n_charts or got["e"] != str(epochs):
                    raise RuntimeError(f"expected {n_charts} charts with {epochs} epochs, got {got}")
                renders.append(got["r"])
                layouts.append(got["l"])
            probe = ".mw-panel[data-panel='Output Activations']"
            got_ticks = page.evaluate(_TICK_JS, [[{"msg": d["msg"], "buffers": d["buffers"]} for d in deltas], probe,
                                           gap_ms])
            res, floor = got_ticks["ticks"], got_ticks["floor"]
            if res[-1]["epochs"] != epochs + ticks:
                raise RuntimeError(f"ticks not applied: last panel shows {res[-1]['epochs']} epochs")
            if external:
                raise RuntimeError(f"the page tried to reach the network: {external}")
            context.close()
        finally:
            browser.close()
            pw.stop()

    in_frame = [r for r in res if r["inFrame"]]
    work = [r["handler"] + r["draw"] for r in in_frame]
    result = {
        "layers": layers, "epochs": epochs, "charts": n_charts, "loads": loads, "ticks": ticks,
        "html_bytes": len(html.encode("utf-8")),
        "delta_bytes_median": statistics.median(d["bytes"] for d in deltas),
        "first_render_ms": statistics.median(renders),
        "first_render_layout_ms": statistics.median(layouts),
        "tick_handler_ms": statistics.median(r["handler"] for r in res),
        "tick_work_ms": statistics.median(work) if work else float("nan"),
        "tick_work_p90_ms": float(np.percentile(work, 90)) if work else float("nan"),
        "tick_latency_ms": statistics.median(r["latency"] for r in res),
        "ticks_in_one_frame": len(in_frame),
        "method_floor_ms": statistics.median(floor),
    }
    if verbose:
        print_report(result)
    return result


def print_report(r: dict[str, Any], file: Any = None) -> None:
    file = file or sys.stdout

    def verdict(v: float, target: float) -> str:
        return "PASS" if v <= target else "MISS"

    rows = [
        ("first render (snapshot -> all charts drawn)", r["first_render_ms"], TARGET_RENDER_MS),
        ("first render + page layout", r["first_render_layout_ms"], TARGET_RENDER_MS),
        ("one tick: handler + redraw in its frame (median)", r["tick_work_ms"], TARGET_TICK_MS),
        ("one tick: same, p90", r["tick_work_p90_ms"], TARGET_TICK_MS),
    ]
    print(f"front-end: {r['charts']} charts ({r['layers']} per-layer + 2 big), {r['epochs']} epochs; "
          f"page {r['html_bytes'] / 1e6:.2f} MB; delta {r['delta_bytes_median']:.0f} B/tick; "
          f"median of {r['loads']} loads / {r['ticks']} ticks", file=file)
    w = max(len(x[0]) for x in rows)
    print(f"{'measure'.ljust(w)}  {'ms':>8}  {'target':>7}  verdict", file=file)
    for name, v, target in rows:
        print(f"{name.ljust(w)}  {v:8.1f}  {target:7.0f}  {verdict(v, target)}", file=file)
    print(f"{'(info) one tick: handler alone'.ljust(w)}  {r['tick_handler_ms']:8.2f}", file=file)
    print(f"{'(info) one tick: message -> frame drawn (incl. vsync wait)'.ljust(w)}  {r['tick_latency_ms']:8.1f}",
          file=file)
    print(f"{'(info) floor: same measurement, nothing to draw'.ljust(w)}  {r['method_floor_ms']:8.2f}", file=file)
    print(f"ticks drawn in the frame right after the message: {r['ticks_in_one_frame']}/{r['ticks']}", file=file)


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
