import { describe, expect, it } from "vitest";
import { columnShown, emptyFilters, groupShown, logyOf, normalizeFilters, panelShown, runShown, setLogy, setShown } from "../filters";
import { column } from "./helpers";

describe("filters", () => {
  it("normalizes partial or malformed trait values", () => {
    expect(normalizeFilters(undefined)).toEqual(emptyFilters());
    expect(normalizeFilters({ hidden_modules: ["a", 3], hidden_runs: [1, 1.5, "2"], logy: { x: true, y: "no" } })).toEqual({
      hidden_modules: ["a"], hidden_types: [], hidden_panels: [], hidden_runs: [1], logy: { x: true },
    });
  });

  it("hides and shows modules, types, panels and runs without mutating the input", () => {
    const f0 = emptyFilters();
    const f1 = setShown(f0, "hidden_modules", "fc1", false);
    expect(f0.hidden_modules).toEqual([]);
    expect(f1.hidden_modules).toEqual(["fc1"]);
    expect(setShown(f1, "hidden_modules", "fc1", false).hidden_modules).toEqual(["fc1"]); // no duplicates
    expect(setShown(f1, "hidden_modules", "fc1", true).hidden_modules).toEqual([]);
    const f2 = setShown(setShown(f0, "hidden_types", "Dropout", false), "hidden_runs", 0, false);
    expect(groupShown(f2, "drop1", "Dropout")).toBe(false);
    expect(groupShown(f2, "relu1", "ReLU")).toBe(true);
    expect(groupShown(f1, "fc1", "Linear")).toBe(false);
    expect(groupShown(f2, "whatever", null)).toBe(true);
    expect(runShown(f2, 0)).toBe(false);
    expect(runShown(f2, 1)).toBe(true);
    const f3 = setShown(f0, "hidden_panels", "Output Norm", false);
    expect(panelShown(f3, "Output Norm")).toBe(false);
    expect(panelShown(f3, "Loss & Metrics")).toBe(true);
  });

  it("applies to columns: big panels only by panel, small ones also by module and type", () => {
    const f = setShown(setShown(emptyFilters(), "hidden_types", "Dropout", false), "hidden_panels", "Output Norm", false);
    expect(columnShown(f, column(0, "Output Activations", "drop", "activation_rate", { module_type: "Dropout" }), false)).toBe(false);
    expect(columnShown(f, column(0, "Output Activations", "relu", "activation_rate", { module_type: "ReLU" }), false)).toBe(true);
    expect(columnShown(f, column(0, "Output Norm", "relu", "mean", { module_type: "ReLU" }), false)).toBe(false);
    expect(columnShown(f, column(0, "Loss & Metrics", "Loss & Metrics", "train_loss mean"), true)).toBe(true);
  });

  it("log scale: user choice overrides the record default", () => {
    const f = setLogy(emptyFilters(), "Output Norm", true);
    expect(logyOf(f, "Output Norm", false)).toBe(true);
    expect(logyOf(f, "Loss & Metrics", true)).toBe(true);
    expect(logyOf(setLogy(f, "Loss & Metrics", false), "Loss & Metrics", true)).toBe(false);
  });
});
