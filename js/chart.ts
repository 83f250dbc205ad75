// One uPlot chart. Created for a ChartSpec signature (series set + scale type + theme); data updates go
// through setData, and a changed signature means destroy + recreate (done by the view). Its axes: js/axes.ts.

import uPlot from "uplot";
import { type ChartSize, EPOCH_INCRS, formatValue, logAxis, tightLogRange, Y_AXIS_PX, yTitle } from "./axes";
import type { ChartData, SeriesInfo } from "./chartdata";
import type { Val } from "./downsample";
import type { RunStyle } from "./overview/runstyle";
import type { ChartSpec } from "./panels";
import type { UnrecordedSpan } from "./protocol";
import { unrecordedPlugin } from "./recording";
import { type Theme, withAlpha } from "./theme";

/** What a chart needs from its view besides its data: run styles, axis titles, shared cursor and zoom. */
export interface ChartContext {
  runs: RunStyle;
  xLabel: string;
  /** Lines join across missing points (wall-time axis) instead of showing gaps. */
  spanGaps: boolean;
  /** Charts with the same key share crosshair position (uPlot cursor sync). */
  syncKey: string;
  /** The shared x range, or null for the data's own range. */
  zoom: () => [number, number] | null;
  /** The user selected an x range (drag), or reset it (double click: null). */
  onZoom: (range: [number, number] | null) => void;
  /** Extra hover text for a series at an x value (the warning panels name the layer), or null. */
  annotate?: (key: string, x: number, run: number) => string | null;
}

/** A run's label shortened for a small multiple's one-line legend: "run 2: CNN" -> "run 2". */
export const shortRunLabel = (label: string): string => {
  const head = label.split(":")[0].trim();
  return head.length > 12 ? `${head.slice(0, 11)}…` : head;
};

