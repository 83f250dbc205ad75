// @vitest-environment happy-dom
import { describe, expect, it, vi } from "vitest";

// uPlot needs a real canvas; a stand-in records what the view asks of it.
vi.mock("uplot", async () => ({ default: (await import("./fakes")).FakePlot }));
vi.mock("../css", () => ({ default: ".mw-root{}" }));

import { Store } from "../store";
import { mountView } from "../view";
import createWidget from "../widget";
import { FakeModel, plots, tick, useHost } from "./fakes";
import { column, delta, history, panel, snapRun, status } from "./helpers";

const EVIL = "<img src=x onerror=alert(1)>";
const LOSS = panel("Loss & Metrics", { big: true });
const ACT = panel("Output Activations", { kind: "probability" });
const NORM = panel("Output Norm");
const cols = [
  column(0, LOSS.tag, LOSS.tag, "train_loss mean"),
  column(1, ACT.tag, "relu1", "activation_rate", { module_type: "ReLU" }),
  column(2, ACT.tag, "relu1", "death_rate", { module_type: "ReLU" }),
  column(3, ACT.tag, EVIL, "activation_rate", { module_type: "Dropout" }),
  column(4, ACT.tag, EVIL, "death_rate", { module_type: "Dropout" }),
  column(5, NORM.tag, "relu1", "mean", { module_type: "ReLU" }),
];
const row = (e: number) => [1 / e, 0.5, 0.1, 0.9, 0, e];

function makeModel(): FakeModel {
  return new FakeModel({
    filters: {},
    history: history(2, [
      snapRun(0, "run 1: Old", [LOSS, ACT], cols.slice(0, 3), [1, 2], [row(1).slice(0, 3), row(2).slice(0, 3)]),
      snapRun(1, "run 2: CNN", [LOSS, ACT, NORM], cols, [1, 2, 3], [row(1), row(2), row(3)]),
    ], status({ run: 1, epoch: 3, sec_per_epoch: 0.25 })),
  });
}

const host = useHost();
const q = (el: Element, sel: string) => el.querySelector(sel) as HTMLElement | null;
const panelEl = (el: Element, tag: string, group: string) =>
  [...el.querySelectorAll<HTMLElement>(".mw-panel")].find((p) => p.dataset.panel === tag && p.dataset.group === group);

