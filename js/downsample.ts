// Min/max downsampling for drawing. The store keeps every value; a chart only needs about two points per
// horizontal pixel. The x positions are cut into buckets of consecutive rows; every series marks the rows
// that hold its bucket minimum and maximum, and the points drawn are the union of the marked rows (plus the
// last row, so the newest value is exact). Each point sits at its own x and every series shows its own value
// there: a point drawn, hovered or exported is always a row of the record (trial r6, finding 2: min and max
// used to sit at the bucket's first and last x), and a one-epoch spike stays visible however long the
// history is. Each series' last row is kept too (an earlier, longer run's last value). A chart with k series
// draws at most 2k points per bucket, plus k.
//
// Value conventions follow uPlot: a number is drawn, null is a gap (NaN in the record), undefined is
// "no row here" (alignment filler for another run's epochs) and is spanned over. A bucket with no number
// marks its first gap (if any), so a stretch of gaps stays a gap.

export type Val = number | null | undefined;

/** A series over x positions as one typed array: a value, NaN for a gap (null), UNSET for no row (undefined). */
export type Dense = Float64Array;

/** The Dense marker of "no row here" (values drawn are finite, so +Infinity never collides with one). */
export const UNSET = Infinity;

export interface Downsampled {
  x: number[];
  ys: Val[][];
}

export function toDense(y: ArrayLike<Val>): Dense {
  const d = new Float64Array(y.length);
  for (let i = 0; i < y.length; i++) {
    const v = y[i];
    d[i] = v === undefined ? UNSET : v === null ? NaN : v;
  }
  return d;
}

export const fromDense = (v: number): Val => (v === UNSET ? undefined : v !== v ? null : v);

/**
 * The positions (indices into the series, ascending) to draw so that every series keeps each bucket's
 * minimum and maximum; null when all `n` positions fit (n <= 2 * buckets + 1). `buckets` >= 1.
 */
export function selectPoints(series: Dense[], n: number, buckets: number): Int32Array | null {
  buckets = Math.max(1, Math.floor(buckets));
  if (!(n > 2 * buckets + 1)) return null;
  const mark = new Uint8Array(n);
  mark[n - 1] = 1;
  const body = n - 1;
  for (const d of series) {
    // each series' last row is its own point: the resting legend shows it (chart.ts restingIdxs)
    for (let i = n - 1; i >= 0; i--) {
      if (d[i] !== UNSET) {
        mark[i] = 1;
        break;
      }
    }
    for (let b = 0; b < buckets; b++) {
      const i0 = Math.floor((b * body) / buckets);
      const i1 = Math.floor(((b + 1) * body) / buckets); // exclusive
      let min = Infinity, max = -Infinity, minAt = -1, maxAt = -1, gapAt = -1;
      for (let i = i0; i < i1; i++) {
        const v = d[i];
        if (v !== v) {
          if (gapAt < 0) gapAt = i;
        } else if (v !== UNSET) {
          if (v < min) { min = v; minAt = i; }
          if (v > max) { max = v; maxAt = i; }
        }
      }
      if (minAt >= 0) {
        mark[minAt] = 1;
        mark[maxAt] = 1;
      } else if (gapAt >= 0) mark[gapAt] = 1;
    }
  }
  let k = 0;
  for (let i = 0; i < n; i++) k += mark[i];
  const out = new Int32Array(k);
  k = 0;
  for (let i = 0; i < n; i++) if (mark[i]) out[k++] = i;
  return out;
}

/** `d` at positions `at` (all of it when null) as uPlot values. */
export function pick(d: Dense, at: Int32Array | null): Val[] {
  if (at === null) return Array.from(d, fromDense);
  const out: Val[] = new Array(at.length);
  for (let k = 0; k < at.length; k++) out[k] = fromDense(d[at[k]]);
  return out;
}

/** Downsample aligned series to their buckets' minima and maxima (each at its own x); short series are copied. */
export function downsampleMinMax(x: ArrayLike<number>, ys: ArrayLike<Val>[], buckets: number): Downsampled {
  const dense = ys.map(toDense);
  const at = selectPoints(dense, x.length, buckets);
  if (at === null) return { x: Array.from(x), ys: ys.map((y) => Array.from(y)) };
  return { x: Array.from(at, (i) => x[i]), ys: dense.map((d) => pick(d, at)) };
}
