import { describe, expect, it } from "vitest";
import { buildChartData } from "../chartdata";
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

  it("keeps the panels, groups and keys only an earlier shown run has, after the newest run's", () => {
    // trial r11: the second run's update lens had no optimizer, so it recorded no ratio; run 1's Weight Update
    // Ratio panel disappeared from the charts and from the filters' list
    const RATIO = panel("Weight Update Ratio", { logy: true, lens: "ParameterUpdateGeometry" });
    const s = new Store();
    const now = [column(0, ACT.tag, "relu1", "activation_rate", { module_type: "ReLU" })];
    const before = [
      column(0, ACT.tag, "relu1", "activation_rate", { module_type: "ReLU" }),
      column(1, ACT.tag, "relu1", "death_rate", { module_type: "ReLU" }),
      column(2, ACT.tag, "relu0", "activation_rate", { module_type: "ReLU" }),
      column(3, RATIO.tag, "fc1", "mean", { module_type: "Linear" }),
      column(4, RATIO.tag, "fc1", "max", { module_type: "Linear" }),
    ];
    s.applyHistory(history(1, [
      snapRun(0, "run 1", [ACT, RATIO], before, [1, 2], [[0.5, 0.1, 0.4, 1e-3, 2e-3], [0.6, 0.1, 0.3, 1e-3, 3e-3]]),
      snapRun(1, "run 2", [ACT], now, [1], [[0.7]]),
    ]));
    const L = buildLayout(s, emptyFilters());
    expect(L.panels.map((p) => p.tag)).toEqual([ACT.tag, RATIO.tag]);
    expect(L.small.map((x) => x.tag)).toEqual([ACT.tag, RATIO.tag]);
    expect(L.small[0].charts.map((c) => c.group)).toEqual(["relu1", "relu0"]);
    expect(L.small[0].charts[0].series).toEqual([
      { key: "activation_rate", run: 1, current: true, col: 0 },
      { key: "activation_rate", run: 0, current: false, col: 0 },
      { key: "death_rate", run: 0, current: false, col: 1 },
    ]);
    expect(L.small[0].charts[1].series).toEqual([{ key: "activation_rate", run: 0, current: false, col: 2 }]);
    const ratio = L.small[1];
    expect(ratio.logy).toBe(true);
    expect(ratio.charts.map((c) => [c.group, c.moduleType])).toEqual([["fc1", "Linear"]]);
    expect(ratio.charts[0].series.map((x) => [x.key, x.run, x.col])).toEqual([["mean", 0, 3], ["max", 0, 4]]);
    expect(L.modules).toEqual([{ name: "relu1", type: "ReLU" }, { name: "relu0", type: "ReLU" }, { name: "fc1", type: "Linear" }]);
    // a key only the earlier run has gets its own colour
    const d = buildChartData(s, L.small[0].charts[0], 100);
    expect(d.series.map((x) => [x.role, x.key, x.line])).toEqual([
      ["line", "activation_rate", 0], ["old", "activation_rate", 0], ["old", "death_rate", 1], ["prov", "activation_rate", 0]]);
    // hidden, the earlier run adds nothing
    const H = buildLayout(s, setShown(emptyFilters(), "hidden_runs", 0, false));
    expect(H.small.map((x) => x.tag)).toEqual([ACT.tag]);
    expect(H.small[0].charts.map((c) => c.group)).toEqual(["relu1"]);
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
