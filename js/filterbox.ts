// The Filters box of one view: checkboxes for panels, module types, modules and earlier runs, and a search
// box that narrows the module list (and can show only the matching modules, or every module again). Checkboxes are rebuilt only when the set of names changes; their state is
// synced in place, so an input the user (or a test) holds stays attached. Its open state and search text live
// in the model's UiState, so a rebuilt view opens as the user left it.

import type { Filters } from "./protocol";
import type { Layout } from "./panels";
import type { UiState } from "./uistate";
import { setShown } from "./filters";
import { h } from "./dom";


/** A module's entry in the list (and what the search matches): its name and type. */
const moduleLabel = (m: { name: string; type: string | null }): string => (m.type ? `${m.name} (${m.type})` : m.name);

/** `hiddenBy`: why the item is hidden whatever its own box says (a module of a hidden type), or null. */
type Item = { attr: string; value: string; label: string; shown: () => boolean; hiddenBy?: () => string | null };

export class FilterBox {
  readonly el = h("details", "mw-filters");
  private groups = h("div", "mw-filter-groups");
  private search = h("input", "mw-search");
  /** Hide every module the search does not match, show those it does (trial r12: unticking ~65 boxes by hand). */
  private only = h("button", "mw-search-only", "show only these");
  private everyModule = h("button", "mw-search-all", "show all modules");
  /** [name, label] of the modules listed, for the buttons above. */
  private modules: [string, string][] = [];
  private inputs: { input: HTMLInputElement; shown: () => boolean; hiddenBy?: () => string | null }[] = [];
  private sig = "";

  constructor(private ui: UiState, private filters: () => Filters, write: (f: Filters) => void) {
    this.el.appendChild(h("summary", undefined, "Filters"));
    this.search.type = "search";
    this.search.placeholder = "search modules";
    this.search.value = ui.search;
    this.search.setAttribute("aria-label", "search modules");
    this.only.type = this.everyModule.type = "button";
    this.only.hidden = ui.search.trim() === "";
    this.el.append(this.search, this.only, this.everyModule, this.groups);
    this.only.addEventListener("click", () => {
      const q = this.ui.search.trim().toLowerCase();
      const hidden = this.modules.filter(([, label]) => !label.toLowerCase().includes(q)).map(([name]) => name);
      write({ ...this.filters(), hidden_modules: hidden });
    });
    this.everyModule.addEventListener("click", () => write({ ...this.filters(), hidden_modules: [] }));
    this.el.open = ui.filtersOpen;
    this.el.addEventListener("toggle", () => {
      ui.filtersOpen = this.el.open;
    });
    this.search.addEventListener("input", () => {
      ui.search = this.search.value;
      this.only.hidden = ui.search.trim() === "";
      this.applySearch();
    });
    this.groups.addEventListener("change", (ev) => {
      const t = ev.target as HTMLInputElement;
      if (!(t instanceof HTMLInputElement) || t.type !== "checkbox") return;
      const d = t.dataset;
      const f = this.filters();
      if (d.filterPanel !== undefined) write(setShown(f, "hidden_panels", d.filterPanel, t.checked));
      else if (d.filterType !== undefined) write(setShown(f, "hidden_types", d.filterType, t.checked));
      else if (d.filterModule !== undefined) write(setShown(f, "hidden_modules", d.filterModule, t.checked));
      else if (d.filterRun !== undefined) write(setShown(f, "hidden_runs", Number(d.filterRun), t.checked));
    });
  }

  render(layout: Layout): void {
    if (this.el.open !== this.ui.filtersOpen) this.el.open = this.ui.filtersOpen;
    const sig = JSON.stringify([layout.panels.map((p) => p.tag), layout.types, layout.modules.map((m) => [m.name, m.type]), layout.oldRuns]);
    if (sig !== this.sig) {
      this.sig = sig;
      this.inputs = [];
      this.modules = layout.modules.map((m) => [m.name, moduleLabel(m)]);
      const f = this.filters;
      const groups = [
        this.group("Panels", layout.panels.map((p) => ({
          attr: "data-filter-panel", value: p.tag, label: p.tag, shown: () => !f().hidden_panels.includes(p.tag),
        }))),
        this.group("Module types", layout.types.map((t) => ({
          attr: "data-filter-type", value: t, label: t, shown: () => !f().hidden_types.includes(t),
        }))),
        this.group("Modules", layout.modules.map((m) => ({
          attr: "data-filter-module", value: m.name, label: moduleLabel(m),
          shown: () => !f().hidden_modules.includes(m.name),
          // a hidden type hides its modules: their boxes are greyed out, not left looking shown (trial r6, finding 5)
          hiddenBy: () => (m.type !== null && f().hidden_types.includes(m.type) ? `hidden with its module type '${m.type}'` : null),
        }))),
        this.group("Earlier runs", layout.oldRuns.map((r) => ({
          attr: "data-filter-run", value: String(r.id), label: r.label, shown: () => !f().hidden_runs.includes(r.id),
        }))),
      ].filter((g): g is HTMLElement => g !== null);
      this.groups.replaceChildren(...groups);
      this.applySearch();
    }
    for (const { input, shown, hiddenBy } of this.inputs) {
      const why = hiddenBy?.() ?? null;
      const want = why === null && shown();
      if (input.checked !== want) input.checked = want;
      if (input.disabled !== (why !== null)) input.disabled = why !== null;
      const title = why ?? "";
      const label = input.parentElement!;
      if (label.title !== title) label.title = title;
    }
  }

  /** Hides module entries whose label does not contain the search text (case-insensitive). */
  private applySearch(): void {
    const q = this.ui.search.trim().toLowerCase();
    for (const label of this.groups.querySelectorAll<HTMLElement>("label[data-module-label]")) {
      const hide = q !== "" && !(label.textContent ?? "").toLowerCase().includes(q);
      if (label.hidden !== hide) label.hidden = hide;
    }
  }

  private group(title: string, items: Item[]): HTMLElement | null {
    if (items.length === 0) return null;
    const g = h("div", "mw-filter-group");
    g.appendChild(h("h5", undefined, title));
    for (const it of items) {
      const label = h("label");
      if (it.attr === "data-filter-module") label.setAttribute("data-module-label", "");
      const input = h("input");
      input.type = "checkbox";
      input.setAttribute(it.attr, it.value);
      label.append(input, document.createTextNode(it.label));
      g.appendChild(label);
      this.inputs.push({ input, shown: it.shown, hiddenBy: it.hiddenBy });
    }
    return g;
  }
}
