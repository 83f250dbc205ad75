import { describe, expect, it } from "vitest";
import { downsampleMinMax, type Val } from "../downsample";

const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

describe("downsampleMinMax", () => {
  it("returns short series unchanged", () => {
    const d = downsampleMinMax([1, 2, 3], [[1, null, undefined]], 10);
    expect(d).toEqual({ x: [1, 2, 3], ys: [[1, null, undefined]] });
  });

  it("bounds the output size and keeps every bucket's min and max (spikes survive)", () => {
    const n = 100_000;
    const x = range(n);
    const y: Val[] = x.map((i) => Math.sin(i / 500));
    y[31_337] = 50; // a single-epoch spike
    y[77_777] = -40;
    const d = downsampleMinMax(x, [y], 300);
    expect(d.x.length).toBeLessThanOrEqual(2 * 300 + 1);
    expect(d.ys[0].length).toBe(d.x.length);
    const nums = d.ys[0].filter((v): v is number => typeof v === "number");
    expect(Math.max(...nums)).toBe(50);
    expect(Math.min(...nums)).toBe(-40);
    // x stays sorted and within the data
    for (let i = 1; i < d.x.length; i++) expect(d.x[i]).toBeGreaterThanOrEqual(d.x[i - 1]);
    expect(d.x[0]).toBe(1);
    expect(d.x[d.x.length - 1]).toBe(n);
  });

  it("puts each bucket's min and max at their own x, in the order they occur, and the last value exact", () => {
    const x = range(9);
    const y = [5, 1, 9, 2, 2, 7, 0, 3, 4];
    // 8 body rows in 2 buckets of 4: [5,1,9,2] -> min 1 @x=2, max 9 @x=3 ; [2,7,0,3] -> max 7 @x=6, min 0 @x=7
    const d = downsampleMinMax(x, [y], 2);
    expect(d.x).toEqual([2, 3, 6, 7, 9]);
    expect(d.ys[0]).toEqual([1, 9, 7, 0, 4]);
  });

  it("keeps a gap-only bucket's first gap; a bucket with no rows adds no point", () => {
    const x = range(9);
    const a: Val[] = [null, null, null, null, undefined, undefined, undefined, undefined, 1];
    const d = downsampleMinMax(x, [a], 2);
    expect(d.x).toEqual([1, 9]);
    expect(d.ys[0]).toEqual([null, 1]);
  });

  it("draws every series' own value at the union of their min/max rows (every point is a row of the data)", () => {
    const x = range(9).map((i) => 10 * i);
    const a = [5, 1, 9, 2, 2, 7, 0, 3, 4];
    const b: Val[] = [0, 0, 0, 8, 1, 1, 1, 1, undefined];
    const d = downsampleMinMax(x, [a, b], 2);
    // a marks rows 1, 2, 5, 6 (and 8, its last); b marks 0 and 3 (first min / max of bucket 1), 4 (first of
    // bucket 2's equal values) and 7, its last row
    expect(d.x).toEqual([10, 20, 30, 40, 50, 60, 70, 80, 90]);
    const big = range(41).map((i) => i);
    const y = big.map((i) => (i === 17 ? 100 : i % 7));
    const z = big.map((i) => (i === 3 ? -5 : 1));
    const e = downsampleMinMax(big, [y, z], 4);
    for (let j = 0; j < e.x.length; j++) {
      expect(e.ys[0][j]).toBe(y[e.x[j] - 1]);
      expect(e.ys[1][j]).toBe(z[e.x[j] - 1]);
    }
    expect(e.x).toContain(17); // the spike at its own x
    expect(e.x).toContain(3); // z's minimum
  });

  it("downsamples several aligned series on one shared x", () => {
    const n = 1000;
    const x = range(n);
    const a = x.map((i) => i);
    const b = x.map((i) => -i);
    const d = downsampleMinMax(x, [a, b], 50);
    expect(d.ys[0].length).toBe(d.x.length);
    expect(d.ys[1].length).toBe(d.x.length);
    expect(d.ys[0][0]).toBe(1);
    expect(d.ys[1][d.x.length - 1]).toBe(-n);
  });
});