function seriesOptions(s: SeriesInfo, theme: Theme, ctx: ChartContext, multiRun: boolean, chart: Chart, smoothed: boolean,
  others: number[] = []): uPlot.Series {
  const color = theme.palette[s.line % theme.palette.length];
  const value = (u: uPlot, v: number | null, si: number, idx: number | null): string => {
    const note = ctx.annotate && idx != null && v != null ? ctx.annotate(s.key, chart.x[idx], s.run) : null;
    // a smoothed line shows the record's own value beside the smoothed one
    const raw = idx != null && v != null ? chart.raw[si - 1]?.[idx] : undefined;
    let shown = raw !== undefined ? `${formatValue(v)} (raw ${formatValue(raw)})` : formatValue(v);
    // a small multiple hides the earlier runs' legend rows (a fixed three-line legend): their values follow the
    // current run's, at the hovered x, or each run's own latest value when not hovering
    for (const oi of others) {
      const at = u.cursor?.idx == null ? chart.resting[oi] : idx;
      const ov = at != null ? (u.data[oi]?.[at] as number | null | undefined) : undefined;
      shown += ` · ${shortRunLabel(ctx.runs.label(chart.runOf[oi]))} ${ov == null ? "–" : formatValue(ov)}`;
    }
    return note ? `${shown} · ${note}` : shown;
  };
  const sm = smoothed ? " (smoothed)" : "";
  switch (s.role) {
    case "line":
      return { label: (multiRun ? `${s.key} · ${ctx.runs.label(s.run)}` : s.key) + sm, stroke: color, width: 1.75, value, spanGaps: ctx.spanGaps };
    case "lo":
    case "hi":
      // band edges: invisible lines; the band fill is drawn between them (see bands below)
      return { label: `${s.key} ${s.role}`, stroke: withAlpha(color, 0.3), width: 0, points: { show: false }, class: "mw-aux", value };
    case "old":
      // an earlier run: the key's colour, the run's own dash, its own legend entry and hover value
      return {
        label: `${s.key} · ${ctx.runs.label(s.run)}${sm}`,
        stroke: withAlpha(color, 0.8),
        width: 1.25,
        dash: ctx.runs.dash(s.run),
        points: { show: false },
        class: "mw-old",
        value,
        spanGaps: ctx.spanGaps,
      };
    case "prov":
      return {
        label: `${s.key} (running${smoothed ? ", smoothed" : ""})`,
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

export class Chart {
  readonly u: uPlot;
  provIndex = -1;
  /** Epoch spans drawn as "not recorded" (js/recording.ts); set before setData. */
  unrecorded: UnrecordedSpan[] = [];
  /** x values as last drawn (for hover annotations). */
  x: number[] = [];
  /** Per series, the record's values where the drawn ones are smoothed (for hover), as last drawn. */
  raw: (Val[] | null)[] = [];
  /** Per uPlot series (x first), the index the legend shows when not hovering (restingIdxs). */
  resting: (number | null)[] = [];
  /** Per uPlot series (x first), the run it draws (fixed for the chart's series set). */
  runOf: number[] = [];
  private ctx: ChartContext;
  private theme: Theme;

  constructor(
    target: HTMLElement,
    spec: ChartSpec,
    data: ChartData,
    theme: Theme,
    size: ChartSize,
    ctx: ChartContext,
  ) {
    this.ctx = ctx;
    this.theme = theme;
    const axis = (): uPlot.Axis => ({
      stroke: theme.muted,
      grid: { stroke: theme.grid, width: 1 },
      ticks: { stroke: theme.grid, width: 1 },
      font: "11px sans-serif",
      labelFont: "11px sans-serif",
      labelSize: 14,
      labelGap: 0,
    });
    const yScale: uPlot.Scale =
      spec.kind === "probability"
        ? { auto: false, range: [0, 1] }
        : spec.ylim
          ? { auto: false, range: spec.ylim }
          : spec.logy
          ? { distr: 3, log: 10, range: (_u, min, max) => tightLogRange(min, max) }
          : {};
    const logScale = yScale.distr === 3;
    const bands: uPlot.Band[] = [];
    data.series.forEach((s, i) => {
      if (s.role === "hi") {
        const lo = data.series.findIndex((t) => t.role === "lo" && t.line === s.line);
        const color = theme.palette[s.line % theme.palette.length];
        if (lo >= 0) bands.push({ series: [i + 1, lo + 1], fill: withAlpha(color, 0.18) });
      }
    });
    // big charts name the run in every legend entry; small multiples keep one short line (the runs legend explains dashes)
    const multiRun = spec.big && data.series.some((s) => s.role === "old");
    // small multiples: a current line's legend value lists the earlier runs' values of its key (uPlot indices)
    this.runOf = [-1, ...data.series.map((s) => s.run)];
    const others = (s: SeriesInfo): number[] => spec.big || s.role !== "line" ? []
      : data.series.flatMap((o, i) => (o.role === "old" && o.key === s.key ? [i + 1] : []));
    const latest = (u: uPlot): void => {
      // not hovering: the legend shows each run's latest value
      if (u.cursor.idx == null && u.data[0].length > 0) u.setLegend({ idxs: this.resting }, false);
    };
    const opts: uPlot.Options = {
      width: size.width,
      height: size.height,
      legend: { show: true, live: true },
      cursor: { drag: { x: true, y: false }, sync: { key: ctx.syncKey, setSeries: false } },
      scales: { x: { time: false }, y: yScale },
      // epochs are whole numbers: no 2.5-epoch ticks (intra-epoch points still sit between them)
      axes: [
        { ...axis(), incrs: ctx.xLabel === "epoch" ? EPOCH_INCRS : undefined, label: spec.big ? ctx.xLabel : undefined, labelSize: spec.big ? 14 : 0 },
        { ...axis(), size: Y_AXIS_PX, label: yTitle(spec), ...(logScale ? logAxis(() => this.u?.height ?? size.height) : {}) },
      ],
      series: [{ label: ctx.xLabel, value: (_u, v) => formatValue(v) }, ...data.series.map((s) => seriesOptions(s, theme, ctx, multiRun, this,
        !!data.smoothing && s.role !== "lo" && s.role !== "hi", others(s)))],
      bands,
      plugins: [unrecordedPlugin(() => this.unrecorded, theme.muted)],
      hooks: {
        setCursor: [latest],
        // the x range shown, as a DOM hook for tests (zoom is shared by every chart)
        setScale: [
          (u, key) => {
            if (key !== "x") return;
            const { min, max } = u.scales.x;
            if (min != null && max != null) target.dataset.xRange = `${+min.toPrecision(6)},${+max.toPrecision(6)}`;
          },
        ],
        setSelect: [
          (u) => {
            if (u.select.width < 4) return;
            const a = u.posToVal(u.select.left, "x");
            const b = u.posToVal(u.select.left + u.select.width, "x");
            ctx.onZoom([Math.min(a, b), Math.max(a, b)]);
          },
        ],
        ready: [
          (u) => {
            u.over.addEventListener("dblclick", () => ctx.onZoom(null));
            latest(u);
          },
        ],
      },
    };
    this.provIndex = data.provIndex;
    this.x = data.x;
    this.raw = data.raw ?? [];
    this.resting = restingIdxs(data);
    // uPlot normally draws in a microtask after the call; drawing inside batch() happens now, so the view
    // can keep its per-frame time budget (and no second, deferred draw is queued).
    let made: uPlot | null = null;
    try {
      this.u = new uPlot(opts, toAligned(data), (u, init) => {
        made = u;
        target.appendChild(u.root);
        u.batch(() => init());
      });
    } catch (e) {
      // a half-built plot is subscribed to the view's cursor sync: take it out before reporting the error
      try {
        (made as uPlot | null)?.destroy();
      } catch {
        /* the error reported is the first one */
      }
      throw e;
    }
    const z = ctx.zoom();
    if (z !== null) this.u.batch(() => this.u.setScale("x", { min: z[0], max: z[1] }));
  }

  /** New data (and optionally a new size), drawn synchronously; scales are reset to the new data. */
  setData(data: ChartData, size?: ChartSize): void {
    this.provIndex = data.provIndex;
    this.x = data.x;
    this.raw = data.raw ?? [];
    this.resting = restingIdxs(data);
    const u = this.u;
    const zoom = this.ctx.zoom();
    u.batch(() => {
      if (size && (u.width !== size.width || u.height !== size.height)) u.setSize(size);
      u.setData(toAligned(data), zoom === null);
      if (zoom !== null) u.setScale("x", { min: zoom[0], max: zoom[1] });
      if (u.cursor.idx == null && data.x.length > 0) u.setLegend({ idxs: this.resting }, false);
    });
  }

  setSize(size: ChartSize): void {
    this.u.batch(() => this.u.setSize(size));
  }

  /**
   * The chart as a PNG data URL: `title` above the canvas (plot, axes) and below it one legend row per line
   * (its stroke and dash, its label), so that a downloaded picture says what it shows (trial r11: the lines of
   * train and validation loss could not be told apart). Band edges and the provisional point are left out.
   */
  png(title: string): string {
    const u = this.u;
    const theme = this.theme;
    const plot = u.ctx.canvas;
    const scale = plot.width / Math.max(u.width, 1); // canvas pixels per CSS pixel (devicePixelRatio)
    const rows = u.series.map((s, i) => ({ s, i })).filter(({ s, i }) => i > 0 && s.show !== false
      && s.class !== "mw-aux" && typeof s.label === "string" && !s.label.includes("(running"));
    const line = 16 * scale, top = 20 * scale;
    const out = document.createElement("canvas");
    out.width = plot.width;
    out.height = Math.round(top + plot.height + rows.length * line + 6 * scale);
    const g = out.getContext("2d");
    if (!g) return plot.toDataURL("image/png");
    g.fillStyle = theme.bg;
    g.fillRect(0, 0, out.width, out.height);
    g.fillStyle = theme.fg;
    g.font = `600 ${12 * scale}px sans-serif`;
    g.textBaseline = "middle";
    g.fillText(title, 6 * scale, top / 2, out.width - 12 * scale);
    g.drawImage(plot, 0, top);
    g.font = `${11 * scale}px sans-serif`;
    rows.forEach(({ s, i }, k) => {
      const y = top + plot.height + (k + 0.5) * line + 3 * scale;
      const stroke = typeof s.stroke === "function" ? s.stroke(u, i) : s.stroke;
      g.strokeStyle = typeof stroke === "string" ? stroke : theme.fg;
      g.lineWidth = 2 * scale;
      g.setLineDash((s.dash ?? []).map((d) => d * scale));
      g.beginPath();
      g.moveTo(8 * scale, y);
      g.lineTo(30 * scale, y);
      g.stroke();
      g.setLineDash([]);
      g.fillStyle = theme.fg;
      g.fillText(s.label as string, 36 * scale, y, out.width - 42 * scale);
    });
    return out.toDataURL("image/png");
  }

  destroy(): void {
    this.u.destroy();
  }
}

/**
 * The legend's indices when the cursor is off the plot, per uPlot series (x first): each series' last row
 * (number or gap; null when it has none), so a current run shorter than an earlier one shows its own last
 * value, not "–" at the earlier run's last epoch (trial r6, finding 4). x shows the current run's last x
 * (the latest row of its lines, provisional included), else the last x.
 */
export function restingIdxs(d: ChartData): (number | null)[] {
  const last = d.ys.map((y) => {
    for (let i = y.length - 1; i >= 0; i--) if (y[i] !== undefined) return i;
    return null;
  });
  let xi = -1;
  d.series.forEach((s, i) => {
    if ((s.role === "line" || s.role === "prov") && last[i] !== null) xi = Math.max(xi, last[i]!);
  });
  return [xi >= 0 ? xi : d.x.length - 1, ...last];
}

function toAligned(d: ChartData): uPlot.AlignedData {
  return [d.x, ...d.ys] as unknown as uPlot.AlignedData;
}
