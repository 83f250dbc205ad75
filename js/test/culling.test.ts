// @vitest-environment happy-dom
// Visibility culling, per-frame budget and detached views (view.ts + visibility.ts), with a stand-in
// IntersectionObserver driven by the test, a manual animation-frame queue and a controlled clock.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

// the clock advances by clock.perDraw on each drawing (performance.now() reads clock.t)
const clock = vi.hoisted(() => ({ t: 0, perDraw: 0 }));
vi.mock("uplot", async () => {
  const { FakePlot } = await import("./fakes");
  return { default: class extends FakePlot { drawn() { super.drawn(); clock.t += clock.perDraw; } } };
});
vi.mock("../css", () => ({ default: ".mw-root{}" }));

import { Store } from "../store";
import { FRAME_BUDGET_MS, mountView, PARK_AFTER_MS } from "../view";
import { FakeModel, plots, useHost } from "./fakes";
import { column, delta, history, panel, snapRun } from "./helpers";

// ---- IntersectionObserver stand-in: the test says what is on screen
class FakeIO {
  static all: FakeIO[] = [];
  targets = new Set<Element>();
  disconnected = false;
  constructor(public cb: (entries: any[]) => void, public opts: any) { FakeIO.all.push(this); }
  observe(el: Element) { this.targets.add(el); }
  unobserve(el: Element) { this.targets.delete(el); }
  disconnect() { this.targets.clear(); this.disconnected = true; }
  takeRecords() { return []; }
}
function report(els: Element[], on: boolean): void {
  const io = FakeIO.all.find((o) => !o.disconnected)!;
  io.cb(els.filter((e) => io.targets.has(e)).map((target) => ({ target, isIntersecting: on })));
}

// ---- animation frames run by hand
let frames: ((ts: number) => void)[] = [];
function runFrame(): void {
  clock.t += 16;
  const q = frames;
  frames = [];
  for (const cb of q) cb(clock.t);
}

// where each chart is, for the view's one-off geometric check: groups in `onScreen` are in the viewport
let onScreen = new Set<string>();
const rectOf = (el: Element) => {
  const g = (el as HTMLElement).dataset?.group;
  const y = g !== undefined && onScreen.has(g) ? 100 : 5000;
  return { top: y, bottom: y + 170, left: 10, right: 260, width: 250, height: 170, x: 10, y, toJSON() {} };
};

const ACT = panel("Output Activations", { kind: "probability" });
const GROUPS = ["l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7"];
const cols = GROUPS.map((g, i) => column(i, ACT.tag, g, "activation_rate", { module_type: "ReLU" }));
const row = (e: number) => GROUPS.map((_, i) => (i + e) / 100);

function setup(): { store: Store; model: FakeModel } {
  const model = new FakeModel({
    filters: {},
    history: history(1, [snapRun(0, "run 1", [ACT], cols, [1, 2, 3], [row(1), row(2), row(3)])]),
  });
  const store = new Store();
  store.applyHistory(model.get("history"));
  return { store, model };
}

let nextRow = 3;
function addEpoch(store: Store): void {
  const r = nextRow++;
  // seq: the next one (a store never applies a delta across a sequence gap)
  store.applyDelta(...delta(store.seq + 1, { rows: [{ run: 0, row: r, epoch: r + 1, time: r, provisional: false }] },
    GROUPS.map((_, c) => ({ run: 0, row: r, col: c, val: 0.5 }))));
}

const panelOf = (el: Element, g: string) => el.querySelector<HTMLElement>(`.mw-panel[data-group='${g}']`)!;
const plotOf = (g: string) => plots.filter((p) => p.group === g && !p.destroyed);
const drawnGroups = () => [...new Set(plots.filter((p) => !p.destroyed).map((p) => p.group))].sort();

