// The front-end copy of the run record (docs/protocol.md section 1), one per widget model.
//
// It is fed by the `history` snapshot trait and by `delta` messages. Every message carries a sequence
// number: a delta with seq <= the store's seq is already contained in what we have and is dropped; a snapshot
// with seq < the store's seq is older than deltas already applied and is dropped too. Applying a message is
// idempotent (ids and indices are explicit), so a snapshot taken a little ahead of its seq does no harm.
//
// Values are stored column-major (one Float64Array per column) because a chart reads whole columns; arrays
// grow by doubling, so appending a row is amortised O(columns) and no value is ever dropped.

import { decodeCells, readFloat64 } from "./decode";
import type { Column, DeltaMessage, Finding, FindingUpsert, History, Panel, Problem, RowInfo, SnapshotRun, Status, Bytes, UnrecordedSpan } from "./protocol";

export class RunData {
  readonly id: number;
  label: string;
  panels: Panel[] = [];
  /** columns[i] is the column with index i (undefined only if its metadata has not arrived). */
  columns: (Column | undefined)[] = [];
  problems: Problem[] = [];
  /** group -> spans of epochs not recorded on purpose (inspector.stop_recording). */
  unrecorded = new Map<string, UnrecordedSpan[]>();
  nRows = 0;
  /** Index of the provisional (intra-epoch) row, or -1. Only the last row can be provisional. */
  provisionalRow = -1;
  private cap = 0;
  epochs = new Float64Array(0);
  times = new Float64Array(0);
  /** Optimizer steps so far at each row (NaN where the kernel did not count them). */
  steps = new Float64Array(0);
  /** values[c] has length >= nRows; entries past nRows are NaN. */
  values: Float64Array[] = [];

  constructor(id: number, label: string) {
    this.id = id;
    this.label = label;
  }

  get provisional(): boolean {
    return this.provisionalRow >= 0 && this.provisionalRow === this.nRows - 1;
  }

  /** Number of rows that are final (the provisional last row excluded). */
  get finalRows(): number {
    return this.provisional ? this.nRows - 1 : this.nRows;
  }

  private grow(minCap: number): void {
    let cap = Math.max(this.cap, 16);
    while (cap < minCap) cap *= 2;
    if (cap === this.cap) return;
    const resize = (a: Float64Array): Float64Array<ArrayBuffer> => {
      const b = new Float64Array(cap).fill(NaN);
      b.set(a.subarray(0, this.nRows));
      return b;
    };
    this.epochs = resize(this.epochs);
    this.times = resize(this.times);
    this.steps = resize(this.steps);
    this.values = this.values.map(resize);
    this.cap = cap;
  }

  ensureRows(n: number): void {
    if (n <= this.nRows) return;
    if (n > this.cap) this.grow(n);
    this.nRows = n;
  }

  ensureCols(n: number): void {
    while (this.values.length < n) this.values.push(new Float64Array(this.cap).fill(NaN));
    while (this.columns.length < n) this.columns.push(undefined);
  }

  setColumn(c: Column): void {
    this.ensureCols(c.index + 1);
    this.columns[c.index] = c;
  }

  setPanel(p: Panel): void {
    const i = this.panels.findIndex((q) => q.tag === p.tag);
    if (i >= 0) this.panels[i] = p;
    else this.panels.push(p);
  }

  setRow(r: { row: number; epoch: number; time: number; step?: number; provisional: boolean }): void {
    this.ensureRows(r.row + 1);
    this.epochs[r.row] = r.epoch;
    this.times[r.row] = r.time;
    this.steps[r.row] = typeof r.step === "number" ? r.step : NaN;
    if (r.provisional) this.provisionalRow = r.row;
    else if (this.provisionalRow === r.row) this.provisionalRow = -1;
  }

  setCell(row: number, col: number, val: number): void {
    this.ensureRows(row + 1);
    this.ensureCols(col + 1);
    this.values[col][row] = val;
  }

