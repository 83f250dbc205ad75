// Include/exclude filters (docs/protocol.md section 3). Pure functions: the view applies them at once, and
// writes the result to the `filters` trait so the kernel (when free) and every other view follow.

import type { Column, Filters } from "./protocol";

export function emptyFilters(): Filters {
  return { hidden_modules: [], hidden_types: [], hidden_panels: [], hidden_runs: [], logy: {} };
}

const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x) => typeof x === "string") : []);
const ints = (v: unknown): number[] => (Array.isArray(v) ? v.filter((x) => Number.isInteger(x)) : []);

/** Accepts whatever is in the trait (possibly partial or from an older version) and returns a full Filters. */
export function normalizeFilters(f: unknown): Filters {
  const o = (f && typeof f === "object" ? f : {}) as Record<string, unknown>;
  const logy: Record<string, boolean> = {};
  if (o.logy && typeof o.logy === "object") {
    for (const [k, v] of Object.entries(o.logy as Record<string, unknown>)) if (typeof v === "boolean") logy[k] = v;
  }
  return {
    hidden_modules: strings(o.hidden_modules),
    hidden_types: strings(o.hidden_types),
    hidden_panels: strings(o.hidden_panels),
    hidden_runs: ints(o.hidden_runs),
    logy,
  };
}

type ListKey = "hidden_modules" | "hidden_types" | "hidden_panels" | "hidden_runs";

/** A new Filters with `value` shown (removed from the hidden list) or hidden (added). */
export function setShown<K extends ListKey>(f: Filters, key: K, value: Filters[K][number], shown: boolean): Filters {
  const list = (f[key] as (string | number)[]).filter((x) => x !== value);
  if (!shown) list.push(value);
  return { ...f, [key]: list };
}

export function setLogy(f: Filters, panel: string, logy: boolean): Filters {
  return { ...f, logy: { ...f.logy, [panel]: logy } };
}

export const panelShown = (f: Filters, tag: string): boolean => !f.hidden_panels.includes(tag);
export const runShown = (f: Filters, id: number): boolean => !f.hidden_runs.includes(id);
export const moduleShown = (f: Filters, name: string): boolean => !f.hidden_modules.includes(name);
export const typeShown = (f: Filters, type: string | null): boolean => type === null || !f.hidden_types.includes(type);

/**
 * Whether a small-multiple group (one module) is shown: its name is not hidden and its module type is not
 * hidden. Big panels' groups are the panel tag itself and are governed by the panel filter only.
 */
export function groupShown(f: Filters, group: string, moduleType: string | null): boolean {
  return moduleShown(f, group) && typeShown(f, moduleType);
}

/** Effective y-scale of a panel: the user's choice if any, else the record's default. */
export function logyOf(f: Filters, tag: string, defaultLogy: boolean): boolean {
  return f.logy[tag] ?? defaultLogy;
}

export function sameFilters(a: Filters, b: Filters): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export function columnShown(f: Filters, c: Column, big: boolean): boolean {
  if (!panelShown(f, c.panel)) return false;
  return big || groupShown(f, c.group, c.module_type);
}

/**
 * The filters that show chart `spec` (a link named it while it was hidden), and what they show again, in
 * words. A hidden panel is shown; a module hidden by name is shown; a module hidden by its type shows its
 * type again and hides the type's other modules by name instead (`modules`: every module with its type), so
 * only the linked one appears. Nothing changes (shown: []) when the chart is not hidden by the filters.
 */
export function revealFilters(f: Filters, spec: { panel: string; group: string; moduleType: string | null; big: boolean } | { panel: string },
  modules: readonly { name: string; type: string | null }[]): { filters: Filters; shown: string[] } {
  let out = f;
  const shown: string[] = [];
  if (!panelShown(out, spec.panel)) {
    out = setShown(out, "hidden_panels", spec.panel, true);
    shown.push(`panel '${spec.panel}'`);
  }
  if (!("group" in spec) || spec.big) return { filters: out, shown };
  if (!moduleShown(out, spec.group)) {
    out = setShown(out, "hidden_modules", spec.group, true);
    shown.push(`module '${spec.group}'`);
  }
  const type = spec.moduleType;
  if (type !== null && !typeShown(out, type)) {
    out = setShown(out, "hidden_types", type, true);
    const others = modules.filter((m) => m.type === type && m.name !== spec.group && moduleShown(out, m.name)).map((m) => m.name);
    out = { ...out, hidden_modules: [...out.hidden_modules, ...others] };
    shown.push(`module type '${type}' (its other modules stay hidden)`);
  }
  return { filters: out, shown };
}