const host = useHost();
beforeEach(() => {
  FakeIO.all = [];
  frames = [];
  clock.t = 1000;
  clock.perDraw = 0;
  nextRow = 3;
  onScreen = new Set(["l0", "l1", "l2"]);
  vi.stubGlobal("IntersectionObserver", FakeIO);
  vi.stubGlobal("requestAnimationFrame", (cb: (ts: number) => void) => frames.push(cb));
  vi.stubGlobal("cancelAnimationFrame", () => {});
  vi.spyOn(performance, "now").mockImplementation(() => clock.t);
  vi.spyOn(HTMLElement.prototype, "getBoundingClientRect").mockImplementation(function (this: Element) {
    return rectOf(this) as DOMRect;
  });
});
afterEach(() => {
  vi.unstubAllGlobals();
  vi.restoreAllMocks();
});

describe("visibility culling", () => {
  it("first render draws only the charts on screen; every panel exists with its epochs", () => {
    const { store, model } = setup();
    const cleanup = mountView(model as any, store, host());
    expect(host().querySelectorAll(".mw-panel").length).toBe(GROUPS.length);
    expect(drawnGroups()).toEqual(["l0", "l1", "l2"]);
    for (const g of GROUPS) expect(panelOf(host(), g).dataset.epochs).toBe("3");
    expect(panelOf(host(), "l0").dataset.drawnEpochs).toBe("3");
    expect(panelOf(host(), "l5").dataset.drawnEpochs).toBeUndefined();
    // the placeholder of an undrawn chart holds the chart's size
    const ph = panelOf(host(), "l5").querySelector<HTMLElement>(".mw-chart")!;
    expect(ph.style.width).toBe("250px");
    expect(parseInt(ph.style.height, 10)).toBeGreaterThanOrEqual(140);
    expect(FakeIO.all[0].opts.rootMargin).toBe("200px");
    cleanup();
  });

  it("a tick redraws visible charts only; off-screen ones are drawn with the latest data when shown", () => {
    const { store, model } = setup();
    const cleanup = mountView(model as any, store, host());
    report(GROUPS.map((g) => panelOf(host(), g)), false);
    report(["l0", "l1", "l2"].map((g) => panelOf(host(), g)), true);
    const l0 = plotOf("l0")[0];
    const before = l0.draws;
    addEpoch(store);
    runFrame();
    expect(l0.draws).toBe(before + 1);
    expect(l0.data[0]).toEqual([1, 2, 3, 4]);
    expect(drawnGroups()).toEqual(["l0", "l1", "l2"]);
    // data-epochs is kept current everywhere, drawn or not
    for (const g of GROUPS) expect(panelOf(host(), g).dataset.epochs).toBe("4");
    expect(panelOf(host(), "l6").dataset.drawnEpochs).toBeUndefined();

    // l0 scrolls away: the next tick leaves it alone
    report([panelOf(host(), "l0")], false);
    addEpoch(store);
    runFrame();
    expect(l0.draws).toBe(before + 1);
    expect(panelOf(host(), "l0").dataset.drawnEpochs).toBe("4");
    expect(panelOf(host(), "l1").dataset.drawnEpochs).toBe("5");
    // nothing changed: a frame draws nothing
    const d1 = plotOf("l1")[0].draws;
    report([panelOf(host(), "l1")], true);
    runFrame();
    expect(plotOf("l1")[0].draws).toBe(d1);

    // l0 and l6 come into view: drawn in the next frame with 5 epochs (l6 created then)
    report([panelOf(host(), "l0"), panelOf(host(), "l6")], true);
    expect(frames.length).toBe(1);
    runFrame();
    expect(l0.draws).toBe(before + 2);
    expect(l0.data[0]).toEqual([1, 2, 3, 4, 5]);
    expect(plotOf("l6").length).toBe(1);
    expect(plotOf("l6")[0].data[0]).toEqual([1, 2, 3, 4, 5]);
    expect(panelOf(host(), "l6").dataset.drawnEpochs).toBe("5");
    // the placeholder size gives way to the chart's own
    expect(panelOf(host(), "l6").querySelector<HTMLElement>(".mw-chart")!.style.height).toBe("");
    expect(plots.filter((p) => p.destroyed).length).toBe(0); // never re-created on a tick
    cleanup();
  });

  it("charts hidden by filters are never drawn; shown again, they are drawn at once", () => {
    const { store, model } = setup();
    const cleanup = mountView(model as any, store, host());
    const l1 = plotOf("l1")[0];
    const before = l1.draws;
    model.set("filters", { hidden_modules: ["l1", "l3"] });
    runFrame();
    expect(panelOf(host(), "l1").hidden).toBe(true);
    report([panelOf(host(), "l1")], false); // display: none
    addEpoch(store);
    runFrame();
    expect(l1.draws).toBe(before);
    onScreen.add("l3");
    model.set("filters", {});
    runFrame();
    expect(panelOf(host(), "l1").hidden).toBe(false);
    // measured on the spot, not left to the observer's next report
    expect(l1.draws).toBe(before + 1);
    expect(l1.data[0]).toEqual([1, 2, 3, 4]);
    expect(plotOf("l3").length).toBe(1);
    cleanup();
  });
});

