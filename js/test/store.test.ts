import { describe, expect, it, vi } from "vitest";
import { Store } from "../store";
import { column, delta, history, panel, snapRun, status } from "./helpers";

const P = panel("Output Activations", { kind: "probability" });
const cols = [
  column(0, P.tag, "fc1", "activation_rate", { module_type: "ReLU" }),
  column(1, P.tag, "fc1", "death_rate", { module_type: "ReLU" }),
];

function seeded(): Store {
  const s = new Store();
  s.applyHistory(history(4, [snapRun(0, "run 1: MLP", [P], cols, [1, 2, 3], [[0.5, 0.1], [0.6, NaN], [0.7, 0.3]])], status({ epoch: 3 })));
  return s;
}

describe("Store.applyHistory", () => {
  it("transposes row-major snapshot data into columns", () => {
    const s = seeded();
    const r = s.current!;
    expect(s.seq).toBe(4);
    expect(r.label).toBe("run 1: MLP");
    expect(r.nRows).toBe(3);
    expect(Array.from(r.epochs.subarray(0, 3))).toEqual([1, 2, 3]);
    expect(Array.from(r.column(0))).toEqual([0.5, 0.6, 0.7]);
    const death = Array.from(r.column(1));
    expect(death[0]).toBe(0.1);
    expect(Number.isNaN(death[1])).toBe(true); // NaN gap preserved
    expect(death[2]).toBe(0.3);
    expect(s.status?.epoch).toBe(3);
  });

  it("drops a snapshot older than deltas already applied, accepts an equal or newer one", () => {
    const s = seeded();
    const [m, b] = delta(5, { rows: [{ run: 0, row: 3, epoch: 4, time: 2, provisional: false }] }, [{ run: 0, row: 3, col: 0, val: 0.8 }]);
    expect(s.applyDelta(m, b)).toBe(true);
    expect(s.applyHistory(history(4, []))).toBe(false);
    expect(s.current!.nRows).toBe(4);
    expect(s.applyHistory(history(5, [snapRun(0, "again", [P], cols, [1], [[0.9, 0.9]])]))).toBe(true);
    expect(s.current!.label).toBe("again");
    expect(s.current!.nRows).toBe(1);
  });

  it("marks the last row provisional from the snapshot flag", () => {
    const s = new Store();
    s.applyHistory(history(1, [snapRun(0, "r", [P], cols, [1, 1.5], [[0.1, 0.2], [0.3, 0.4]], { provisional: true })]));
    expect(s.current!.provisional).toBe(true);
    expect(s.current!.finalRows).toBe(1);
  });

  it("ignores malformed history values", () => {
    const s = new Store();
    expect(s.applyHistory(null)).toBe(false);
    expect(s.applyHistory({} as never)).toBe(false);
    expect(s.runs).toEqual([]);
  });
});

