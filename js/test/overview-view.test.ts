// @vitest-environment happy-dom
// The overview in a mounted view: heatmap default for deep panels, rows opening charts, the top slot
// (findings, worst layers), runs legend, filter search and open state, shared zoom, smoothing.
import { describe, expect, it, vi } from "vitest";

vi.mock("uplot", async () => ({ default: (await import("./fakes")).FakePlot }));
vi.mock("../css", () => ({ default: ".mw-root{}" }));

import type { Finding } from "../protocol";
import { Store } from "../store";
import { mountView } from "../view";
import { FakeModel, plots, tick, useHost } from "./fakes";
import { column, delta, history, panel, snapRun, status } from "./helpers";

const LOSS = panel("Loss", { big: true });
const ACT = panel("Output Activations", { kind: "probability", lens: "OutputActivation" });
const N = 12;
const layers = Array.from({ length: N }, (_, i) => `block${i}.relu`);
/** Death rate of layer i at epoch e (1-based): layer 7 dies. */
const death = (i: number, e: number) => (i === 7 ? 0.2 * e : 0.01 * i);

function deepRun(id: number, label: string, epochs: number, lossScale = 1, deathOf = death) {
  const cols = [column(0, LOSS.tag, LOSS.tag, "train_loss"), ...layers.flatMap((g, i) => [
    column(1 + 2 * i, ACT.tag, g, "activation_rate", { module_type: "ReLU" }),
    column(2 + 2 * i, ACT.tag, g, "death_rate", { module_type: "ReLU" }),
  ])];
  const es = Array.from({ length: epochs }, (_, k) => k + 1);
  const rows = es.map((e) => [lossScale / e, ...layers.flatMap((_, i) => [1 - deathOf(i, e), deathOf(i, e)])]);
  return snapRun(id, label, [LOSS, ACT], cols, es, rows);
}

const host = useHost();
const all = (sel: string) => [...host().querySelectorAll<HTMLElement>(sel)];
const chartEl = (group: string) => all(".mw-panel").find((p) => p.dataset.group === group)!;

function mount(runs = [deepRun(0, "deep", 4)]) {
  const store = new Store();
  store.applyHistory(history(1, runs));
  const model = new FakeModel();
  const cleanup = mountView(model as any, store, host());
  return { store, model, cleanup };
}

describe("deep model overview", () => {
  it("shows a deep per-layer panel as a heatmap whose rows open the layer's chart; small multiples on toggle", async () => {
    const { cleanup } = mount();
    const sec = host().querySelector<HTMLElement>(`section[data-section="${ACT.tag}"]`)!;
    expect(sec.dataset.mode).toBe("heatmap");
    expect(all(".mw-heat-row").map((r) => r.textContent)).toEqual(layers);
    expect(chartEl("block3.relu").hidden).toBe(true);
    all(".mw-heat-row").find((r) => r.dataset.layer === "block3.relu")!.click();
    await tick();
    expect(chartEl("block3.relu").hidden).toBe(false);
    expect(chartEl("block4.relu").hidden).toBe(true);
    sec.querySelector<HTMLButtonElement>(".mw-mode")!.click();
    await tick();
    expect(sec.dataset.mode).toBe("charts");
    expect(all(`.mw-panel[data-panel="${ACT.tag}"]`).every((p) => !p.hidden)).toBe(true);
    expect(sec.querySelector<HTMLElement>(".mw-heatmap")!.hidden).toBe(true);
    cleanup();
  });

  it("names the worst layers with their values at the top", () => {
    const { cleanup } = mount();
    const line = host().querySelector<HTMLElement>('.mw-worst-line[data-key="death_rate"]')!;
    const first = line.querySelector<HTMLElement>('.mw-worst-item[data-rank="1"]')!;
    // by hand: layer 7's death at epoch 4 is 0.8; the next are layers 11 and 10 (0.11, 0.1)
    expect(first.querySelector(".mw-link")!.textContent).toBe("block7.relu");
    expect(first.querySelector(".mw-value")!.textContent).toBe("0.8");
    expect(line.querySelectorAll(".mw-worst-item")[1].textContent).toBe("block11.relu0.11");
    const low = host().querySelector<HTMLElement>('.mw-worst-line[data-key="activation_rate"] .mw-link')!;
    expect(low.textContent).toBe("block7.relu");
    cleanup();
  });

  it("leaves rates at their best end out of the worst layers (no unit silent, every unit active)", () => {
    // trial r11: "highest death rate: 1 0, 3 0, 5 0"; here only block7 has silent units (0.8 at epoch 4, by hand)
    const { cleanup } = mount([deepRun(0, "deep", 4, 1, (i, e) => (i === 7 ? 0.2 * e : 0))]);
    const items = (key: string) => all(`.mw-worst-line[data-key="${key}"] .mw-worst-item`).map((i) => i.textContent);
    expect(items("death_rate")).toEqual(["block7.relu0.8"]);
    expect(items("activation_rate")).toEqual(["block7.relu0.2"]);
    expect(all(".mw-worst-more")).toEqual([]);
    cleanup();
    const quiet = mount([deepRun(0, "deep", 2, 1, () => 0)]);
    expect(all(".mw-worst-line")).toEqual([]);
    quiet.cleanup();
  });

  it("lists findings live, resolved ones marked, each linked to its chart", async () => {
    const { store, cleanup } = mount();
    expect(host().querySelector<HTMLElement>(".mw-findings")!.hidden).toBe(true);
    const f = (over: Partial<Finding>): Finding => ({
      id: "x", run: 0, check: "dead", severity: "warning", layer: "block7.relu", tag: ACT.tag, since: 2, until: null,
      value: 0.8, message: "block7.relu is dying.", advice: "Lower the learning rate.", ...over,
    });
    store.applyDelta(...delta(2, { findings: [f({ id: "old", severity: "info", until: 3, layer: "<b>x</b>" }), f({ id: "dead", severity: "critical" })] }));
    await tick();
    const items = all(".mw-finding");
    expect(items.map((i) => i.dataset.id)).toEqual(["dead", "old"]);
    expect(items[0].dataset.severity).toBe("critical");
    expect(items[0].textContent).toContain("since epoch 2");
    expect(items[0].textContent).toContain("Lower the learning rate.");
    expect(items[1].dataset.resolved).toBe("1");
    expect(items[1].textContent).toContain("since epoch 2, resolved at epoch 3"); // trial r11: "epochs 2–3" read as held at 3
    expect(items[1].querySelector(".mw-link")!.textContent).toBe("layer '<b>x</b>'");
    expect(host().querySelector("b")).toBeNull();
    items[0].querySelector<HTMLButtonElement>(".mw-link")!.click();
    await tick();
    expect(chartEl("block7.relu").hidden).toBe(false);
    expect(chartEl("block7.relu").classList.contains("mw-flash")).toBe(true);
    store.applyDelta(...delta(3, { findings_removed: ["dead", "old"] }));
    await tick();
    expect(all(".mw-finding").length).toBe(0);
    cleanup();
  });
});

