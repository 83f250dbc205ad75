// Which layers are worst: pure functions over the store (no DOM), for the "worst layers" summary, the
// heatmap's colour key and the warning panels' hover (which layer holds each worst value at each epoch).
//
// A per-layer panel is a small (non-big) panel: one group per module or parameter. Its warning panel is the
// big probability panel of the same lens whose keys are "worst <key>" (monitorch's naming, lens/base.py).

import type { Panel } from "../protocol";
import type { RunData } from "../store";

export interface LayerValue {
  layer: string;
  value: number;
}

/** What the summary ranks in a per-layer panel: key and direction (the worst end). */
export interface Ranking {
  tag: string;
  key: string;
  worst: "max" | "min";
  label: string;
}

/** Column index of (panel, group, key) line columns in one run: tag -> key -> group -> column. */
export function lineColumns(run: RunData): Map<string, Map<string, Map<string, number>>> {
  const out = new Map<string, Map<string, Map<string, number>>>();
  for (const c of run.columns) {
    if (!c || c.role !== "line") continue;
    let keys = out.get(c.panel);
    if (!keys) out.set(c.panel, (keys = new Map()));
    let groups = keys.get(c.key);
    if (!groups) keys.set(c.key, (groups = new Map()));
    groups.set(c.group, c.index);
  }
  return out;
}

/** The key a per-layer panel's heatmap colours by: the death rate where there is one, else its first key. */
export function heatKey(keys: string[]): string | null {
  if (keys.includes("death_rate")) return "death_rate";
  return keys[0] ?? null;
}

/** Rankings for the summary: death rate (highest), activation rate (lowest), norms (largest). */
export function rankings(panels: Panel[], keysOf: (tag: string) => string[]): Ranking[] {
  const out: Ranking[] = [];
  for (const p of panels) {
    if (p.big) continue;
    const keys = keysOf(p.tag);
    if (keys.includes("death_rate")) out.push({ tag: p.tag, key: "death_rate", worst: "max", label: "highest death rate" });
    if (keys.includes("activation_rate")) out.push({ tag: p.tag, key: "activation_rate", worst: "min", label: "lowest activation rate" });
    if (p.kind !== "numerical" || keys.length === 0) continue;
    // norms (of outputs, parameters, gradients, updates): the largest is the one to look at; a norm panel
    // whose keys do not say "norm" (OutputNorm's "mean") ranks its first key
    const norms = keys.filter((k) => /norm/i.test(k));
    if (norms.length === 0 && /norm/i.test(p.tag)) norms.push(keys.find((k) => /mean/i.test(k)) ?? keys[0]);
    for (const key of norms) out.push({ tag: p.tag, key, worst: "max", label: `largest ${key}` });
  }
  return out;
}

/** Whether a layer's activation and death rates are set by what the module is rather than by training, so it
 * never ranks as a "worst" layer: a dropout module's output rates are its input's scaled by (1 - p); an embedding's
 * gradient rows are zero for every token a batch lacks. The health checks skip them too
 * (record/health/rows.py `rates_by_construction`). By module type; a run without types (fed by monitorch's own
 * inspector) by the layer's name. */
export function ratesByConstruction(layer: string, moduleType: string | null | undefined): boolean {
  if (moduleType) return moduleType.includes("Dropout") || moduleType.includes("Embedding");
  const name = layer.toLowerCase();
  return name.includes("dropout") || name.includes("embed");
}

/** The layers of `groups` (layer -> column) that rank for `key` in panel `tag`: for activation and death rates
 * every layer but those whose rates are set by their kind (`ratesByConstruction`); for other keys all of them. */
export function rankedGroups(run: RunData, tag: string, key: string, groups: Map<string, number>): Map<string, number> {
  if (key !== "activation_rate" && key !== "death_rate") return groups;
  const types = new Map<string, string | null>();
  for (const c of run.columns) if (c && c.panel === tag) types.set(c.group, c.module_type);
  return new Map([...groups].filter(([layer]) => !ratesByConstruction(layer, types.get(layer))));
}

/** The last final row of `run` at which any of `cols` has a finite value, or -1. */
export function lastRowWithData(run: RunData, cols: Iterable<number>): number {
  const list = [...cols];
  for (let r = run.finalRows - 1; r >= 0; r--) {
    for (const c of list) if (Number.isFinite(run.values[c]?.[r])) return r;
  }
  return -1;
}

/** The `n` worst layers at row `row` (NaN values never rank). Ties keep first-seen order. */
export function worstAt(run: RunData, groups: Map<string, number>, row: number, worst: "max" | "min", n: number): LayerValue[] {
  const vals: LayerValue[] = [];
  for (const [layer, col] of groups) {
    const v = run.values[col]?.[row];
    if (v !== undefined && Number.isFinite(v)) vals.push({ layer, value: v });
  }
  const sign = worst === "max" ? -1 : 1;
  return vals.map((v, i) => ({ v, i })).sort((a, b) => sign * (a.v.value - b.v.value) || a.i - b.i).slice(0, n).map((x) => x.v);
}

/**
 * For the warning panel `warningTag`, a function naming the layer that holds the worst value of `key`
 * ("worst death_rate") at x value `x` of `xs` (the run's epochs, steps or times; default epochs), from the
 * per-layer panels of the same lens; null when unknown.
 */
export function worstHolder(run: RunData, warning: Panel, key: string, xs: Float64Array = run.epochs): (x: number) => string | null {
  const m = /^worst (.+)$/.exec(key);
  if (!m) return () => null;
  const base = m[1];
  const worst: "max" | "min" = /activation/.test(base) ? "min" : "max";
  const cols = lineColumns(run);
  const groups = new Map<string, number>();
  const mine = run.panels.filter((p) => !p.big && p.lens === warning.lens);
  for (const p of mine) {
    // several per-layer panels (weight / bias gradients): the panel names which one holds the value
    for (const [g, c] of cols.get(p.tag)?.get(base) ?? []) groups.set(mine.length > 1 ? `${g} (${p.tag})` : g, c);
  }
  if (groups.size === 0) return () => null;
  return (x) => {
    let row = -1;
    for (let r = run.nRows - 1; r >= 0; r--) if (xs[r] === x) { row = r; break; }
    if (row < 0) return null;
    return worstAt(run, groups, row, worst, 1)[0]?.layer ?? null;
  };
}