  /** Replaces the entry with the same (lens, message), or appends; a report without a kind is a "warning". */
  setProblem(p: Problem): void {
    const i = this.problems.findIndex((q) => q.lens === p.lens && q.message === p.message);
    const clean: Problem = { lens: p.lens, message: p.message, count: p.count, kind: p.kind === "notice" ? "notice" : "warning" };
    if (i >= 0) this.problems[i] = clean;
    else this.problems.push(clean);
  }

  /** Values of column `col` for rows [0, nRows) (a view, not a copy). */
  column(col: number): Float64Array {
    const v = this.values[col];
    return v ? v.subarray(0, this.nRows) : new Float64Array(this.nRows).fill(NaN);
  }
}

export type Listener = () => void;

export class Store {
  seq = -1;
  /** A delta skipped a seq (the host dropped messages, or the view mounted late): deltas are refused until a
   * snapshot arrives (js/resync.ts asks for one). */
  stale = false;
  /** Runs in the order they first appeared (which is id order in practice). */
  runs: RunData[] = [];
  status: Status | null = null;
  /** Health-check findings of every run, in the kernel's order (by run, then as raised): replaced whole by a
   * snapshot, merged by a delta (mergeFindings). A new array whenever they change. */
  findings: Finding[] = [];
  /** Increases on every applied change; views compare it to skip redundant redraws. */
  version = 0;
  private listeners = new Set<Listener>();

  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => {
      this.listeners.delete(fn);
    };
  }

  get listenerCount(): number {
    return this.listeners.size;
  }

  private changed(): void {
    this.version++;
    for (const fn of [...this.listeners]) fn();
  }

  run(id: number): RunData | undefined {
    return this.runs.find((r) => r.id === id);
  }

  /** The run the status names goes last, where `current` reads it: runs imported while it trained reach this
   * store after it (the kernel lists them before it). */
  private statusRunLast(): void {
    const id = this.status?.run;
    if (id == null) return;
    const i = this.runs.findIndex((r) => r.id === id);
    if (i >= 0 && i !== this.runs.length - 1) this.runs.push(...this.runs.splice(i, 1));
  }

  /** The run being trained now (the newest one, or the one the status names), or undefined before any run exists. */
  get current(): RunData | undefined {
    return this.runs[this.runs.length - 1];
  }

  private ensureRun(id: number, label?: string): RunData {
    let r = this.run(id);
    if (!r) {
      r = new RunData(id, label ?? `run ${id}`);
      this.runs.push(r);
    } else if (label !== undefined) {
      r.label = label;
    }
    return r;
  }

  /** A run of ``new_runs``. One announced again by id is one the kernel reused (it never got a row: detach and
   * attach with no tick in between): it starts afresh, its old notices dropped. */
  private announceRun(id: number, label: string): void {
    const i = this.runs.findIndex((r) => r.id === id);
    if (i < 0) this.runs.push(new RunData(id, label));
    else this.runs[i] = new RunData(id, label);
  }

  /** Replace the whole state by a snapshot, unless deltas newer than it were already applied. */
  applyHistory(h: History | null | undefined): boolean {
    if (!h || typeof h !== "object" || !Array.isArray(h.runs)) return false;
    const seq = typeof h.seq === "number" ? h.seq : 0;
    if (seq < this.seq) return false;
    this.runs = h.runs.map(runFromSnapshot);
    this.status = h.status ?? null;
    this.findings = Array.isArray(h.findings) ? h.findings : [];
    this.seq = seq;
    this.stale = false;
    this.changed();
    return true;
  }

  applyDelta(msg: DeltaMessage, buffers?: readonly Bytes[]): boolean {
    if (!msg || msg.type !== "delta" || typeof msg.seq !== "number") return false;
    if (msg.seq <= this.seq) return false;
    if (msg.seq > this.seq + 1) {
      // never applied across a gap: the missing messages may have created the rows/columns this one writes
      this.stale = true;
      return false;
    }
    let findings = this.findings;
    if (Array.isArray(msg.findings) || Array.isArray(msg.findings_removed)) {
      const merged = mergeFindings(this.findings, msg.findings ?? [], msg.findings_removed ?? []);
      if (merged === null) {
        this.stale = true; // a change to a finding this store never got: only a snapshot can repair it
        return false;
      }
      findings = merged;
    }
    for (const r of msg.new_runs ?? []) this.announceRun(r.id, r.label);
    for (const p of msg.new_panels ?? []) {
      const { run, ...panel } = p;
      this.ensureRun(run).setPanel(panel);
    }
    for (const c of msg.new_columns ?? []) {
      const { run, ...col } = c;
      this.ensureRun(run).setColumn(col);
    }
    for (const row of msg.rows ?? []) this.ensureRun(row.run).setRow(row as RowInfo);
    const cells = decodeCells(buffers);
    let last: RunData | undefined;
    for (let i = 0; i < cells.runs.length; i++) {
      const id = cells.runs[i];
      if (!last || last.id !== id) last = this.ensureRun(id);
      last.setCell(cells.rows[i], cells.cols[i], cells.vals[i]);
    }
    for (const p of msg.problems ?? []) this.ensureRun(p.run).setProblem(p);
    for (const u of msg.unrecorded ?? []) this.ensureRun(u.run).unrecorded.set(u.group, u.spans);
    if (msg.status !== undefined) {
      this.status = msg.status;
      this.statusRunLast();
    }
    this.findings = findings;
    this.seq = msg.seq;
    this.changed();
    return true;
  }
}

