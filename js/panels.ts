// The panel model: which charts exist and which series each one draws, derived from the store and the
// filters. It is pure (no DOM), so the view only reconciles DOM nodes against its output.
//
// Layout rules (as in monitorch's matplotlib figure):
//  - a big panel is one chart holding every line of the panel (its columns' group is the panel tag);
//  - a small panel is a section with one chart per group (module name), in first-seen order;
//  - lo/hi columns whose band_of names a line of the same chart become that line's filled band;
//  - the newest run's panels, groups and keys come first; the shown older runs add their faint lines, matched
//    by (panel, group, key), and the panels, groups and keys the newest run lacks (a lens it does not have, a
//    layer it dropped): no run's data is out of reach because a later run lacks it (trial r11).

import { groupShown, logyOf, panelShown, runShown } from "./filters";
import type { Filters, Panel, PanelKind } from "./protocol";
import type { RunData, Store } from "./store";

export interface SeriesSpec {
  key: string;
  run: number;
  current: boolean;
  col: number;
  /** Band columns (current run only). */
  lo?: number;
  hi?: number;
}

export interface ChartSpec {
  id: string;
  panel: string;
  group: string;
  kind: PanelKind;
  big: boolean;
  logy: boolean;
  canLog: boolean;
  /** Fixed y range from the panel (correlations: [-1, 1]), else null. */
  ylim: [number, number] | null;
  moduleType: string | null;
  series: SeriesSpec[];
  hidden: boolean;
}

export interface SectionSpec {
  tag: string;
  kind: PanelKind;
  big: boolean;
  lens: string;
  logy: boolean;
  canLog: boolean;
  hidden: boolean;
  charts: ChartSpec[];
}

export interface Layout {
  big: SectionSpec[];
  small: SectionSpec[];
  modules: { name: string; type: string | null }[];
  types: string[];
  panels: Panel[];
  oldRuns: { id: number; label: string }[];
}

export const chartId = (panel: string, group: string): string => `${panel}\u0000${group}`;

interface GroupCols {
  group: string;
  moduleType: string | null;
  lines: Map<string, number>;
  lo: Map<string, number>;
  hi: Map<string, number>;
}

/** Columns of a run grouped by panel then group, preserving first-seen order. */
function groupColumns(run: RunData): Map<string, Map<string, GroupCols>> {
  const out = new Map<string, Map<string, GroupCols>>();
  for (const c of run.columns) {
    if (!c) continue;
    let groups = out.get(c.panel);
    if (!groups) out.set(c.panel, (groups = new Map()));
    let g = groups.get(c.group);
    if (!g) {
      g = { group: c.group, moduleType: c.module_type, lines: new Map(), lo: new Map(), hi: new Map() };
      groups.set(c.group, g);
    }
    if (g.moduleType === null && c.module_type !== null) g.moduleType = c.module_type;
    if (c.role === "line") g.lines.set(c.key, c.index);
    else if (c.band_of !== null) (c.role === "lo" ? g.lo : g.hi).set(c.band_of, c.index);
  }
  return out;
}

export function buildLayout(store: Store, filters: Filters): Layout {
  const cur = store.current;
  const layout: Layout = { big: [], small: [], modules: [], types: [], panels: [], oldRuns: [] };
  if (!cur) return layout;
  layout.oldRuns = store.runs.filter((r) => r !== cur).map((r) => ({ id: r.id, label: r.label }));
  const old = store.runs.filter((r) => r !== cur && runShown(filters, r.id));
  const curCols = groupColumns(cur);
  const oldCols = old.map((r) => ({ run: r, cols: groupColumns(r) }));
  const seenModules = new Set<string>();
  const seenTypes = new Set<string>();
  const panels = [...cur.panels];
  const tags = new Set(panels.map((p) => p.tag));
  for (const r of old) for (const p of r.panels) if (!tags.has(p.tag)) { tags.add(p.tag); panels.push(p); }
  layout.panels = panels.map((p) => ({ ...p }));

  for (const p of panels) {
    const ylim = p.ylim ?? null;
    const canLog = p.kind !== "probability" && ylim === null;
    const section: SectionSpec = {
      tag: p.tag,
      kind: p.kind,
      big: p.big,
      lens: p.lens,
      logy: canLog && logyOf(filters, p.tag, p.logy),
      canLog,
      hidden: !panelShown(filters, p.tag),
      charts: [],
    };
    // the groups of every shown run, the newest run's first: [its columns (if it has the group), any run's]
    const groups = new Map<string, [GroupCols | undefined, GroupCols]>();
    for (const g of curCols.get(p.tag)?.values() ?? []) groups.set(g.group, [g, g]);
    for (const { cols } of oldCols) {
      for (const g of cols.get(p.tag)?.values() ?? []) if (!groups.has(g.group)) groups.set(g.group, [undefined, g]);
    }
    for (const [group, [g, any]] of groups) {
      const moduleType = g?.moduleType ?? any.moduleType;
      if (!p.big && !seenModules.has(group)) {
        seenModules.add(group);
        layout.modules.push({ name: group, type: moduleType });
      }
      if (!p.big && moduleType !== null) seenTypes.add(moduleType);
      const series: SeriesSpec[] = [];
      const keys = [...(g?.lines.keys() ?? [])];
      for (const [key, col] of g?.lines ?? []) {
        const s: SeriesSpec = { key, run: cur.id, current: true, col };
        const lo = g!.lo.get(key);
        const hi = g!.hi.get(key);
        if (lo !== undefined && hi !== undefined) {
          s.lo = lo;
          s.hi = hi;
        }
        series.push(s);
      }
      for (const { cols } of oldCols) {
        for (const key of cols.get(p.tag)?.get(group)?.lines.keys() ?? []) if (!keys.includes(key)) keys.push(key);
      }
      for (const { run, cols } of oldCols) {
        const og = cols.get(p.tag)?.get(group);
        if (!og) continue;
        for (const key of keys) {
          const col = og.lines.get(key);
          if (col !== undefined) series.push({ key, run: run.id, current: false, col });
        }
      }
      section.charts.push({
        id: chartId(p.tag, group),
        panel: p.tag,
        group,
        kind: p.kind,
        big: p.big,
        logy: section.logy,
        canLog,
        ylim,
        moduleType,
        series,
        hidden: section.hidden || (!p.big && !groupShown(filters, group, moduleType)),
      });
    }
    (p.big ? layout.big : layout.small).push(section);
  }
  layout.types = [...seenTypes];
  return layout;
}

/** A string that changes whenever a chart must be rebuilt (series set, scale type), not when data changes. */
export function chartSignature(c: ChartSpec): string {
  return JSON.stringify([c.kind, c.logy, c.ylim, c.series.map((s) => [s.key, s.run, s.col, s.lo ?? -1, s.hi ?? -1])]);
}
