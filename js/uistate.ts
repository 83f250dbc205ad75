// View state that belongs to the user's reading of one model, not to one DOM view: it survives view rebuilds
// (a re-displayed widget, a notebook re-render) and is shared by every view of the model. Kept beside the
// model's Store (one per model, see widget.ts) in a WeakMap, so the store itself stays a plain data copy.

import type { XMode } from "./chartdata";
import type { Store } from "./store";

export type SectionMode = "heatmap" | "charts";
export type XAxisMode = XMode;

export interface UiState {
  /** The Filters box is open. */
  filtersOpen: boolean;
  /** Text of the module search box. */
  search: string;
  /** Per section tag: the user's heatmap / small-multiples choice (absent: the default for its size). */
  mode: Map<string, SectionMode>;
  /** Chart ids (panels.chartId) opened from a heatmap row. */
  opened: Set<string>;
  /** Shared x range of every chart, or null (auto). Survives new ticks until reset (double click). */
  zoom: [number, number] | null;
  /** Loss smoothing weight in [0, 1) (TensorBoard's EMA with debiasing), 0 = raw. */
  smoothing: number;
  xAxis: XAxisMode;
  /** Bumped on every change, so views know to redraw. */
  version: number;
  listeners: Set<() => void>;
}

/** Record a change of `ui` and tell every view of the model. */
export function uiChanged(ui: UiState): void {
  ui.version++;
  for (const fn of [...ui.listeners]) fn();
}

const states = new WeakMap<Store, UiState>();

export function uiState(store: Store): UiState {
  let s = states.get(store);
  if (!s) {
    s = { filtersOpen: false, search: "", mode: new Map(), opened: new Set(), zoom: null, smoothing: 0, xAxis: "epoch", version: 0, listeners: new Set() };
    states.set(store, s);
  }
  return s;
}

/** More groups than this in one per-layer section: the heatmap is the default view. */
export const HEATMAP_MIN_GROUPS = 9;

export function sectionMode(ui: UiState, tag: string, groups: number): SectionMode {
  return ui.mode.get(tag) ?? (groups >= HEATMAP_MIN_GROUPS ? "heatmap" : "charts");
}
