// What the view's controls do to the shared UiState: a top-slot link (finding, worst layer) opening and
// showing the chart or heatmap row it names, and the section controls (log y, heatmap / small multiples,
// a heatmap row opening its layer's chart, loss smoothing).

import type { ChartSlot } from "./chartslot";
import { chartId } from "./panels";
import type { SectionHandlers, SectionSlot } from "./sections";
import type { UiState } from "./uistate";

export interface LinkContext {
  ui: UiState;
  /** Tell every view of the model that `ui` changed. */
  touch: () => void;
  sections: Map<string, SectionSlot>;
  charts: Map<string, ChartSlot>;
  /** Lay the view out now (so a chart just opened exists and has its place). */
  settle: () => void;
  logy: (tag: string, on: boolean) => void;
}

function show(target: HTMLElement, block: ScrollLogicalPosition): void {
  target.classList.add("mw-flash");
  setTimeout(() => target.classList.remove("mw-flash"), 1500);
  target.scrollIntoView?.({ block, behavior: "smooth" });
}

/**
 * Open and show what a link names: the chart of `layer` in panel `tag` (any panel when tag is null; a
 * parameter name "fc1.weight" also finds its module "fc1"), or the panel itself when layer is null.
 */
export function openLink(c: LinkContext, tag: string | null, layer: string | null): void {
  for (const t of tag !== null ? [tag] : [...c.sections.keys()]) {
    const sec = c.sections.get(t);
    if (!sec) continue;
    const names = layer === null ? [] : [layer, layer.replace(/\.[^.]*$/, "")];
    const id = names.map((n) => chartId(t, n)).find((i) => c.charts.has(i));
    if (layer !== null && id === undefined) continue;
    if (id !== undefined && sec.el.dataset.mode === "heatmap") c.ui.opened.add(id);
    c.touch();
    c.settle();
    show(id !== undefined ? c.charts.get(id)!.el : sec.el, "center");
    return;
  }
}

export function sectionHandlers(c: LinkContext): SectionHandlers {
  const { ui } = c;
  return {
    logy: c.logy,
    mode: (tag, mode) => {
      ui.mode.set(tag, mode);
      c.touch();
    },
    open: (tag, layer) => {
      const id = chartId(tag, layer);
      if (ui.opened.has(id)) ui.opened.delete(id);
      else ui.opened.add(id);
      c.touch();
      const slot = c.charts.get(id);
      if (ui.opened.has(id) && slot) {
        c.settle();
        slot.el.scrollIntoView?.({ block: "nearest", behavior: "smooth" });
      }
    },
    smoothing: (w) => {
      ui.smoothing = w;
      c.touch();
    },
  };
}
