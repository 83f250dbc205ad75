// Turns one ChartSpec into uPlot-ready aligned arrays.
//
// Runs are aligned on the union of their epoch values (x). uPlot series order is fixed here and shared
// with chart.ts: for each current-run line: the line, then its band's lo and hi if it has one; then the
// old runs' faint lines; then one dashed "provisional" series per current line which, while the current
// run's last row is provisional, holds two points (the last final row and the provisional one) and is
// empty otherwise.

import { type Dense, pick, selectPoints, UNSET, type Val } from "./downsample";
import { emaDebiased } from "./overview/smooth";
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
  /** The EMA weight the line / old-run / provisional series were smoothed with (0: raw values). */
  smoothing?: number;
  /** Per series: the record's own values at x where ys[i] is smoothed, else null. */
  raw?: (Val[] | null)[];
}

/** What of the record a chart shows besides its columns: the x range (zoom) and loss smoothing. */
export interface ChartWindow {
  /** Only rows with x in [min, max] (and one either side, so lines reach the edges) are bucketed. */
  range?: [number, number] | null;
  /** EMA weight in [0, 1) for the line, old-run and provisional series (TensorBoard's, debiased). */
  smoothing?: number;
}

/** A band edge below a log axis' range (see `dense` in buildChartData). */
const BELOW = -Infinity;

/** Replace every BELOW mark with the smallest drawn value of the chart (a gap when it has none). */
function floorBands(drawn: Dense[]): void {
  let floor = Infinity;
  for (const d of drawn) for (const v of d) if (v > 0 && v < floor) floor = v; // UNSET (Infinity), NaN: not drawn
  const to = Number.isFinite(floor) ? floor : NaN;
  for (const d of drawn) for (let i = 0; i < d.length; i++) if (d[i] === BELOW) d[i] = to;
}

function clean(v: number, logy: boolean): number | null {
  if (!Number.isFinite(v)) return null;
  if (logy && v <= 0) return null; // not drawable on a log axis: shown as a gap
  return v;
}

/** What the x axis counts: the epoch, optimizer steps so far, or wall time in seconds since the run started. */
export type XMode = "epoch" | "step" | "time";

/** A run's x value per row in `mode`. */
export const xsOf = (r: RunData, mode: XMode): Float64Array => (mode === "time" ? r.times : mode === "step" ? r.steps : r.epochs);

/**
 * The chart's aligned series, at most about 2 points per bucket and series (js/downsample.ts) over the x
 * range of `win` (the whole run when none). Smoothing runs over the record's rows at full resolution, before
 * any point is dropped, so it does not depend on the run's length, the zoom or the chart's width.
 */
export function buildChartData(store: Store, spec: ChartSpec, buckets: number, cache?: AlignmentCache, mode: XMode = "epoch",
  win: ChartWindow = {}): ChartData {
  const cur = store.current;
  const series: SeriesInfo[] = [];
  const empty: ChartData = { x: [], ys: [], series, epochs: 0, provisional: false, provIndex: -1 };
  if (!cur) return empty;
  const nFinal = cur.finalRows;
  const provisional = cur.provisional;
  const provRow = cur.nRows - 1;
  const w = win.smoothing && win.smoothing > 0 && win.smoothing < 1 ? win.smoothing : 0;

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
    // a key only earlier runs have (the current run lacks it) gets a colour of its own
    if (!lineIndex.has(s.key)) lineIndex.set(s.key, lineIndex.size);
    series.push({ role: "old", key: s.key, run: s.run, line: lineIndex.get(s.key)! });
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
  // the window of x indices drawn: [lo, hi)
  let lo = 0, hi = al.x.length;
  if (win.range) {
    lo = Math.max(0, lowerBound(al.x, win.range[0]) - 1);
    hi = Math.min(al.x.length, upperBound(al.x, win.range[1]) + 1);
    if (hi < lo) hi = lo;
  }
  const n = hi - lo;
  const smoothed = (r: RunData, col: number): ArrayLike<Val> => emaDebiased(r.values[col].subarray(0, r.nRows), w);
  const dense = (src: Src, values: "drawn" | "raw"): Dense => {
    const { run, col, rows } = src;
    const d = new Float64Array(n).fill(UNSET);
    for (const g of al.gaps) if (g >= lo && g < hi) d[g - lo] = NaN;
    const vals = run.values[col];
    if (!vals) return d;
    const role = series[srcs.indexOf(src)].role;
    const ys = values === "drawn" && w > 0 && role !== "lo" && role !== "hi" ? smoothed(run, col) : vals;
    // a band's lower edge at or below 0 on a log axis (mean - std of a loss that spreads widely) is marked
    // BELOW here and drawn at the chart's lowest value below, so the band reaches the axis' bottom instead of
    // breaking off where the edge turned non-positive
    const floorable = spec.logy && role === "lo";
    const put = (row: number, j: number): void => {
      j -= lo;
      if (j < 0 || j >= n) return;
      const raw = ys[row] as number;
      const v = clean(raw, spec.logy);
      d[j] = v === null ? (floorable && raw <= 0 ? BELOW : NaN) : v;
    };
    if (rows === "final") {
      const idx = al.index.get(run)!;
      for (let i = 0; i < idx.length; i++) if (idx[i] >= 0) put(i, idx[i]);
    } else if (provisional) {
      // the last final row and the provisional one, which is row nRows-1 at x index al.provIndex
      if (nFinal > 0) put(nFinal - 1, al.index.get(cur)![nFinal - 1]);
      put(provRow, al.provIndex);
    }
    return d;
  };
  const drawn = srcs.map((src) => dense(src, "drawn"));
  if (spec.logy) floorBands(drawn);
  const at = selectPoints(drawn, n, buckets);
  const x = at === null ? al.x.slice(lo, hi) : Array.from(at, (i) => al.x[lo + i]);
  const ys = drawn.map((d) => pick(d, at));
  const local = al.provIndex - lo;
  const provIndex = al.provIndex < 0 || local < 0 || local >= n ? -1 : at === null ? local : at.indexOf(local);
  const out: ChartData = { x, ys, series, epochs: nFinal, provisional, provIndex };
  if (w > 0) {
    out.smoothing = w;
    out.raw = srcs.map((src, i) => (series[i].role === "lo" || series[i].role === "hi" ? null : pick(dense(src, "raw"), at)));
  }
  return out;
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

/** First index with x[i] > v. */
function upperBound(x: ArrayLike<number>, v: number): number {
  let lo = 0, hi = x.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (x[mid] <= v) lo = mid + 1;
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
  const al: Alignment = { x, gaps, index, provIndex: Number.isFinite(provEpoch) ? lowerBound(x, provEpoch) : -1 };
  cache?.set(key, al);
  return al;
}
