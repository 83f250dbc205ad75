import { describe, expect, it } from "vitest";
import { buildChartData } from "../chartdata";
import { downsampleMinMax } from "../downsample";
import { emptyFilters, setShown } from "../filters";
import { buildLayout } from "../panels";
import { Store } from "../store";
import { column, delta, history, panel, snapRun } from "./helpers";

const LOSS = panel("Loss & Metrics", { big: true });
const L = LOSS.tag;
const cols = [
  column(0, L, L, "train_loss mean"),
  column(1, L, L, "train_loss -σ", { role: "lo", band_of: "train_loss mean" }),
  column(2, L, L, "train_loss +σ", { role: "hi", band_of: "train_loss mean" }),
];

function twoRuns(): Store {
  const s = new Store();
  s.applyHistory(history(1, [
    snapRun(0, "run 1", [LOSS], cols, [1, 2, 3, 4], [[4, 3, 5], [3, 2, 4], [2, 1, 3], [1, 0.5, 1.5]]),
    snapRun(1, "run 2", [LOSS], cols, [1, 2], [[5, 4, 6], [NaN, NaN, NaN]]),
  ]));
  return s;
}

describe("buildChartData", () => {
  it("orders series line, lo, hi, old runs, provisional and aligns runs on the union of epochs", () => {
    const s = twoRuns();
    const spec = buildLayout(s, emptyFilters()).big[0].charts[0];
    const d = buildChartData(s, spec, 400);
    expect(d.series.map((x) => `${x.role}:${x.run}`)).toEqual(["line:1", "lo:1", "hi:1", "old:0", "prov:1"]);
    expect(d.x).toEqual([1, 2, 3, 4]);
    // current run: epoch 1 value, epoch 2 NaN -> null gap, epochs 3-4 no row -> undefined
    expect(d.ys[0]).toEqual([5, null, undefined, undefined]);
    expect(d.ys[1]).toEqual([4, null, undefined, undefined]);
    expect(d.ys[2]).toEqual([6, null, undefined, undefined]);
    expect(d.ys[3]).toEqual([4, 3, 2, 1]);
    expect(d.ys[4]).toEqual([undefined, undefined, undefined, undefined]); // nothing provisional
    expect(d.epochs).toBe(2);
    expect(d.provisional).toBe(false);
    expect(d.provIndex).toBe(-1);
  });

  it("draws the provisional row only in the dashed series, connected to the last final row", () => {
    const s = twoRuns();
    s.applyDelta(...delta(2, { rows: [{ run: 1, row: 2, epoch: 2.5, time: 1, provisional: true }] }, [{ run: 1, row: 2, col: 0, val: 3.3 }]));
    const spec = buildLayout(s, setShown(emptyFilters(), "hidden_runs", 0, false)).big[0].charts[0];
    const d = buildChartData(s, spec, 400);
    expect(d.series.map((x) => x.role)).toEqual(["line", "lo", "hi", "prov"]);
    expect(d.x).toEqual([1, 2, 2.5]);
    expect(d.ys[0]).toEqual([5, null, undefined]);
    expect(d.ys[3]).toEqual([undefined, null, 3.3]); // last final value is NaN here -> null
    expect(d.provisional).toBe(true);
    expect(d.provIndex).toBe(2);
    expect(d.epochs).toBe(2);
    // the final row replaces it
    s.applyDelta(...delta(3, { rows: [{ run: 1, row: 2, epoch: 3, time: 1.2, provisional: false }] }, [{ run: 1, row: 2, col: 0, val: 3.1 }]));
    const d2 = buildChartData(s, spec, 400);
    expect(d2.x).toEqual([1, 2, 3]);
    expect(d2.ys[0]).toEqual([5, null, 3.1]);
    expect(d2.ys[3]).toEqual([undefined, undefined, undefined]);
    expect(d2.epochs).toBe(3);
  });

  it("turns values that a log axis cannot show into gaps", () => {
    const s = new Store();
    s.applyHistory(history(1, [snapRun(0, "r", [panel("Output Norm", { logy: true })], [column(0, "Output Norm", "fc", "mean")], [1, 2, 3], [[0], [-1], [2]])]));
    const spec = buildLayout(s, emptyFilters()).small[0].charts[0];
    expect(spec.logy).toBe(true);
    expect(buildChartData(s, spec, 100).ys[0]).toEqual([null, null, 2]);
  });

  it("draws a band whose lower edge turns non-positive on a log axis down to the chart's lowest value", () => {
    // trial r11: a loss's mean - std went negative from epoch 3 on (a wide spread), and the band broke off there
    const s = new Store();
    const P = panel("Loss", { big: true, logy: true });
    s.applyHistory(history(1, [snapRun(0, "r", [P], [
      column(0, "Loss", "Loss", "train_loss mean"),
      column(1, "Loss", "Loss", "train_loss -σ", { role: "lo", band_of: "train_loss mean" }),
      column(2, "Loss", "Loss", "train_loss +σ", { role: "hi", band_of: "train_loss mean" }),
    ], [1, 2, 3, 4], [[2, 1, 3], [0.5, 0.25, 0.75], [0.05, -0.0137, 0.1137], [0.04, NaN, 0.08]])]));
    const spec = buildLayout(s, emptyFilters()).big[0].charts[0];
    expect(spec.logy).toBe(true);
    const d = buildChartData(s, spec, 400);
    expect(d.series.map((x) => x.role)).toEqual(["line", "lo", "hi", "prov"]);
    expect(d.ys[0]).toEqual([2, 0.5, 0.05, 0.04]);
    expect(d.ys[1]).toEqual([1, 0.25, 0.04, null]); // -0.0137: the lowest drawn value; NaN stays a gap
    expect(d.ys[2]).toEqual([3, 0.75, 0.1137, 0.08]);
    // on a linear axis the record's value is drawn as it is
    const lin = buildChartData(s, { ...spec, logy: false }, 400);
    expect(lin.ys[1]).toEqual([1, 0.25, -0.0137, null]);
  });

  it("downsamples long histories to about two points per pixel, every value still in the store", () => {
    const s = new Store();
    const n = 5000;
    const rows = Array.from({ length: n }, (_, i) => [i === 4321 ? 100 : Math.cos(i / 50)]);
    s.applyHistory(history(1, [snapRun(0, "r", [panel("P")], [column(0, "P", "g", "v")], rows.map((_, i) => i + 1), rows)]));
    const spec = buildLayout(s, emptyFilters()).small[0].charts[0];
    const d = buildChartData(s, spec, 200);
    expect(d.x.length).toBeLessThanOrEqual(2 * 200 + 1);
    expect(Math.max(...(d.ys[0] as number[]))).toBe(100);
    expect(d.epochs).toBe(n);
    expect(s.current!.column(0).length).toBe(n);
  });

  it("long histories with old runs and a provisional row: same result as downsampling the full arrays", () => {
    const s = new Store();
    const P = panel("P");
    const cs = [column(0, "P", "g", "v"), column(1, "P", "g", "w")];
    const mk = <T,>(n: number, f: (i: number) => T): T[] => Array.from({ length: n }, (_, i) => f(i));
    s.applyHistory(history(1, [
      snapRun(0, "old", [P], cs, mk(2000, (i) => i + 1), mk(2000, (i) => [Math.sin(i / 30), i % 97 === 0 ? NaN : i])),
      snapRun(1, "cur", [P], cs, mk(3001, (i) => (i < 3000 ? i + 1 : 3000.5)), mk(3001, (i) => [i === 1234 ? 9 : Math.cos(i / 40), -i]), { provisional: true }),
    ]));
    const spec = buildLayout(s, emptyFilters()).small[0].charts[0];
    const full = buildChartData(s, spec, 1e9); // no downsampling
    expect(full.x.length).toBe(3001);
    const small = buildChartData(s, spec, 300);
    const ref = downsampleMinMax(full.x, full.ys, 300);
    expect(small.x).toEqual(ref.x);
    expect(small.ys).toEqual(ref.ys);
    expect(small.series.map((x) => x.role)).toEqual(["line", "line", "old", "old", "prov", "prov"]);
    expect(small.x[small.x.length - 1]).toBe(3000.5);
    expect(small.provIndex).toBe(small.x.length - 1);
    expect(small.ys[4][small.x.length - 1]).toBe(Math.cos(3000 / 40));
    expect(Math.max(...(small.ys[0].filter((v) => typeof v === "number") as number[]))).toBe(9);
    expect(small.epochs).toBe(3000);
  });
});

