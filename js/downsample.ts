// Min/max downsampling for drawing. The store keeps every value; a chart only needs about two points per
// horizontal pixel. Each bucket of consecutive rows becomes (at most) two points, at the bucket's first
// and last x, carrying the bucket's minimum and maximum in the order they occur, so a one-epoch spike
// stays visible however long the history is. The last row is always its own point, so the newest value
// is exact.
//
// Value conventions follow uPlot: a number is drawn, null is a gap (NaN in the record), undefined is
// "no row here" (alignment filler for another run's epochs) and is spanned over. A bucket with no number
// becomes null if it saw a gap, else undefined.

export type Val = number | null | undefined;

export interface Downsampled {
  x: number[];
  ys: Val[][];
}

/** How x positions map to output points; shared by every series drawn on the same x. */
export interface BucketPlan {
  /** Output x: per bucket its first x and (if it has more than one row) its last x; then the last x. */
  x: number[];
  /** Input x index -> bucket (the last index maps to `buckets`, the lone final point). */
  bucketOf: Int32Array;
  /** Per bucket: output slot of its first point. */
  slot: Int32Array;
  /** Per bucket: 1 if it produces two points. */
  two: Uint8Array;
  buckets: number;
}

/** null when x is short enough to draw as is (at most 2 * buckets + 1 points). */
export function planBuckets(x: ArrayLike<number>, buckets: number): BucketPlan | null {
  const n = x.length;
  buckets = Math.max(1, Math.floor(buckets));
  if (n <= 2 * buckets + 1) return null;
  const body = n - 1;
  const bucketOf = new Int32Array(n);
  const slot = new Int32Array(buckets).fill(-1);
  const two = new Uint8Array(buckets);
  const outX: number[] = [];
  for (let b = 0; b < buckets; b++) {
    const i0 = Math.floor((b * body) / buckets);
    const i1 = Math.floor(((b + 1) * body) / buckets); // exclusive
    if (i1 <= i0) continue;
    slot[b] = outX.length;
    outX.push(x[i0]);
    if (i1 - i0 > 1) {
      two[b] = 1;
      outX.push(x[i1 - 1]);
    }
    bucketOf.fill(b, i0, i1);
  }
  bucketOf[n - 1] = buckets;
  outX.push(x[n - 1]);
  return { x: outX, bucketOf, slot, two, buckets };
}

/**
 * Reduce one series under a plan. `count` input values; value i sits at x index `at(i)` (-1: skip) and
 * is `value(i)`. Several inputs may share an x index (the last one written wins only for the final point).
 */
export function reduceSeries(plan: BucketPlan, count: number, at: (i: number) => number, value: (i: number) => Val): Val[] {
  const B = plan.buckets;
  const min = new Float64Array(B).fill(Infinity);
  const max = new Float64Array(B).fill(-Infinity);
  const minAt = new Int32Array(B).fill(-1);
  const maxAt = new Int32Array(B).fill(-1);
  const sawNull = new Uint8Array(B);
  let last: Val = undefined;
  for (let i = 0; i < count; i++) {
    const j = at(i);
    if (j < 0) continue;
    const v = value(i);
    const b = plan.bucketOf[j];
    if (b === B) {
      last = v;
      continue;
    }
    if (v === null) sawNull[b] = 1;
    else if (v !== undefined) {
      if (v < min[b]) { min[b] = v; minAt[b] = j; }
      if (v > max[b]) { max[b] = v; maxAt[b] = j; }
    }
  }
  return emit(plan, min, max, minAt, maxAt, sawNull, last);
}

/**
 * Fast path of reduceSeries for record columns: value i = vals[i] at x index idx[i]; NaN/±Inf (and values
 * <= 0 when `logy`) are gaps. Same output as reduceSeries with the equivalent callbacks.
 */
export function reduceColumn(plan: BucketPlan, idx: Int32Array, vals: Float64Array, logy: boolean): Val[] {
  const B = plan.buckets;
  const min = new Float64Array(B).fill(Infinity);
  const max = new Float64Array(B).fill(-Infinity);
  const minAt = new Int32Array(B).fill(-1);
  const maxAt = new Int32Array(B).fill(-1);
  const sawNull = new Uint8Array(B);
  const bucketOf = plan.bucketOf;
  let last: Val = undefined;
  const n = Math.min(idx.length, vals.length);
  for (let i = 0; i < n; i++) {
    const j = idx[i];
    if (j < 0) continue;
    const v = vals[i];
    const ok = v - v === 0 && (!logy || v > 0); // finite (and positive on a log axis)
    const b = bucketOf[j];
    if (b === B) {
      last = ok ? v : null;
    } else if (!ok) {
      sawNull[b] = 1;
    } else {
      if (v < min[b]) { min[b] = v; minAt[b] = j; }
      if (v > max[b]) { max[b] = v; maxAt[b] = j; }
    }
  }
  return emit(plan, min, max, minAt, maxAt, sawNull, last);
}

function emit(
  plan: BucketPlan, min: Float64Array, max: Float64Array, minAt: Int32Array, maxAt: Int32Array, sawNull: Uint8Array, last: Val,
): Val[] {
  const out: Val[] = new Array(plan.x.length);
  for (let b = 0; b < plan.buckets; b++) {
    const s = plan.slot[b];
    if (s < 0) continue;
    const two = plan.two[b] === 1;
    if (minAt[b] < 0) {
      const fill: Val = sawNull[b] ? null : undefined;
      out[s] = fill;
      if (two) out[s + 1] = fill;
    } else if (!two) {
      out[s] = min[b];
    } else if (minAt[b] <= maxAt[b]) {
      out[s] = min[b];
      out[s + 1] = max[b];
    } else {
      out[s] = max[b];
      out[s + 1] = min[b];
    }
  }
  out[plan.x.length - 1] = last;
  return out;
}

/** Downsample aligned series to at most `2 * buckets + 1` points; short series are copied unchanged. */
export function downsampleMinMax(x: ArrayLike<number>, ys: ArrayLike<Val>[], buckets: number): Downsampled {
  const plan = planBuckets(x, buckets);
  if (!plan) return { x: Array.from(x), ys: ys.map((y) => Array.from(y)) };
  const identity = (i: number): number => i;
  return { x: plan.x, ys: ys.map((y) => reduceSeries(plan, x.length, identity, (i) => y[i])) };
}
