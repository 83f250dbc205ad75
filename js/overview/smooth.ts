// Loss smoothing as TensorBoard does it: an exponential moving average with weight w in [0, 1), debiased
// (divided by 1 - w^n) so the first points are not pulled towards 0. Gaps (null / undefined) are skipped and
// stay gaps. Applied to the lines of loss charts only (big numerical panels whose tag names a loss).

import type { ChartData } from "../chartdata";
import type { Val } from "../downsample";

export function emaDebiased(ys: readonly Val[], w: number): Val[] {
  if (!(w > 0)) return ys.slice();
  let last = 0;
  let n = 0;
  return ys.map((v) => {
    if (v == null || !Number.isFinite(v)) return v;
    last = last * w + (1 - w) * v;
    n++;
    return last / (1 - Math.pow(w, n));
  });
}

/** A copy of `d` with line / old-run series smoothed (bands and the provisional segment are left as they are). */
export function smoothChart(d: ChartData, w: number): ChartData {
  if (!(w > 0)) return d;
  return { ...d, ys: d.ys.map((y, i) => (d.series[i].role === "line" || d.series[i].role === "old" ? emaDebiased(y, w) : y)) };
}
