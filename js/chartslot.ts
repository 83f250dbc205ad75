// One chart's place in a view: its container (title, download buttons, uPlot target), the uPlot instance
// and what it was last drawn for. Until its first drawing a container holds the space the chart will take.

import type { ChartSize } from "./axes";
import type { Chart } from "./chart";
import type { ChartSpec } from "./panels";
import { recordingToggle } from "./recording";
import { h } from "./dom";

export interface ChartSlot {
  el: HTMLElement;
  target: HTMLElement;
  chart: Chart | null;
  /** Signature (series set, scale, theme) the uPlot instance was built for. */
  sig: string;
  /** The chart as of the last layout pass, its size and signature. */
  spec: ChartSpec | null;
  size: ChartSize;
  want: string;
  /** What the canvas shows: store version + signature + size at the last draw ("" = never drawn). */
  drawn: string;
  hidden: boolean;
}

export const SMALL: ChartSize = { width: 250, height: 140 };
/** Height of a chart's legend under the plot, for placeholders of charts not drawn yet. */
const LEGEND_SMALL = 37;
const LEGEND_BIG = 24;


/** A new slot for `spec`; `onDownload` gets "png" or "csv" when its buttons are clicked; `send` carries a small
 * chart's stop / resume recording request to the kernel (js/recording.ts). */
export function makeChartSlot(spec: ChartSpec, onDownload: (what: "png" | "csv") => void,
  send: (msg: unknown) => void): ChartSlot {
  const el = h("div", "mw-panel");
  el.setAttribute("data-panel", spec.panel);
  el.setAttribute("data-group", spec.group);
  if (!spec.big) {
    const t = h("div", "mw-panel-title", spec.moduleType ? `${spec.group} (${spec.moduleType})` : spec.group);
    t.title = spec.group;
    el.append(t, recordingToggle(send, spec.group));
  }
  // laid over the chart's corner and shown on hover: no layout change
  const tools = h("div", "mw-tools");
  for (const what of ["png", "csv"] as const) {
    const b = h("button", "mw-download", what.toUpperCase());
    b.type = "button";
    b.setAttribute("data-download", what);
    b.title = `download this chart as ${what.toUpperCase()}`;
    b.addEventListener("click", () => onDownload(what));
    tools.appendChild(b);
  }
  el.appendChild(tools);
  const target = h("div", "mw-chart");
  el.appendChild(target);
  return { el, target, chart: null, sig: "", spec: null, size: SMALL, want: "", drawn: "", hidden: false };
}

export function placeholder(slot: ChartSlot): void {
  const st = slot.target.style;
  if (slot.chart) {
    if (st.width) {
      st.width = "";
      st.height = "";
    }
    return;
  }
  const w = `${slot.size.width}px`;
  const hh = `${slot.size.height + (slot.spec?.big ? LEGEND_BIG : LEGEND_SMALL)}px`;
  if (st.width !== w) st.width = w;
  if (st.height !== hh) st.height = hh;
}

export function releaseChart(slot: ChartSlot): void {
  if (!slot.chart) return;
  slot.chart.destroy();
  slot.chart = null;
  slot.sig = "";
  slot.drawn = "";
  slot.target.replaceChildren();
  placeholder(slot);
}

/** Put `node` at position `i` of `parent`, touching the DOM only when it is not already there. */
export function placeAt(parent: HTMLElement, node: HTMLElement, i: number): void {
  const at = parent.children[i];
  if (at !== node) parent.insertBefore(node, at ?? null);
}

export function setData(e: HTMLElement, key: string, v: string): void {
  if (e.dataset[key] !== v) e.dataset[key] = v;
}
