// Drawing one chart slot from the store: its data (x axis mode, loss smoothing), its uPlot (rebuilt when its
// signature changes), the warning panels' hover naming the worst layer, and its PNG / CSV downloads.

import { bucketsFor, type ChartSize } from "./axes";
import { Chart, type ChartContext } from "./chart";
import { type AlignmentCache, buildChartData, type ChartData, xsOf } from "./chartdata";
import { placeholder, releaseChart, setData, type ChartSlot } from "./chartslot";
import { h } from "./dom";
import { chartCsv, download, downloadText, fileName } from "./overview/csv";
import type { RunStyle } from "./overview/runstyle";
import { syncRecordingToggle, unrecordedFor } from "./recording";
import { worstHolder } from "./overview/worst";
import { chartSignature, type ChartSpec } from "./panels";
import { isLossPanel } from "./sections";
import type { Store } from "./store";
import type { Theme } from "./theme";
import type { UiState } from "./uistate";

export class ChartDrawer {
  constructor(private store: Store, private ui: UiState, private runs: RunStyle, private ctx: ChartContext) {}

  /**
   * The chart's points: the record's rows in the shared zoom's x range (re-bucketed for it, so a zoom to 30
   * epochs shows every epoch), loss panels smoothed at full resolution. `buckets` defaults to the chart's width.
   */
  data(spec: ChartSpec, size: ChartSize, cache?: AlignmentCache, buckets = bucketsFor(size), whole = false): ChartData {
    const smoothing = isLossPanel({ tag: spec.panel, big: spec.big, kind: spec.kind }) ? this.ui.smoothing : 0;
    return buildChartData(this.store, spec, buckets, cache, this.ui.xAxis, { range: whole ? null : this.ui.zoom, smoothing });
  }

  download(slot: ChartSlot, what: "png" | "csv"): void {
    const spec = slot.spec;
    if (!spec) return;
    const name = fileName(spec.panel, spec.big ? "" : spec.group);
    if (what === "png") {
      if (slot.chart) download(`${name}.png`, slot.chart.png(spec.big ? spec.panel : `${spec.panel} · ${spec.group}`));
      return;
    }
    // the record's own rows (every one, whatever the zoom or width), not the drawn buckets
    const data = this.data(spec, slot.size, undefined, Infinity, true);
    const label = (i: number): string => {
      const s = data.series[i];
      // a band edge by its record column's own key ("train_loss -σ", "… min"): says which band it is
      const src = spec.series.find((x) => x.current && x.key === s.key);
      const col = s.role === "lo" ? src?.lo : s.role === "hi" ? src?.hi : undefined;
      const edge = col !== undefined ? this.store.current?.columns[col]?.key : undefined;
      const name = edge ?? (s.role === "prov" ? `${s.key} (running)` : s.role === "line" || s.role === "old" ? s.key : `${s.key} ${s.role}`);
      return `${name} (${this.runs.label(s.run)})`;
    };
    downloadText(`${name}.csv`, chartCsv(data, this.ui.xAxis === "time" ? "time_s" : this.ui.xAxis, label));
  }

  /**
   * Draw one chart. A chart that fails to draw (an exception from its data or from uPlot) shows a short
   * message in its own place and is marked drawn for this version, so the view's other charts still draw
   * and the failing one is retried only when something changes.
   */
  draw(slot: ChartSlot, cache: AlignmentCache, theme: Theme, themeSig: string): void {
    try {
      this.drawChart(slot, cache, theme, themeSig);
    } catch (e) {
      failed(slot, e);
    }
  }

  private drawChart(slot: ChartSlot, cache: AlignmentCache, theme: Theme, themeSig: string): void {
    const { store, ui } = this;
    const spec = slot.spec!;
    const size = slot.size;
    const data = this.data(spec, size, cache);
    // smoothing names the lines "(smoothed)": a legend label is fixed when the uPlot instance is built
    const sig = chartSignature(spec) + themeSig + this.runs.label(store.current?.id ?? -1) + ui.xAxis + (data.smoothing ? "~" : "");
    if (slot.chart && slot.sig !== sig) releaseChart(slot);
    // epochs whose measurement was stopped on purpose: hatched "not recorded" spans (js/recording.ts)
    const marks = unrecordedFor(store, spec);
    const toggle = slot.el.querySelector<HTMLElement>(":scope > .mw-rec");
    if (toggle) syncRecordingToggle(toggle, marks);
    if (!slot.chart) {
      const p = store.current?.panels.find((q) => q.tag === spec.panel);
      // warning panels: the hover names the layer that holds each worst value (at the row with that x, in
      // every x mode: epoch, step or wall time)
      const mode = ui.xAxis;
      const annotate = p && spec.big && spec.series.some((s) => s.key.startsWith("worst "))
        ? (key: string, x: number, run: number) => {
          const r = store.run(run);
          const layer = r ? worstHolder(r, p, key, xsOf(r, mode))(x) : null;
          return layer === null ? null : `layer ${layer}`; // "0 · layer 1", not "0 · 1" (trial r11)
        }
        : undefined;
      // wall time: runs' x values differ, so lines join their own points across the others'
      const x = ui.xAxis === "time" ? { xLabel: "time (s)", spanGaps: true } : ui.xAxis === "step" ? { xLabel: "step", spanGaps: true } : {};
      slot.chart = new Chart(slot.target, spec, data, theme, size, { ...this.ctx, ...x, annotate });
      slot.sig = sig;
      placeholder(slot);
      if (marks.length) {
        slot.chart.unrecorded = marks;
        slot.chart.u.redraw(false);
      }
    } else {
      slot.chart.unrecorded = marks;
      slot.chart.setData(data, size);
    }
    slot.drawn = slot.want;
    setData(slot.el, "drawnEpochs", String(data.epochs));
  }
}

/** Replace a chart that could not be drawn by a one-line message in its slot (and the error in the console). */
export function failed(slot: ChartSlot, e: unknown): void {
  console.error("monitorch-widget: a chart could not be drawn", slot.spec?.id, e);
  try {
    releaseChart(slot);
  } catch {
    slot.chart = null;
    slot.sig = "";
  }
  const msg = h("div", "mw-chart-error", `This chart could not be drawn (${e instanceof Error ? e.message : String(e)}).`);
  msg.title = "The other charts are not affected; the error is in the browser console.";
  slot.target.replaceChildren(msg);
  slot.drawn = slot.want;
}
