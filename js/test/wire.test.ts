// Replays messages produced by the real Python Record + DeltaSync (tests/test_widget_sync.py writes
// fixtures/wire.json) through the TypeScript Store, and compares with the values the Python side wrote.
import { describe, expect, it } from "vitest";
import type { DeltaMessage, History } from "../protocol";
import { Store } from "../store";
import wire from "./fixtures/wire.json";

interface Fixture {
  history: any;
  deltas: { msg: DeltaMessage; buffers: string[] }[];
  expected: { run: number; panel: string; group: string; key: string; values: Record<string, number> }[];
  epochs: number[];
  problems: { lens: string; message: string; count: number; kind: string }[];
}

const fx = wire as unknown as Fixture;

/** base64 -> DataView at an odd offset, as a transport may hand it over */
function bytes(b64: string): DataView {
  const raw = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const ab = new ArrayBuffer(raw.length + 5);
  new Uint8Array(ab, 5).set(raw);
  return new DataView(ab, 5, raw.length);
}

function history(): History {
  const h = structuredClone(fx.history);
  for (const r of h.runs) for (const k of ["epochs", "times", "steps", "data"]) r[k] = bytes(r[k]);
  return h;
}

describe("wire fixture from the Python sync", () => {
  it("snapshot + deltas reproduce every value the record wrote", () => {
    const s = new Store();
    expect(s.applyHistory(history())).toBe(true);
    expect(s.current!.nRows).toBe(2);
    let sawProvisional = false;
    for (const d of fx.deltas) {
      expect(s.applyDelta(d.msg, d.buffers.map(bytes))).toBe(true);
      if (s.current!.provisional) {
        sawProvisional = true;
        expect(s.current!.epochs[s.current!.nRows - 1]).toBe(4);
      }
    }
    expect(sawProvisional).toBe(true);
    const run = s.current!;
    expect(run.label).toBe("run 1: <i>MLP</i>");
    expect(run.provisional).toBe(false);
    expect(Array.from(run.epochs.subarray(0, run.nRows))).toEqual(fx.epochs);
    for (const e of fx.expected) {
      const col = run.columns.find((c) => c && c.panel === e.panel && c.group === e.group && c.key === e.key);
      expect(col, `${e.panel}/${e.group}/${e.key}`).toBeDefined();
      const v = run.column(col!.index);
      for (const [epoch, value] of Object.entries(e.values)) expect(v[Number(epoch) - 1]).toBeCloseTo(value, 12);
    }
    expect(run.problems).toEqual(fx.problems);
    expect(s.status?.problems).toBe(1); // the warning, reported twice, is one problem; the notice counts apart
    expect(s.status?.notices).toBe(1);
  });

  it("replaying the deltas twice changes nothing (seq dedup)", () => {
    const s = new Store();
    s.applyHistory(history());
    for (const d of fx.deltas) s.applyDelta(d.msg, d.buffers.map(bytes));
    const before = Array.from(s.current!.column(0));
    for (const d of fx.deltas) expect(s.applyDelta(d.msg, d.buffers.map(bytes))).toBe(false);
    expect(Array.from(s.current!.column(0))).toEqual(before);
  });
});