describe("view", () => {
  it("renders sections, charts and DOM hooks from the store", () => {
    const model = makeModel();
    const store = new Store();
    store.applyHistory(model.get("history"));
    const cleanup = mountView(model as any, store, host());
    expect(q(host(), ".mw-root")).not.toBeNull();
    const loss = panelEl(host(), LOSS.tag, LOSS.tag)!;
    expect(loss.dataset.epochs).toBe("3");
    expect(panelEl(host(), ACT.tag, "relu1")!.dataset.epochs).toBe("3");
    expect(panelEl(host(), NORM.tag, "relu1")).toBeDefined();
    expect(host().querySelectorAll(".mw-panel").length).toBe(4);
    // the top row holds the big panel, the rest are small multiples
    expect(q(host(), ".mw-big")!.querySelectorAll(".mw-panel").length).toBe(1);
    const status = q(host(), ".mw-status")!;
    expect(status.textContent).toContain("run 2: CNN");
    expect(status.textContent).toContain("epoch 3");
    expect(status.textContent).toContain("0.25 s/epoch");
    // probability panels are fixed to [0, 1]; the loss chart draws the old run with its own dash and legend entry
    const actPlot = plots.find((p) => p.opts.series.some((s: any) => s.label === "death_rate"))!;
    expect(actPlot.opts.scales.y.range).toEqual([0, 1]);
    const lossPlot = plots.find((p) => p.opts.series[1].label === "train_loss mean · run 2: CNN")!;
    expect(lossPlot.opts.series.map((s: any) => s.label)).toEqual(["epoch", "train_loss mean · run 2: CNN", "train_loss mean · run 1: Old", "train_loss mean (running)"]);
    expect(lossPlot.data[0]).toEqual([1, 2, 3]);
    expect(lossPlot.data[1]).toEqual([1, 0.5, 1 / 3]);
    expect(lossPlot.data[2]).toEqual([1, 0.5, undefined]);
    cleanup();
    expect(host().querySelector(".mw-root")).toBeNull();
    expect(plots.every((p) => p.destroyed)).toBe(true);
    expect(store.listenerCount).toBe(0);
    expect(model.count("change:filters")).toBe(0);
  });

  it("renders user-supplied names as text only", () => {
    const model = makeModel();
    const store = new Store();
    store.applyHistory(model.get("history"));
    const cleanup = mountView(model as any, store, host());
    expect(host().querySelector("img")).toBeNull();
    const evil = panelEl(host(), ACT.tag, EVIL)!;
    expect(evil.getAttribute("data-group")).toBe(EVIL);
    expect(evil.querySelector(".mw-panel-title")!.textContent).toContain(EVIL);
    const box = host().querySelector<HTMLInputElement>("input[data-filter-module]:not([data-filter-module='relu1'])")!;
    expect(box.getAttribute("data-filter-module")).toBe(EVIL);
    expect(host().querySelector("img")).toBeNull();
    cleanup();
  });

  it("filters act at once, are written to the model and shared by other views", async () => {
    const model = makeModel();
    const store = new Store();
    store.applyHistory(model.get("history"));
    const host2 = document.createElement("div");
    document.body.appendChild(host2);
    const c1 = mountView(model as any, store, host());
    const c2 = mountView(model as any, store, host2);
    const typeBox = host().querySelector<HTMLInputElement>("input[data-filter-type='Dropout']")!;
    expect(typeBox.checked).toBe(true);
    typeBox.checked = false;
    typeBox.dispatchEvent(new Event("change", { bubbles: true }));
    expect(model.get("filters").hidden_types).toEqual(["Dropout"]);
    expect(model.saved).toBe(1);
    await tick();
    expect(panelEl(host(), ACT.tag, EVIL)!.hidden).toBe(true);
    expect(panelEl(host2, ACT.tag, EVIL)!.hidden).toBe(true);
    expect(panelEl(host(), ACT.tag, "relu1")!.hidden).toBe(false);
    expect(host2.querySelector<HTMLInputElement>("input[data-filter-type='Dropout']")!.checked).toBe(false);
    // the control is updated in place, not re-created (a held reference stays attached)
    expect(host().querySelector("input[data-filter-type='Dropout']")).toBe(typeBox);
    expect(typeBox.isConnected).toBe(true);

    const panelBox = host2.querySelector<HTMLInputElement>(`input[data-filter-panel='${NORM.tag}']`)!;
    panelBox.checked = false;
    panelBox.dispatchEvent(new Event("change", { bubbles: true }));
    await tick();
    expect(model.get("filters")).toMatchObject({ hidden_types: ["Dropout"], hidden_panels: [NORM.tag] });
    expect(host().querySelector<HTMLElement>(`section[data-section='${NORM.tag}']`)!.hidden).toBe(true);

    const moduleBox = host().querySelector<HTMLInputElement>("input[data-filter-module='relu1']")!;
    moduleBox.checked = false;
    moduleBox.dispatchEvent(new Event("change", { bubbles: true }));
    await tick();
    expect(panelEl(host2, ACT.tag, "relu1")!.hidden).toBe(true);

    const runBox = host().querySelector<HTMLInputElement>("input[data-filter-run='0']")!;
    expect(runBox.parentElement!.textContent).toContain("run 1: Old");
    const before = plots.length;
    runBox.checked = false;
    runBox.dispatchEvent(new Event("change", { bubbles: true }));
    await tick();
    expect(model.get("filters").hidden_runs).toEqual([0]);
    // the loss chart lost its faint series: rebuilt without it
    const rebuilt = plots.slice(before).find((p) => p.opts.series[1]?.label === "train_loss mean")!;
    expect(rebuilt.opts.series.length).toBe(3);

    // a view created afterwards starts with the same filters
    const host3 = document.createElement("div");
    const c3 = mountView(model as any, store, host3);
    expect(panelEl(host3, ACT.tag, EVIL)!.hidden).toBe(true);
    c1(); c2(); c3();
    host2.remove();
  });

  it("log-scale toggle on non-probability panels only", async () => {
    const model = makeModel();
    const store = new Store();
    store.applyHistory(model.get("history"));
    const cleanup = mountView(model as any, store, host());
    expect(host().querySelector(`input[data-logy='${ACT.tag}']`)).toBeNull();
    const box = host().querySelector<HTMLInputElement>(`input[data-logy='${NORM.tag}']`)!;
    box.checked = true;
    box.dispatchEvent(new Event("change"));
    await tick();
    expect(model.get("filters").logy).toEqual({ [NORM.tag]: true });
    const norm = plots.filter((p) => p.opts.series[1]?.label === "mean" && !p.destroyed);
    expect(norm.length).toBe(1);
    expect(norm[0].opts.scales.y.distr).toBe(3);
    cleanup();
  });

  it("updates live from deltas, shows provisional rows and problems", async () => {
    const model = makeModel();
    const store = new Store();
    store.applyHistory(model.get("history"));
    const cleanup = mountView(model as any, store, host());
    const nPlots = plots.length;
    store.applyDelta(...delta(3, { rows: [{ run: 1, row: 3, epoch: 3.5, time: 1, provisional: true }] }, [{ run: 1, row: 3, col: 0, val: 0.3 }]));
    await tick();
    const loss = panelEl(host(), LOSS.tag, LOSS.tag)!;
    expect(loss.dataset.epochs).toBe("3");
    expect(loss.dataset.provisional).toBe("1");
    expect(plots.length).toBe(nPlots); // same charts, new data
    const lossPlot = plots.find((p) => p.opts.series[1].label === "train_loss mean · run 2: CNN")!;
    expect(lossPlot.data[0]).toEqual([1, 2, 3, 3.5]);
    expect(lossPlot.data[3]).toEqual([undefined, undefined, 1 / 3, 0.3]);
    store.applyDelta(...delta(4, {
      rows: [{ run: 1, row: 3, epoch: 4, time: 1, provisional: false }],
      problems: [{ run: 1, lens: "LossMetrics", message: `loss is NaN ${EVIL}`, count: 2 }],
      status: status({ run: 1, epoch: 4, problems: 2 }),
    }, [{ run: 1, row: 3, col: 0, val: 0.25 }]));
    await tick();
    expect(loss.dataset.epochs).toBe("4");
    expect(loss.dataset.provisional).toBe("0");
    const btn = q(host(), ".mw-problems")!;
    expect(btn.hidden).toBe(false);
    expect(btn.textContent).toContain("2 problems");
    expect(btn.title).toContain("loss is NaN");
    const list = q(host(), ".mw-problem-list")!;
    expect(list.hidden).toBe(true);
    btn.click();
    expect(list.hidden).toBe(false);
    expect(list.textContent).toContain(EVIL);
    expect(host().querySelector("img")).toBeNull();
    cleanup();
  });

  it("adds charts for panels and modules that appear mid-stream", async () => {
    const model = makeModel();
    const store = new Store();
    store.applyHistory(model.get("history"));
    const cleanup = mountView(model as any, store, host());
    store.applyDelta(...delta(3, {
      new_panels: [{ run: 1, ...panel("Weight Gradient Activation", { kind: "probability" }) }],
      new_columns: [{ run: 1, ...column(6, "Weight Gradient Activation", "conv1", "activation_rate", { module_type: "Conv2d" }) }],
    }, [{ run: 1, row: 2, col: 6, val: 0.4 }]));
    await tick();
    const el = panelEl(host(), "Weight Gradient Activation", "conv1")!;
    expect(el).toBeDefined();
    expect(host().querySelector("input[data-filter-type='Conv2d']")).not.toBeNull();
    cleanup();
  });
});

