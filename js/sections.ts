// The DOM of one section (a panel): title row with its controls (log y, heatmap / small-multiples toggle,
// loss smoothing slider), the heatmap of a per-layer panel, and the grid of charts. Pure DOM building: the
// view decides what is shown and reacts through the callbacks.

import { Heatmap } from "./overview/heatmap";
import { heatKey } from "./overview/worst";
import type { SectionSpec } from "./panels";
import type { RunData } from "./store";
import type { SectionMode, UiState } from "./uistate";
import { h } from "./dom";


export interface SectionSlot {
  el: HTMLElement;
  title: HTMLElement;
  logy: HTMLInputElement | null;
  modeBtn: HTMLButtonElement | null;
  heatmap: Heatmap | null;
  grid: HTMLElement;
}

export interface SectionHandlers {
  logy: (tag: string, on: boolean) => void;
  mode: (tag: string, mode: SectionMode) => void;
  open: (tag: string, layer: string) => void;
  smoothing: (w: number) => void;
}

/** Loss charts (the big panel whose tag names a loss) get the smoothing slider. */
export const isLossPanel = (sec: { tag: string; big: boolean; kind: string }): boolean =>
  sec.big && sec.kind === "numerical" && /loss/i.test(sec.tag);

export function buildSection(sec: SectionSpec, ui: UiState, on: SectionHandlers): SectionSlot {
  const el = h("section", "mw-section");
  el.dataset.section = sec.tag;
  const titleRow = h("div", "mw-section-title");
  const title = h("h4", undefined, sec.tag);
  titleRow.appendChild(title);
  let logy: HTMLInputElement | null = null;
  if (sec.canLog) {
    const lab = h("label", "mw-logy");
    const box = h("input");
    box.type = "checkbox";
    box.setAttribute("data-logy", sec.tag);
    box.addEventListener("change", () => on.logy(sec.tag, box.checked));
    lab.append(box, document.createTextNode("log y"));
    titleRow.appendChild(lab);
    logy = box;
  }
  if (isLossPanel(sec)) {
    const lab = h("label", "mw-smooth");
    const slider = h("input");
    slider.type = "range";
    slider.min = "0";
    slider.max = "0.99";
    slider.step = "0.01";
    slider.value = String(ui.smoothing);
    slider.setAttribute("data-smoothing", sec.tag);
    const shown = h("span", "mw-smooth-value", ui.smoothing.toFixed(2));
    slider.addEventListener("input", () => {
      shown.textContent = Number(slider.value).toFixed(2);
      on.smoothing(Number(slider.value));
    });
    lab.append(document.createTextNode("smoothing "), slider, shown);
    titleRow.appendChild(lab);
  }
  let modeBtn: HTMLButtonElement | null = null;
  let heatmap: Heatmap | null = null;
  if (!sec.big) {
    const btn = h("button", "mw-mode");
    btn.type = "button";
    btn.addEventListener("click", () => on.mode(sec.tag, el.dataset.mode === "heatmap" ? "charts" : "heatmap"));
    titleRow.appendChild(btn);
    modeBtn = btn;
    heatmap = new Heatmap((layer) => on.open(sec.tag, layer));
  }
  const grid = h("div", sec.big ? "mw-big-chart" : "mw-grid");
  el.append(titleRow);
  if (heatmap) el.append(heatmap.el);
  el.append(grid);
  return { el, title, logy, modeBtn, heatmap, grid };
}

/** Show `mode` on the section's DOM (toggle text, heatmap visibility). */
export function showMode(slot: SectionSlot, mode: SectionMode): void {
  if (slot.el.dataset.mode !== mode) slot.el.dataset.mode = mode;
  if (slot.modeBtn) {
    const t = mode === "heatmap" ? "small multiples" : "heatmap";
    if (slot.modeBtn.textContent !== t) slot.modeBtn.textContent = t;
    slot.modeBtn.setAttribute("data-mode-toggle", mode);
  }
  if (slot.heatmap && slot.heatmap.el.hidden !== (mode !== "heatmap")) slot.heatmap.el.hidden = mode !== "heatmap";
}

/** Draw a per-layer section's heatmap: one row per shown chart (layer), coloured by worst.heatKey. */
export function drawHeatmap(slot: SectionSlot, sec: SectionSpec, run: RunData, width: number, opened: (layer: string) => boolean, version: number,
  window: [number, number] | null = null): void {
  if (!slot.heatmap) return;
  const key = heatKey([...new Set(sec.charts.flatMap((c) => c.series.map((s) => s.key)))]);
  const rows = sec.charts.filter((c) => !c.hidden).flatMap((c) => {
    const s = c.series.find((x) => x.current && x.key === key);
    return s ? [{ layer: c.group, col: s.col }] : [];
  });
  slot.heatmap.update({ run, key: key ?? "", rows, rate: sec.kind === "probability", ylim: sec.charts[0]?.ylim ?? null, logy: sec.logy, width,
    opened, version, window });
}
