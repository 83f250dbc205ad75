// @vitest-environment happy-dom
// Trial r6, findings 2-4: on a long run every drawn, hovered or exported point is the labelled epoch's own
// value; a zoom re-buckets the visible range; smoothing is the EMA of the record (not of the drawn points)
// and says so; the resting legend shows each run's last value.
import { beforeAll, describe, expect, it, vi } from "vitest";

const { texts } = vi.hoisted(() => ({ texts: [] as { name: string; text: string }[] }));
vi.mock("../overview/csv", async (orig) => ({
  ...(await orig<typeof import("../overview/csv")>()),
  downloadText: (name: string, text: string) => texts.push({ name, text }),
}));

import { Chart, type ChartContext, restingIdxs } from "../chart";
import { buildChartData } from "../chartdata";
import { ChartDrawer } from "../chartdraw";
import { makeChartSlot } from "../chartslot";
import { emptyFilters } from "../filters";
import { runStyle } from "../overview/runstyle";
import { buildLayout } from "../panels";
import { Store } from "../store";
import { uiState } from "../uistate";
import { column, history, panel, snapRun, status } from "./helpers";
import { stubCanvas } from "./realplot";

const LOSS = panel("Loss", { big: true });
const N = 1000;
/** A noisy decaying loss, epochs 1..N (seeded, so every value is known to the test). */
function lossValues(): number[] {
  let seed = 42;
  const rnd = (): number => (seed = (seed * 16807) % 2147483647) / 2147483647;
  return Array.from({ length: N }, (_, i) => 2.3 * Math.exp(-i / 300) + 0.4 * rnd());
}
const values = lossValues();
const epochs = values.map((_, i) => i + 1);

function longRun(): Store {
  const s = new Store();
  s.applyHistory(history(1, [snapRun(0, "long", [LOSS], [column(0, LOSS.tag, LOSS.tag, "train_loss mean")], epochs, values.map((v) => [v]))],
    status({ run: 0, epoch: N })));
  return s;
}

/** TensorBoard's debiased EMA of the record, written out here independently of js/overview/smooth.ts. */
function ema(v: number[], w: number): number[] {
  const out: number[] = [];
  let acc = 0;
  for (let i = 0; i < v.length; i++) {
    acc = w * acc + (1 - w) * v[i];
    out.push(acc / (1 - w ** (i + 1)));
  }
  return out;
}

describe("a 1000-epoch loss drawn at 200 buckets", () => {
  const s = longRun();
  const spec = buildLayout(s, emptyFilters()).big[0].charts[0];

  it("draws only rows of the record: each point's value is its own epoch's, and the extremes are kept", () => {
    const d = buildChartData(s, spec, 200);
    expect(d.x.length).toBeLessThanOrEqual(2 * 200 + 1 + 1);
    expect(d.x.length).toBeGreaterThan(200);
    d.x.forEach((x, j) => expect(d.ys[0][j], `epoch ${x}`).toBe(values[x - 1]));
    expect(d.x).toContain(values.indexOf(Math.max(...values)) + 1);
    expect(d.x).toContain(values.indexOf(Math.min(...values)) + 1);
    expect(d.x[d.x.length - 1]).toBe(N);
  });

  it("a zoom to epochs 299..330 re-buckets that range: every epoch (and one either side), exact", () => {
    const d = buildChartData(s, spec, 200, undefined, "epoch", { range: [299, 330] });
    expect(d.x).toEqual(Array.from({ length: 34 }, (_, i) => 298 + i));
    expect(d.ys[0]).toEqual(d.x.map((x) => values[x - 1]));
    // epochs 301 and 302 (missing in the report) are there with the record's values
    expect(d.ys[0][d.x.indexOf(301)]).toBe(values[300]);
  });

  it("smooths the record's rows at full resolution (the report: 1.177 drawn against 1.086 at epoch 343)", () => {
    const want = ema(values, 0.9);
    for (const win of [{ smoothing: 0.9 }, { smoothing: 0.9, range: [299, 400] as [number, number] }]) {
      const d = buildChartData(s, spec, 200, undefined, "epoch", win);
      expect(d.smoothing).toBe(0.9);
      d.x.forEach((x, j) => {
        expect(d.ys[0][j] as number).toBeCloseTo(want[x - 1], 12);
        expect(d.raw![0]![j]).toBe(values[x - 1]);
      });
    }
    // the last value does not depend on the chart's width
    const narrow = buildChartData(s, spec, 20, undefined, "epoch", { smoothing: 0.9 });
    expect(narrow.ys[0][narrow.x.length - 1] as number).toBeCloseTo(want[N - 1], 12);
  });

  it("the chart's CSV holds every epoch of the record (and the smoothed column beside it), whatever the zoom", () => {
    const ui = uiState(s);
    ui.zoom = [299, 330];
    ui.smoothing = 0.9;
    const runs = runStyle(s);
    const ctx: ChartContext = { runs, xLabel: "epoch", spanGaps: false, syncKey: "csv", zoom: () => ui.zoom, onZoom: () => undefined };
    const drawer = new ChartDrawer(s, ui, runs, ctx);
    const slot = makeChartSlot(spec, () => undefined, () => undefined);
    slot.spec = spec;
    slot.size = { width: 300, height: 220 };
    drawer.download(slot, "csv");
    const lines = texts[0].text.trimEnd().split("\n");
    expect(lines[0]).toBe("epoch,train_loss mean (long),train_loss mean (long) smoothed 0.9,train_loss mean (running) (long),"
      + "train_loss mean (running) (long) smoothed 0.9");
    expect(lines.length).toBe(N + 1);
    const want = ema(values, 0.9);
    lines.slice(1).forEach((l, i) => {
      const [x, raw, sm] = l.split(",");
      expect(Number(x)).toBe(i + 1);
      expect(Number(raw)).toBe(values[i]);
      expect(Number(sm)).toBeCloseTo(want[i], 12);
    });
    ui.zoom = null;
    ui.smoothing = 0;
  });
});