describe("runs, filters and reading", () => {
  it("gives each run a legend entry; clicking an earlier run hides it everywhere", async () => {
    const { model, cleanup } = mount([deepRun(0, "A", 3, 3), deepRun(1, "B", 3, 2), deepRun(2, "C", 4)]);
    const entries = all(".mw-run");
    expect(entries.map((e) => e.textContent)).toEqual(["A", "B", "C"]);
    const loss = () => plots.filter((p) => !p.destroyed).find((p) => p.opts.series[1].label.startsWith("train_loss"))!;
    expect(loss().opts.series.map((s: any) => s.label)).toEqual(["epoch", "train_loss · C", "train_loss · A", "train_loss · B", "train_loss (running)"]);
    const dashes = loss().opts.series.slice(2, 4).map((s: any) => JSON.stringify(s.dash));
    expect(new Set(dashes).size).toBe(2);
    entries[0].click();
    await tick();
    expect(model.get("filters").hidden_runs).toEqual([0]);
    expect(all(".mw-run")[0].dataset.hidden).toBe("1");
    expect(loss().opts.series.map((s: any) => s.label)).not.toContain("train_loss · A");
    cleanup();
  });

  it("lists the newest run's findings before an earlier run's of the same standing; a hidden run's go", async () => {
    // trial r12: a second run's 50 findings sat behind five resolved ones of the first run, hidden or not
    const { store, cleanup } = mount([deepRun(0, "A", 3), deepRun(1, "B", 3)]);
    const f = (id: string, run: number, until: number | null): Finding => ({
      id, run, check: "update_ratio", severity: "warning", layer: "block1.relu", tag: ACT.tag, since: 1, until,
      value: 0.2, message: "steps too large.", advice: "Lower the learning rate.",
    });
    store.applyDelta(...delta(2, { findings: [f("a1", 0, 2), f("a2", 0, 2), f("b1", 1, 2), f("b2", 1, null)] }));
    await tick();
    expect(all(".mw-finding").map((i) => i.dataset.id)).toEqual(["b2", "b1", "a1", "a2"]);
    all(".mw-run")[0].click(); // hide run A
    await tick();
    expect(all(".mw-finding").map((i) => i.dataset.id)).toEqual(["b2", "b1"]);
    cleanup();
  });

  it("search narrows the module list; the Filters box keeps its open state across views", () => {
    const { store, model, cleanup } = mount();
    const box = host().querySelector<HTMLDetailsElement>("details.mw-filters")!;
    box.open = true;
    box.dispatchEvent(new Event("toggle"));
    const search = host().querySelector<HTMLInputElement>(".mw-search")!;
    search.value = "block1";
    search.dispatchEvent(new Event("input"));
    const shown = all("label[data-module-label]").filter((l) => !l.hidden).map((l) => l.querySelector("input")!.dataset.filterModule);
    expect(shown).toEqual(["block1.relu", "block10.relu", "block11.relu"]);
    // ...and shows only those in the charts, or every module again (trial r12: ~65 boxes unticked by hand)
    host().querySelector<HTMLButtonElement>(".mw-search-only")!.click();
    expect(model.get("filters").hidden_modules).toEqual(layers.filter((g) => !["block1.relu", "block10.relu", "block11.relu"].includes(g)));
    host().querySelector<HTMLButtonElement>(".mw-search-all")!.click();
    expect(model.get("filters").hidden_modules).toEqual([]);
    cleanup();
    const again = mountView(model as any, store, host());
    expect(host().querySelector<HTMLDetailsElement>("details.mw-filters")!.open).toBe(true);
    expect(host().querySelector<HTMLInputElement>(".mw-search")!.value).toBe("block1");
    again();
  });

  it("a zoom is shared by every chart and survives new ticks until reset", async () => {
    const { store, cleanup } = mount([deepRun(0, "A", 3), { ...deepRun(1, "B", 4) }]);
    host().querySelector<HTMLButtonElement>(".mw-mode")!.click(); // small multiples: many charts
    await tick();
    const live = () => plots.filter((p) => !p.destroyed);
    const p0 = live()[0];
    p0.select = { left: 10, width: 20 };
    p0.opts.hooks.setSelect[0](p0);
    await tick();
    store.applyDelta(...delta(2, { rows: [{ run: 1, row: 4, epoch: 5, time: 2, provisional: false }] }, [{ run: 1, row: 4, col: 0, val: 0.1 }]));
    await tick();
    expect(live().length).toBeGreaterThan(3);
    expect(live().every((p) => p.scaleX && p.scaleX.min === 1 && p.scaleX.max === 3)).toBe(true);
    // a rebuilt view (same model) starts zoomed
    const before = plots.length;
    const again = mountView(new FakeModel() as any, store, host());
    await tick();
    const rebuilt = plots.slice(before).filter((p) => !p.destroyed);
    expect(rebuilt.length).toBeGreaterThan(0);
    expect(rebuilt.every((p) => p.scaleX && p.scaleX.min === 1 && p.scaleX.max === 3)).toBe(true);
    again();
    // double click resets (the chart's ready hook wires it)
    p0.opts.hooks.ready[0]({ ...p0, over: p0.root, cursor: { idx: null }, data: [[]] });
    p0.root.dispatchEvent(new Event("dblclick"));
    await tick();
    expect(live().every((p) => p.scaleX === null)).toBe(true);
    cleanup();
  });

  it("smooths the loss with the slider, titles axes and shows the latest values when not hovering", async () => {
    const { cleanup } = mount();
    const loss = () => plots.filter((p) => !p.destroyed).find((p) => p.opts.series[1].label.startsWith("train_loss"))!;
    expect(loss().opts.axes.map((a: any) => a.label)).toEqual(["epoch", "loss"]);
    loss().opts.hooks.setCursor[0](loss()); // the cursor left the plot
    // x, train_loss, its provisional segment (empty): each series' last row
    expect(loss().legendIdxs).toEqual([3, 3, null]);
    const raw = loss().data[1].slice();
    const slider = host().querySelector<HTMLInputElement>("input[data-smoothing]")!;
    slider.value = "0.5";
    slider.dispatchEvent(new Event("input"));
    await tick();
    expect(loss().opts.series[1].label).toBe("train_loss (smoothed)");
    const y = loss().data[1];
    // debiased EMA with w = 0.5 of 1, 1/2: (0.5 * 1 + 1 * 0.5) / 1.5
    expect(y[0]).toBeCloseTo(raw[0], 12);
    expect(y[1]).toBeCloseTo((0.5 * 1 + 0.5) / 1.5, 12);
    const act = plots.find((p) => p.opts.series[1]?.label === "activation_rate");
    expect(act === undefined || act.opts.axes[1].label === "rate").toBe(true);
    cleanup();
  });

  it("switches the x axis to wall time for every chart, and back", async () => {
    const { cleanup } = mount();
    const sel = host().querySelector<HTMLSelectElement>("select.mw-xaxis")!;
    sel.value = "time";
    sel.dispatchEvent(new Event("change"));
    await tick();
    const loss = plots.filter((p) => !p.destroyed).find((p) => p.opts.series[1].label === "train_loss")!;
    expect(loss.opts.axes[0].label).toBe("time (s)");
    expect(loss.data[0]).toEqual([0.5, 1, 1.5, 2]); // helpers.snapRun: time = epoch / 2
    sel.value = "epoch";
    sel.dispatchEvent(new Event("change"));
    await tick();
    const again = plots.filter((p) => !p.destroyed).find((p) => p.opts.series[1].label === "train_loss")!;
    expect(again.data[0]).toEqual([1, 2, 3, 4]);
    cleanup();
  });

  it("collapses a repeated problem into one line with its count", async () => {
    const { store, cleanup } = mount();
    store.applyDelta(...delta(2, { problems: [{ run: 0, lens: "OutputActivation", message: "relu3: NaN batches", count: 7 }] }));
    await tick();
    const btn = host().querySelector<HTMLButtonElement>(".mw-problems")!;
    expect(btn.textContent).toBe("⚠ 1 problem");
    btn.click();
    expect(all(".mw-problem-list li").map((li) => li.textContent)).toEqual(["OutputActivation: relu3: NaN batches (×7)"]);
    cleanup();
  });

  it("counts notices apart from problems: '⚠ 1 problem · 2 notes', problems listed first", async () => {
    const { store, cleanup } = mount();
    store.applyDelta(...delta(2, {
      problems: [
        { run: 0, lens: "attach", message: "'head' is watched by no lens", count: 1, kind: "notice" },
        { run: 0, lens: "OutputActivation", message: "relu3: NaN batches", count: 1, kind: "warning" },
        { run: 0, lens: "frozen", message: "'emb.weight' is frozen", count: 1, kind: "notice" },
      ],
      status: status({ problems: 1, notices: 2 }),
    }));
    await tick();
    const btn = host().querySelector<HTMLButtonElement>(".mw-problems")!;
    expect(btn.hidden).toBe(false);
    expect(btn.textContent).toBe("⚠ 1 problem · 2 notes");
    expect(btn.dataset.kind).toBe("problems");
    expect(btn.title).toBe("problems:\nOutputActivation: relu3: NaN batches\n\nnotes:\n"
      + "attach: 'head' is watched by no lens\nfrozen: 'emb.weight' is frozen");
    const st = host().querySelector<HTMLElement>(".mw-status")!;
    expect([st.dataset.problems, st.dataset.notices]).toEqual(["1", "2"]);
    btn.click();
    expect(all(".mw-problem-list li").map((li) => [li.dataset.kind, li.textContent])).toEqual([
      ["warning", "OutputActivation: relu3: NaN batches"],
      ["notice", "attach: 'head' is watched by no lens"],
      ["notice", "frozen: 'emb.weight' is frozen"],
    ]);
    expect(all(".mw-problem-list li.mw-note").length).toBe(2);
    cleanup();
  });

  it("shows only notices without a warning sign, and a report without a kind (older kernel) as a problem", async () => {
    const { store, cleanup } = mount();
    store.applyDelta(...delta(2, {
      problems: [{ run: 0, lens: "model", message: "'head.extra' was added after attach", count: 1, kind: "notice" }],
      status: status({ problems: 0, notices: 1 }),
    }));
    await tick();
    const btn = host().querySelector<HTMLButtonElement>(".mw-problems")!;
    expect(btn.textContent).toBe("1 note");
    expect(btn.textContent).not.toContain("⚠");
    expect(btn.dataset.kind).toBe("notices");
    expect(host().querySelector<HTMLElement>(".mw-status")!.dataset.problems).toBe("0");
    // an older kernel: no kind, no notices in the status
    const old = { run: 0, lens: "LossMetrics", message: "loss is NaN", count: 2 };
    store.applyDelta(...delta(3, { problems: [old], status: { ...status({ problems: 2 }), notices: undefined } }));
    await tick();
    expect(btn.textContent).toBe("⚠ 2 problems · 1 note");
    expect(btn.dataset.kind).toBe("problems");
    cleanup();
  });

  it("lists the first findings and keeps the rest behind a toggle, so the top slot stays short", async () => {
    const { store, cleanup } = mount();
    const many: Finding[] = Array.from({ length: 9 }, (_, i) => ({
      id: `f${i}`, run: 0, check: "dead_layer", severity: i < 2 ? "critical" : "warning", layer: `block${i}.relu`,
      tag: ACT.tag, since: 1, until: i === 8 ? 2 : null, value: 0.5, message: "dying", advice: "try dropout",
    }));
    store.applyDelta(...delta(2, { findings: many }));
    await tick();
    expect(all(".mw-finding").length).toBe(5);
    const more = host().querySelector<HTMLButtonElement>(".mw-findings-more button")!;
    expect(more.textContent).toBe("show 4 more (3 open)");
    more.click();
    expect(all(".mw-finding").length).toBe(9);
    host().querySelector<HTMLButtonElement>(".mw-findings-more button")!.click();
    expect(all(".mw-finding").length).toBe(5);
    cleanup();
  });
});
