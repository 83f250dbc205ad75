// @vitest-environment happy-dom
// Log-y ticks (trial r6, finding 1): uPlot 1.6.32's own log splits loop until `RangeError: Invalid array
// length` for a scale minimum that is not a power of ten (the tight range of chart.ts); ours are bounded.
import { beforeAll, describe, expect, it } from "vitest";
import { tightLogRange } from "../axes";
import { Chart, type ChartContext } from "../chart";
import type { ChartData } from "../chartdata";
import { linearSplits, logSplits } from "../logticks";
import { runStyle } from "../overview/runstyle";
import type { ChartSpec } from "../panels";
import { Store } from "../store";
import { stubCanvas } from "./realplot";

const BIG = 6; // ticks on a 220 px chart: floor((220 - 30) / 28)
const SMALL = 3; // on a 140 px one

describe("logSplits", () => {
  it("gives 1/2/5 ticks for the report's crashing range (data 0.0116..0.458, padded 0.00965..0.550)", () => {
    const [lo, hi] = tightLogRange(0.0116, 0.458);
    // pad = (0.458 / 0.0116)^0.05 = 1.2018 (by hand)
    expect(lo).toBeCloseTo(0.0116 / 1.2018, 5);
    expect(hi).toBeCloseTo(0.458 * 1.2018, 4);
    expect(logSplits(lo, hi, BIG)).toEqual([0.01, 0.02, 0.05, 0.1, 0.2, 0.5]);
    // 1/3 would be 4 ticks: whole decades only
    expect(logSplits(lo, hi, SMALL)).toEqual([0.01, 0.1]);
  });

  it("gives the same ticks to every loss-like range (min 0.111..0.115, max 2.3)", () => {
    for (let m = 0.111; m <= 0.1151; m += 0.0005) {
      const [lo, hi] = tightLogRange(m, 2.3);
      expect(logSplits(lo, hi, BIG)).toEqual([0.1, 0.2, 0.5, 1, 2]);
      // padded 0.0954..0.0990 to 2.67..2.68: 1/3 mantissas give 0.1, 0.3, 1 (3 is above the top)
      expect(logSplits(lo, hi, SMALL)).toEqual([0.1, 0.3, 1]);
    }
  });

  it("gives evenly spaced ticks within a decade, and decades with a stride on a wide range", () => {
    // padded 0.11080..0.11520: no 1..9 x 10^k inside; step 0.001 gives 5 (0.0005 would give 9 > 6)
    const [lo, hi] = tightLogRange(0.111, 0.115);
    expect(logSplits(lo, hi, BIG)).toEqual([0.111, 0.112, 0.113, 0.114, 0.115]);
    // 1e-9..1e3: 13 decades, at most 6 ticks -> every ceil(13 / 6) = 3rd power of ten
    expect(logSplits(1e-9, 1e3, BIG)).toEqual([1e-9, 1e-6, 1e-3, 1, 1e3]);
    expect(logSplits(0.3, 0.9, 7)).toEqual([0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]);
    // 7 > 6, and 1/2/5 holds only 0.5: steps 0.2 (3 ticks; 0.1 would give 7)
    expect(logSplits(0.3, 0.9, BIG)).toEqual([0.4, 0.6, 0.8]);
    // steps 0.5 -> 2 ticks, 0.2 -> 3, 0.1 -> 6 > 4: 0.2
    expect(linearSplits(1, 1.5, 4)).toEqual([1, 1.2, 1.4]);
  });

  it("terminates with 2..maxTicks ascending nice ticks inside the range for 20,000 random ranges", () => {
    let seed = 12345;
    const rnd = (): number => (seed = (seed * 16807) % 2147483647) / 2147483647;
    for (let i = 0; i < 20000; i++) {
      const a = Math.pow(10, -8 + 12 * rnd());
      const b = a * Math.pow(10, (i % 4 === 0 ? 0.01 : 5) * rnd()) * (1 + 1e-9);
      const [lo, hi] = tightLogRange(a, b);
      const most = 2 + (i % 7);
      const t = logSplits(lo, hi, most);
      expect(t.length, `${lo} ${hi} ${most}`).toBeGreaterThanOrEqual(2);
      expect(t.length, `${lo} ${hi} ${most}`).toBeLessThanOrEqual(most);
      for (let j = 0; j < t.length; j++) {
        expect(t[j] >= lo && t[j] <= hi, `${t[j]} in ${lo}..${hi}`).toBe(true);
        if (j > 0) expect(t[j]).toBeGreaterThan(t[j - 1]);
      }
      // nice: one significant digit (m x 10^k), or evenly spaced with a 1/2/5 x 10^j step
      const oneDigit = t.every((v) => v === parseFloat(v.toPrecision(1)));
      const step = t[1] - t[0];
      const even = t.every((v, j) => Math.abs(v - (t[0] + j * step)) <= 1e-9 * Math.abs(v));
      const niceStep = [1, 2, 5].includes(+parseFloat(step.toPrecision(6)).toExponential().split("e")[0]);
      expect(oneDigit || (even && niceStep) || t.length === 2, `${t}`).toBe(true);
    }
  });
});

describe("a log-y chart drawn by the real uPlot", () => {
  beforeAll(stubCanvas);
  const theme = { fg: "#000", muted: "#666", grid: "#eee", bg: "#fff", palette: ["#0072B2"] };
  const ctx: ChartContext = { runs: runStyle(new Store()), xLabel: "epoch", spanGaps: false, syncKey: "log", zoom: () => null, onZoom: () => undefined };
  const spec = (big: boolean): ChartSpec => ({ id: "c", panel: "Bias Gradient Norm", group: "0", kind: "numerical", big, logy: true,
    canLog: true, ylim: null, moduleType: null, series: [], hidden: false });
  const chart = (ys: number[], big: boolean): Chart => {
    const data: ChartData = { x: ys.map((_, i) => i + 1), ys: [ys], series: [{ key: "mean", role: "line", line: 0, run: 0 }],
      epochs: ys.length, provisional: false, provIndex: -1 };
    return new Chart(document.createElement("div"), spec(big), data, theme, big ? { width: 500, height: 220 } : { width: 250, height: 140 }, ctx);
  };

  it("builds for the report's data (uPlot's own splits threw RangeError) and ticks 1/2/5", () => {
    const c = chart([0.458, 0.2, 0.09, 0.05, 0.03, 0.0116], true);
    const y = (c.u as any).axes[1];
    expect(y._splits).toEqual([0.01, 0.02, 0.05, 0.1, 0.2, 0.5]);
    expect(y._values).toEqual(["0.01", "0.02", "0.05", "0.1", "0.2", "0.5"]);
    expect(c.u.scales.y.min).toBeCloseTo(0.0116 / 1.2018, 5);
    c.destroy();
  });

  it("builds for 300 random ranges (big and small)", () => {
    let seed = 7;
    const rnd = (): number => (seed = (seed * 16807) % 2147483647) / 2147483647;
    for (let i = 0; i < 300; i++) {
      const lo = Math.pow(10, -4 + 5 * rnd());
      const hi = lo * Math.pow(10, 3 * rnd());
      const c = chart([hi, (lo + hi) / 2, lo], i % 2 === 0);
      const s: number[] = (c.u as any).axes[1]._splits;
      expect(s.length).toBeGreaterThanOrEqual(2);
      expect(s.length).toBeLessThanOrEqual(i % 2 === 0 ? BIG : SMALL);
      c.destroy();
    }
  });
});
