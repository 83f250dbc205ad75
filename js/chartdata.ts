// Turns one ChartSpec into uPlot-ready aligned arrays.
//
// Runs are aligned on the union of their epoch values (x). uPlot series order is fixed here and shared
// with chart.ts: for each current-run line: the line, then its band's lo and hi if it has one; then the
// old runs' faint lines; then one dashed "provisional" series per current line which, while the current
// run's last row is provisional, holds two points (the last final row and the provisional one) and is
// empty otherwise.

import { type BucketPlan, planBuckets, reduceColumn, reduceSeries, type Val } from "./downsample";
import type { ChartSpec } from "./panels";
import type { RunData, Store } from "./store";

export type SeriesRole = "line" | "lo" | "hi" | "old" | "prov";

export interface SeriesInfo {
  role: SeriesRole;
  key: string;
  run: number;
  /** Index of the current-run line this series belongs to (its colour). */
  line: number;
}

export interface ChartData {
  x: number[];
  ys: Val[][];
  series: SeriesInfo[];
  /** Final (non-provisional) rows of the current run. */
  epochs: number;
  provisional: boolean;
  /** Index in x of the provisional row (drawn as an open point), or -1. */
  provIndex: number;
}

function clean(v: number, logy: boolean): number | null {
  if (!Number.isFinite(v)) return null;
  if (logy && v <= 0) return null; // not drawable on a log axis: shown as a gap
  return v;
}

/** What the x axis counts: the epoch, optimizer steps so far, or wall time in seconds since the run started. */
export type XMode = "epoch" | "step" | "time";

const xsOf = (r: RunData, mode: XMode): Float64Array => (mode === "time" ? r.times : mode === "step" ? r.steps : r.epochs);

export function buildChartData(store: Store, spec: ChartSpec, buckets: number, cache?: AlignmentCache, mode: XMode = "epoch"): ChartData {
  const cur = store.current;
  const series: SeriesInfo[] = [];
  const empty: ChartData = { x: [], ys: [], series, epochs: 0, provisional: false, provIndex: -1 };
  if (!cur) return empty;
  const nFinal = cur.finalRows;
  const provisional = cur.provisional;
  const provRow = cur.nRows - 1;

  // Which rows of which run feed which series.
  type Src = { run: RunData; col: number; rows: "final" | "prov" };
  const srcs: Src[] = [];
  const lineIndex = new Map<string, number>();
  spec.series.forEach((s) => {
    if (!s.current) return;
    const li = lineIndex.size;
    lineIndex.set(s.key, li);
    series.push({ role: "line", key: s.key, run: s.run, line: li });
    srcs.push({ run: cur, col: s.col, rows: "final" });
    if (s.lo !== undefined && s.hi !== undefined) {
      series.push({ role: "lo", key: s.key, run: s.run, line: li });
      srcs.push({ run: cur, col: s.lo, rows: "final" });
      series.push({ role: "hi", key: s.key, run: s.run, line: li });
      srcs.push({ run: cur, col: s.hi, rows: "final" });
    }
  });
  for (const s of spec.series) {
    if (s.current) continue;
    const run = store.run(s.run);
    if (!run) continue;
    series.push({ role: "old", key: s.key, run: s.run, line: lineIndex.get(s.key) ?? 0 });
    srcs.push({ run, col: s.col, rows: "final" });
  }
  // Always present (empty while no row is provisional) so the chart's series set, and hence the uPlot
  // instance, stays the same from one tick to the next.
  for (const s of spec.series) {
    if (!s.current) continue;
    series.push({ role: "prov", key: s.key, run: s.run, line: lineIndex.get(s.key) ?? 0 });
    srcs.push({ run: cur, col: s.col, rows: "prov" });
  }

  const al = alignment(cur, srcs.map((s) => s.run), mode, cache);
  const x = al.x;
  const plan = planFor(al, buckets);
  const provIndex = plan ? (al.provIndex === x.length - 1 ? plan.x.length - 1 : -1) : al.provIndex;
  const ys: Val[][] = srcs.map(({ run, col, rows }) => {
    const vals = run.values[col];
    const idx = al.index.get(run)!;
    // Rows feeding this series: all final rows, or (provisional series) the last final row and the
    // provisional one, which is the run's row nRows-1 at x index al.provIndex.
    let count = idx.length;
    let at = (i: number): number => idx[i];
    let value = (i: number): Val => clean(vals[i], spec.logy);
    if (rows === "prov") {
      if (!provisional || !vals) count = 0;
      else {
        count = nFinal > 0 ? 2 : 1;
        const rowAt = (i: number): number => (nFinal > 0 && i === 0 ? nFinal - 1 : provRow);
        at = (i) => (rowAt(i) === provRow ? al.provIndex : idx[rowAt(i)]);
        value = (i) => clean(vals[rowAt(i)], spec.logy);
      }
    } else if (!vals) count = 0;
    if (plan) return rows === "final" && vals ? reduceColumn(plan, idx, vals, spec.logy) : reduceSeries(plan, count, at, value);
    const y: Val[] = new Array(x.length).fill(undefined);
    for (const g of al.gaps) y[g] = null;
    for (let i = 0; i < count; i++) {
      const j = at(i);
      if (j >= 0) y[j] = value(i);
    }
    return y;
  });
  return { x: plan ? plan.x : x, ys, series, epochs: nFinal, provisional, provIndex };
}

