// Heatmap row labels cut in the middle (trial r6, finding 10): Hugging Face names share a long start, and cutting
// the end made 'query', 'key' and 'value' rows read the same.
import { describe, expect, it } from "vitest";
import { middleCut } from "../overview/heatmap";

describe("heatmap row labels", () => {
  it("keep the start and the end of a long name, so names that differ at the end stay apart", () => {
    const names = ["query", "key", "value"].map((k) => `bert.encoder.layer.11.attention.self.${k}`);
    const cut = names.map((n) => middleCut(n));
    expect(new Set(cut).size).toBe(3);
    expect(cut[0]).toBe("bert.encoder…ention.self.query"); // 12 + 1 + 17 characters = 30
    expect(cut.every((c) => c.length === 30)).toBe(true);
    expect(middleCut("blocks.3.act")).toBe("blocks.3.act"); // short names as they are
  });
});
