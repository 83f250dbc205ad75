// A per-layer panel as one heatmap: a row per layer (its name as DOM text), a column per epoch, colour = the
// panel's rate or value (worst.heatKey). Clicking a row opens that layer's full chart; hovering a cell names
// layer, epoch and value in a tooltip laid over the canvas (no layout change). Epochs without a value are
// left blank (gaps); on a log scale a value <= 0 (a vanished gradient's exact 0) is grey, not blank.

import { formatValue } from "../axes";
import type { RunData } from "../store";
import { h } from "../dom";

export const ROW_H = 12;
const LABEL_W = 170;
/** Characters of a row label that fit LABEL_W at the rows' 10 px font (a digit or letter is ~5.5 px wide). */
const LABEL_CHARS = 30;

/** A layer name cut in the middle to fit: a model's names share their start ("encoder.layer.0.attention.self."),
 * so the end ("query" / "key" / "value") is what tells them apart; cutting the end made them read the same. */
export function middleCut(name: string, max = LABEL_CHARS): string {
  if (name.length <= max) return name;
  const head = Math.ceil((max - 1) * 0.4);
  return `${name.slice(0, head)}…${name.slice(name.length - (max - 1 - head))}`;
}

// viridis, five stops (perceptually uniform, readable in light and dark themes and by colour-blind readers)
const STOPS: [number, number, number][] = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

/** The colour of t in [0, 1] as [r, g, b]. */
export function colormap(t: number): [number, number, number] {
  const x = Math.min(1, Math.max(0, t)) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(x));
  const f = x - i;
  const a = STOPS[i];
  const b = STOPS[i + 1];
  return [0, 1, 2].map((k) => Math.round(a[k] + f * (b[k] - a[k]))) as [number, number, number];
}

/** 256 colours of the colour map, r g b each, for the per-cell loop. */
const LUT = new Uint8ClampedArray(256 * 3);
for (let i = 0; i < 256; i++) LUT.set(colormap(i / 255), 3 * i);

/** A log scale's cell for a value <= 0: a neutral grey, outside the colour map. */
export const NOT_ON_LOG: [number, number, number] = [150, 150, 150];

export interface HeatRow {
  layer: string;
  col: number;
}

export interface HeatInput {
  run: RunData;
  key: string;
  rows: HeatRow[];
  /** Fixed [0, 1] (rates) or from the data. */
  rate: boolean;
  /** The panel's fixed value range (correlations: [-1, 1]), else null: used instead of the data's. */
  ylim?: [number, number] | null;
  logy: boolean;
  width: number;
  opened: (layer: string) => boolean;
  version: number;
  /** The final rows [first, last] the charts' shared zoom shows (heatWindow); absent or null: every row. */
  window?: [number, number] | null;
}

/**
 * The final rows of a run whose x values (`xs`: epochs, steps or seconds, per the x axis) lie in the charts'
 * shared zoom `zoom`, as [first, last]; null when there is no zoom, or it holds every row or none (the heatmap
 * then shows the whole run). The heatmap follows the zoom as every chart does (trial r11).
 */
export function heatWindow(xs: ArrayLike<number>, n: number, zoom: [number, number] | null): [number, number] | null {
  if (zoom === null || n === 0) return null;
  let first = -1, last = -1;
  for (let i = 0; i < n; i++) {
    if (xs[i] >= zoom[0] && xs[i] <= zoom[1]) {
      if (first < 0) first = i;
      last = i;
    }
  }
  return first < 0 || (first === 0 && last === n - 1) ? null : [first, last];
}

/** Colour range of the rows' finite values: [lo, hi] in display units (log10 when logy). */
export function heatRange(inp: Pick<HeatInput, "run" | "rows" | "rate" | "logy" | "ylim">): [number, number] {
  if (inp.rate) return [0, 1];
  if (inp.ylim && !inp.logy) return [inp.ylim[0], inp.ylim[1]];
  let lo = Infinity, hi = -Infinity;
  for (const r of inp.rows) {
    const v = inp.run.values[r.col];
    for (let i = 0; i < inp.run.finalRows; i++) {
      const x = inp.logy ? (v[i] > 0 ? Math.log10(v[i]) : NaN) : v[i];
      if (Number.isFinite(x)) {
        if (x < lo) lo = x;
        if (x > hi) hi = x;
      }
    }
  }
  if (!Number.isFinite(lo)) return [0, 1];
  return hi > lo ? [lo, hi] : [lo - 0.5, hi + 0.5];
}


