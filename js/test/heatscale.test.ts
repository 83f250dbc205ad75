// @vitest-environment happy-dom
// Trial r6, finding 7: a log-y heatmap drew exact zeros (a vanished gradient) blank like missing data, and a
// correlation heatmap took its colour range from the data instead of the panel's fixed [-1, 1]. Finding 9:
// the warning panels' hover named the worst layer in epoch mode only.
import { beforeAll, describe, expect, it } from "vitest";
import type { ChartContext } from "../chart";
import { ChartDrawer } from "../chartdraw";
import { makeChartSlot } from "../chartslot";
import { emptyFilters } from "../filters";
import { runStyle } from "../overview/runstyle";
import { uiState } from "../uistate";
import { colormap, Heatmap, heatRange, heatWindow, NOT_ON_LOG } from "../overview/heatmap";
import { worstHolder } from "../overview/worst";
import { buildLayout } from "../panels";
import { drawHeatmap, type SectionSlot } from "../sections";
import { Store } from "../store";
import { column, history, panel, snapRun } from "./helpers";
import { stubCanvas } from "./realplot";

const NORM = panel("Weight Gradient Norm", { logy: true });
const CORR = panel("Weight Gradient Correlation", { ylim: [-1, 1] });
const layers = ["b0.fc", "b1.fc", "head"];
// epochs 1..3; b0.fc's gradient vanished (exact 0), b1.fc has no value at epoch 2 (NaN)
const NORMS = [[0, 0.01, 1], [0, NaN, 0.1], [0, 0.01, 10]];

function store(): Store {
  const cols = [
    ...layers.map((g, i) => column(i, NORM.tag, g, "mean", { module_type: "Linear" })),
    ...layers.map((g, i) => column(3 + i, CORR.tag, g, "mean", { module_type: "Linear" })),
  ];
  const s = new Store();
  s.applyHistory(history(1, [snapRun(0, "r", [NORM, CORR], cols, [1, 2, 3], NORMS.map((r) => [...r, 0, 0, 0]))]));
  return s;
}

function slot(): SectionSlot {
  const hm = new Heatmap(() => undefined);
  return { el: document.createElement("section"), title: document.createElement("div"), logy: null, modeBtn: null, heatmap: hm,
    grid: document.createElement("div") };
}
const pixel = (hm: Heatmap, row: number, col: number): number[] => {
  const img = (hm as any).img as ImageData;
  const o = 4 * (row * img.width + col);
  return Array.from(img.data.slice(o, o + 4));
};

describe("heatmap scales", () => {
  beforeAll(stubCanvas);

  it("draws a log panel's zeros grey (not blank like a gap) and says so", () => {
    const s = store();
    const sec = buildLayout(s, emptyFilters()).small.find((x) => x.tag === NORM.tag)!;
    expect(sec.logy).toBe(true);
    const sl = slot();
    drawHeatmap(sl, sec, s.current!, 600, () => false, 1);
    const hm = sl.heatmap!;
    // b0.fc (row 0): every epoch 0 -> grey
    for (const e of [0, 1, 2]) expect(pixel(hm, 0, e)).toEqual([...NOT_ON_LOG, 255]);
    // b1.fc at epoch 2: no value -> transparent
    expect(pixel(hm, 1, 1)).toEqual([0, 0, 0, 0]);
    // the range is log10 of the positive values: 0.01 .. 10 -> [-2, 1]; head at epoch 3 (10) is the top colour
    expect(heatRange({ run: s.current!, rows: layers.map((layer, i) => ({ layer, col: i })), rate: false, logy: true })).toEqual([-2, 1]);
    expect(pixel(hm, 2, 2)).toEqual([...colormap(1), 255]);
    expect(hm.el.querySelector(".mw-heat-scale")!.textContent).toBe(
      "colour: log10 mean, -2 (dark) to 1 (bright) · grey: 0 or below (no log) · epochs 1–3");
  });

  it("colours a correlation panel on its fixed [-1, 1], so all-zero correlations sit mid-scale", () => {
    const s = store();
    const sec = buildLayout(s, emptyFilters()).small.find((x) => x.tag === CORR.tag)!;
    const sl = slot();
    drawHeatmap(sl, sec, s.current!, 600, () => false, 1);
    expect(sl.heatmap!.el.querySelector(".mw-heat-scale")!.textContent).toBe("colour: mean, -1 (dark) to 1 (bright) · epochs 1–3");
    // 0 on [-1, 1] is the colour map's middle: LUT index round(0.5 * 255) = 128
    expect(pixel(sl.heatmap!, 0, 0)).toEqual([...colormap(128 / 255), 255]);
  });

  it("follows the charts' shared zoom: only the zoomed epochs fill its width (trial r11)", () => {
    expect(heatWindow([1, 2, 3, 4], 4, [1.5, 3.2])).toEqual([1, 2]);
    expect(heatWindow([1, 2, 3, 4], 4, null)).toBeNull();
    expect(heatWindow([1, 2, 3, 4], 4, [0, 9])).toBeNull(); // every row: the whole run
    expect(heatWindow([1, 2, 3, 4], 4, [5, 9])).toBeNull(); // none: the whole run rather than nothing
    expect(heatWindow([4, 8, 12, 16, 99], 4, [8, 12])).toEqual([1, 2]); // steps; a provisional row is not final
    const s = store();
    const sec = buildLayout(s, emptyFilters()).small.find((x) => x.tag === CORR.tag)!;
    const sl = slot();
    drawHeatmap(sl, sec, s.current!, 600, () => false, 1, [1, 2]);
    const canvas = sl.heatmap!.el.querySelector("canvas")!;
    const w = 600 - 170 - 8; // the view's width less the labels (LABEL_W) and their gap
    // 3 epochs drawn, 2 shown: the canvas is 3/2 of the shown width, shifted left by one epoch's width
    expect(parseFloat(canvas.style.width)).toBeCloseTo((w * 3) / 2, 6);
    expect(parseFloat(canvas.style.marginLeft)).toBeCloseTo(-w / 2, 6);
    expect(sl.heatmap!.el.querySelector(".mw-heat-scale")!.textContent).toBe(
      "colour: mean, -1 (dark) to 1 (bright) · epochs 2–3 (zoomed)");
    drawHeatmap(sl, sec, s.current!, 600, () => false, 1, null);
    expect(parseFloat(canvas.style.width)).toBeCloseTo(w, 6);
    expect(canvas.style.marginLeft).toBe("");
  });
});

