// One rendered view of a widget model. Views share the model's Store (initialize-once), its UiState and the
// `filters` trait; each view owns its DOM, its uPlot instances and its listeners, and removes all of them in
// the cleanup function returned by mountView. Layout, top to bottom: header (status, runs legend, CSV), the
// top slot (health-check findings, worst layers), Filters, big panels, then per-layer sections (a heatmap by
// default when a panel has many layers, small multiples otherwise).
//
// Every piece of text that comes from the record (run labels, panel tags, module names, metric keys,
// problem messages) is written with textContent or setAttribute, never parsed as HTML.

import type { AnyModel } from "@anywidget/types";
import type { ChartSize } from "./axes";
import type { ChartContext } from "./chart";
import { ChartDrawer } from "./chartdraw";
import type { AlignmentCache } from "./chartdata";
import { makeChartSlot, releaseChart, setData, SMALL, type ChartSlot } from "./chartslot";
import cssText from "./css";
import { FilterBox } from "./filterbox";
import { normalizeFilters, revealFilters, runShown, setLogy } from "./filters";
import { Frames, now } from "./frames";
import { Header } from "./header";
import { type LinkContext, openLink, sectionHandlers } from "./links";
import { Parking } from "./parking";
import { runStyle } from "./overview/runstyle";
import { FindingsList, WorstSummary } from "./overview/topslot";
import { buildLayout } from "./panels";
import { Placement } from "./placement";
import type { Filters, WidgetModelTraits } from "./protocol";
import { buildSection } from "./sections";
import type { Store } from "./store";
import { readTheme, type Theme, themeKey } from "./theme";
import { uiChanged, uiState } from "./uistate";
import { Visibility } from "./visibility";
import { h } from "./dom";

export { FRAME_BUDGET_MS } from "./frames";
export { PARK_AFTER_MS } from "./parking";

type Model = Pick<AnyModel<WidgetModelTraits>, "get" | "set" | "save_changes" | "on" | "off"> &
  Partial<Pick<AnyModel<WidgetModelTraits>, "send">>;

let viewCount = 0;

/** How long a link's note ("Shown again in Filters: ...") stays, in milliseconds. */
export const LINK_NOTE_MS = 8000;