/**
 * A delta's findings merged into `list` (docs/protocol.md 2b, protocol v2): the ids in `removed` are dropped
 * first (a reopened finding, which the kernel lists last of its run; a run whose findings were replaced), then
 * each upsert updates the finding with its id in place (a held finding may come as its id and the fields that
 * changed), or is appended (whole). The result is ordered by run (stably), as the kernel's snapshot lists them,
 * so a live view and a late one break display ties alike. Null when an upsert is partial for an id not held
 * (this store missed a message): the caller asks for a snapshot.
 */
export function mergeFindings(list: readonly Finding[], upserts: readonly FindingUpsert[], removed: readonly string[]): Finding[] | null {
  const drop = new Set(removed);
  const out = drop.size ? list.filter((f) => !drop.has(f.id)) : [...list];
  const at = new Map(out.map((f, i) => [f.id, i]));
  let appended = false;
  for (const f of upserts) {
    const i = at.get(f.id);
    if (i !== undefined) {
      out[i] = { ...out[i], ...f };
    } else if (isWhole(f)) {
      at.set(f.id, out.length);
      out.push(f);
      appended = true;
    } else {
      return null;
    }
  }
  // Array.prototype.sort is stable: within a run the order stays the order raised
  return appended ? out.sort((a, b) => a.run - b.run) : out;
}

function isWhole(f: FindingUpsert): f is Finding {
  return typeof f.run === "number" && typeof f.check === "string" && typeof f.severity === "string" &&
    typeof f.message === "string" && typeof f.since === "number";
}

function runFromSnapshot(s: SnapshotRun): RunData {
  const r = new RunData(s.id, s.label);
  r.panels = (s.panels ?? []).map((p) => ({ ...p }));
  const nRows = s.n_rows | 0;
  const nCols = s.n_cols | 0;
  r.ensureRows(nRows);
  r.ensureCols(nCols);
  for (const c of s.columns ?? []) r.setColumn({ ...c });
  if (nRows > 0) {
    r.epochs.set(readFloat64(s.epochs, nRows));
    r.times.set(readFloat64(s.times, nRows));
    if (s.steps) r.steps.set(readFloat64(s.steps, nRows));
  }
  if (nRows > 0 && nCols > 0) {
    const data = readFloat64(s.data, nRows * nCols);
    // row-major on the wire -> column-major here
    for (let c = 0; c < nCols; c++) {
      const col = r.values[c];
      for (let i = 0; i < nRows; i++) col[i] = data[i * nCols + c];
    }
  }
  r.provisionalRow = s.provisional && nRows > 0 ? nRows - 1 : -1;
  for (const p of s.problems ?? []) r.setProblem(p);
  for (const u of s.unrecorded ?? []) r.unrecorded.set(u.group, u.spans);
  return r;
}