export class Heatmap {
  readonly el = h("div", "mw-heatmap");
  private labels = h("div", "mw-heat-labels");
  private wrap = h("div", "mw-heat-canvas");
  /** Clips the canvas to the zoomed rows (the tooltip stays outside it). */
  private clip = h("div", "mw-heat-clip");
  private canvas = h("canvas");
  private tip = h("div", "mw-heat-tip");
  private scale = h("div", "mw-heat-scale");
  private labelSig = "";
  private img: ImageData | null = null;
  private imgKey = "";
  private imgCols = 0;
  private drawSig = "";
  private inp: HeatInput | null = null;
  /** A drawn log-scale cell held a value <= 0 (the scale line says what grey means). */
  private nonPositive = false;

  constructor(private onOpen: (layer: string) => void) {
    this.tip.hidden = true;
    this.clip.append(this.canvas);
    this.wrap.append(this.clip, this.tip);
    const body = h("div", "mw-heat-body");
    body.append(this.labels, this.wrap);
    this.el.append(body, this.scale);
    this.labels.addEventListener("click", (ev) => {
      const row = (ev.target as HTMLElement).closest?.(".mw-heat-row") as HTMLElement | null;
      const layer = row?.getAttribute("data-layer");
      if (layer != null) this.onOpen(layer);
    });
    this.labels.addEventListener("keydown", (ev) => {
      const layer = (ev.target as HTMLElement).getAttribute?.("data-layer");
      if ((ev.key === "Enter" || ev.key === " ") && layer != null) {
        ev.preventDefault();
        this.onOpen(layer);
      }
    });
    this.canvas.addEventListener("mousemove", (ev) => this.hover(ev));
    this.canvas.addEventListener("mouseleave", () => {
      this.tip.hidden = true;
    });
    this.canvas.addEventListener("click", (ev) => {
      const c = this.cellAt(ev);
      if (c) this.onOpen(c.layer);
    });
  }

  update(inp: HeatInput): void {
    this.inp = inp;
    const names = inp.rows.map((r) => r.layer);
    const lsig = JSON.stringify(names);
    if (lsig !== this.labelSig) {
      this.labelSig = lsig;
      this.labels.replaceChildren(...names.map((n) => {
        const row = h("div", "mw-heat-row", middleCut(n));
        row.setAttribute("data-layer", n);
        row.setAttribute("role", "button");
        row.tabIndex = 0;
        row.title = `${n}: open its chart`;
        return row;
      }));
    }
    for (const row of this.labels.children) {
      const open = inp.opened(row.getAttribute("data-layer") ?? "");
      row.classList.toggle("mw-open", open);
    }
    const w = Math.max(80, inp.width - LABEL_W - 8);
    const sig = `${inp.version}|${w}|${inp.key}|${inp.logy}|${lsig}|${inp.window ?? ""}`;
    if (sig === this.drawSig) return;
    this.drawSig = sig;
    this.draw(w);
  }

