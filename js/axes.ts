// A chart's axes and sizes: the y axis' title, value format, tight log range and log ticks, the epoch axis'
// steps, and how many downsampling buckets a chart's width holds. Used by js/chart.ts and the overview.

import type uPlot from "uplot";
import type { ChartSpec } from "./panels";
import { logSplits } from "./logticks";

export interface ChartSize {
  width: number;
  height: number;
}

export function formatValue(v: number | null | undefined): string {
  if (v == null || !Number.isFinite(v)) return "–";
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}

/** Title of a chart's y axis, from what it shows. */
export function yTitle(spec: ChartSpec): string {
  if (spec.kind === "probability") return "rate";
  // monitorch's relations (norm comparisons): each layer's share of the total
  if (spec.kind === "relations") return "share";
  if (/correlation/i.test(spec.panel)) return "correlation";
  // "Loss & Metrics" holds accuracies too
  if (/loss/i.test(spec.panel)) return /metric/i.test(spec.panel) ? "value" : "loss";
  if (/norm/i.test(spec.panel)) return "norm";
  return "value";
}

/** A log-scale y range just around the data (uPlot's default snaps to whole decades). */
export function tightLogRange(min: number | null, max: number | null): [number, number] {
  if (min == null || max == null || !(min > 0) || !(max > 0)) return [0.1, 10];
  if (min === max) return [min / 1.5, max * 1.5];
  const pad = Math.pow(max / min, 0.05);
  return [min / pad, max * pad];
}

/** Pixels per y tick on a log axis (uPlot's default space is 30 for a y axis). */
const LOG_TICK_PX = 28;

/**
 * A log-10 y axis' ticks and labels, ours instead of uPlot's (js/logticks.ts: uPlot 1.6.32's log splits can loop
 * forever on a minimum that is not a power of ten). `height` is the chart's height in CSS pixels.
 */
export function logAxis(height: () => number): Pick<uPlot.Axis, "splits" | "filter" | "values"> {
  return {
    splits: (_u, _i, min, max) => logSplits(min, max, Math.floor((height() - 30) / LOG_TICK_PX)),
    // uPlot's log filter keeps only 1 / 2 / 5 mantissas, which would blank our in-decade ticks
    filter: (_u, splits) => splits,
    values: (_u, splits) => splits.map((v) => formatValue(v)),
  };
}

/** x-axis tick steps on the epoch axis: whole epochs only (no 2.5-epoch ticks). */
export const EPOCH_INCRS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1e3, 2e3, 2.5e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6];

/** Width of the y axis (labels) left of the plot, in CSS pixels. */
export const Y_AXIS_PX = 48;

/**
 * Downsampling buckets for a chart of this size: one min/max pair per two pixels of plot width, i.e. about
 * one point per pixel. More points than pixels only cost drawing (raster time grows with segment count)
 * and show nothing more; spikes survive because each bucket keeps its minimum and maximum.
 */
export function bucketsFor(size: ChartSize): number {
  return Math.max(8, Math.floor((size.width - Y_AXIS_PX - 12) / 2));
}