/** x positions shared by the charts of one redraw: the union of the epochs of a set of runs. */
export interface Alignment {
  /** Sorted distinct epochs (finite only). Shared between charts: never mutate. */
  x: number[];
  /** For each run, row -> index in x (-1: not drawn). The current run's provisional row is excluded. */
  index: Map<RunData, Int32Array>;
  /** Index in x of the current run's provisional row, or -1. */
  provIndex: number;
  /** Indices in x of epochs no run has (drawn as gaps). */
  gaps: number[];
  /** Downsampling plans by bucket count. */
  plans: Map<number, BucketPlan | null>;
}

function planFor(al: Alignment, buckets: number): BucketPlan | null {
  let p = al.plans.get(buckets);
  if (p === undefined) {
    p = planBuckets(al.x, buckets);
    al.plans.set(buckets, p);
  }
  return p;
}

/** Alignments by run set, valid for one store version (the view makes a new one per redraw). */
export type AlignmentCache = Map<string, Alignment>;

function lowerBound(x: ArrayLike<number>, v: number): number {
  let lo = 0, hi = x.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (x[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function alignment(cur: RunData, runs: RunData[], mode: XMode, cache?: AlignmentCache): Alignment {
  const distinct = [...new Set(runs)].sort((a, b) => a.id - b.id);
  const key = mode + ":" + distinct.map((r) => r.id).join(",");
  const hit = cache?.get(key);
  if (hit) return hit;
  const rowsOf = (r: RunData): number => r.finalRows;
  const provEpoch = cur.provisional && distinct.includes(cur) ? xsOf(cur, mode)[cur.nRows - 1] : NaN;
  let total = Number.isFinite(provEpoch) ? 1 : 0;
  for (const r of distinct) total += rowsOf(r);
  // typed-array sort is numeric and fast; then drop duplicates and non-finite values
  const all = new Float64Array(total);
  let k = 0;
  for (const r of distinct) {
    const n = rowsOf(r);
    all.set(xsOf(r, mode).subarray(0, n), k);
    k += n;
  }
  if (Number.isFinite(provEpoch)) all[k++] = provEpoch;
  all.sort(); // NaN sorts last
  const x: number[] = [];
  for (let i = 0; i < all.length; i++) {
    const v = all[i];
    if (!Number.isFinite(v)) continue;
    if (x.length === 0 || x[x.length - 1] !== v) x.push(v);
  }
  // epochs without data: an x with no value in any series (null: a gap in every line), where the epoch axis
  // jumps by more than 1.5x its smallest step (ticks every 10 epochs are not gaps, a skipped epoch is)
  const gaps: number[] = [];
  if (mode === "epoch" && x.length > 2) {
    let step = Infinity;
    const ints = x.filter(Number.isInteger);
    for (let i = 1; i < ints.length; i++) step = Math.min(step, ints[i] - ints[i - 1]);
    if (Number.isFinite(step)) {
      const withGaps: number[] = [x[0]];
      for (let i = 1; i < x.length; i++) {
        const a = x[i - 1], b = x[i];
        if (b - a > 1.5 * step && Number.isInteger(a) && Number.isInteger(b)) {
          gaps.push(withGaps.length);
          withGaps.push(a + step);
        }
        withGaps.push(b);
      }
      if (gaps.length) {
        x.length = 0;
        for (const v of withGaps) x.push(v);
      }
    }
  }
  const index = new Map<RunData, Int32Array>();
  for (const r of distinct) {
    const n = rowsOf(r);
    const idx = new Int32Array(n);
    let j = 0;
    for (let i = 0; i < n; i++) {
      const e = xsOf(r, mode)[i];
      if (!Number.isFinite(e)) {
        idx[i] = -1;
        continue;
      }
      // epochs normally increase: try the next slot before searching
      if (!(j < x.length && x[j] === e)) j = lowerBound(x, e);
      idx[i] = j;
    }
    index.set(r, idx);
  }
  const al: Alignment = { x, gaps, index, provIndex: Number.isFinite(provEpoch) ? lowerBound(x, provEpoch) : -1, plans: new Map() };
  cache?.set(key, al);
  return al;
}