  private draw(w: number): void {
    const inp = this.inp!;
    const n = inp.run.finalRows;
    const nRows = inp.rows.length;
    // the canvas holds one pixel per (epoch, layer); CSS stretches it (image-rendering: pixelated) to the
    // view's width and ROW_H per layer, so a tick costs a few typed-array writes, not a canvas-sized redraw
    // a zoom shows its rows only: the whole canvas stretched so that they fill the width, the rest clipped
    const [i0, i1] = inp.window ?? [0, Math.max(0, n - 1)];
    const shown = i1 - i0 + 1;
    this.clip.style.width = `${w}px`;
    this.canvas.style.width = `${(w * Math.max(1, n)) / shown}px`;
    this.canvas.style.marginLeft = i0 > 0 ? `${(-w * i0) / shown}px` : "";
    this.canvas.style.height = `${Math.max(ROW_H, nRows * ROW_H)}px`;
    const [lo, hi] = heatRange(inp);
    const what = inp.logy ? `log10 ${inp.key}` : inp.key;
    const ep = (i: number): string => formatValue(inp.run.epochs[i]);
    const scaleText = (): string => n > 0
      ? `colour: ${what}, ${formatValue(lo)} (dark) to ${formatValue(hi)} (bright)${this.nonPositive ? " · grey: 0 or below (no log)" : ""}`
        + ` · epochs ${ep(i0)}–${ep(Math.min(i1, n - 1))}${inp.window ? " (zoomed)" : ""}`
      : "";
    this.scale.textContent = scaleText();
    const cw = Math.max(1, n);
    const ch = Math.max(1, nRows);
    const resized = this.canvas.width !== cw || this.canvas.height !== ch;
    if (resized) {
      this.canvas.width = cw; // clears it
      this.canvas.height = ch;
    }
    const ctx = this.canvas.getContext?.("2d");
    if (!ctx || n === 0 || nRows === 0) return;
    // Final rows never change, so a new epoch colours one new column unless the rows, the key or the colour
    // range changed.
    const key = `${this.labelSig}|${inp.key}|${inp.logy}|${lo}|${hi}`;
    let from = this.imgKey === key && n >= this.imgCols ? this.imgCols : 0;
    if (!this.img || this.img.height !== nRows || this.img.width < n) {
      const cap = Math.max(64, 2 ** Math.ceil(Math.log2(n)));
      this.img = new ImageData(cap, nRows);
      from = 0;
    } else if (from === 0) this.img.data.fill(0);
    if (from === 0) this.nonPositive = false;
    const seen = this.nonPositive;
    const img = this.img;
    const px = img.data;
    const top = LUT.length / 3 - 1;
    const scale = top / (hi - lo);
    inp.rows.forEach((r, j) => {
      const v = inp.run.values[r.col];
      if (!v) return;
      for (let i = from; i < n; i++) {
        let x = v[i];
        const o = 4 * (j * img.width + i);
        if (inp.logy && x <= 0) {
          // a value, but not on a log scale: grey, unlike a gap
          px.set(NOT_ON_LOG, o);
          px[o + 3] = 255;
          this.nonPositive = true;
          continue;
        }
        if (inp.logy) x = Math.log10(x);
        if (!Number.isFinite(x)) continue; // no value: a gap (transparent)
        const k = 3 * Math.min(top, Math.max(0, Math.round((x - lo) * scale)));
        px[o] = LUT[k];
        px[o + 1] = LUT[k + 1];
        px[o + 2] = LUT[k + 2];
        px[o + 3] = 255;
      }
    });
    if (this.nonPositive !== seen) this.scale.textContent = scaleText();
    this.imgKey = key;
    this.imgCols = n;
    // a resized canvas was cleared: put every column back; otherwise only the new ones
    const dx = resized ? 0 : from;
    ctx.putImageData(img, 0, 0, dx, 0, n - dx, nRows);
  }

  private cellAt(ev: MouseEvent): { layer: string; row: number; i: number } | null {
    const inp = this.inp;
    if (!inp || inp.run.finalRows === 0) return null;
    const rect = this.canvas.getBoundingClientRect();
    const j = Math.floor((ev.clientY - rect.top) / ROW_H);
    const i = Math.floor(((ev.clientX - rect.left) / Math.max(1, rect.width)) * inp.run.finalRows);
    if (j < 0 || j >= inp.rows.length || i < 0 || i >= inp.run.finalRows) return null;
    return { layer: inp.rows[j].layer, row: j, i };
  }

  private hover(ev: MouseEvent): void {
    const c = this.cellAt(ev);
    if (!c || !this.inp) {
      this.tip.hidden = true;
      return;
    }
    const v = this.inp.run.values[this.inp.rows[c.row].col]?.[c.i];
    this.tip.textContent = `${c.layer} · epoch ${formatValue(this.inp.run.epochs[c.i])}: ${this.inp.key} ${formatValue(v)}`;
    const rect = this.clip.getBoundingClientRect(); // the shown part (a zoomed canvas reaches past it)
    const x = ev.clientX - rect.left;
    this.tip.style.left = `${Math.min(x + 10, Math.max(0, rect.width - 220))}px`;
    this.tip.style.top = `${(c.row + 1) * ROW_H + 2}px`;
    this.tip.hidden = false;
  }
}
