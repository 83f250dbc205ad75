import { describe, expect, it } from "vitest";
import { emptyFilters, setLogy, setShown } from "../filters";
import { buildLayout, chartSignature } from "../panels";
import { Store } from "../store";
import { column, history, panel, snapRun } from "./helpers";

const LOSS = panel("Loss & Metrics", { big: true, lens: "LossMetrics" });
const WARN = panel("Warning Output Activations", { big: true, kind: "probability", lens: "OutputActivation" });
const ACT = panel("Output Activations", { kind: "probability", lens: "OutputActivation" });
const NORM = panel("Output Norm", { logy: true, lens: "OutputNorm" });

function columns() {
  const L = LOSS.tag;
  return [
    column(0, L, L, "train_loss mean"),
    column(1, L, L, "train_loss -σ", { role: "lo", band_of: "train_loss mean" }),
    column(2, L, L, "train_loss +σ", { role: "hi", band_of: "train_loss mean" }),
    column(3, L, L, "val_accuracy mean"),
    column(4, WARN.tag, WARN.tag, "worst activation_rate"),
    column(5, ACT.tag, "relu1", "activation_rate", { module_type: "ReLU" }),
    column(6, ACT.tag, "relu1", "death_rate", { module_type: "ReLU" }),
    column(7, ACT.tag, "drop", "activation_rate", { module_type: "Dropout" }),
    column(8, ACT.tag, "drop", "death_rate", { module_type: "Dropout" }),
    column(9, NORM.tag, "relu1", "mean", { module_type: "ReLU" }),
    column(10, NORM.tag, "relu1", "-σ", { role: "lo", band_of: "mean", module_type: "ReLU" }),
    column(11, NORM.tag, "relu1", "+σ", { role: "hi", band_of: "mean", module_type: "ReLU" }),
  ];
}

function store(withOld = false): Store {
  const s = new Store();
  const cs = columns();
  const rows = [cs.map((_, i) => i / 10)];
  const runs = [snapRun(1, "run 2: CNN", [LOSS, WARN, ACT, NORM], cs, [1], rows)];
  if (withOld) runs.unshift(snapRun(0, "run 1: CNN", [LOSS, ACT], cs.slice(0, 7), [1, 2], [rows[0].slice(0, 7), rows[0].slice(0, 7)]));
  s.applyHistory(history(1, runs));
  return s;
}

