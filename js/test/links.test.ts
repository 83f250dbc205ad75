// @vitest-environment happy-dom
// A link (worst layers, a finding) to a layer or panel hidden in Filters shows it again and says what it
// changed (trial r6, finding 5: such a link did nothing).
import { describe, expect, it, vi } from "vitest";

vi.mock("uplot", async () => ({ default: (await import("./fakes")).FakePlot }));
vi.mock("../css", () => ({ default: ".mw-root{}" }));

import type { Finding } from "../protocol";
import { Store } from "../store";
import { LINK_NOTE_MS, mountView } from "../view";
import { FakeModel, tick, useHost } from "./fakes";
import { column, delta, history, panel, snapRun } from "./helpers";

const ACT = panel("Output Activations", { kind: "probability" });
const NORM = panel("Output Norm");
// 4 ReLU layers (b2.act dies) and a Linear one
const layers = ["b0.act", "b1.act", "b2.act", "b3.act"];
const cols = [
  ...layers.flatMap((g, i) => [column(2 * i, ACT.tag, g, "activation_rate", { module_type: "ReLU" }),
    column(2 * i + 1, ACT.tag, g, "death_rate", { module_type: "ReLU" })]),
  column(8, NORM.tag, "head", "mean", { module_type: "Linear" }),
];
const rows = [1, 2].map((e) => [...layers.flatMap((g) => (g === "b2.act" ? [1 - 0.4 * e, 0.4 * e] : [0.9, 0.05])), 1 / e]);

const host = useHost();
const all = (sel: string) => [...host().querySelectorAll<HTMLElement>(sel)];
const chartEl = (tag: string, group: string) => all(".mw-panel").find((p) => p.dataset.panel === tag && p.dataset.group === group)!;
const note = () => host().querySelector<HTMLElement>(".mw-link-note")!;

function mount(filters: Record<string, unknown>) {
  const store = new Store();
  store.applyHistory(history(1, [snapRun(0, "run", [ACT, NORM], cols, [1, 2], rows)]));
  const model = new FakeModel();
  model.attrs.filters = { hidden_modules: [], hidden_types: [], hidden_panels: [], hidden_runs: [], logy: {}, ...filters };
  const cleanup = mountView(model as any, store, host());
  return { store, model, cleanup };
}

describe("a link to something the Filters hide", () => {
  it("a worst-layer link to a layer whose type is hidden shows that layer only", async () => {
    const { model, cleanup } = mount({ hidden_types: ["ReLU"] });
    expect(chartEl(ACT.tag, "b2.act").hidden).toBe(true);
    // the hidden type's modules: unticked and greyed out in Filters, saying why; head (Linear) as it is
    const box = (name: string) => host().querySelector<HTMLInputElement>(`input[data-filter-module="${name}"]`)!;
    expect(layers.map((g) => [box(g).checked, box(g).disabled])).toEqual(layers.map(() => [false, true]));
    expect(box("b2.act").parentElement!.title).toBe("hidden with its module type 'ReLU'");
    expect([box("head").checked, box("head").disabled]).toEqual([true, false]);
    const link = host().querySelector<HTMLElement>('.mw-worst-line[data-key="death_rate"] .mw-link')!;
    expect(link.textContent).toBe("b2.act");
    link.click();
    await tick();
    // the type is shown again, its other modules hidden by name: only the linked layer appears
    expect(model.attrs.filters.hidden_types).toEqual([]);
    expect(model.attrs.filters.hidden_modules).toEqual(["b0.act", "b1.act", "b3.act"]);
    expect(chartEl(ACT.tag, "b2.act").hidden).toBe(false);
    expect(chartEl(ACT.tag, "b2.act").classList.contains("mw-flash")).toBe(true);
    for (const g of ["b0.act", "b1.act", "b3.act"]) expect(chartEl(ACT.tag, g).hidden).toBe(true);
    expect(layers.map((g) => [box(g).checked, box(g).disabled])).toEqual([[false, false], [false, false], [true, false], [false, false]]);
    expect(note().hidden).toBe(false);
    expect(note().textContent).toBe("Shown again in Filters: module type 'ReLU' (its other modules stay hidden).");
    cleanup();
  });

  it("a finding's link to a hidden panel and module shows both; a link to a shown chart changes nothing", async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    const { store, model, cleanup } = mount({ hidden_panels: [ACT.tag], hidden_modules: ["b2.act", "b0.act"] });
    const f: Finding = { id: "dead", run: 0, check: "dead", severity: "critical", layer: "b2.act", tag: ACT.tag, since: 2, until: null,
      value: 0.8, message: "b2.act is dying.", advice: "Lower the learning rate." };
    store.applyDelta(...delta(2, { findings: [f] }));
    await tick();
    expect(host().querySelector<HTMLElement>(`section[data-section="${ACT.tag}"]`)!.hidden).toBe(true);
    host().querySelector<HTMLElement>(".mw-finding .mw-link")!.click();
    await tick();
    expect(model.attrs.filters.hidden_panels).toEqual([]);
    expect(model.attrs.filters.hidden_modules).toEqual(["b0.act"]);
    expect(host().querySelector<HTMLElement>(`section[data-section="${ACT.tag}"]`)!.hidden).toBe(false);
    expect(chartEl(ACT.tag, "b2.act").hidden).toBe(false);
    expect(chartEl(ACT.tag, "b0.act").hidden).toBe(true);
    expect(note().textContent).toBe(`Shown again in Filters: panel '${ACT.tag}', module 'b2.act'.`);
    // ...for a while, not for good (trial r11: still there after a whole second run)
    vi.advanceTimersByTime(LINK_NOTE_MS / 2);
    expect(note().hidden).toBe(false);
    vi.advanceTimersByTime(LINK_NOTE_MS);
    expect(note().hidden).toBe(true);
    const before = JSON.stringify(model.attrs.filters);
    host().querySelector<HTMLElement>(".mw-finding .mw-link")!.click();
    await tick();
    expect(JSON.stringify(model.attrs.filters)).toBe(before);
    expect(note().hidden).toBe(true);
    cleanup();
    vi.useRealTimers();
  });
});
