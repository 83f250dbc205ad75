// What the view's controls do to the shared UiState: a top-slot link (finding, worst layer) opening and
// showing the chart or heatmap row it names, and the section controls (log y, heatmap / small multiples,
// a heatmap row opening its layer's chart, loss smoothing).

import type { ChartSlot } from "./chartslot";
import { chartId, type ChartSpec } from "./panels";
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
  /** Show a chart (or a panel) the Filters hide; returns what was shown again, in words ([] when not hidden). */
  reveal?: (spec: ChartSpec | { panel: string }) => string[];
  /** A line of text about the last link in the view ("" clears it). */
  say?: (text: string) => void;
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
  // what the link may name: (panel, chart id or none), in screen order
  const found: { t: string; id: string | undefined }[] = [];
  for (const t of tag !== null ? [tag] : [...c.sections.keys()]) {
    if (!c.sections.has(t)) continue;
    const names = layer === null ? [] : [layer, layer.replace(/\.[^.]*$/, "")];
    const id = names.map((n) => chartId(t, n)).find((i) => c.charts.has(i));
    if (layer !== null && id === undefined) continue;
    found.push({ t, id });
  }
  // a chart the Filters show first; else the first one, shown again (trial r6, finding 5: a link to a hidden
  // layer or panel did nothing)
  const hiddenSpec = (f: { t: string; id: string | undefined }): boolean =>
    f.id !== undefined ? c.charts.get(f.id)!.spec?.hidden === true : c.sections.get(f.t)!.el.hidden;
  const target = found.find((f) => !hiddenSpec(f)) ?? found[0];
  if (!target) {
    c.say?.(layer !== null ? `No chart of '${layer}' to show.` : "");
    return;
  }
  const spec = target.id !== undefined ? c.charts.get(target.id)!.spec : null;
  const shown = hiddenSpec(target) && c.reveal ? c.reveal(spec ?? { panel: target.t }) : [];
  c.say?.(shown.length ? `Shown again in Filters: ${shown.join(", ")}.` : "");
  // a heatmap section opens the chart under it (after a reveal the section's mode is only known after the layout)
  if (target.id !== undefined && (shown.length > 0 || c.sections.get(target.t)!.el.dataset.mode === "heatmap")) c.ui.opened.add(target.id);
  c.touch();
  c.settle();
  // the layout pass may have replaced the section's element state; look the element up again
  const el = target.id !== undefined ? c.charts.get(target.id)?.el : c.sections.get(target.t)?.el;
  if (el) show(el, "center");
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