describe("buildLayout", () => {
  it("puts big panels in the top row and one small chart per group", () => {
    const L = buildLayout(store(), emptyFilters());
    expect(L.big.map((s) => s.tag)).toEqual(["Loss & Metrics", "Warning Output Activations"]);
    expect(L.small.map((s) => s.tag)).toEqual(["Output Activations", "Output Norm"]);
    expect(L.big[0].charts.map((c) => c.group)).toEqual(["Loss & Metrics"]);
    expect(L.small[0].charts.map((c) => c.group)).toEqual(["relu1", "drop"]);
    expect(L.small[0].charts[0].series.map((s) => s.key)).toEqual(["activation_rate", "death_rate"]);
    expect(L.modules).toEqual([{ name: "relu1", type: "ReLU" }, { name: "drop", type: "Dropout" }]);
    expect(L.types).toEqual(["ReLU", "Dropout"]);
  });

  it("pairs lo/hi columns with the line they surround", () => {
    const L = buildLayout(store(), emptyFilters());
    const loss = L.big[0].charts[0].series;
    expect(loss).toEqual([
      { key: "train_loss mean", run: 1, current: true, col: 0, lo: 1, hi: 2 },
      { key: "val_accuracy mean", run: 1, current: true, col: 3 },
    ]);
    const norm = L.small[1].charts[0].series;
    expect(norm).toEqual([{ key: "mean", run: 1, current: true, col: 9, lo: 10, hi: 11 }]);
  });

  it("probability panels cannot be log; defaults and user choice otherwise", () => {
    let L = buildLayout(store(), emptyFilters());
    expect(L.small[0].canLog).toBe(false);
    expect(L.small[1].logy).toBe(true); // record default
    L = buildLayout(store(), setLogy(setLogy(emptyFilters(), "Output Norm", false), "Output Activations", true));
    expect(L.small[1].logy).toBe(false);
    expect(L.small[0].logy).toBe(false);
  });

  it("a panel with a fixed y range (correlations in [-1, 1]) passes it to its charts and has no log toggle", () => {
    const CORR = panel("Output Gradient Correlation", { ylim: [-1, 1], lens: "OutputGradientGeometry" });
    const s = new Store();
    const cs = [column(0, CORR.tag, "fc1", "mean", { module_type: "Linear" })];
    s.applyHistory(history(1, [snapRun(0, "run 1", [NORM, CORR], cs, [1], [[0.5]])]));
    const L = buildLayout(s, setLogy(emptyFilters(), CORR.tag, true));
    const sec = L.small.find((x) => x.tag === CORR.tag)!;
    expect(sec.canLog).toBe(false);
    expect(sec.logy).toBe(false);
    expect(sec.charts[0].ylim).toEqual([-1, 1]);
    const free = buildLayout(store(), emptyFilters()).small[1].charts[0];
    expect(free.ylim).toBeNull();
    expect(chartSignature(sec.charts[0])).not.toEqual(chartSignature({ ...sec.charts[0], ylim: null }));
  });

  it("matches old runs' lines by panel/group/key and respects hidden runs", () => {
    const s = store(true);
    let L = buildLayout(s, emptyFilters());
    expect(L.oldRuns).toEqual([{ id: 0, label: "run 1: CNN" }]);
    const loss = L.big[0].charts[0].series;
    expect(loss.filter((x) => !x.current)).toEqual([
      { key: "train_loss mean", run: 0, current: false, col: 0 },
      { key: "val_accuracy mean", run: 0, current: false, col: 3 },
    ]);
    const relu = L.small[0].charts[0].series.filter((x) => !x.current);
    expect(relu.map((x) => [x.key, x.col])).toEqual([["activation_rate", 5], ["death_rate", 6]]);
    // the old run has no "drop" group and no Output Norm panel
    expect(L.small[0].charts[1].series.every((x) => x.current)).toBe(true);
    L = buildLayout(s, setShown(emptyFilters(), "hidden_runs", 0, false));
    expect(L.big[0].charts[0].series.every((x) => x.current)).toBe(true);
  });

  it("flags hidden charts by module name, module type and panel", () => {
    const f = setShown(setShown(emptyFilters(), "hidden_types", "Dropout", false), "hidden_panels", "Output Norm", false);
    const L = buildLayout(store(), f);
    expect(L.small[0].charts.map((c) => [c.group, c.hidden])).toEqual([["relu1", false], ["drop", true]]);
    expect(L.small[1].hidden).toBe(true);
    expect(L.small[1].charts.every((c) => c.hidden)).toBe(true);
    const L2 = buildLayout(store(), setShown(emptyFilters(), "hidden_modules", "relu1", false));
    expect(L2.small[0].charts.map((c) => c.hidden)).toEqual([true, false]);
    expect(L2.big.every((s) => !s.hidden && s.charts.every((c) => !c.hidden))).toBe(true);
    // hidden things still appear in the filter lists, so they can be shown again
    expect(L.types).toContain("Dropout");
    expect(L.panels.map((p) => p.tag)).toContain("Output Norm");
  });

  it("is empty before any run and changes signature only with the series set or scale", () => {
    expect(buildLayout(new Store(), emptyFilters()).big).toEqual([]);
    const a = buildLayout(store(), emptyFilters()).small[1].charts[0];
    const b = buildLayout(store(), setLogy(emptyFilters(), "Output Norm", false)).small[1].charts[0];
    expect(chartSignature(a)).toBe(chartSignature(buildLayout(store(), emptyFilters()).small[1].charts[0]));
    expect(chartSignature(a)).not.toBe(chartSignature(b));
  });
});
