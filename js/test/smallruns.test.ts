// @vitest-environment happy-dom
// Run comparison in small multiples: each per-layer chart draws every shown earlier run (matched by panel,
// group and key) in the run styles of the big charts, leaves hidden runs out, reuses the big charts'
// downsampling, and lists the earlier runs' values on its one-line legend.
import { describe, expect, it, vi } from "vitest";

vi.mock("uplot", async () => ({ default: (await import("./fakes")).FakePlot }));
vi.mock("../css", () => ({ default: ".mw-root{}" }));

import { bucketsFor, formatValue as f } from "../axes";
import { runStyle } from "../overview/runstyle";
import { Store } from "../store";
import { withAlpha } from "../theme";
import { mountView } from "../view";
import { FakeModel, plots, tick, useHost } from "./fakes";
import { column, history, panel, snapRun } from "./helpers";

const LOSS = panel("Loss", { big: true });
const ACT = panel("Output Activations", { kind: "probability", lens: "OutputActivation" });
const LAYERS = ["fc1.relu", "fc2.relu", "fc3.relu"];
const KEYS = ["activation_rate", "death_rate"];
/** Run r's value of layer i, key k at epoch e: distinct for every (run, layer, key, epoch). */
const val = (r: number, i: number, k: number, e: number) => 0.01 * ((r * 7 + i * 3 + k * 5 + e * 11) % 97);

function run(id: number, epochs: number, spike?: { e: number; v: number }) {
  const cols = [column(0, LOSS.tag, LOSS.tag, "train_loss"), ...LAYERS.flatMap((g, i) => KEYS.map((k, j) =>
    column(1 + 2 * i + j, ACT.tag, g, k, { module_type: "ReLU" })))];
  const es = Array.from({ length: epochs }, (_, n) => n + 1);
  const rows = es.map((e) => [1 / e, ...LAYERS.flatMap((_, i) => KEYS.map((_k, j) =>
    spike && spike.e === e && i === 0 && j === 1 ? spike.v : val(id, i, j, e)))]);
  return snapRun(id, `run ${id + 1}: MLP`, [LOSS, ACT], cols, es, rows);
}

const host = useHost();

const live = () => plots.filter((p) => !p.destroyed);
/** The live small chart of `layer` (its uPlot's root sits in the layer's .mw-panel). */
const small = (layer: string) => live().find((p) => (p.root.closest(".mw-panel") as HTMLElement | null)?.dataset.group === layer)!;
const loss = () => live().find((p) => p.opts.series[1].label.startsWith("train_loss"))!;
const labels = (p: any): string[] => p.opts.series.map((s: any) => s.label);

describe("small multiples with two or more runs", () => {
  it("draw every shown earlier run in the big charts' run styles, a hidden run not, and list their values", async () => {
    const store = new Store();
    store.applyHistory(history(1, [run(0, 3), run(1, 4), run(2, 5)]));
    const model = new FakeModel({ filters: { hidden_runs: [0] } }); // run 1 hidden in the runs legend
    const cleanup = mountView(model as any, store, host());
    await tick();
    const style = runStyle(store);
    expect(labels(loss())).toEqual(["epoch", "train_loss · run 3: MLP", "train_loss · run 2: MLP", "train_loss (running)"]);
    const bigOld = loss().opts.series[2];
    for (const [i, layer] of LAYERS.entries()) {
      const p = small(layer);
      expect(labels(p)).toEqual(["epoch", "activation_rate", "death_rate", "activation_rate · run 2: MLP",
        "death_rate · run 2: MLP", "activation_rate (running)", "death_rate (running)"]);
      expect(p.data[0]).toEqual([1, 2, 3, 4, 5]);
      for (const [j] of KEYS.entries()) {
        const line = p.opts.series[1 + j], old = p.opts.series[3 + j];
        // the big charts' style for an earlier run: the key's colour, the run's own dash, thinner
        expect([old.class, old.width, old.dash]).toEqual([bigOld.class, bigOld.width, bigOld.dash]);
        expect(old.dash).toEqual(style.dash(1));
        expect(old.stroke).toBe(withAlpha(line.stroke, 0.8));
        // run 2's own values at its epochs, nothing where it has no row
        expect(p.data[3 + j].slice(0, 4)).toEqual([1, 2, 3, 4].map((e) => val(1, i, j, e)));
        expect(p.data[3 + j][4] ?? null).toBeNull();
        expect(p.data[1 + j]).toEqual([1, 2, 3, 4, 5].map((e) => val(2, i, j, e)));
      }
      // the one-line legend: the current run's latest value, then the earlier run's latest (not hovering)
      const v = p.opts.series[2].value(p, p.data[2][4], 2, 4);
      expect(v).toBe(`${f(val(2, i, 1, 5))} · run 2 ${f(val(1, i, 1, 4))}`);
      // hovering epoch 2: each run's value there
      p.cursor.idx = 1;
      expect(p.opts.series[1].value(p, p.data[1][1], 1, 1)).toBe(`${f(val(2, i, 0, 2))} · run 2 ${f(val(1, i, 0, 2))}`);
      p.cursor.idx = null;
      expect(p.opts.series[4].value(p, p.data[4][3], 4, 3)).toBe(f(val(1, i, 1, 4))); // its own row: no list
    }

    // shown again: run 1 joins every small chart with its own dash
    model.set("filters", { hidden_runs: [] });
    await tick();
    for (const layer of LAYERS) {
      const p = small(layer);
      expect(labels(p).slice(3, 7)).toEqual(["activation_rate · run 1: MLP", "death_rate · run 1: MLP",
        "activation_rate · run 2: MLP", "death_rate · run 2: MLP"]);
      expect(p.opts.series[3].dash).toEqual(style.dash(0));
      expect(p.opts.series[3].dash).not.toEqual(p.opts.series[5].dash);
      expect(p.opts.series[1].value(p, p.data[1][4], 1, 4)).toMatch(/^[\d.]+ · run 1 [\d.]+ · run 2 [\d.]+$/);
    }
    cleanup();
  });

  it("downsample every run's line in a long comparison as the big charts do: record rows, extremes kept", async () => {
    const N = 4000;
    const store = new Store();
    store.applyHistory(history(1, [run(0, N, { e: 1234, v: 0.999 }), run(1, N)]));
    const cleanup = mountView(new FakeModel() as any, store, host());
    await tick();
    const p = small("fc1.relu");
    // js/downsample.ts' bound: at most 2 points per bucket and series, plus each series' last row
    const k = p.data.length - 1;
    const cap = 2 * k * bucketsFor({ width: p.opts.width, height: p.opts.height }) + k + 1;
    expect(p.data[0].length).toBeLessThanOrEqual(cap);
    expect(p.data[0].length).toBeLessThan(N / 4);
    expect(labels(p)[4]).toBe("death_rate · run 1: MLP");
    const old = p.data[4] as (number | null)[];
    // every drawn point of the earlier run is its record value at that epoch; its spike survives the buckets
    old.forEach((v, k) => expect(v).toBe(p.data[0][k] === 1234 ? 0.999 : val(0, 0, 1, p.data[0][k])));
    expect(old).toContain(0.999);
    cleanup();
  });
});
