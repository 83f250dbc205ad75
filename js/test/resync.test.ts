import { afterEach, describe, expect, it, vi } from "vitest";
import { spanPixels, unrecordedFor } from "../recording";
import { Resync, RESYNC_MAX_RETRIES } from "../resync";
import { Store } from "../store";
import { column, delta, history, panel, snapRun, status } from "./helpers";

const P = panel("Output Activations", { kind: "probability" });
const cols = [column(0, P.tag, "fc1", "activation_rate", { module_type: "ReLU" })];

function seeded(seq = 4): Store {
  const s = new Store();
  s.applyHistory(history(seq, [snapRun(0, "run 1", [P], cols, [1, 2], [[0.5], [0.6]])], status({ epoch: 2 })));
  return s;
}

function row(seq: number, r: number, val: number): ReturnType<typeof delta> {
  return delta(seq, { rows: [{ run: 0, row: r, epoch: r + 1, time: 0, provisional: false }] }, [{ run: 0, row: r, col: 0, val }]);
}

afterEach(() => {
  vi.useRealTimers();
});

describe("Store across a sequence gap", () => {
  it("refuses the delta, goes stale, and a snapshot ends the staleness", () => {
    const s = seeded(4);
    expect(s.applyDelta(...row(5, 2, 0.7))).toBe(true);
    expect(s.stale).toBe(false);
    // seq 6 was dropped by the host: 7 must not be applied on top of a record missing 6
    expect(s.applyDelta(...row(7, 4, 0.9))).toBe(false);
    expect(s.stale).toBe(true);
    expect(s.current!.nRows).toBe(3);
    expect(s.applyDelta(...row(8, 5, 1.0))).toBe(false);
    // the snapshot (seq 8) contains everything; deltas continue from it
    s.applyHistory(history(8, [snapRun(0, "run 1", [P], cols, [1, 2, 3, 4, 5, 6], [[0.5], [0.6], [0.7], [0.8], [0.9], [1.0]])], null));
    expect(s.stale).toBe(false);
    expect(s.applyDelta(...row(9, 6, 0.4))).toBe(true);
    expect(Array.from(s.current!.column(0))).toEqual([0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 0.4]);
  });
});

describe("Resync", () => {
  it("asks once on hello, on a gap, and retries while stale", () => {
    vi.useFakeTimers();
    const s = seeded(4);
    const sent: unknown[] = [];
    const r = new Resync({ send: (m) => sent.push(m) }, s, 100);
    r.hello();
    expect(sent).toEqual([{ type: "resync", seq: 4 }]);
    vi.advanceTimersByTime(500);
    expect(sent.length).toBe(1); // not stale: no retry
    s.applyDelta(...row(6, 3, 0.1));
    r.afterDelta();
    expect(sent.at(-1)).toEqual({ type: "resync", seq: 4 });
    s.applyDelta(...row(7, 4, 0.1));
    r.afterDelta(); // a retry timer is already pending: no second request for the same gap
    expect(sent.length).toBe(2);
    vi.advanceTimersByTime(100);
    expect(sent.length).toBe(3);
    vi.advanceTimersByTime(100 * (RESYNC_MAX_RETRIES + 5));
    expect(sent.length).toBe(2 + RESYNC_MAX_RETRIES);
    s.applyHistory(history(7, [snapRun(0, "run 1", [P], cols, [1], [[0.5]])], null));
    r.afterHistory();
    expect(s.stale).toBe(false);
  });

  it("a snapshot cancels the pending retry", () => {
    vi.useFakeTimers();
    const s = seeded(4);
    const sent: unknown[] = [];
    const r = new Resync({ send: (m) => sent.push(m) }, s, 100);
    s.applyDelta(...row(9, 3, 0.1));
    r.afterDelta();
    s.applyHistory(history(9, [snapRun(0, "run 1", [P], cols, [1], [[0.5]])], null));
    r.afterHistory();
    vi.advanceTimersByTime(1000);
    expect(sent.length).toBe(1);
  });

  it("survives a model that cannot send", () => {
    const s = seeded(4);
    const r = new Resync({ send: () => { throw new Error("closed"); } }, s, 100);
    expect(() => r.hello()).not.toThrow();
    r.cancel();
  });
});

describe("not recorded spans", () => {
  it("arrive by snapshot and delta, per group of the current run", () => {
    const s = new Store();
    const run = { ...snapRun(0, "run 1", [P], cols, [1, 2], [[0.5], [NaN]]), unrecorded: [{ group: "fc1", spans: [[2, null]] as [number, number | null][] }] };
    s.applyHistory(history(1, [run], null));
    const spec = { id: "x", panel: P.tag, group: "fc1", kind: "probability" as const, big: false, logy: false, canLog: false, ylim: null, moduleType: "ReLU", series: [], hidden: false };
    expect(unrecordedFor(s, spec)).toEqual([[2, null]]);
    s.applyDelta(...delta(2, { unrecorded: [{ run: 0, group: "fc1", spans: [[2, 3]] }] }));
    expect(unrecordedFor(s, spec)).toEqual([[2, 3]]);
    expect(unrecordedFor(s, { ...spec, big: true })).toEqual([]);
    expect(unrecordedFor(s, { ...spec, group: "fc2" })).toEqual([]);
  });

  it("cover whole epochs on the x axis; an open span runs to the last epoch", () => {
    const px = (e: number): number => e * 10;
    expect(spanPixels([[2, 3]], px, 9)).toEqual([[15, 35]]);
    expect(spanPixels([[4, null]], px, 9)).toEqual([[35, 95]]);
    expect(spanPixels([[4, null]], px, 1)).toEqual([[35, 45]]);
    expect(spanPixels([[5, 4]], px, 9)).toEqual([]);
  });
});