describe("frame budget", () => {
  it("splits the redraw of visible charts over frames, in screen order", () => {
    onScreen = new Set(GROUPS);
    const { store, model } = setup();
    const cleanup = mountView(model as any, store, host());
    expect(drawnGroups()).toEqual(GROUPS); // first render: every visible chart at once
    clock.perDraw = 3; // each drawing takes 3 ms
    addEpoch(store);
    const order: string[] = [];
    const drawsBefore = new Map(plots.map((p) => [p, p.draws]));
    const perFrame: number[] = [];
    for (let f = 0; f < 10 && (f === 0 || frames.length > 0); f++) {
      const at = plots.filter((p) => p.draws > drawsBefore.get(p)!).length;
      runFrame();
      const now = plots.filter((p) => p.draws > drawsBefore.get(p)!);
      perFrame.push(now.length - at);
      for (const p of now) if (!order.includes(p.group)) order.push(p.group);
    }
    expect(order).toEqual(GROUPS);
    expect(perFrame.length).toBeGreaterThan(1);
    // each frame stays within the budget (3 ms a chart: at most ceil(budget / 3) charts), and draws something
    for (const n of perFrame) {
      expect(n).toBeGreaterThanOrEqual(1);
      expect(n).toBeLessThanOrEqual(Math.ceil(FRAME_BUDGET_MS / 3));
    }
    expect(host().querySelector<HTMLElement>(".mw-root")!.dataset.pending).toBe("0");
    for (const g of GROUPS) expect(panelOf(host(), g).dataset.drawnEpochs).toBe("4");
    cleanup();
  });

  it("reports what is left in data-pending", () => {
    onScreen = new Set(GROUPS);
    const { store, model } = setup();
    const cleanup = mountView(model as any, store, host());
    clock.perDraw = 20; // one chart per frame
    addEpoch(store);
    runFrame();
    expect(host().querySelector<HTMLElement>(".mw-root")!.dataset.pending).toBe(String(GROUPS.length - 1));
    expect(frames.length).toBe(1);
    cleanup();
  });
});

describe("detached views", () => {
  it("stop drawing once out of the page, release their charts, and come back when re-attached", () => {
    const { store, model } = setup();
    const cleanup = mountView(model as any, store, host());
    const l0 = plotOf("l0")[0];
    const before = l0.draws;
    host().remove();
    addEpoch(store);
    runFrame();
    expect(l0.draws).toBe(before);
    expect(l0.destroyed).toBe(false);
    // still out on a later tick, after PARK_AFTER_MS: uPlots destroyed, observer stopped
    clock.t += PARK_AFTER_MS;
    addEpoch(store);
    runFrame();
    expect(plots.every((p) => p.destroyed)).toBe(true);
    expect(FakeIO.all[0].disconnected).toBe(true);
    // a detached view does no work at all on a tick
    expect(panelOf(host(), "l0").dataset.epochs).toBe("3");
    // back in the page: the next change redraws what is visible
    document.body.appendChild(host());
    addEpoch(store);
    runFrame();
    expect(drawnGroups()).toEqual(["l0", "l1", "l2"]);
    expect(plotOf("l0")[0].data[0]).toEqual([1, 2, 3, 4, 5, 6]);
    expect(panelOf(host(), "l7").dataset.epochs).toBe("6");
    cleanup();
    expect(plots.every((p) => p.destroyed)).toBe(true);
  });
});
