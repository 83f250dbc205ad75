// One uPlot chart. Created for a ChartSpec signature (series set + scale type + theme); data updates go
// through setData, and a changed signature means destroy + recreate (done by the view).

import uPlot from "uplot";
import type { ChartData, SeriesInfo } from "./chartdata";
import type { ChartSpec } from "./panels";
import type { UnrecordedSpan } from "./protocol";
import { unrecordedPlugin } from "./recording";
import { type Theme, withAlpha } from "./theme";

export function formatValue(v: number | null | undefined): string {
  if (v == null || !Number.isFinite(v)) return "–";
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}

function seriesOptions(s: SeriesInfo, theme: Theme, runLabel: (id: number) => string, chart: Chart): uPlot.Series {
  const color = theme.palette[s.line % theme.palette.length];
  const value = (_u: uPlot, v: number | null): string => formatValue(v);
  switch (s.role) {
    case "line":
      return { label: s.key, stroke: color, width: 1.75, value, spanGaps: false };
    case "lo":
    case "hi":
      // band edges: invisible lines; the band fill is drawn between them (see bands below)
      return { label: `${s.key} ${s.role}`, stroke: withAlpha(color, 0.3), width: 0, points: { show: false }, class: "mw-aux", value };
    case "old":
      return {
        label: `${s.key} (${runLabel(s.run)})`,
        stroke: withAlpha(color, 0.35),
        width: 1,
        points: { show: false },
        class: "mw-aux",
        value,
      };
    case "prov":
      return {
        label: `${s.key} (running)`,
        stroke: color,
        width: 1.25,
        dash: [4, 3],
        class: "mw-aux",
        value,
        points: {
          show: true,
          size: 7,
          width: 1.5,
          stroke: color,
          fill: theme.bg,
          // only the provisional point itself, drawn open
          filter: () => (chart.provIndex >= 0 ? [chart.provIndex] : null),
        },
      };
  }
}

const EPOCH_INCRS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1e3, 2e3, 2.5e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6];

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

export interface ChartSize {
  width: number;
  height: number;
}

export class Chart {
  readonly u: uPlot;
  provIndex = -1;
  /** Epoch spans drawn as "not recorded" (js/recording.ts); set before setData. */
  unrecorded: UnrecordedSpan[] = [];

  constructor(
    target: HTMLElement,
    spec: ChartSpec,
    data: ChartData,
    theme: Theme,
    size: ChartSize,
    runLabel: (id: number) => string,
  ) {
    const axis = (): uPlot.Axis => ({
      stroke: theme.muted,
      grid: { stroke: theme.grid, width: 1 },
      ticks: { stroke: theme.grid, width: 1 },
      font: "11px sans-serif",
    });
    const yScale: uPlot.Scale =
      spec.kind === "probability"
        ? { auto: false, range: [0, 1] }
        : spec.ylim
          ? { auto: false, range: spec.ylim }
          : spec.logy
          ? { distr: 3, log: 10 }
          : {};
    const bands: uPlot.Band[] = [];
    data.series.forEach((s, i) => {
      if (s.role === "hi") {
        const lo = data.series.findIndex((t) => t.role === "lo" && t.line === s.line);
        const color = theme.palette[s.line % theme.palette.length];
        if (lo >= 0) bands.push({ series: [i + 1, lo + 1], fill: withAlpha(color, 0.18) });
      }
    });
    const opts: uPlot.Options = {
      width: size.width,
      height: size.height,
      legend: { show: true, live: true },
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: false }, y: yScale },
      // epochs are whole numbers: no 2.5-epoch ticks (intra-epoch points still sit between them)
      axes: [{ ...axis(), incrs: EPOCH_INCRS }, { ...axis(), size: Y_AXIS_PX }],
      series: [{ label: "epoch", value: (_u, v) => formatValue(v) }, ...data.series.map((s) => seriesOptions(s, theme, runLabel, this))],
      bands,
      plugins: [unrecordedPlugin(() => this.unrecorded, theme.muted)],
    };
    this.provIndex = data.provIndex;
    // uPlot normally draws in a microtask after the call; drawing inside batch() happens now, so the view
    // can keep its per-frame time budget (and no second, deferred draw is queued).
    this.u = new uPlot(opts, toAligned(data), (u, init) => {
      target.appendChild(u.root);
      u.batch(() => init());
    });
  }

  /** New data (and optionally a new size), drawn synchronously; scales are reset to the new data. */
  setData(data: ChartData, size?: ChartSize): void {
    this.provIndex = data.provIndex;
    const u = this.u;
    u.batch(() => {
      if (size && (u.width !== size.width || u.height !== size.height)) u.setSize(size);
      u.setData(toAligned(data), true);
    });
  }

  setSize(size: ChartSize): void {
    this.u.batch(() => this.u.setSize(size));
  }

  destroy(): void {
    this.u.destroy();
  }
}

function toAligned(d: ChartData): uPlot.AlignedData {
  return [d.x, ...d.ys] as unknown as uPlot.AlignedData;
}
