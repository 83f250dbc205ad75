// The overview's top slot: health-check findings (issue 16, js/protocol.ts Finding) and the "worst layers"
// summary. Both name layers as DOM text and link to the chart or heatmap row they are about through
// `open(tag, layer)`. Record text is written with textContent only.

import { formatValue } from "../axes";
import type { Finding } from "../protocol";
import type { Store } from "../store";
import { lastRowWithData, lineColumns, rankedGroups, rankings, worstAt } from "./worst";
import { h } from "../dom";

export type OpenLink = (tag: string | null, layer: string | null) => void;

const SEVERITY_ORDER: Record<Finding["severity"], number> = { critical: 0, warning: 1, info: 2 };
// "●" (WGL4, coloured by the stylesheet) for critical: "⛔" drew an empty box where no emoji font is installed
const SEVERITY_MARK: Record<Finding["severity"], string> = { critical: "●", warning: "⚠", info: "ℹ" };
/** Layers named per ranking in the summary. */
export const WORST_N = 3;


function link(tag: string | null, layer: string | null, text: string, open: OpenLink): HTMLButtonElement {
  const b = h("button", "mw-link", text);
  b.type = "button";
  if (tag !== null) b.setAttribute("data-tag", tag);
  if (layer !== null) b.setAttribute("data-layer", layer);
  b.addEventListener("click", () => open(tag, layer));
  return b;
}

/** A layer's name as text next to a value: an nn.Sequential's bare index ("3 0.25") read like two numbers. */
export function layerText(layer: string): string {
  return /^\d+$/.test(layer) ? `layer ${layer}` : layer;
}

/** Findings listed before "show all": a deep model can have dozens, and the top slot must stay short. */
export const FINDINGS_SHOWN = 5;

/** Findings, open ones first (by severity, the newest run's first), then resolved ones (likewise); rebuilt only
 * when the list changed. The first FINDINGS_SHOWN are listed, the rest behind a "show all" toggle. */
export class FindingsList {
  readonly el = h("ul", "mw-findings");
  private sig = "";
  private expanded = false;
  private last: [Finding[], (id: number) => string, boolean] = [[], String, false];

  constructor(private open: OpenLink) {
    this.el.hidden = true;
  }

  render(findings: Finding[], runLabel: (id: number) => string, multiRun: boolean): void {
    const sig = JSON.stringify(findings) + this.expanded;
    if (sig === this.sig) return;
    this.sig = sig;
    this.last = [findings, runLabel, multiRun];
    const sorted = [...findings].sort((a, b) =>
      Number(a.until !== null) - Number(b.until !== null) || SEVERITY_ORDER[a.severity] - SEVERITY_ORDER[b.severity]
      || b.run - a.run || a.since - b.since);
    const shown = this.expanded ? sorted : sorted.slice(0, FINDINGS_SHOWN);
    const items: HTMLElement[] = shown.map((f) => this.item(f, runLabel, multiRun));
    if (sorted.length > FINDINGS_SHOWN) items.push(this.toggle(sorted));
    this.el.replaceChildren(...items);
    this.el.hidden = sorted.length === 0;
  }

  private toggle(sorted: Finding[]): HTMLLIElement {
    const li = h("li", "mw-findings-more");
    const rest = sorted.slice(FINDINGS_SHOWN);
    const open = rest.filter((f) => f.until === null).length;
    const b = h("button", "mw-link", this.expanded ? "show fewer" : `show ${rest.length} more (${open} open)`);
    b.type = "button";
    b.addEventListener("click", () => {
      this.expanded = !this.expanded;
      this.render(...this.last);
    });
    li.appendChild(b);
    return li;
  }

  private item(f: Finding, runLabel: (id: number) => string, multiRun: boolean): HTMLLIElement {
    const li = h("li", "mw-finding");
    li.setAttribute("data-id", f.id);
    li.setAttribute("data-severity", f.severity);
    li.setAttribute("data-resolved", f.until !== null ? "1" : "0");
    if (f.layer !== null) li.setAttribute("data-layer", f.layer);
    if (f.tag !== null) li.setAttribute("data-tag", f.tag);
    li.appendChild(h("span", "mw-sev", SEVERITY_MARK[f.severity] ?? "•"));
    // a layer is named as the messages name it: an nn.Sequential's bare index ("3") would read like a number
    li.appendChild(link(f.tag, f.layer, f.layer !== null ? `layer '${f.layer}'` : f.tag ?? f.check, this.open));
    const when = f.until !== null ? `since epoch ${f.since}, resolved at epoch ${f.until}` : `since epoch ${f.since}`;
    li.appendChild(h("span", "mw-when", multiRun ? `${runLabel(f.run)}, ${when}` : when));
    li.appendChild(h("span", "mw-msg", f.message));
    if (f.advice) li.appendChild(h("span", "mw-advice", f.advice));
    return li;
  }
}

/** The "worst layers" summary of the current run, at the last epoch with data. */
export class WorstSummary {
  readonly el = h("div", "mw-worst");
  private sig = "";

  constructor(private open: OpenLink) {
    this.el.hidden = true;
  }

  render(store: Store, shown: (tag: string) => boolean): void {
    const run = store.current;
    const sig = run ? `${store.version}` : "";
    if (sig === this.sig) return;
    this.sig = sig;
    const lines: HTMLElement[] = [];
    if (run) {
      const cols = lineColumns(run);
      const keysOf = (tag: string): string[] => [...(cols.get(tag)?.keys() ?? [])];
      for (const r of rankings(run.panels, keysOf)) {
        if (!shown(r.tag)) continue;
        const all = cols.get(r.tag)?.get(r.key);
        const groups = all && rankedGroups(run, r.tag, r.key, all);
        if (!groups || groups.size < 2) continue;
        const row = lastRowWithData(run, groups.values());
        if (row < 0) continue;
        // a rate at its best end (no unit silent, every unit active) points at nothing (trial r11: "highest
        // death rate: 1 0, 3 0, 5 0")
        const best = r.key === "death_rate" ? 0 : r.key === "activation_rate" ? 1 : null;
        const worst = worstAt(run, groups, row, r.worst, WORST_N).filter((w) => w.value !== best);
        if (worst.length === 0) continue;
        const line = h("div", "mw-worst-line");
        line.setAttribute("data-tag", r.tag);
        line.setAttribute("data-key", r.key);
        line.appendChild(h("span", "mw-worst-what", `${r.tag}, ${r.label} (epoch ${run.epochs[row]}):`));
        worst.forEach((w, i) => {
          const item = h("span", "mw-worst-item");
          item.setAttribute("data-rank", String(i + 1));
          item.append(link(r.tag, w.layer, layerText(w.layer), this.open), h("span", "mw-value", formatValue(w.value)));
          line.appendChild(item);
        });
        // layers tied with the last one named are counted, not hidden
        const edge = worst[worst.length - 1].value;
        const ties = worstAt(run, groups, row, r.worst, groups.size).filter((w) => w.value === edge).length
          - worst.filter((w) => w.value === edge).length;
        if (ties > 0) line.appendChild(h("span", "mw-worst-more", `and ${ties} more at ${formatValue(edge)}`));
        lines.push(line);
      }
    }
    this.el.replaceChildren(...(lines.length ? [h("div", "mw-worst-title", "Worst layers"), ...lines] : []));
    this.el.hidden = lines.length === 0;
  }
}
