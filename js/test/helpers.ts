// Builders for protocol messages in tests. Buffers are deliberately placed at odd byte offsets inside a
// larger ArrayBuffer, as a transport may deliver them, so decoding must not assume alignment.
import type { Column, DeltaMessage, History, Panel, SnapshotRun, Status } from "../protocol";

export function f64(values: number[], pad = 3): DataView {
  const buf = new ArrayBuffer(pad + values.length * 8 + 5);
  const dv = new DataView(buf, pad, values.length * 8);
  values.forEach((v, i) => dv.setFloat64(i * 8, v, true));
  return dv;
}

export function i32(values: number[], pad = 1): DataView {
  const buf = new ArrayBuffer(pad + values.length * 4 + 2);
  const dv = new DataView(buf, pad, values.length * 4);
  values.forEach((v, i) => dv.setInt32(i * 4, v, true));
  return dv;
}

export function panel(tag: string, over: Partial<Panel> = {}): Panel {
  return { tag, kind: "numerical", big: false, logy: false, lens: "Lens", ...over };
}

export function column(index: number, panel: string, group: string, key: string, over: Partial<Column> = {}): Column {
  return { index, panel, group, key, role: "line", band_of: null, module_type: null, ...over };
}

export const status = (over: Partial<Status> = {}): Status => ({
  run: 0, epoch: null, sec_per_epoch: null, state: "training", problems: 0, ...over,
});

/** A snapshot run from row-major values (rows x cols). */
export function snapRun(
  id: number,
  label: string,
  panels: Panel[],
  columns: Column[],
  epochs: number[],
  rows: number[][],
  over: Partial<SnapshotRun> = {},
): SnapshotRun {
  return {
    id, label, provisional: false, panels, columns, problems: [],
    n_rows: epochs.length, n_cols: columns.length,
    epochs: f64(epochs), times: f64(epochs.map((e) => e * 0.5)), data: f64(rows.flat()),
    ...over,
  };
}

export function history(seq: number, runs: SnapshotRun[], st: Status | null = null): History {
  return { version: 1, seq, runs, status: st };
}

export interface Cell { run: number; row: number; col: number; val: number }

export function delta(seq: number, parts: Partial<DeltaMessage>, cells: Cell[] = []): [DeltaMessage, DataView[]] {
  const msg: DeltaMessage = { type: "delta", seq, new_runs: [], new_panels: [], new_columns: [], rows: [], problems: [],
    cells: { count: cells.length }, ...parts };
  return [msg, [i32(cells.map((c) => c.run)), i32(cells.map((c) => c.row)), i32(cells.map((c) => c.col)), f64(cells.map((c) => c.val))]];
}