describe("warning panel hover", () => {
  beforeAll(stubCanvas);
  it("names the worst layer at an x in step and wall-time modes too", () => {
    const ACT = panel("Output Activations", { kind: "probability", lens: "OutputActivation" });
    const WARN = panel("Warning Output Activations", { kind: "probability", big: true, lens: "OutputActivation" });
    const death = [[0.1, 0.5], [0.7, 0.3]];
    const cols = [column(0, ACT.tag, "relu0", "death_rate"), column(1, ACT.tag, "relu1", "death_rate"), column(2, WARN.tag, WARN.tag, "worst death_rate")];
    const s = new Store();
    s.applyHistory(history(1, [snapRun(0, "r", [ACT, WARN], cols, [1, 2], death.map((d) => [...d, Math.max(...d)]),
      { steps: (() => { const b = new ArrayBuffer(16); const v = new DataView(b); v.setFloat64(0, 22, true); v.setFloat64(8, 44, true); return v; })() })]));
    const run = s.current!;
    expect([1, 2].map(worstHolder(run, WARN, "worst death_rate"))).toEqual(["relu1", "relu0"]);
    // helpers.snapRun: time = epoch / 2; steps 22, 44
    expect([0.5, 1].map(worstHolder(run, WARN, "worst death_rate", run.times))).toEqual(["relu1", "relu0"]);
    expect([22, 44].map(worstHolder(run, WARN, "worst death_rate", run.steps))).toEqual(["relu1", "relu0"]);
    expect(worstHolder(run, WARN, "worst death_rate", run.steps)(2)).toBeNull();
    // the drawn chart's hover, x as wall time
    const ui = uiState(s);
    ui.xAxis = "time";
    const runs = runStyle(s);
    const ctx: ChartContext = { runs, xLabel: "epoch", spanGaps: false, syncKey: "w", zoom: () => null, onZoom: () => undefined };
    const spec = buildLayout(s, emptyFilters()).big[0].charts[0];
    const sl = makeChartSlot(spec, () => undefined, () => undefined);
    sl.spec = spec;
    sl.size = { width: 500, height: 220 };
    new ChartDrawer(s, ui, runs, ctx).draw(sl, new Map(), { fg: "#000", muted: "#666", grid: "#eee", bg: "#fff", palette: ["#000"] }, "t");
    const u = sl.chart!.u;
    expect(u.data[0]).toEqual([0.5, 1]);
    const hover = u.series[1].value as (u: unknown, v: number, si: number, idx: number) => string;
    expect([hover(u, 0.5, 1, 0), hover(u, 0.7, 1, 1)]).toEqual(["0.5 · layer relu1", "0.7 · layer relu0"]);
  });
});
