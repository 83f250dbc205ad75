// @vitest-environment happy-dom
// Marks the view draws as text use glyphs every desktop font has (WGL4, plus ⚠ and ℹ, which DejaVu and Liberation
// draw): "⏸" and "⛔" drew empty boxes in a Chromium without an emoji font (trial r6).
import { describe, expect, it } from "vitest";
import { FindingsList } from "../overview/topslot";
import { recordingToggle, syncRecordingToggle } from "../recording";

const ALLOWED_ABOVE_LATIN = new Set(["●", "■", "⚠", "ℹ", "…", "–", "—", "·"]);
const outside = (text: string) => [...text].filter((c) => c.codePointAt(0)! > 0x24f && !ALLOWED_ABOVE_LATIN.has(c));

describe("glyphs", () => {
  it("the recording control and the findings' severity marks need no emoji font", () => {
    const b = recordingToggle(() => {}, "1");
    syncRecordingToggle(b, []);
    expect(b.textContent).toBe("■");
    syncRecordingToggle(b, [{ first: 2, last: null }] as never);
    expect(outside(b.textContent ?? "")).toEqual([]);
    const list = new FindingsList(() => {});
    const f = (severity: "critical" | "warning" | "info", id: string) => ({
      id, run: 0, check: "dead_layer", severity, layer: "1", tag: "Output Activations", since: 1, until: null,
      value: 1, message: "m", advice: "a",
    });
    list.render([f("critical", "a"), f("warning", "b"), f("info", "c")], String, false);
    const marks = [...list.el.querySelectorAll(".mw-sev")].map((e) => e.textContent ?? "");
    expect(marks).toEqual(["●", "⚠", "ℹ"]);
    expect(outside(marks.join(""))).toEqual([]);
  });
});

import { layerText } from "../overview/topslot";

describe("worst layers' names", () => {
  it("a bare nn.Sequential index reads as a layer, not as a number next to its value", () => {
    expect([layerText("3"), layerText("12"), layerText("blocks.3.act"), layerText("3a")])
      .toEqual(["layer 3", "layer 12", "blocks.3.act", "3a"]);
  });
});