describe("the chart's CSV header", () => {
  it("names band edges by their record columns (±σ or min / max)", () => {
    const L = LOSS.tag;
    const cols = [column(0, L, L, "train_loss mean"), column(1, L, L, "train_loss -σ", { role: "lo", band_of: "train_loss mean" }),
      column(2, L, L, "train_loss +σ", { role: "hi", band_of: "train_loss mean" })];
    const s = new Store();
    s.applyHistory(history(1, [snapRun(0, "r", [LOSS], cols, [1, 2], [[1, 0.5, 1.5], [0.8, 0.6, 1]])], status({ run: 0, epoch: 2 })));
    const spec = buildLayout(s, emptyFilters()).big[0].charts[0];
    const runs = runStyle(s);
    const ctx: ChartContext = { runs, xLabel: "epoch", spanGaps: false, syncKey: "b", zoom: () => null, onZoom: () => undefined };
    const slot = makeChartSlot(spec, () => undefined, () => undefined);
    slot.spec = spec;
    texts.length = 0;
    new ChartDrawer(s, uiState(s), runs, ctx).download(slot, "csv");
    expect(texts[0].text).toBe("epoch,train_loss mean (r),train_loss -σ (r),train_loss +σ (r),train_loss mean (running) (r)\n1,1,0.5,1.5,\n2,0.8,0.6,1,\n");
  });
});

describe("legend", () => {
  beforeAll(stubCanvas);
  const theme = { fg: "#000", muted: "#666", grid: "#eee", bg: "#fff", palette: ["#0072B2"] };
  const cols = [column(0, LOSS.tag, LOSS.tag, "train_loss mean")];
  // an earlier run of 15 epochs, the current one of 10
  const twoRuns = (): Store => {
    const s = new Store();
    s.applyHistory(history(1, [
      snapRun(0, "small", [LOSS], cols, epochs.slice(0, 15), values.slice(0, 15).map((v) => [v])),
      snapRun(1, "deep", [LOSS], cols, epochs.slice(0, 10), values.slice(100, 110).map((v) => [v])),
    ], status({ run: 1, epoch: 10 })));
    return s;
  };
  const mk = (s: Store, smoothing = 0): Chart => {
    const spec = buildLayout(s, emptyFilters()).big[0].charts[0];
    const data = buildChartData(s, spec, 200, undefined, "epoch", { smoothing });
    const ctx: ChartContext = { runs: runStyle(s), xLabel: "epoch", spanGaps: false, syncKey: "leg", zoom: () => null, onZoom: () => undefined };
    return new Chart(document.createElement("div"), spec, data, theme, { width: 500, height: 220 }, ctx);
  };
  const legend = (c: Chart): string[] => (c.u as any).legend.values.map((v: any) => v._);
  const fmt = (v: number): string => String(Number(v.toPrecision(4)));

  it("at rest shows each run's last value, the current run's too when it is shorter", () => {
    const s = twoRuns();
    const spec = buildLayout(s, emptyFilters()).big[0].charts[0];
    const d = buildChartData(s, spec, 200);
    expect(d.series.map((x) => x.role)).toEqual(["line", "old", "prov"]);
    expect(restingIdxs(d)).toEqual([9, 9, 14, null]);
    const c = mk(s);
    expect(legend(c)).toEqual(["10", fmt(values[109]), fmt(values[14]), "–"]);
    c.destroy();
  });

  it("names smoothed lines and shows the record's value beside the smoothed one", () => {
    const s = twoRuns();
    const c = mk(s, 0.5);
    expect(c.u.series.map((x) => x.label)).toEqual(["epoch", "train_loss mean · deep (smoothed)", "train_loss mean · small (smoothed)",
      "train_loss mean (running, smoothed)"]);
    const deep = ema(values.slice(100, 110), 0.5);
    const small = ema(values.slice(0, 15), 0.5);
    expect(legend(c)).toEqual(["10", `${fmt(deep[9])} (raw ${fmt(values[109])})`, `${fmt(small[14])} (raw ${fmt(values[14])})`, "–"]);
    c.destroy();
  });
});
