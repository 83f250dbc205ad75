import { describe, expect, it } from "vitest";
import { asDataView, decodeCells, readFloat64, readInt32 } from "../decode";
import { f64, i32 } from "./helpers";

describe("binary decoding", () => {
  it("reads little-endian float64 from an unaligned DataView", () => {
    const vals = [1.5, -2.25, NaN, 1e300, -0, Infinity];
    const dv = f64(vals, 3);
    expect(dv.byteOffset % 8).not.toBe(0);
    const out = readFloat64(dv, vals.length);
    expect(Array.from(out.slice(0, 2))).toEqual([1.5, -2.25]);
    expect(Number.isNaN(out[2])).toBe(true);
    expect(out[3]).toBe(1e300);
    expect(Object.is(out[4], -0)).toBe(true);
    expect(out[5]).toBe(Infinity);
  });

  it("matches bytes written independently (explicit byte pattern)", () => {
    // 1.0 as IEEE-754 little-endian: 00 00 00 00 00 00 f0 3f ; int32 258 = 02 01 00 00
    const b = new Uint8Array([0, 0, 0, 0, 0, 0, 0xf0, 0x3f]);
    expect(Array.from(readFloat64(b))).toEqual([1]);
    expect(Array.from(readInt32(new Uint8Array([2, 1, 0, 0, 0xff, 0xff, 0xff, 0xff]).buffer))).toEqual([258, -1]);
  });

  it("accepts ArrayBuffer, typed arrays and DataView", () => {
    const a = new Float64Array([3, 4]);
    expect(Array.from(readFloat64(a))).toEqual([3, 4]);
    expect(Array.from(readFloat64(a.buffer))).toEqual([3, 4]);
    expect(asDataView(new Uint8Array(a.buffer, 8, 8)).getFloat64(0, true)).toBe(4);
  });

  it("rejects lengths that do not match", () => {
    expect(() => readFloat64(new Uint8Array(12))).toThrow(RangeError);
    expect(() => readFloat64(f64([1, 2]), 3)).toThrow(RangeError);
    expect(() => readInt32(i32([1, 2]), 1)).toThrow(RangeError);
  });

  it("decodes the four cell buffers of a delta", () => {
    const c = decodeCells([i32([0, 1]), i32([5, 6]), i32([2, 3]), f64([0.25, NaN])]);
    expect(Array.from(c.runs)).toEqual([0, 1]);
    expect(Array.from(c.rows)).toEqual([5, 6]);
    expect(Array.from(c.cols)).toEqual([2, 3]);
    expect(c.vals[0]).toBe(0.25);
    expect(Number.isNaN(c.vals[1])).toBe(true);
    expect(decodeCells([]).runs.length).toBe(0);
    expect(decodeCells(undefined).vals.length).toBe(0);
    expect(() => decodeCells([i32([0, 1]), i32([5]), i32([2, 3]), f64([1, 2])])).toThrow(RangeError);
    expect(() => decodeCells([i32([0])])).toThrow(RangeError);
  });
});
