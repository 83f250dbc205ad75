// Health findings (issue 16) through the TypeScript Store, protocol v2: a delta carries only the findings
// raised, changed or resolved (upserts by id) and the ids to drop first; a snapshot carries the whole list.
// The fixture is what the Python record produced (tests/test_findings_wire.py writes fixtures/findings.json)
// while findings were raised, updated, resolved and reopened, with the record's full list after each message.
import { describe, expect, it } from "vitest";
import type { DeltaMessage, Finding } from "../protocol";
import { Store, mergeFindings } from "../store";
import fixture from "./fixtures/findings.json";
import { history } from "./helpers";

interface Fixture {
  deltas: { msg: DeltaMessage; buffers: string[]; findings: Finding[] }[];
  expected: Finding[];
}

const fx = fixture as unknown as Fixture;

function bytes(b64: string): DataView {
  const raw = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return new DataView(raw.buffer, raw.byteOffset, raw.length);
}

function finding(run: number, layer: string, until: number | null = null, value = 0.5): Finding {
  return {
    id: `${run}:dead_layer:${layer}`, run, check: "dead_layer", severity: "warning", layer, tag: "Output Activations",
    since: 1, until, value, message: "m", advice: "a",
  };
}

describe("findings from the Python record", () => {
  it("each delta's upserts and removals rebuild the kernel's full list, order included", () => {
    const s = new Store();
    s.applyHistory(history(0, []));
    for (const d of fx.deltas) {
      const before = s.findings;
      expect(s.applyDelta(d.msg, d.buffers.map(bytes))).toBe(true);
      if (d.msg.findings === undefined && d.msg.findings_removed === undefined) expect(s.findings).toBe(before);
      else expect(s.findings).not.toBe(before); // a new array: views comparing identity redraw
      expect(s.findings).toEqual(d.findings);
    }
    // the deltas carried one finding each (a reopening two: the kept earlier episode and the new one), never the
    // whole list; an update of a held one only what changed
    expect(fx.deltas.map((d) => d.msg.findings?.length ?? 0)).toEqual([0, 0, 1, 1, 1, 1, 1, 0, 2, 2]);
    expect(Object.keys(fx.deltas[4].msg.findings![0]).sort()).toEqual(["id", "message", "value"]);
    expect(Object.keys(fx.deltas[5].msg.findings![0]).sort()).toEqual(["id", "until"]);
    // relu2 reopened at 9 moved after relu3; relu1 resolved and reopened within the last (coalesced) message;
    // each earlier episode stays, resolved, under "<id>#<since>", just before its reopened finding
    expect(s.findings.map((f) => f.id.split(":")[2])).toEqual(["relu3", "relu2#2", "relu2", "relu1#1", "relu1"]);
    expect(s.findings.filter((f) => f.id.includes("#")).every((f) => f.until !== null)).toBe(true);
    expect(s.findings).toEqual(fx.expected);
  });

  it("a snapshot carries the list and replaces whatever deltas built; one without findings clears it", () => {
    const s = new Store();
    s.applyHistory(history(0, []));
    for (const d of fx.deltas.slice(0, 6)) s.applyDelta(d.msg, d.buffers.map(bytes));
    expect(s.findings.length).toBe(2);
    // a late snapshot (e.g. answering a resync) holds the kernel's whole current list
    expect(s.applyHistory({ ...history(fx.deltas.length, []), findings: fx.expected })).toBe(true);
    expect(s.findings).toEqual(fx.expected);
    s.applyHistory(history(fx.deltas.length + 1, []));
    expect(s.findings).toEqual([]);
  });
});

describe("mergeFindings", () => {
  it("replaces an upserted id in place, appends new ids, and closes by upsert", () => {
    const list = [finding(0, "a"), finding(0, "b")];
    const out = mergeFindings(list, [finding(0, "a", null, 0.7), finding(0, "c"), finding(0, "b", 4)], [])!;
    expect(out.map((f) => [f.layer, f.until, f.value])).toEqual([["a", null, 0.7], ["b", 4, 0.5], ["c", null, 0.5]]);
    expect(list.map((f) => f.value)).toEqual([0.5, 0.5]); // the old array is not written
  });

  it("drops removed ids before the upserts, so a removed-and-upserted finding moves last", () => {
    const list = [finding(0, "a", 3), finding(0, "b"), finding(0, "c")];
    expect(mergeFindings(list, [finding(0, "a")], ["0:dead_layer:a"])!.map((f) => f.layer)).toEqual(["b", "c", "a"]);
    expect(mergeFindings(list, [], ["0:dead_layer:b", "9:x:-"])!.map((f) => f.layer)).toEqual(["a", "c"]);
  });

  it("applies a held finding's changed fields over it; a partial one for an id not held makes the store stale", () => {
    const list = [finding(0, "a"), finding(0, "b")];
    const out = mergeFindings(list, [{ id: "0:dead_layer:b", value: 0.9, message: "90%" }], [])!;
    expect(out[1]).toEqual({ ...finding(0, "b"), value: 0.9, message: "90%" });
    expect(out[0]).toBe(list[0]);
    expect(mergeFindings(list, [{ id: "0:dead_layer:zz", value: 0.9 }], [])).toBeNull();
    const s = new Store();
    s.applyHistory({ ...history(1, []), findings: list });
    expect(s.applyDelta({ type: "delta", seq: 2, findings: [{ id: "0:dead_layer:zz", value: 0.9 }] })).toBe(false);
    expect(s.stale).toBe(true);
    expect(s.seq).toBe(1);
    expect(s.findings).toBe(s.findings); // untouched
  });

  it("keeps the findings grouped by run in run order, as the kernel's snapshot lists them", () => {
    const out = mergeFindings([finding(1, "x"), finding(2, "y")], [finding(0, "z"), finding(1, "w")], [])!;
    expect(out.map((f) => f.id)).toEqual(["0:dead_layer:z", "1:dead_layer:x", "1:dead_layer:w", "2:dead_layer:y"]);
  });
});
