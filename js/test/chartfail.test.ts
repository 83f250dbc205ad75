// @vitest-environment happy-dom
// One chart's drawing failure stays in that chart (trial r6, finding 1: after a log chart threw, no chart
// below it in the view was ever drawn).
import { describe, expect, it, vi } from "vitest";

vi.mock("uplot", async () => ({ default: (await import("./fakes")).FakePlot }));
vi.mock("../css", () => ({ default: ".mw-root{}" }));

import { Store } from "../store";
import { mountView } from "../view";
import { failOn, FakeModel, plots, useHost } from "./fakes";
import { column, history, panel, snapRun, status } from "./helpers";

const LOSS = panel("Loss", { big: true });
const NORM = panel("Bias Gradient Norm", { logy: true });
const cols = [
  column(0, LOSS.tag, LOSS.tag, "train_loss mean"),
  column(1, NORM.tag, "0", "mean"),
  column(2, NORM.tag, "1", "mean"),
  column(3, NORM.tag, "2", "mean"),
];
const model = new FakeModel({ filters: {}, history: history(1, [snapRun(0, "run", [LOSS, NORM], cols, [1, 2],
  [[1, 0.458, 0.2, 0.3], [0.5, 0.0116, 0.1, 0.2]])], status({ run: 0, epoch: 2 })) });

const host = useHost();

describe("a chart that fails to draw", () => {
  it("shows a message in its own place and the charts after it are drawn", () => {
    const error = vi.spyOn(console, "error").mockImplementation(() => undefined);
    failOn.n = 1; // the second chart drawn: "Bias Gradient Norm / 0", first of its section
    const store = new Store();
    store.applyHistory(model.get("history"));
    const cleanup = mountView(model as any, store, host());
    const slot = (g: string) => [...host().querySelectorAll<HTMLElement>(".mw-panel")].find((p) => p.dataset.group === g)!;
    const failed = slot("0");
    expect(failed.querySelector(".mw-chart-error")?.textContent).toBe("This chart could not be drawn (Invalid array length).");
    expect(failed.querySelector(".uplot")).toBeNull();
    // the loss chart before it and the two after it are drawn
    for (const g of [LOSS.tag, "1", "2"]) expect(slot(g).querySelector(".mw-chart .uplot"), g).not.toBeNull();
    expect(plots.map((p) => p.data[1])).toEqual([[1, 0.5], [0.2, 0.1], [0.3, 0.2]]);
    expect(error).toHaveBeenCalledTimes(1);
    cleanup();
    error.mockRestore();
  });
});
