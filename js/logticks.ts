// Tick values for a log-10 y axis, computed here instead of by uPlot. uPlot 1.6.32's own log splits
// (`logAxisSplits`) step by the decade's increment from the scale minimum and, when that minimum is not a
// power of ten (our tight range, chart.ts `tightLogRange`), can miss its rounding table at a decade change
// and never reach the maximum: the tab hangs for seconds, then `RangeError: Invalid array length` (trial r6,
// finding 1). Here every tick is built from its own index, so the loop count is known before it starts.

/** Nice mantissas per decade, richest first: a set is used when its ticks fit the axis. */
const MANTISSAS = [[1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 5], [1, 3], [1]];

/** m x 10^k as the nearest double to the decimal (2e-3 is 0.002, not 0.0020000000000000005). */
const dec = (m: number, k: number): number => parseFloat(`${m}e${k}`);

/**
 * Tick values within [min, max] (0 < min < max) for a log axis, ascending, at most `maxTicks` (>= 2) of them:
 * m x 10^k for the richest mantissa set of MANTISSAS that fits, whole decades (every n-th) for a wide range,
 * or evenly spaced 1/2/5 x 10^j steps when the range holds fewer than two such values (a range within a
 * decade). Returns [] for a range with no positive finite part and [min] for a single value.
 */
export function logSplits(min: number, max: number, maxTicks: number): number[] {
  if (!(max > 0) || !Number.isFinite(max) || !(min <= max)) return [];
  if (!(min > 0)) min = max / 10;
  if (min === max) return [min];
  const most = Math.max(2, Math.floor(maxTicks) || 2);
  const lo = Math.floor(Math.log10(min));
  const hi = Math.floor(Math.log10(max));
  const inRange = (v: number): boolean => v >= min && v <= max;
  for (const set of MANTISSAS) {
    // a decade holds set.length ticks: skip the sets that cannot fit without building them
    if ((hi - lo - 1) * set.length > most) continue;
    const ticks: number[] = [];
    for (let k = lo; k <= hi; k++) for (const m of set) if (inRange(dec(m, k))) ticks.push(dec(m, k));
    if (ticks.length > most) continue;
    if (ticks.length >= 2) return ticks;
    break; // fewer than two nice values in range: a narrow range, evenly spaced ticks below
  }
  if (hi - lo >= 2) {
    // many decades: every n-th power of ten, n chosen so that at most `most` remain
    const stride = Math.ceil((hi - lo + 1) / most);
    const ticks: number[] = [];
    for (let k = Math.ceil(lo / stride) * stride; k <= hi; k += stride) if (inRange(dec(1, k))) ticks.push(dec(1, k));
    if (ticks.length >= 2) return ticks;
  }
  return linearSplits(min, max, most);
}

/** Evenly spaced ticks (step 1, 2 or 5 x 10^j) within [min, max]: the most of them that stay <= `most`. */
export function linearSplits(min: number, max: number, most: number): number[] {
  const span = max - min;
  if (!(span > 0) || !Number.isFinite(span)) return [min];
  let best: [number, number, number] | null = null; // step's mantissa, exponent, first index
  const top = Math.ceil(Math.log10(span));
  // steps from >= span down, coarse to fine: at most 3 x 6 tries
  for (let e = top; e >= top - 5; e--) {
    for (const m of [5, 2, 1]) {
      const step = dec(m, e);
      const first = Math.ceil(min / step);
      const count = Math.floor(max / step) - first + 1;
      if (count > most) return best ? build(best, min, max) : [min, max];
      if (count >= 2) best = [m, e, first];
    }
  }
  return best ? build(best, min, max) : [min, max];
}

function build([m, e, first]: [number, number, number], min: number, max: number): number[] {
  const step = dec(m, e);
  const out: number[] = [];
  // each tick from its index, rounded to 12 digits: no accumulated error, a bounded loop
  const n = Math.floor(max / step) - first + 1;
  for (let i = 0; i < n; i++) {
    const v = parseFloat(((first + i) * step).toPrecision(12));
    if (v >= min && v <= max) out.push(v);
  }
  return out;
}
