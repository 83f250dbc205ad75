// @vitest-environment happy-dom
// Pure units of the overview: worst layers, the warning panels' layer names, smoothing, CSV, heatmap colours.
import { describe, expect, it } from "vitest";
import { chartCsv, csvField, fileName, recordCsv } from "../overview/csv";
import { colormap, heatRange } from "../overview/heatmap";
import { runStyle } from "../overview/runstyle";
import { emaDebiased } from "../overview/smooth";
import { heatKey, ratesByConstruction, lastRowWithData, lineColumns, rankedGroups, rankings, worstAt, worstHolder } from "../overview/worst";
import { Store } from "../store";
import { column, history, panel, snapRun } from "./helpers";

const ACT = panel("Output Activations", { kind: "probability", lens: "OutputActivation" });
const WARN = panel("Warning Output Activations", { kind: "probability", big: true, lens: "OutputActivation" });
const LAYERS = ["relu0", "relu1", "relu2", "relu3"];
// death rates per epoch (rows) and layer (cols); activation = 1 - death
const DEATH = [
  [0.1, 0.5, 0.2, NaN],
  [0.1, 0.3, 0.9, 0.4],
  [0.2, 0.3, 0.9, NaN],
];

function deepStore(): Store {
  const cols = LAYERS.flatMap((g, i) => [
    column(2 * i, ACT.tag, g, "activation_rate", { module_type: "ReLU" }),
    column(2 * i + 1, ACT.tag, g, "death_rate", { module_type: "ReLU" }),
  ]);
  cols.push(column(8, WARN.tag, WARN.tag, "worst death_rate"));
  const rows = DEATH.map((d) => [...d.flatMap((x) => [1 - x, x]), Math.max(...d.filter((x) => !Number.isNaN(x)))]);
  const s = new Store();
  s.applyHistory(history(1, [snapRun(0, "deep", [ACT, WARN], cols, [1, 2, 3], rows)]));
  return s;
}

describe("worst layers", () => {
  it("ranks the layers at the last epoch with data, NaN never ranking", () => {
    const run = deepStore().current!;
    const cols = lineColumns(run);
    const death = cols.get(ACT.tag)!.get("death_rate")!;
    const row = lastRowWithData(run, death.values());
    expect(row).toBe(2);
    // by hand from DEATH[2]: relu2 0.9, relu1 0.3, relu0 0.2 (relu3 NaN)
    expect(worstAt(run, death, row, "max", 3)).toEqual([{ layer: "relu2", value: 0.9 }, { layer: "relu1", value: 0.3 }, { layer: "relu0", value: 0.2 }]);
    const act = cols.get(ACT.tag)!.get("activation_rate")!;
    expect(worstAt(run, act, row, "min", 1)[0].layer).toBe("relu2");
    const r = rankings(run.panels, (t) => [...(cols.get(t)?.keys() ?? [])]);
    expect(r.map((x) => [x.tag, x.key, x.worst])).toEqual([[ACT.tag, "death_rate", "max"], [ACT.tag, "activation_rate", "min"]]);
    expect(heatKey(["activation_rate", "death_rate"])).toBe("death_rate");
    // norm panels: keys naming a norm rank largest-first; a norm panel without such keys ranks its mean
    const num = (tag: string) => panel(tag, { kind: "numerical" });
    const keys: Record<string, string[]> = { "Update Geometry": ["update_norm", "cosine"], "Output Norm": ["mean"], Other: ["x"] };
    const got = rankings([num("Update Geometry"), num("Output Norm"), num("Other")], (t) => keys[t]);
    expect(got.map((x) => [x.tag, x.key, x.worst])).toEqual([["Update Geometry", "update_norm", "max"], ["Output Norm", "mean", "max"]]);
    expect(heatKey(["mean"])).toBe("mean");
  });

  it("leaves dropout modules out of the rate rankings (their rate is their input's times 1 - p), not out of norms", () => {
    // Linear-ReLU-Dropout(0.5): the dropout's activation rate is about half its ReLU's, so it always "ranked" lowest
    const cols = [
      column(0, ACT.tag, "1", "activation_rate", { module_type: "ReLU" }),
      column(1, ACT.tag, "2", "activation_rate", { module_type: "Dropout" }),
      column(2, ACT.tag, "4", "activation_rate", { module_type: "ReLU" }),
      column(3, ACT.tag, "5", "activation_rate", { module_type: "Dropout" }),
      column(4, ACT.tag, "head.dropout", "activation_rate"),
    ];
    const s = new Store();
    s.applyHistory(history(1, [snapRun(0, "m", [ACT], cols, [1], [[0.5, 0.25, 0.6, 0.3, 0.1]])]));
    const run = s.current!;
    const all = lineColumns(run).get(ACT.tag)!.get("activation_rate")!;
    expect(worstAt(run, all, 0, "min", 2).map((w) => w.layer)).toEqual(["head.dropout", "2"]);
    const ranked = rankedGroups(run, ACT.tag, "activation_rate", all);
    expect(worstAt(run, ranked, 0, "min", 3)).toEqual([{ layer: "1", value: 0.5 }, { layer: "4", value: 0.6 }]);
    expect(rankedGroups(run, ACT.tag, "update_norm", all)).toBe(all);
    expect([ratesByConstruction("x", "Dropout2d"), ratesByConstruction("x", "AlphaDropout"), ratesByConstruction("head.dropout", null), ratesByConstruction("x", "ReLU")])
      .toEqual([true, true, true, false]);
  });

  it("leaves embeddings out of the gradient death ranking (their rows are silent for tokens a batch lacks)", () => {
    const GRAD = panel("Weight Gradient Activation", { kind: "probability", lens: "ParameterGradientActivation" });
    const cols = [
      column(0, GRAD.tag, "emb", "death_rate", { module_type: "Embedding" }),
      column(1, GRAD.tag, "fc", "death_rate", { module_type: "Linear" }),
      column(2, GRAD.tag, "bag", "death_rate", { module_type: "EmbeddingBag" }),
      column(3, GRAD.tag, "tok_embed", "death_rate"),
      column(4, GRAD.tag, "head", "death_rate"),
    ];
    const s = new Store();
    s.applyHistory(history(1, [snapRun(0, "m", [GRAD], cols, [1], [[0.85, 0.1, 0.9, 0.7, 0.05]])]));
    const run = s.current!;
    const all = lineColumns(run).get(GRAD.tag)!.get("death_rate")!;
    const ranked = rankedGroups(run, GRAD.tag, "death_rate", all);
    expect(worstAt(run, ranked, 0, "max", 3).map((w) => w.layer)).toEqual(["fc", "head"]);
  });

  it("names the layer holding each epoch's worst value of a warning panel", () => {
    const run = deepStore().current!;
    const who = worstHolder(run, WARN, "worst death_rate");
    // argmax of each DEATH row, by hand
    expect([1, 2, 3].map(who)).toEqual(["relu1", "relu2", "relu2"]);
    expect(who(7)).toBeNull();
    expect(worstHolder(run, WARN, "train_loss")(1)).toBeNull();
  });
});

