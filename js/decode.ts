// Decoding of the binary parts of protocol messages.
//
// The kernel writes little-endian float64 / int32 arrays. The buffers reach us as DataViews whose
// byteOffset is whatever the transport chose (not necessarily a multiple of 8), so a typed array cannot
// be laid over them directly; we read through DataView with explicit endianness, which is also correct
// on a big-endian host.

import type { Bytes } from "./protocol";

export function asDataView(b: Bytes): DataView {
  if (b instanceof DataView) return b;
  if (b instanceof ArrayBuffer) return new DataView(b);
  if (ArrayBuffer.isView(b)) return new DataView(b.buffer, b.byteOffset, b.byteLength);
  throw new TypeError("expected binary data (DataView, ArrayBuffer or typed array)");
}

/** float64 little-endian values; `n` (if given) must match the byte length. */
export function readFloat64(b: Bytes, n?: number): Float64Array {
  const dv = asDataView(b);
  const len = dv.byteLength >>> 3;
  if (dv.byteLength % 8 !== 0) throw new RangeError(`float64 buffer of ${dv.byteLength} bytes`);
  if (n !== undefined && n !== len) throw new RangeError(`expected ${n} float64 values, got ${len}`);
  const out = new Float64Array(len);
  for (let i = 0; i < len; i++) out[i] = dv.getFloat64(i * 8, true);
  return out;
}

export function readInt32(b: Bytes, n?: number): Int32Array {
  const dv = asDataView(b);
  const len = dv.byteLength >>> 2;
  if (dv.byteLength % 4 !== 0) throw new RangeError(`int32 buffer of ${dv.byteLength} bytes`);
  if (n !== undefined && n !== len) throw new RangeError(`expected ${n} int32 values, got ${len}`);
  const out = new Int32Array(len);
  for (let i = 0; i < len; i++) out[i] = dv.getInt32(i * 4, true);
  return out;
}

export interface Cells {
  runs: Int32Array;
  rows: Int32Array;
  cols: Int32Array;
  vals: Float64Array;
}

/** The four cell buffers of a delta message: runs, rows, cols (int32) and values (float64), same length. */
export function decodeCells(buffers: readonly Bytes[] | undefined): Cells {
  if (!buffers || buffers.length === 0) {
    return { runs: new Int32Array(0), rows: new Int32Array(0), cols: new Int32Array(0), vals: new Float64Array(0) };
  }
  if (buffers.length !== 4) throw new RangeError(`delta carries ${buffers.length} buffers, expected 4`);
  const runs = readInt32(buffers[0]);
  const k = runs.length;
  return { runs, rows: readInt32(buffers[1], k), cols: readInt32(buffers[2], k), vals: readFloat64(buffers[3], k) };
}