describe("widget entry (initialize once, render per view)", () => {
  it("shares one store between views and keeps receiving deltas with no view", async () => {
    const model = makeModel();
    const widget = createWidget(); // anywidget calls the factory once per model
    const dispose = (await widget.initialize!({ model: model as any, signal: new AbortController().signal, experimental: {} as any })) as () => void;
    expect(model.count("msg:custom")).toBe(1);
    // a delta with no view on screen
    const [m, b] = delta(3, { rows: [{ run: 1, row: 3, epoch: 4, time: 1, provisional: false }] }, [{ run: 1, row: 3, col: 0, val: 0.2 }]);
    model.emit("msg:custom", m, b);
    model.emit("msg:custom", m, b); // duplicate: ignored by seq
    model.emit("msg:custom", { type: "other" }, []);
    const cleanup = (await widget.render!({ model: model as any, el: host(), signal: new AbortController().signal, host: {} as any, experimental: {} as any })) as () => void;
    expect(panelEl(host(), LOSS.tag, LOSS.tag)!.dataset.epochs).toBe("4");
    // a history snapshot older than what we have is ignored
    model.set("history", history(2, []));
    await tick();
    expect(panelEl(host(), LOSS.tag, LOSS.tag)!.dataset.epochs).toBe("4");
    cleanup();
    dispose();
    expect(model.count("msg:custom")).toBe(0);
    expect(model.count("change:history")).toBe(0);
  });

  it("render without initialize keeps its own store", async () => {
    const model = makeModel();
    const widget = createWidget();
    const cleanup = (await widget.render!({ model: model as any, el: host(), signal: new AbortController().signal, host: {} as any, experimental: {} as any })) as () => void;
    expect(panelEl(host(), LOSS.tag, LOSS.tag)!.dataset.epochs).toBe("3");
    expect(model.count("msg:custom")).toBe(1);
    cleanup();
    expect(model.count("msg:custom")).toBe(0);
  });
});