export function mountView(model: Model, store: Store, el: HTMLElement): () => void {
  const ui = uiState(store);
  const runs = runStyle(store);
  const root = h("div", "mw-root");
  const style = h("style");
  style.textContent = cssText;
  let filters: Filters = normalizeFilters(model.get("filters"));
  // ---- filters: applied locally at once, then written to the model for the kernel and other views
  const writeFilters = (f: Filters): void => {
    filters = f;
    model.set("filters", f);
    model.save_changes();
    invalidate();
  };
  const header = new Header(store, runs, () => filters, writeFilters, {
    get: () => ui.xAxis,
    set: (m) => {
      ui.xAxis = m;
      ui.zoom = null;
      touch();
    },
  });
  const findings = new FindingsList((tag, layer) => openLink(links, tag, layer));
  const worst = new WorstSummary((tag, layer) => openLink(links, tag, layer));
  const top = h("div", "mw-top");
  const linkNote = h("div", "mw-link-note");
  linkNote.hidden = true;
  top.append(findings.el, worst.el, linkNote);
  const filterBox = new FilterBox(ui, () => filters, writeFilters);
  header.el.appendChild(filterBox.el);
  const empty = h("div", "mw-empty", "Waiting for training data…");
  const bigRow = h("div", "mw-big");
  const smallArea = h("div", "mw-small");
  root.append(style, header.el, header.problemList, top, empty, bigRow, smallArea);
  el.appendChild(root);

  let theme: Theme = readTheme(root);
  let themeSig = themeKey(theme);
  let disposed = false;
  let noteTimer: ReturnType<typeof setTimeout> | undefined;
  /** Something other than visibility changed (store, filters, size, theme): rebuild the layout first. */
  let layoutDirty = true;
  let uiSeen = ui.version;
  /** Every module with its type, as of the last layout pass (a link's reveal hides a type's other modules). */
  let modules: { name: string; type: string | null }[] = [];

  const frames = new Frames((t0, budget) => update(t0, budget));
  const schedule = (): void => frames.schedule();
  const vis = new Visibility(schedule);
  const placement = new Placement(store, ui, vis, (sec) => buildSection(sec, ui, handlers), (spec) => {
    const s: ChartSlot = makeChartSlot(spec, (what) => drawer.download(s, what), (m) => model.send?.(m));
    return s;
  });
  const { sections, charts } = placement;
  const parking = new Parking(el, () => {
    if (disposed) return;
    vis.stop();
    for (const slot of charts.values()) releaseChart(slot);
  });
  function invalidate(): void {
    layoutDirty = true;
    schedule();
  }
  /** A change of the shared UiState: every view of the model redraws. */
  const touch = (): void => uiChanged(ui);
  ui.listeners.add(invalidate);
  const chartCtx: ChartContext = {
    runs,
    xLabel: "epoch",
    spanGaps: false,
    syncKey: `mw-sync-${++viewCount}`,
    zoom: () => ui.zoom,
    onZoom: (range) => {
      ui.zoom = range;
      touch();
    },
  };

  const drawer = new ChartDrawer(store, ui, runs, chartCtx);

  const links: LinkContext = {
    ui, touch, sections, charts, settle: () => layoutDirty && update(now(), Infinity),
    logy: (tag, on) => writeFilters(setLogy(filters, tag, on)),
    reveal: (spec) => {
      const r = revealFilters(filters, spec, modules);
      if (r.shown.length) writeFilters(r.filters);
      return r.shown;
    },
    say: (text) => {
      // a link's note says what it changed, then goes (trial r11: it stayed above the charts for good)
      clearTimeout(noteTimer);
      linkNote.textContent = text;
      linkNote.hidden = text === "";
      if (text !== "") noteTimer = setTimeout(() => links.say?.(""), LINK_NOTE_MS);
    },
  };
  const handlers = sectionHandlers(links);

  // the view's width, as last reported by the ResizeObserver (read once at mount): reading clientWidth in a
  // redraw, after its DOM writes, would force a layout of the page
  let rootWidth = -1;
  function width(): number {
    if (rootWidth < 0 || typeof ResizeObserver !== "function") rootWidth = root.clientWidth || el.clientWidth || 0;
    return rootWidth;
  }
  function bigSize(nVisible: number): ChartSize {
    const avail = width();
    const k = Math.max(1, Math.min(nVisible, 3));
    const w = avail > 0 ? Math.floor((avail - 20 - 12 * (k - 1)) / k) : 400;
    return { width: Math.max(280, Math.min(560, w)), height: 220 };
  }

  function layoutPass(): void {
    const t = readTheme(root);
    const tk = themeKey(t);
    if (tk !== themeSig) {
      theme = t;
      themeSig = tk;
    }
    uiSeen = ui.version;
    const layout = buildLayout(store, filters);
    modules = layout.modules;
    header.render();
    filterBox.render(layout);
    // a hidden run's findings go with its lines (trial r12: an earlier run's resolved findings led the list)
    findings.render(store.findings.filter((f) => runShown(filters, f.run)), runs.label, store.runs.length > 1);
    worst.render(store, (tag) => !filters.hidden_panels.includes(tag));
    empty.hidden = store.current !== undefined && store.current.columns.length > 0;
    const nBig = layout.big.filter((s) => !s.hidden).length;
    const heatWidth = Math.max(300, width() - 12);
    placement.begin();
    placement.place(bigRow, layout.big, bigSize(nBig), heatWidth, themeSig);
    placement.place(smallArea, layout.small, SMALL, heatWidth, themeSig);
    placement.end();
  }

  /**
   * Rebuild the layout if needed, then draw the visible charts whose drawing is out of date, in screen
   * order, until `budget` ms have passed since `t0` (at least one chart); the rest is left for the next frame.
   */
  function update(t0: number, budget: number): number {
    if (disposed) return 0;
    if (parking.detached()) return 0;
    if (parking.parked) {
      parking.parked = false;
      layoutDirty = true;
    }
    if (layoutDirty || uiSeen !== ui.version) {
      layoutDirty = false;
      layoutPass();
    }
    if (!el.isConnected) {
      // not in the page yet: nothing is on screen, so nothing is drawn until the observer reports
      return vis.supported ? 0 : drawDue(t0, Infinity);
    }
    if (!vis.started) vis.start(el);
    // an answer is needed now for charts the observer has not reported on yet (first render, new charts)
    const unknown = placement.order.filter((s) => !s.hidden && s.drawn !== s.want && vis.get(s.el) === undefined);
    vis.measure(unknown.map((s) => s.el));
    return drawDue(t0, budget);
  }

  /** Draw due charts (see update); returns how many were drawn. */
  function drawDue(t0: number, budget: number): number {
    const cache: AlignmentCache = new Map();
    let drew = 0;
    let left = 0;
    for (const slot of placement.order) {
      if (slot.hidden || slot.drawn === slot.want || vis.get(slot.el) !== true) continue;
      if (drew > 0 && now() - t0 + drew * frames.rasterMs >= budget) {
        left++;
        continue;
      }
      drawer.draw(slot, cache, theme, themeSig);
      drew++;
    }
    setData(root, "pending", String(left));
    if (left > 0) schedule();
    return drew;
  }

  // ---- wiring
  const unsubscribe = store.subscribe(invalidate);
  const onFilters = (): void => {
    filters = normalizeFilters(model.get("filters"));
    invalidate();
  };
  model.on("change:filters", onFilters);
  let resize: ResizeObserver | null = null;
  if (typeof ResizeObserver === "function") {
    resize = new ResizeObserver(() => {
      const w = root.clientWidth;
      if (w !== rootWidth) {
        rootWidth = w;
        invalidate();
      } else if (parking.parked && el.isConnected) schedule();
    });
    resize.observe(root);
  }
  // JupyterLab switches themes by changing attributes/CSS variables on <body>; redraw to pick up colours.
  let themeObserver: MutationObserver | null = null;
  if (typeof MutationObserver === "function" && document.body) {
    themeObserver = new MutationObserver(invalidate);
    themeObserver.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-name", "data-jp-theme-light", "class", "data-vscode-theme-kind"] });
  }
  // first render: every chart's container at once, the visible charts drawn now, the others when shown
  update(now(), Infinity);

  // the status line says when "training" has gone quiet (a restarted kernel sends no event to say so)
  const staleTimer = setInterval(() => header.tick(), 5_000);

  return () => {
    disposed = true;
    clearTimeout(noteTimer);
    clearInterval(staleTimer);
    unsubscribe();
    ui.listeners.delete(invalidate);
    model.off("change:filters", onFilters);
    resize?.disconnect();
    themeObserver?.disconnect();
    vis.stop();
    frames.dispose();
    parking.clear();
    placement.dispose();
    root.remove();
  };
}