describe("smoothing", () => {
  it("is TensorBoard's debiased EMA: the w-weighted mean of the points so far, gaps kept", () => {
    const ys = [1, 2, null, 3, 10];
    const w = 0.6;
    const got = emaDebiased(ys, w);
    // independent form: sum_i w^(n-i) y_i / sum_i w^(n-i) over the finite points so far
    const finite = [1, 2, 3, 10];
    const want = finite.map((_, n) => {
      const ws = finite.slice(0, n + 1).map((_, i) => Math.pow(w, n - i));
      return finite.slice(0, n + 1).reduce((a, y, i) => a + ws[i] * y, 0) / ws.reduce((a, b) => a + b, 0);
    });
    expect(got[2]).toBeNull();
    [got[0], got[1], got[3], got[4]].forEach((g, i) => expect(g).toBeCloseTo(want[i], 12));
    expect(emaDebiased(ys, 0)).toEqual(ys);
  });
});

describe("csv", () => {
  it("quotes fields and writes the whole record in long form", () => {
    expect(csvField('a,"b"')).toBe('"a,""b"""');
    const s = deepStore();
    const text = recordCsv(s);
    const lines = text.trim().split("\n");
    expect(lines[0]).toBe("run,run_label,epoch,time,provisional,panel,group,key,role,value");
    // 3 rows x 9 columns minus the 2 NaN cells of relu3 (each NaN death gives NaN activation too)
    expect(lines.length - 1).toBe(3 * 9 - 4);
    expect(lines).toContain("0,deep,3,1.5,0,Output Activations,relu2,death_rate,line,0.9");
    const d = { x: [1, 2], ys: [[0.5, null]], series: [{ role: "line" as const, key: "k", run: 0, line: 0 }], epochs: 2, provisional: false, provIndex: -1 };
    expect(chartCsv(d, "epoch", () => "k (deep)")).toBe("epoch,k (deep)\n1,0.5\n2,\n");
    // a big chart's file is named after its panel alone (trial r11: "Loss-.csv")
    expect(fileName("Loss", "")).toBe("Loss");
    expect(fileName("Output Activations", "fc1.relu")).toBe("Output_Activations-fc1.relu");
  });
});

describe("heatmap colours and run styles", () => {
  it("maps [0, 1] onto viridis ends and ranges over finite values", () => {
    expect(colormap(0)).toEqual([68, 1, 84]);
    expect(colormap(1)).toEqual([253, 231, 37]);
    expect(colormap(2)).toEqual([253, 231, 37]);
    const run = deepStore().current!;
    const rows = LAYERS.map((layer, i) => ({ layer, col: 2 * i + 1 }));
    expect(heatRange({ run, rows, rate: true, logy: false })).toEqual([0, 1]);
    expect(heatRange({ run, rows, rate: false, logy: false })).toEqual([0.1, 0.9]);
    const [lo, hi] = heatRange({ run, rows, rate: false, logy: true });
    expect(lo).toBeCloseTo(-1, 12);
    expect(hi).toBeCloseTo(Math.log10(0.9), 12);
  });

  it("gives the current run solid lines and each earlier run its own dash", () => {
    const s = new Store();
    s.applyHistory(history(1, [0, 1, 2].map((i) => snapRun(i, `r${i}`, [], [], [], []))));
    const st = runStyle(s);
    expect(st.dash(2)).toEqual([]);
    expect(st.dash(1)).not.toEqual(st.dash(0));
    expect(st.dash(1).length).toBeGreaterThan(0);
    expect(st.label(0)).toBe("r0");
  });
});

describe("log y range", () => {
  it("stays just around the data instead of snapping to decades", async () => {
    const { tightLogRange } = await import("../axes");
    const [lo, hi] = tightLogRange(0.2, 0.8);
    // 5% of the data's span in log space on each side
    const pad = Math.pow(4, 0.05);
    expect(lo).toBeCloseTo(0.2 / pad, 12);
    expect(hi).toBeCloseTo(0.8 * pad, 12);
    expect(lo).toBeGreaterThan(0.1);
    expect(hi).toBeLessThan(1);
  });
});
