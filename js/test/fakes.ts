// Stand-ins shared by the view tests: uPlot (which needs a real canvas), the anywidget model, a host element
// per test and the wait for the view's deferred redraw. A test file mocks uPlot with
//   vi.mock("uplot", async () => ({ default: (await import("./fakes")).FakePlot }));
// (vi.mock is hoisted above the imports; its factory may import, and gets this same module instance), and
// reads what the view asked of each chart in `plots`.
import { afterEach, beforeEach } from "vitest";

/** Every FakePlot made in this test file, oldest first; emptied before each test by useHost(). */
export const plots: FakePlot[] = [];

/** Knobs for one test file's charts: failOn.n = k makes the k-th first drawing (0-based, over all charts) throw. */
export const failOn = { n: -1 };
let firstDraws = 0;

type Init = (self: FakePlot, draw: () => void) => void;

/** uPlot as the view uses it: keeps its options, data, size, zoom and legend index, and counts drawings. */
export class FakePlot {
  opts: any;
  data: any;
  width: number;
  height: number;
  root = document.createElement("div");
  destroyed = false;
  /** drawings: the first (from the init callback) and one per setData */
  draws = 0;
  /** data-group of the .mw-panel the chart was placed in when made ("" if none) */
  group: string;
  cursor: { idx: number | null } = { idx: null };
  select = { left: 0, width: 0 };
  scaleX: { min: number; max: number } | null = null;
  legendIdx: number | null = null;
  legendIdxs: (number | null)[] | null = null;

  constructor(opts: any, data: any, target: HTMLElement | Init) {
    this.opts = opts;
    this.data = data;
    this.width = opts.width;
    this.height = opts.height;
    this.root.className = "uplot";
    if (typeof target === "function") {
      target(this, () => {
        if (firstDraws++ === failOn.n) throw new RangeError("Invalid array length");
        this.drawn();
      });
    } else target.appendChild(this.root);
    this.group = (this.root.closest(".mw-panel") as HTMLElement | null)?.dataset.group ?? "";
    plots.push(this);
  }

  drawn(): void { this.draws++; }
  batch(fn: (u: any) => void) { fn(this); }
  setData(d: any, resetScales?: boolean) {
    this.data = d;
    if (resetScales) this.scaleX = null;
    this.drawn();
  }
  setSize(s: { width: number; height: number }) { this.width = s.width; this.height = s.height; }
  setScale(_k: string, r: { min: number; max: number }) { this.scaleX = r; }
  setLegend(o: { idx: number | null; idxs?: (number | null)[] }) { this.legendIdx = o.idx; this.legendIdxs = o.idxs ?? null; }
  /** 10 px per unit of x: a selection from 10 to 30 px is x 1 to 3 */
  posToVal(px: number) { return px / 10; }
  redraw() {}
  destroy() {
    this.destroyed = true;
    this.root.remove();
  }
}

type Handler = (...args: any[]) => void;

/** An anywidget model: attributes, change events on set, counted saves, custom messages by emit(). */
export class FakeModel {
  attrs: Record<string, any>;
  handlers = new Map<string, Set<Handler>>();
  saved = 0;
  widget_manager = {} as any;
  constructor(attrs: Record<string, any> = { filters: {} }) { this.attrs = attrs; }
  get(k: string) { return this.attrs[k]; }
  set(k: string, v: any) { this.attrs[k] = v; this.emit(`change:${k}`); }
  save_changes() { this.saved++; }
  on(ev: string, fn: Handler) { if (!this.handlers.has(ev)) this.handlers.set(ev, new Set()); this.handlers.get(ev)!.add(fn); }
  off(ev?: string | null, fn?: Handler | null) { if (ev && fn) this.handlers.get(ev)?.delete(fn); }
  emit(ev: string, ...args: any[]) { for (const fn of [...(this.handlers.get(ev) ?? [])]) fn(...args); }
  /** how many handlers listen to `ev` */
  count(ev: string) { return this.handlers.get(ev)?.size ?? 0; }
  send() {}
}

/** A fresh element in the document for each test (removed after it), and an empty `plots`; returns its getter. */
export function useHost(): () => HTMLElement {
  let host: HTMLElement;
  beforeEach(() => {
    plots.length = 0;
    host = document.createElement("div");
    document.body.appendChild(host);
  });
  afterEach(() => host.remove());
  return () => host;
}

/** Waits out the view's deferred redraw. */
export const tick = () => new Promise((r) => setTimeout(r, 150));
