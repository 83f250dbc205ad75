// How runs are told apart in every chart: the newest run draws solid lines, each earlier run its own dash
// pattern (line colours stay those of the series' keys, so a key keeps its colour across runs).

import type { Store } from "../store";

/** Dash patterns (uPlot / canvas setLineDash) for earlier runs, newest first. */
export const RUN_DASHES: number[][] = [[6, 3], [2, 2], [8, 3, 2, 3], [1, 3], [10, 4], [4, 2, 1, 2]];

export interface RunStyle {
  label: (id: number) => string;
  /** Dash pattern of a run's lines; [] (solid) for the current run. */
  dash: (id: number) => number[];
}

export function runStyle(store: Store): RunStyle {
  return {
    label: (id) => store.run(id)?.label ?? `run ${id}`,
    dash: (id) => {
      const i = store.runs.findIndex((r) => r.id === id);
      const back = store.runs.length - 1 - i; // 0 = current
      return i < 0 || back === 0 ? [] : RUN_DASHES[(back - 1) % RUN_DASHES.length];
    },
  };
}

/** An inline SVG line sample of a run's dash, for legends (built with DOM calls: no markup parsing). */
export function dashSample(dash: number[], color: string): SVGSVGElement {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", "28");
  svg.setAttribute("height", "8");
  svg.setAttribute("class", "mw-dash");
  const line = document.createElementNS(ns, "line");
  for (const [k, v] of [["x1", "1"], ["y1", "4"], ["x2", "27"], ["y2", "4"], ["stroke", color], ["stroke-width", "2"]]) line.setAttribute(k, v);
  if (dash.length) line.setAttribute("stroke-dasharray", dash.join(" "));
  svg.appendChild(line);
  return svg;
}
