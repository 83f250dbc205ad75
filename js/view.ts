// One rendered view of a widget model. Views share the model's Store (initialize-once) and the `filters`
// trait; each view owns its DOM, its uPlot instances and its listeners, and removes all of them in the
// cleanup function returned by mountView.
//
// Every piece of text that comes from the record (run labels, panel tags, module names, metric keys,
// problem messages) is written with textContent or setAttribute, never parsed as HTML.

import type { AnyModel } from "@anywidget/types";
import { bucketsFor, Chart, type ChartSize, formatValue } from "./chart";
import { type AlignmentCache, buildChartData } from "./chartdata";
import cssText from "./css";
import { normalizeFilters, setLogy, setShown } from "./filters";
import { buildLayout, chartSignature, type ChartSpec, type Layout, type SectionSpec } from "./panels";
import type { Filters, WidgetModelTraits } from "./protocol";
import type { Store } from "./store";
import { recordingToggle, syncRecordingToggle, unrecordedFor } from "./recording";
import { readTheme, type Theme, themeKey } from "./theme";
import { Visibility } from "./visibility";

type Model = Pick<AnyModel<WidgetModelTraits>, "get" | "set" | "save_changes" | "on" | "off"> &
  Partial<Pick<AnyModel<WidgetModelTraits>, "send">>;

function h<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

