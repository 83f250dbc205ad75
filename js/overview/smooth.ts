// Loss smoothing as TensorBoard does it: an exponential moving average with weight w in [0, 1), debiased
// (divided by 1 - w^n) so the first points are not pulled towards 0. Gaps (null / undefined) are skipped and
// stay gaps. Applied to the lines of loss charts only (big numerical panels whose tag names a loss), over the
// record's rows at full resolution before downsampling (js/chartdata.ts), so the curve is the EMA of the
// record whatever the run's length, zoom or chart width.

import type { Val } from "../downsample";

export function emaDebiased(ys: ArrayLike<Val>, w: number): Val[] {
  if (!(w > 0)) return Array.from(ys);
  let last = 0;
  let n = 0;
  return Array.from(ys, (v) => {
    if (v == null || !Number.isFinite(v)) return v;
    last = last * w + (1 - w) * v;
    n++;
    return last / (1 - Math.pow(w, n));
  });
}