describe("Store.applyDelta", () => {
  it("ignores deltas with seq <= current seq (already in the snapshot)", () => {
    const s = seeded();
    const [m, b] = delta(4, {}, [{ run: 0, row: 0, col: 0, val: 99 }]);
    expect(s.applyDelta(m, b)).toBe(false);
    expect(s.current!.column(0)[0]).toBe(0.5);
    const [m2, b2] = delta(3, {}, [{ run: 0, row: 0, col: 0, val: 99 }]);
    expect(s.applyDelta(m2, b2)).toBe(false);
    expect(s.seq).toBe(4);
  });

  it("adds columns and rows mid-stream, cells may refer to them in the same message", () => {
    const s = seeded();
    const [m, b] = delta(
      5,
      {
        new_panels: [{ run: 0, ...panel("Output Norm") }],
        new_columns: [{ run: 0, ...column(2, "Output Norm", "fc1", "mean") }],
        rows: [{ run: 0, row: 3, epoch: 4, time: 2.0, provisional: false }],
      },
      [
        { run: 0, row: 3, col: 0, val: 0.8 },
        { run: 0, row: 3, col: 2, val: 12.5 },
        { run: 0, row: 0, col: 2, val: NaN },
      ],
    );
    s.applyDelta(m, b);
    const r = s.current!;
    expect(r.panels.map((p) => p.tag)).toEqual(["Output Activations", "Output Norm"]);
    expect(r.columns[2]?.key).toBe("mean");
    expect(r.nRows).toBe(4);
    expect(r.epochs[3]).toBe(4);
    expect(Array.from(r.column(0))).toEqual([0.5, 0.6, 0.7, 0.8]);
    const c2 = Array.from(r.column(2));
    expect(c2.slice(0, 3).every(Number.isNaN)).toBe(true); // never written, or written NaN: gap
    expect(c2[3]).toBe(12.5);
    expect(Number.isNaN(r.column(1)[3])).toBe(true);
    expect(s.seq).toBe(5);
  });

  it("creates new runs and keeps every value over many rows (growth)", () => {
    const s = seeded();
    let seq = 5;
    const [m, b] = delta(seq++, { new_runs: [{ id: 1, label: "run 2: CNN" }], new_panels: [{ run: 1, ...P }], new_columns: [{ run: 1, ...cols[0] }] });
    s.applyDelta(m, b);
    for (let row = 0; row < 300; row++) {
      const [mm, bb] = delta(seq++, { rows: [{ run: 1, row, epoch: row + 1, time: row, provisional: false }] }, [{ run: 1, row, col: 0, val: row / 1000 }]);
      s.applyDelta(mm, bb);
    }
    expect(s.runs.map((r) => r.id)).toEqual([0, 1]);
    expect(s.current!.id).toBe(1);
    const v = s.current!.column(0);
    expect(v.length).toBe(300);
    for (let i = 0; i < 300; i++) expect(v[i]).toBe(i / 1000);
    // the old run is untouched
    expect(Array.from(s.run(0)!.column(0))).toEqual([0.5, 0.6, 0.7]);
  });

  it("tracks a provisional row and its replacement by the final one", () => {
    const s = seeded();
    const [m1, b1] = delta(5, { rows: [{ run: 0, row: 3, epoch: 3.5, time: 2, provisional: true }] }, [{ run: 0, row: 3, col: 0, val: 0.75 }]);
    s.applyDelta(m1, b1);
    const r = s.current!;
    expect(r.provisional).toBe(true);
    expect(r.finalRows).toBe(3);
    const [m2, b2] = delta(6, { rows: [{ run: 0, row: 3, epoch: 4, time: 2.5, provisional: false }] }, [{ run: 0, row: 3, col: 0, val: 0.77 }]);
    s.applyDelta(m2, b2);
    expect(r.provisional).toBe(false);
    expect(r.finalRows).toBe(4);
    expect(r.epochs[3]).toBe(4);
    expect(r.column(0)[3]).toBe(0.77);
  });

  it("replaces problems by (lens, message) and updates status", () => {
    const s = seeded();
    const p = (seq: number, count: number, message = "non-finite loss") =>
      delta(seq, { problems: [{ run: 0, lens: "LossMetrics", message, count }], status: status({ problems: count }) });
    s.applyDelta(...p(5, 1));
    s.applyDelta(...p(6, 3));
    s.applyDelta(...p(7, 1, "hook failed"));
    expect(s.current!.problems).toEqual([ // no kind on the wire (an older kernel): a problem
      { lens: "LossMetrics", message: "non-finite loss", count: 3, kind: "warning" },
      { lens: "LossMetrics", message: "hook failed", count: 1, kind: "warning" },
    ]);
    expect(s.status?.problems).toBe(1);
  });

  it("keeps each problem's kind, from deltas and snapshots, a missing one read as a warning", () => {
    const s = new Store();
    const run = snapRun(0, "r", [], [], [], [], { problems: [
      { lens: "attach", message: "'head' is watched by no lens", count: 1, kind: "notice" },
      { lens: "LossMetrics", message: "old file's report", count: 1 },
    ] });
    s.applyHistory(history(1, [run]));
    s.applyDelta(...delta(2, { problems: [{ run: 0, lens: "attach", message: "'x' frozen", count: 1, kind: "notice" }] }));
    expect(s.current!.problems.map((p) => [p.message, p.kind])).toEqual([
      ["'head' is watched by no lens", "notice"], ["old file's report", "warning"], ["'x' frozen", "notice"],
    ]);
  });

  it("keeps the status when a delta does not carry one", () => {
    const s = seeded();
    s.applyDelta(...delta(5, {}));
    expect(s.status?.epoch).toBe(3);
  });

  it("notifies subscribers once per applied message and not for dropped ones", () => {
    const s = seeded();
    const fn = vi.fn();
    const off = s.subscribe(fn);
    s.applyDelta(...delta(5, {}));
    s.applyDelta(...delta(5, {}));
    expect(fn).toHaveBeenCalledTimes(1);
    off();
    s.applyDelta(...delta(6, {}));
    expect(fn).toHaveBeenCalledTimes(1);
    expect(s.listenerCount).toBe(0);
  });
});

describe("a run announced again", () => {
  it("starts afresh: the kernel reused a run that never got a row (detach; attach with no tick)", () => {
    const s = new Store();
    const [m1, b1] = delta(0, {
      new_runs: [{ id: 0, label: "run 1: MLP" }],
      problems: [{ run: 0, lens: "attach", message: "'head' is watched by no lens", count: 1 }],
    });
    expect(s.applyDelta(m1, b1)).toBe(true);
    expect(s.current!.problems.length).toBe(1);
    const [m2, b2] = delta(1, { new_runs: [{ id: 0, label: "run 1: CNN" }] });
    expect(s.applyDelta(m2, b2)).toBe(true);
    expect(s.runs.map((r) => [r.id, r.label])).toEqual([[0, "run 1: CNN"]]);
    expect(s.current!.problems).toEqual([]); // the first attach's notice belonged to the other model
  });
});

describe("runs imported while a run trains", () => {
  it("leave the training run current: the status names it, and it moves last", () => {
    const s = new Store();
    const [m1, b1] = delta(0, { new_runs: [{ id: 0, label: "today" }], status: status({ run: 0, epoch: 1 }) });
    expect(s.applyDelta(m1, b1)).toBe(true);
    // the kernel lists the imported run before today's; on the wire it comes after it
    const [m2, b2] = delta(1, { new_runs: [{ id: 1, label: "last week" }], status: status({ run: 0, epoch: 1 }) });
    expect(s.applyDelta(m2, b2)).toBe(true);
    expect(s.runs.map((r) => r.label)).toEqual(["last week", "today"]);
    expect(s.current!.id).toBe(0);
  });
});
