// One rendered view of a widget model. Views share the model's Store (initialize-once) and the `filters`
// trait; each view owns its DOM, its uPlot instances and its listeners, and removes all of them in the
// cleanup function returned by mountView.
//
// Every piece of text that comes from the record (run labels, panel tags, module names, metric keys,
// problem messages) is written with textContent or setAttribute, never parsed as HTML.

import type { AnyModel } from "@anywidget/types";
import { Chart, type ChartSize, formatValue } from "./chart";
import { type AlignmentCache, buildChartData } from "./chartdata";
import cssText from "./css";
import { normalizeFilters, setLogy, setShown } from "./filters";
import { buildLayout, chartSignature, type ChartSpec, type Layout, type SectionSpec } from "./panels";
import type { Filters, WidgetModelTraits } from "./protocol";
import type { Store } from "./store";
import { readTheme, type Theme, themeKey } from "./theme";

type Model = Pick<AnyModel<WidgetModelTraits>, "get" | "set" | "save_changes" | "on" | "off">;

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
  sig: string;
}

interface SectionSlot {
  el: HTMLElement;
  title: HTMLElement;
  logy: HTMLInputElement | null;
  grid: HTMLElement;
}

const SMALL: ChartSize = { width: 250, height: 140 };

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
  let filters: Filters = normalizeFilters(model.get("filters"));
  let theme: Theme = readTheme(root);
  let themeSig = themeKey(theme);
  let filterSig = "";
  let disposed = false;

  // ---- filters: applied locally at once, then written to the model for the kernel and other views
  const writeFilters = (f: Filters): void => {
    filters = f;
    model.set("filters", f);
    model.save_changes();
    schedule();
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

  // ---- scheduling: coalesce store/filter changes into one redraw per animation frame. A redraw that
  // took T ms is followed by at least T ms without one, so the page stays responsive (<= ~50% busy)
  // however many charts and epochs there are.
  let pending = 0;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let raf: number | null = null;
  let nextAllowed = 0;
  const now = (): number => (typeof performance !== "undefined" ? performance.now() : Date.now());
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
  function flush(): void {
    if (!pending || disposed) return;
    pending = 0;
    if (raf !== null && typeof cancelAnimationFrame === "function") cancelAnimationFrame(raf);
    if (timer !== null) clearTimeout(timer);
    raf = null;
    timer = null;
    const t0 = now();
    update();
    const t1 = now();
    nextAllowed = t1 + (t1 - t0);
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

  function bigSize(nVisible: number): ChartSize {
    const avail = root.clientWidth || el.clientWidth || 0;
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
        el.appendChild(t);
      }
      const target = h("div", "mw-chart");
      el.appendChild(target);
      slot = { el, target, chart: null, sig: "" };
      charts.set(spec.id, slot);
    }
    return slot;
  }

  /** Put `node` at position `i` of `parent`, touching the DOM only when it is not already there. */
  function placeAt(parent: HTMLElement, node: HTMLElement, i: number): void {
    const at = parent.children[i];
    if (at !== node) parent.insertBefore(node, at ?? null);
  }

  function drawChart(slot: ChartSlot, spec: ChartSpec, size: ChartSize, cache: AlignmentCache): void {
    const data = buildChartData(store, spec, size.width, cache);
    const sig = chartSignature(spec) + themeSig;
    if (slot.chart && slot.sig !== sig) {
      slot.chart.destroy();
      slot.chart = null;
      slot.target.replaceChildren();
    }
    if (!slot.chart) {
      slot.chart = new Chart(slot.target, spec, data, theme, size, runLabel);
      slot.sig = sig;
    } else {
      const u = slot.chart.u;
      if (u.width !== size.width || u.height !== size.height) slot.chart.setSize(size);
      slot.chart.setData(data);
    }
    slot.el.dataset.epochs = String(data.epochs);
    slot.el.dataset.provisional = data.provisional ? "1" : "0";
  }

  function placeSections(
    container: HTMLElement,
    specs: SectionSpec[],
    size: (s: SectionSpec) => ChartSize,
    cache: AlignmentCache,
  ): Set<string> {
    const keep = new Set<string>();
    specs.forEach((sec, i) => {
      const slot = sectionSlot(sec);
      placeAt(container, slot.el, i);
      slot.el.hidden = sec.hidden;
      if (slot.logy) slot.logy.checked = sec.logy;
      keep.add(sec.tag);
      sec.charts.forEach((c, j) => {
        keep.add(c.id);
        const cs = chartSlot(c);
        placeAt(slot.grid, cs.el, j);
        cs.el.hidden = c.hidden;
        // hidden charts keep their last drawing and are not updated until shown again
        if (!c.hidden && !sec.hidden) drawChart(cs, c, size(sec), cache);
      });
    });
    return keep;
  }

  function update(): void {
    if (disposed) return;
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
    const bs = bigSize(nBig);
    // charts of one redraw share the x alignment of their runs (computed once per run set)
    const cache: AlignmentCache = new Map();
    const keep = new Set<string>([
      ...placeSections(bigRow, layout.big, () => bs, cache),
      ...placeSections(smallArea, layout.small, () => SMALL, cache),
    ]);
    for (const [id, slot] of charts) {
      if (keep.has(id)) continue;
      slot.chart?.destroy();
      slot.el.remove();
      charts.delete(id);
    }
    for (const [tag, slot] of sections) {
      if (keep.has(tag)) continue;
      slot.el.remove();
      sections.delete(tag);
    }
  }

  // ---- wiring
  const unsubscribe = store.subscribe(schedule);
  const onFilters = (): void => {
    filters = normalizeFilters(model.get("filters"));
    schedule();
  };
  model.on("change:filters", onFilters);
  let resize: ResizeObserver | null = null;
  if (typeof ResizeObserver === "function") {
    let lastWidth = -1;
    resize = new ResizeObserver(() => {
      const w = root.clientWidth;
      if (w !== lastWidth) {
        lastWidth = w;
        schedule();
      }
    });
    resize.observe(root);
  }
  // JupyterLab switches themes by changing attributes/CSS variables on <body>; redraw to pick up colours.
  let themeObserver: MutationObserver | null = null;
  if (typeof MutationObserver === "function" && document.body) {
    themeObserver = new MutationObserver(schedule);
    themeObserver.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-name", "data-jp-theme-light", "class", "data-vscode-theme-kind"] });
  }
  update();

  return () => {
    disposed = true;
    unsubscribe();
    model.off("change:filters", onFilters);
    resize?.disconnect();
    themeObserver?.disconnect();
    if (raf !== null && typeof cancelAnimationFrame === "function") cancelAnimationFrame(raf);
    if (timer !== null) clearTimeout(timer);
    for (const slot of charts.values()) slot.chart?.destroy();
    charts.clear();
    sections.clear();
    root.remove();
  };
}
