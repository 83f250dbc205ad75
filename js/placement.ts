// Where one view's sections and charts go in its DOM (the DOM side of the view's layout pass): a section's and a
// chart's slot is made on first use and kept by id, placed and updated in place on every pass, and removed once
// a layout no longer has it. Drawing is the view's (js/view.ts); the slots remember what a drawing must match.

import type { ChartSize } from "./axes";
import { xsOf } from "./chartdata";
import { placeAt, placeholder, setData, type ChartSlot } from "./chartslot";
import { heatWindow } from "./overview/heatmap";
import { chartId, chartSignature, type ChartSpec, type SectionSpec } from "./panels";
import { drawHeatmap, showMode, type SectionSlot } from "./sections";
import type { Store } from "./store";
import { sectionMode, type UiState } from "./uistate";
import type { Visibility } from "./visibility";

export class Placement {
  readonly sections = new Map<string, SectionSlot>();
  readonly charts = new Map<string, ChartSlot>();
  /** Charts in screen order (big row, then sections top to bottom), as of the last layout pass. */
  order: ChartSlot[] = [];
  private keep = new Set<string>();

  constructor(
    private readonly store: Store,
    private readonly ui: UiState,
    private readonly vis: Visibility,
    private readonly makeSection: (sec: SectionSpec) => SectionSlot,
    private readonly makeChart: (spec: ChartSpec) => ChartSlot,
  ) {}

  /** A layout pass begins: nothing is kept until placed again. */
  begin(): void {
    this.keep = new Set();
    this.order = [];
  }

  private sectionSlot(sec: SectionSpec): SectionSlot {
    let slot = this.sections.get(sec.tag);
    if (!slot) {
      slot = this.makeSection(sec);
      this.sections.set(sec.tag, slot);
    }
    return slot;
  }

  private chartSlot(spec: ChartSpec): ChartSlot {
    let slot = this.charts.get(spec.id);
    if (!slot) {
      slot = this.makeChart(spec);
      this.charts.set(spec.id, slot);
      this.vis.observe(slot.el);
    }
    return slot;
  }

  /**
   * Place `specs` in `container`, in order, with charts of `size`; a heatmap section is drawn `heatWidth` wide.
   * `themeSig` goes into what each shown chart's drawing must match.
   */
  place(container: HTMLElement, specs: SectionSpec[], size: ChartSize, heatWidth: number, themeSig: string): void {
    const { store, ui, vis, keep } = this;
    const cur = store.current;
    const epochs = String(cur ? cur.finalRows : 0);
    const prov = cur?.provisional ? "1" : "0";
    const version = `${store.version}.${ui.version}`;
    specs.forEach((sec, i) => {
      const slot = this.sectionSlot(sec);
      placeAt(container, slot.el, i);
      const shown = sec.charts.filter((c) => !c.hidden);
      const mode = sec.big ? "charts" : sectionMode(ui, sec.tag, shown.length);
      showMode(slot, mode);
      // empty sections (everything filtered out, or no data yet) are hidden
      const secHidden = sec.hidden || shown.length === 0;
      if (slot.el.hidden !== secHidden) slot.el.hidden = secHidden;
      if (slot.logy && slot.logy.checked !== sec.logy) slot.logy.checked = sec.logy;
      keep.add(sec.tag);
      if (mode === "heatmap" && cur && !secHidden) {
        drawHeatmap(slot, sec, cur, heatWidth, (g) => ui.opened.has(chartId(sec.tag, g)), store.version,
          heatWindow(xsOf(cur, ui.xAxis), cur.finalRows, ui.zoom));
      }
      sec.charts.forEach((c, j) => {
        keep.add(c.id);
        const cs = this.chartSlot(c);
        placeAt(slot.grid, cs.el, j);
        const hiddenHere = c.hidden || (mode === "heatmap" && !ui.opened.has(c.id));
        if (cs.el.hidden !== hiddenHere) cs.el.hidden = hiddenHere;
        const hidden = hiddenHere || secHidden;
        // shown again: where it is now is measured, not taken from the observer's report of it hidden
        if (cs.hidden && !hidden) vis.forget(cs.el);
        cs.hidden = hidden;
        cs.spec = c;
        cs.size = size;
        // what a drawing must match: only needed for a chart that can be drawn (a heatmap section's closed
        // rows are many and never drawn)
        if (!hidden) cs.want = `${version}|${chartSignature(c)}${themeSig}|${size.width}x${size.height}`;
        placeholder(cs);
        // cheap, so kept current for every chart, drawn or not (hidden ones keep their last drawing)
        if (!hidden) {
          setData(cs.el, "epochs", epochs);
          setData(cs.el, "provisional", prov);
        }
        this.order.push(cs);
      });
    });
  }

  /** The layout pass ends: the sections and charts it did not place are removed (their charts destroyed). */
  end(): void {
    for (const [id, slot] of this.charts) {
      if (this.keep.has(id)) continue;
      slot.chart?.destroy();
      this.vis.unobserve(slot.el);
      slot.el.remove();
      this.charts.delete(id);
    }
    for (const [tag, slot] of this.sections) {
      if (this.keep.has(tag)) continue;
      slot.el.remove();
      this.sections.delete(tag);
    }
  }

  /** The view is gone: every chart destroyed. */
  dispose(): void {
    for (const slot of this.charts.values()) slot.chart?.destroy();
    this.charts.clear();
    this.sections.clear();
  }
}
