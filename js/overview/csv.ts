// CSV downloads: one chart as drawn (x plus one column per series) and the whole record in long form
// (run, epoch, time, panel, group, key, role, value), one line per finite value. RFC 4180 quoting.

import type { ChartData } from "../chartdata";
import type { Store } from "../store";

export function csvField(v: string | number): string {
  const s = String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

const line = (fields: (string | number)[]): string => fields.map(csvField).join(",");

const num = (v: number | null | undefined): string => (v == null || !Number.isFinite(v) ? "" : String(v));

/**
 * One chart's data as CSV; `label(i)` names series i. Provisional and band-edge series are included. A
 * smoothed series (d.raw[i] set) is two columns: the record's values under its label, then the smoothed ones.
 */
export function chartCsv(d: ChartData, xLabel: string, label: (i: number) => string): string {
  const cols: { name: string; y: readonly (number | null | undefined)[] }[] = [];
  d.series.forEach((_, i) => {
    const raw = d.raw?.[i];
    if (raw) cols.push({ name: label(i), y: raw }, { name: `${label(i)} smoothed ${d.smoothing}`, y: d.ys[i] });
    else cols.push({ name: label(i), y: d.ys[i] });
  });
  const out = [line([xLabel, ...cols.map((c) => c.name)])];
  d.x.forEach((x, j) => {
    out.push([num(x), ...cols.map((c) => num(c.y[j]))].map(csvField).join(","));
  });
  return out.join("\n") + "\n";
}

export function recordCsv(store: Store): string {
  const out = [line(["run", "run_label", "epoch", "time", "provisional", "panel", "group", "key", "role", "value"])];
  for (const run of store.runs) {
    for (let r = 0; r < run.nRows; r++) {
      const prov = r === run.provisionalRow ? 1 : 0;
      for (const c of run.columns) {
        if (!c) continue;
        const v = run.values[c.index]?.[r];
        if (v === undefined || !Number.isFinite(v)) continue;
        out.push(line([run.id, run.label, num(run.epochs[r]), num(run.times[r]), prov, c.panel, c.group, c.key, c.role, String(v)]));
      }
    }
  }
  return out.join("\n") + "\n";
}

/** Offers `href` (a data: or blob: URL) as a file download. */
export function download(name: string, href: string): void {
  const a = document.createElement("a");
  a.href = href;
  a.download = name;
  a.style.display = "none";
  document.body.appendChild(a);
  a.click();
  a.remove();
}

export function downloadText(name: string, text: string, type = "text/csv"): void {
  if (typeof URL.createObjectURL !== "function") {
    download(name, `data:${type};charset=utf-8,${encodeURIComponent(text)}`);
    return;
  }
  const url = URL.createObjectURL(new Blob([text], { type }));
  download(name, url);
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** A file name from record text: letters, digits, dot, dash and underscore only. */
export function fileName(...parts: string[]): string {
  return parts.filter((p) => p !== "").join("-").replace(/[^\w.-]+/g, "_").slice(0, 120);
}
