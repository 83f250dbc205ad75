// Health findings (issue 16) through the TypeScript Store: replays deltas the Python record produced
// (tests/test_health_record.py writes fixtures/findings.json) while a finding appeared, changed and resolved.
import { describe, expect, it } from "vitest";
import type { DeltaMessage, Finding } from "../protocol";
import { Store } from "../store";
import fixture from "./fixtures/findings.json";
import { history } from "./helpers";

interface Fixture {
  deltas: { msg: DeltaMessage; buffers: string[] }[];
  expected: Finding[];
}

const fx = fixture as unknown as Fixture;

function bytes(b64: string): DataView {
  const raw = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return new DataView(raw.buffer, raw.byteOffset, raw.length);
}

describe("findings from the Python record", () => {
  it("a delta with findings replaces the store's list; a delta without keeps it", () => {
    const s = new Store();
    s.applyHistory(history(0, []));
    expect(s.findings).toEqual([]);
    const seen: (Finding | undefined)[] = [];
    for (const d of fx.deltas) {
      const before = s.findings;
      expect(s.applyDelta(d.msg, d.buffers.map(bytes))).toBe(true);
      if (d.msg.findings === undefined) expect(s.findings).toBe(before);
      seen.push(s.findings.find((f) => f.check === "dead_layer"));
    }
    // raised after epoch 3 (since epoch 1), value updated at 4, resolved at 5
    expect(seen.map((f) => (f ? [f.since, f.until, f.value] : null))).toEqual([
      null, null, [1, null, 0.5], [1, null, 0.55], [1, 5, 0.55],
    ]);
    expect(s.findings).toEqual(fx.expected);
    expect(s.findings[0].layer).toBe("relu2");
    expect(s.current!.nRows).toBe(5);
  });

  it("a snapshot carries the list; one without findings (older kernel) clears it", () => {
    const s = new Store();
    s.applyHistory({ ...history(1, []), findings: fx.expected });
    expect(s.findings).toEqual(fx.expected);
    s.applyHistory(history(2, []));
    expect(s.findings).toEqual([]);
  });
});
