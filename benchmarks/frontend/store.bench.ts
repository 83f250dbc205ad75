// Front-end hot paths per training tick, at sizes a real run reaches:
//   npm run bench
// A tick = one delta applied to the Store + the data of every visible chart rebuilt (what one animation
// frame does after a delta). Rendering itself (uPlot canvas) is not measured here.
import { bench, describe } from "vitest";
import { type AlignmentCache, buildChartData } from "../../js/chartdata";
import { downsampleMinMax } from "../../js/downsample";
import { emptyFilters } from "../../js/filters";
import { buildLayout } from "../../js/panels";
import type { Column, DeltaMessage, Panel } from "../../js/protocol";
import { Store } from "../../js/store";

const MODULES = 50; // per-layer groups
const PANELS: Panel[] = [
  { tag: "Loss & Metrics", kind: "numerical", big: true, logy: false, lens: "LossMetrics" },
  { tag: "Output Activations", kind: "probability", big: false, logy: false, lens: "OutputActivation" },
  { tag: "Output Norm", kind: "numerical", big: false, logy: true, lens: "OutputNorm" },
];

function columns(): Column[] {
  const cols: Column[] = [];
  const add = (panel: string, group: string, key: string, role: Column["role"] = "line", band_of: string | null = null) =>
    cols.push({ index: cols.length, panel, group, key, role, band_of, module_type: "ReLU" });
  add("Loss & Metrics", "Loss & Metrics", "train_loss mean");
  add("Loss & Metrics", "Loss & Metrics", "train_loss -σ", "lo", "train_loss mean");
  add("Loss & Metrics", "Loss & Metrics", "train_loss +σ", "hi", "train_loss mean");
  for (let m = 0; m < MODULES; m++) {
    add("Output Activations", `layer${m}`, "activation_rate");
    add("Output Activations", `layer${m}`, "death_rate");
    add("Output Norm", `layer${m}`, "mean");
    add("Output Norm", `layer${m}`, "-σ", "lo", "mean");
    add("Output Norm", `layer${m}`, "+σ", "hi", "mean");
  }
  return cols;
}

function tickMessage(seq: number, row: number, nCols: number): [DeltaMessage, ArrayBuffer[]] {
  const runs = new Int32Array(nCols);
  const rows = new Int32Array(nCols).fill(row);
  const cols = Int32Array.from({ length: nCols }, (_, i) => i);
  const vals = Float64Array.from({ length: nCols }, (_, i) => Math.sin(row + i));
  return [
    { type: "delta", seq, rows: [{ run: 0, row, epoch: row + 1, time: row, provisional: false }], cells: { count: nCols } },
    [runs.buffer, rows.buffer, cols.buffer, vals.buffer],
  ];
}

function storeWith(epochs: number): Store {
  const s = new Store();
  const cols = columns();
  s.applyDelta({ type: "delta", seq: 1, new_runs: [{ id: 0, label: "run 1" }], new_panels: PANELS.map((p) => ({ run: 0, ...p })),
    new_columns: cols.map((c) => ({ run: 0, ...c })) });
  for (let r = 0; r < epochs; r++) s.applyDelta(...tickMessage(r + 2, r, cols.length));
  return s;
}

for (const epochs of [100, 10_000]) {
  describe(`${epochs} epochs, ${MODULES} modules (${columns().length} columns)`, () => {
    const nCols = columns().length;
    const grow = storeWith(epochs); // gains one row per iteration (amortised growth included)
    let seq = epochs + 2;
    let row = epochs;
    bench("apply one tick delta", () => {
      grow.applyDelta(...tickMessage(seq++, row++, nCols));
    });
    const s = storeWith(epochs);
    const layout = buildLayout(s, emptyFilters());
    const specs = [...layout.big, ...layout.small].flatMap((sec) => sec.charts);
    bench(`chart data for all ${specs.length} charts (250 px), one redraw`, () => {
      const cache: AlignmentCache = new Map();
      for (const spec of specs) buildChartData(s, spec, 250, cache);
    });
  });
}

describe("downsampling", () => {
  const n = 100_000;
  const x = Float64Array.from({ length: n }, (_, i) => i);
  const y = Array.from({ length: n }, (_, i) => Math.sin(i / 100));
  bench("100k points -> 500 buckets", () => {
    downsampleMinMax(x, [y], 500);
  });
});