describe("x axis modes and missing epochs", () => {
  it("marks an epoch no run has as a gap in every line; ticks every 10 epochs are not gaps", () => {
    const s = new Store();
    s.applyHistory(history(1, [
      snapRun(0, "a", [LOSS], cols, [1, 2, 4, 5], [[1, 0, 2], [2, 1, 3], [4, 3, 5], [5, 4, 6]]),
    ]));
    const spec = buildLayout(s, emptyFilters()).big[0].charts[0];
    const d = buildChartData(s, spec, 400);
    expect(d.x).toEqual([1, 2, 3, 4, 5]);
    expect(d.ys[0]).toEqual([1, 2, null, 4, 5]);
    const t = new Store();
    t.applyHistory(history(1, [snapRun(0, "a", [LOSS], cols, [10, 20, 30], [[1, 0, 2], [2, 1, 3], [3, 2, 4]])]));
    const d2 = buildChartData(t, buildLayout(t, emptyFilters()).big[0].charts[0], 400);
    expect(d2.x).toEqual([10, 20, 30]);
    expect(d2.ys[0]).toEqual([1, 2, 3]);
  });

  it("puts wall time (seconds since the run started) on x in time mode", () => {
    const s = twoRuns(); // helpers: time = 0.5 * epoch
    const spec = buildLayout(s, emptyFilters()).big[0].charts[0];
    const d = buildChartData(s, spec, 400, undefined, "time");
    expect(d.x).toEqual([0.5, 1, 1.5, 2]);
    expect(d.ys[3]).toEqual([4, 3, 2, 1]);
    expect(d.ys[0]).toEqual([5, null, undefined, undefined]);
  });

  it("puts the optimizer step count on x in step mode; rows without one are left out", async () => {
    const { f64 } = await import("./helpers");
    const s = new Store();
    s.applyHistory(history(1, [
      snapRun(0, "a", [LOSS], cols, [1, 2], [[2, 1, 3], [1, 0, 2]], { steps: f64([40, 80]) }),
      snapRun(1, "b", [LOSS], cols, [1, 2], [[3, 2, 4], [2, 1, 3]]), // an older kernel: no steps
    ]));
    const spec = buildLayout(s, emptyFilters()).big[0].charts[0];
    const d = buildChartData(s, spec, 400, undefined, "step");
    // the current run (b) has no step counts: only a's points
    expect(d.x).toEqual([40, 80]);
    expect(d.ys[0]).toEqual([undefined, undefined]);
    s.applyDelta(...delta(2, { rows: [{ run: 1, row: 0, epoch: 1, time: 1, step: 30, provisional: false }] }));
    const d2 = buildChartData(s, spec, 400, undefined, "step");
    expect(d2.x).toEqual([30, 40, 80]);
    expect(d2.ys[0]).toEqual([3, undefined, undefined]);
    expect(d2.ys[3]).toEqual([undefined, 2, 1]);
  });
});