interface ChartSlot {
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

interface SectionSlot {
  el: HTMLElement;
  title: HTMLElement;
  logy: HTMLInputElement | null;
  grid: HTMLElement;
}

const SMALL: ChartSize = { width: 250, height: 140 };
/** Height of a chart's legend under the plot, for placeholders of charts not drawn yet. */
const LEGEND_SMALL = 16;
const LEGEND_BIG = 24;
/**
 * Drawing time per animation frame; what is left is drawn in the next frame (at least one chart per frame).
 * It counts the script time of the frame plus, per chart drawn, an estimate of the time the browser then
 * spends putting that canvas on screen (rasterizing the recorded canvas commands: in software rendering it
 * exceeds the script time). The estimate is measured: a message posted at the end of a frame's drawing
 * runs once the browser has finished that frame.
 */
export const FRAME_BUDGET_MS = 8;
/** Starting estimate of the per-chart rendering cost after the script (ms), before one was measured. */
const RASTER_GUESS_MS = 0.5;
/** A view whose element left the page is parked (uPlots destroyed) after this long. */
export const PARK_AFTER_MS = 1000;

const now = (): number => (typeof performance !== "undefined" ? performance.now() : Date.now());

export function mountView(model: Model, store: Store, el: HTMLElement): () => void {
  const root = h("div", "mw-root");
  const style = h("style");
  style.textContent = cssText;
  root.appendChild(style);

  // header: status line + filters
  const header = h("div", "mw-header");
  const status = h("div", "mw-status");
  const statusText = h("span", "mw-status-text");
  const problemsBtn = h("button", "mw-problems");
  problemsBtn.type = "button";
  problemsBtn.hidden = true;
  status.append(statusText, problemsBtn);
  const problemList = h("ul", "mw-problem-list");
  problemList.hidden = true;
  const filtersBox = h("details", "mw-filters");
  filtersBox.appendChild(h("summary", undefined, "Filters"));
  const filterGroups = h("div", "mw-filter-groups");
  filtersBox.appendChild(filterGroups);
  header.append(status, filtersBox);
  const empty = h("div", "mw-empty", "Waiting for training data…");
  const bigRow = h("div", "mw-big");
  const smallArea = h("div", "mw-small");
  root.append(header, problemList, empty, bigRow, smallArea);
  el.appendChild(root);

  const sections = new Map<string, SectionSlot>();
  const charts = new Map<string, ChartSlot>();
  /** Charts in screen order (big row, then sections top to bottom), as of the last layout pass. */
  let order: ChartSlot[] = [];
  let filters: Filters = normalizeFilters(model.get("filters"));
  let theme: Theme = readTheme(root);
  let themeSig = themeKey(theme);
  let filterSig = "";
  let disposed = false;
  /** Something other than visibility changed (store, filters, size, theme): rebuild the layout first. */
  let layoutDirty = true;
  let everConnected = el.isConnected;
  let detachedAt: number | null = null;
  let parked = false;
  let parkTimer: ReturnType<typeof setTimeout> | null = null;

  const vis = new Visibility(() => schedule());

  // ---- filters: applied locally at once, then written to the model for the kernel and other views
  const writeFilters = (f: Filters): void => {
    filters = f;
    model.set("filters", f);
    model.save_changes();
    invalidate();
  };

  filterGroups.addEventListener("change", (ev) => {
    const t = ev.target as HTMLInputElement;
    if (!(t instanceof HTMLInputElement) || t.type !== "checkbox") return;
    const d = t.dataset;
    if (d.filterPanel !== undefined) writeFilters(setShown(filters, "hidden_panels", d.filterPanel, t.checked));
    else if (d.filterType !== undefined) writeFilters(setShown(filters, "hidden_types", d.filterType, t.checked));
    else if (d.filterModule !== undefined) writeFilters(setShown(filters, "hidden_modules", d.filterModule, t.checked));
    else if (d.filterRun !== undefined) writeFilters(setShown(filters, "hidden_runs", Number(d.filterRun), t.checked));
  });

  problemsBtn.addEventListener("click", () => {
    problemList.hidden = !problemList.hidden;
  });

  // ---- scheduling: store/filter/visibility changes are coalesced into one flush per animation frame. A
  // flush draws the visible charts whose data changed, for at most FRAME_BUDGET_MS, then continues in the
  // next frame (off-screen charts are only marked, and drawn when they scroll into view). A flush that
  // took T ms is followed by at least T ms without one, so the page stays responsive.
  let pending = 0;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let raf: number | null = null;
  let nextAllowed = 0;
  function invalidate(): void {
    layoutDirty = true;
    schedule();
  }
  function schedule(): void {
    if (disposed || pending) return;
    pending = 1;
    const wait = nextAllowed - now();
    if (wait > 4) {
      timer = setTimeout(flush, wait);
      return;
    }
    // rAF pauses in background tabs; the timeout keeps the view current anyway (whichever fires first wins)
    if (typeof requestAnimationFrame === "function") raf = requestAnimationFrame(flush);
    timer = setTimeout(flush, 120);
  }
  function flush(fromFrame?: unknown): void {
    if (!pending || disposed) return;
    pending = 0;
    if (raf !== null && typeof cancelAnimationFrame === "function") cancelAnimationFrame(raf);
    if (timer !== null) clearTimeout(timer);
    raf = null;
    timer = null;
    const t0 = now();
    const drew = update(t0, FRAME_BUDGET_MS);
    const t1 = now();
    nextAllowed = t1 + (t1 - t0);
    // called by requestAnimationFrame (with a timestamp): the rest of this frame is the browser's
    if (drew > 0 && typeof fromFrame === "number") measureRaster(drew, t1);
  }

  // ---- per-chart cost of the browser's part of a frame (style, layout, paint, canvas raster)
  let rasterMs = RASTER_GUESS_MS;
  let probe: MessageChannel | null = null;
  let probeFor: { drew: number; t: number } | null = null;
  function measureRaster(drew: number, t: number): void {
    if (typeof MessageChannel !== "function" || probeFor) return;
    if (!probe) {
      probe = new MessageChannel();
      probe.port1.onmessage = () => {
        const p = probeFor;
        probeFor = null;
        if (!p || disposed) return;
        const per = Math.max(0, now() - p.t - 0.5) / p.drew;
        rasterMs = Math.min(20, 0.6 * rasterMs + 0.4 * per);
      };
    }
    probeFor = { drew, t };
    probe.port2.postMessage(0);
  }

  // ---- a view whose element left the page (JupyterLab keeps the old view of an output replaced by
  // update_display alive) draws nothing; after PARK_AFTER_MS its uPlots are destroyed and its observer
  // stopped. If the element comes back (a windowed notebook re-attaches cells), it is drawn again.
  function detached(): boolean {
    if (el.isConnected) {
      everConnected = true;
      detachedAt = null;
      if (parkTimer !== null) clearTimeout(parkTimer);
      parkTimer = null;
      return false;
    }
    if (!everConnected) return false; // not yet placed in the page: build it, draw what we can
    if (detachedAt === null) {
      detachedAt = now();
      parkTimer = setTimeout(() => {
        parkTimer = null;
        if (!disposed && !el.isConnected) park();
      }, PARK_AFTER_MS);
    } else if (now() - detachedAt >= PARK_AFTER_MS) park();
    return true;
  }
  function park(): void {
    if (parked) return;
    parked = true;
    vis.stop();
    for (const slot of charts.values()) releaseChart(slot);
  }

  const runLabel = (id: number): string => store.run(id)?.label ?? `run ${id}`;

  function renderStatus(): void {
    const s = store.status;
    const cur = store.current;
    const run = s?.run != null ? store.run(s.run) ?? cur : cur;
    const parts: string[] = [];
    parts.push(run ? run.label : "no run yet");
    if (s?.epoch != null) parts.push(`epoch ${s.epoch}`);
    else if (run) parts.push(`epoch ${run.finalRows}`);
    if (s?.sec_per_epoch != null && Number.isFinite(s.sec_per_epoch)) parts.push(`${formatValue(s.sec_per_epoch)} s/epoch`);
    if (s?.state) parts.push(s.state);
    statusText.textContent = parts.join(" · ");
    status.dataset.state = s?.state ?? "idle";
    status.dataset.run = run ? String(run.id) : "";
    status.dataset.epoch = s?.epoch != null ? String(s.epoch) : run ? String(run.finalRows) : "0";
    const probs = run?.problems ?? [];
    const n = Math.max(s?.problems ?? 0, probs.length);
    status.dataset.problems = String(n);
    problemsBtn.hidden = n === 0;
    problemsBtn.textContent = `⚠ ${n} problem${n === 1 ? "" : "s"}`;
    const lines = probs.map((p) => `${p.lens}: ${p.message}${p.count > 1 ? ` (×${p.count})` : ""}`);
    problemsBtn.title = lines.join("\n");
    problemList.replaceChildren(...lines.map((t) => h("li", undefined, t)));
    if (n === 0) problemList.hidden = true;
  }

  // Checkboxes are rebuilt only when the set of things to filter changes; their checked state is synced in
  // place, so an input the user (or a test) holds stays attached across updates.
  const filterInputs: { input: HTMLInputElement; shown: () => boolean }[] = [];
  function renderFilterControls(layout: Layout): void {
    const sig = JSON.stringify([
      layout.panels.map((p) => p.tag),
      layout.types,
      layout.modules.map((m) => [m.name, m.type]),
      layout.oldRuns,
    ]);
    if (sig !== filterSig) {
      filterSig = sig;
      filterInputs.length = 0;
      type Item = { attr: string; value: string; label: string; shown: () => boolean };
      const group = (title: string, items: Item[]): HTMLElement | null => {
        if (items.length === 0) return null;
        const g = h("div", "mw-filter-group");
        g.appendChild(h("h5", undefined, title));
        for (const it of items) {
          const label = h("label");
          const input = h("input");
          input.type = "checkbox";
          input.setAttribute(it.attr, it.value);
          label.append(input, document.createTextNode(it.label));
          g.appendChild(label);
          filterInputs.push({ input, shown: it.shown });
        }
        return g;
      };
      const groups = [
        group("Panels", layout.panels.map((p) => ({
          attr: "data-filter-panel", value: p.tag, label: p.tag, shown: () => !filters.hidden_panels.includes(p.tag),
        }))),
        group("Module types", layout.types.map((t) => ({
          attr: "data-filter-type", value: t, label: t, shown: () => !filters.hidden_types.includes(t),
        }))),
        group("Modules", layout.modules.map((m) => ({
          attr: "data-filter-module",
          value: m.name,
          label: m.type ? `${m.name} (${m.type})` : m.name,
          shown: () => !filters.hidden_modules.includes(m.name),
        }))),
        group("Earlier runs", layout.oldRuns.map((r) => ({
          attr: "data-filter-run", value: String(r.id), label: r.label, shown: () => !filters.hidden_runs.includes(r.id),
        }))),
      ].filter((g): g is HTMLElement => g !== null);
      filterGroups.replaceChildren(...groups);
    }
    for (const { input, shown } of filterInputs) {
      const want = shown();
      if (input.checked !== want) input.checked = want;
    }
  }

  function sectionSlot(sec: SectionSpec): SectionSlot {
    let slot = sections.get(sec.tag);
    if (!slot) {
      const el = h("section", "mw-section");
      el.dataset.section = sec.tag;
      const titleRow = h("div", "mw-section-title");
      const title = h("h4", undefined, sec.tag);
      titleRow.appendChild(title);
      let logy: HTMLInputElement | null = null;
      if (sec.canLog) {
        const lab = h("label", "mw-logy");
        logy = h("input");
        logy.type = "checkbox";
        logy.setAttribute("data-logy", sec.tag);
        const tag = sec.tag;
        const box = logy;
        logy.addEventListener("change", () => writeFilters(setLogy(filters, tag, box.checked)));
        lab.append(logy, document.createTextNode("log y"));
        titleRow.appendChild(lab);
      }
      const grid = h("div", sec.big ? "mw-big-chart" : "mw-grid");
      el.append(titleRow, grid);
      slot = { el, title, logy, grid };
      sections.set(sec.tag, slot);
    }
    return slot;
  }

  // the view's width, as last reported by the ResizeObserver (read once at mount): reading clientWidth in a
  // redraw, after its DOM writes, would force a layout of the page
  let rootWidth = -1;
  function bigSize(nVisible: number): ChartSize {
    if (rootWidth < 0 || typeof ResizeObserver !== "function") rootWidth = root.clientWidth || el.clientWidth || 0;
    const avail = rootWidth;
    const k = Math.max(1, Math.min(nVisible, 3));
    const w = avail > 0 ? Math.floor((avail - 20 - 12 * (k - 1)) / k) : 400;
    return { width: Math.max(280, Math.min(560, w)), height: 220 };
  }

  function chartSlot(spec: ChartSpec): ChartSlot {
    let slot = charts.get(spec.id);
    if (!slot) {
      const el = h("div", "mw-panel");
      el.setAttribute("data-panel", spec.panel);
      el.setAttribute("data-group", spec.group);
      if (!spec.big) {
        const t = h("div", "mw-panel-title", spec.moduleType ? `${spec.group} (${spec.moduleType})` : spec.group);
        t.title = spec.group;
        el.append(t, recordingToggle((m) => model.send?.(m), spec.group));
      }
      const target = h("div", "mw-chart");
      el.appendChild(target);
      slot = { el, target, chart: null, sig: "", spec: null, size: SMALL, want: "", drawn: "", hidden: false };
      charts.set(spec.id, slot);
      vis.observe(el);
    }
    return slot;
  }

  /** Until its first drawing, a chart's container holds the space the chart will take. */
  function placeholder(slot: ChartSlot): void {
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

  function releaseChart(slot: ChartSlot): void {
    if (!slot.chart) return;
    slot.chart.destroy();
    slot.chart = null;
    slot.sig = "";
    slot.drawn = "";
    slot.target.replaceChildren();
    placeholder(slot);
  }

  /** Put `node` at position `i` of `parent`, touching the DOM only when it is not already there. */
  function placeAt(parent: HTMLElement, node: HTMLElement, i: number): void {
    const at = parent.children[i];
    if (at !== node) parent.insertBefore(node, at ?? null);
  }

  function setData(e: HTMLElement, key: string, v: string): void {
    if (e.dataset[key] !== v) e.dataset[key] = v;
  }

  function drawChart(slot: ChartSlot, cache: AlignmentCache): void {
    const spec = slot.spec!;
    const size = slot.size;
    const data = buildChartData(store, spec, bucketsFor(size), cache);
    const sig = chartSignature(spec) + themeSig;
    if (slot.chart && slot.sig !== sig) releaseChart(slot);
    const marks = unrecordedFor(store, spec);
    const toggle = slot.el.querySelector<HTMLElement>(":scope > .mw-rec");
    if (toggle) syncRecordingToggle(toggle, marks);
    if (!slot.chart) {
      slot.chart = new Chart(slot.target, spec, data, theme, size, runLabel);
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

  function placeSections(container: HTMLElement, specs: SectionSpec[], size: ChartSize, keep: Set<string>): void {
    const cur = store.current;
    const epochs = String(cur ? cur.finalRows : 0);
    const prov = cur?.provisional ? "1" : "0";
    const version = String(store.version);
    specs.forEach((sec, i) => {
      const slot = sectionSlot(sec);
      placeAt(container, slot.el, i);
      if (slot.el.hidden !== sec.hidden) slot.el.hidden = sec.hidden;
      if (slot.logy && slot.logy.checked !== sec.logy) slot.logy.checked = sec.logy;
      keep.add(sec.tag);
      sec.charts.forEach((c, j) => {
        keep.add(c.id);
        const cs = chartSlot(c);
        placeAt(slot.grid, cs.el, j);
        if (cs.el.hidden !== c.hidden) cs.el.hidden = c.hidden;
        const hidden = c.hidden || sec.hidden;
        // shown again: where it is now is measured, not taken from the observer's report of it hidden
        if (cs.hidden && !hidden) vis.forget(cs.el);
        cs.hidden = hidden;
        cs.spec = c;
        cs.size = size;
        cs.want = `${version}|${chartSignature(c)}${themeSig}|${size.width}x${size.height}`;
        placeholder(cs);
        // cheap, so kept current for every chart, drawn or not (hidden ones keep their last drawing)
        if (!hidden) {
          setData(cs.el, "epochs", epochs);
          setData(cs.el, "provisional", prov);
        }
        order.push(cs);
      });
    });
  }

  function layoutPass(): void {
    const t = readTheme(root);
    const tk = themeKey(t);
    if (tk !== themeSig) {
      theme = t;
      themeSig = tk;
    }
    const layout = buildLayout(store, filters);
    renderStatus();
    renderFilterControls(layout);
    empty.hidden = store.current !== undefined && store.current.columns.length > 0;
    const nBig = layout.big.filter((s) => !s.hidden).length;
    const keep = new Set<string>();
    order = [];
    placeSections(bigRow, layout.big, bigSize(nBig), keep);
    placeSections(smallArea, layout.small, SMALL, keep);
    for (const [id, slot] of charts) {
      if (keep.has(id)) continue;
      slot.chart?.destroy();
      vis.unobserve(slot.el);
      slot.el.remove();
      charts.delete(id);
    }
    for (const [tag, slot] of sections) {
      if (keep.has(tag)) continue;
      slot.el.remove();
      sections.delete(tag);
    }
  }

  /**
   * Rebuild the layout if needed, then draw the visible charts whose drawing is out of date, in screen
   * order, until `budget` ms have passed since `t0` (at least one chart); the rest is left for the next frame.
   */
  function update(t0: number, budget: number): number {
    if (disposed) return 0;
    if (detached()) return 0;
    if (parked) {
      parked = false;
      layoutDirty = true;
    }
    if (layoutDirty) {
      layoutDirty = false;
      layoutPass();
    }
    if (!el.isConnected) {
      // not in the page yet: nothing is on screen, so nothing is drawn until the observer reports
      return vis.supported ? 0 : drawDue(t0, Infinity);
    }
    if (!vis.started) vis.start(el);
    // an answer is needed now for charts the observer has not reported on yet (first render, new charts)
    const unknown = order.filter((s) => !s.hidden && s.drawn !== s.want && vis.get(s.el) === undefined);
    vis.measure(unknown.map((s) => s.el));
    return drawDue(t0, budget);
  }

  /** Draw due charts (see update); returns how many were drawn. */
  function drawDue(t0: number, budget: number): number {
    const cache: AlignmentCache = new Map();
    let drew = 0;
    let left = 0;
    for (const slot of order) {
      if (slot.hidden || slot.drawn === slot.want || vis.get(slot.el) !== true) continue;
      if (drew > 0 && now() - t0 + drew * rasterMs >= budget) {
        left++;
        continue;
      }
      drawChart(slot, cache);
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
      } else if (parked && el.isConnected) schedule();
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

  return () => {
    disposed = true;
    unsubscribe();
    model.off("change:filters", onFilters);
    resize?.disconnect();
    themeObserver?.disconnect();
    vis.stop();
    if (raf !== null && typeof cancelAnimationFrame === "function") cancelAnimationFrame(raf);
    if (timer !== null) clearTimeout(timer);
    if (parkTimer !== null) clearTimeout(parkTimer);
    if (probe) probe.port1.onmessage = null;
    probe?.port1.close();
    for (const slot of charts.values()) slot.chart?.destroy();
    charts.clear();
    sections.clear();
    root.remove();
  };
}
