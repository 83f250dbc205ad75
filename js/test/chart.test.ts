// @vitest-environment happy-dom
import { describe, expect, it, vi } from "vitest";

// uPlot needs a real canvas; a stand-in keeps the options the chart passes.
vi.mock("uplot", async () => ({ default: (await import("./fakes")).FakePlot }));

import { yTitle } from "../axes";
import { Chart, type ChartContext } from "../chart";
import { runStyle } from "../overview/runstyle";
import { Store } from "../store";
import type { ChartData } from "../chartdata";
import type { ChartSpec } from "../panels";
import { plots } from "./fakes";

const theme = { fg: "#000", muted: "#666", grid: "#eee", bg: "#fff", palette: ["#0072B2"] };
const data: ChartData = { x: [1, 2], ys: [[0.5, -0.2]], series: [{ key: "mean", role: "line", line: 0, run: 0 } as any],
  epochs: 2, provisional: false, provIndex: -1 };

function spec(over: Partial<ChartSpec>): ChartSpec {
  return { id: "c", panel: "p", group: "g", kind: "numerical", big: false, logy: false, canLog: true, ylim: null,
    moduleType: null, series: [], hidden: false, ...over };
}

const ctx: ChartContext = { runs: runStyle(new Store()), xLabel: "epoch", spanGaps: false, syncKey: "t",
  zoom: () => null, onZoom: () => undefined };

describe("chart y scale", () => {
  it("uses a panel's fixed range (correlations in [-1, 1]), else the kind's or an automatic one", () => {
    const target = document.createElement("div");
    new Chart(target, spec({ ylim: [-1, 1], canLog: false }), data, theme, { width: 300, height: 200 }, ctx);
    new Chart(target, spec({}), data, theme, { width: 300, height: 200 }, ctx);
    new Chart(target, spec({ logy: true }), data, theme, { width: 300, height: 200 }, ctx);
    expect(plots[0].opts.scales.y).toEqual({ auto: false, range: [-1, 1] });
    expect(plots[1].opts.scales.y).toEqual({});
    expect(plots[2].opts.scales.y).toMatchObject({ distr: 3, log: 10 });  // with a tight range function
  });
});

describe("y axis title", () => {
  it("names what the panel holds (trial r6, finding 12)", () => {
    const t = (panel: string, kind: ChartSpec["kind"] = "numerical") => yTitle(spec({ panel, kind }));
    expect([t("Output Activations", "probability"), t("Weight Norm Comparison", "relations"), t("Weight Gradient Correlation"),
      t("Loss & Metrics"), t("Loss"), t("Weight Gradient Norm"), t("Metrics")])
      .toEqual(["rate", "share", "correlation", "value", "loss", "norm", "value"]);
  });
});
