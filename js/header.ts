// The header of one view: the status line (run, epoch, speed, state), the problems flag (problems and notices
// counted apart; repeated reports collapse into one line each, with a count), the runs legend (one entry per
// run with its dash; clicking an earlier run hides or shows it) and the whole-record CSV download.

import { formatValue } from "./axes";
import { setShown } from "./filters";
import { dashSample, type RunStyle } from "./overview/runstyle";
import { downloadText, recordCsv } from "./overview/csv";
import type { Filters, Problem, Status } from "./protocol";
import type { Store } from "./store";
import type { XAxisMode } from "./uistate";
import { h } from "./dom";


/** How long "training" may go without a message before the status says so: the kernel may have restarted or
 * died (no event reaches an anywidget view then), or the training hangs. At least STALE_MIN_MS, and 5 epochs. */
export const STALE_MIN_MS = 60_000;

export function staleAfterMs(secPerEpoch: number | null | undefined): number {
  return Math.max(STALE_MIN_MS, 5_000 * (secPerEpoch != null && Number.isFinite(secPerEpoch) ? secPerEpoch : 0));
}

/** " · no update for 3 min" once a "training" status is older than staleAfterMs, else "". */
export function staleNote(state: string | undefined, ageMs: number, secPerEpoch: number | null | undefined): string {
  if (state !== "training" || ageMs < staleAfterMs(secPerEpoch)) return "";
  const min = Math.floor(ageMs / 60_000);
  return ` · no update for ${min >= 1 ? `${min} min` : `${Math.floor(ageMs / 1000)} s`} (kernel restarted or busy?)`;
}

/** A run's reports split by kind (a report without one is a problem, as older kernels meant), their counts (the
 * status' counts, reports repeated counting each time, when they are larger than the lists) and the flag's text:
 * "⚠ 1 problem · 2 notes", "2 notes" without the warning sign when there are only notices, "" when none. */
export function problemSummary(list: readonly Problem[], status?: Status | null): {
  problems: Problem[]; notices: Problem[]; n: { problems: number; notices: number }; flag: string;
} {
  const notices = list.filter((p) => p.kind === "notice");
  const problems = list.filter((p) => p.kind !== "notice");
  const n = { problems: Math.max(status?.problems ?? 0, problems.length), notices: Math.max(status?.notices ?? 0, notices.length) };
  const parts: string[] = [];
  if (n.problems) parts.push(`⚠ ${n.problems} problem${n.problems === 1 ? "" : "s"}`);
  if (n.notices) parts.push(`${n.notices} note${n.notices === 1 ? "" : "s"}`);
  return { problems, notices, n, flag: parts.join(" · ") };
}

export class Header {
  readonly el = h("div", "mw-header");
  readonly problemList = h("ul", "mw-problem-list");
  private status = h("div", "mw-status");
  private statusText = h("span", "mw-status-text");
  private problemsBtn = h("button", "mw-problems");
  private runs = h("div", "mw-runs");
  private csv = h("button", "mw-record-csv", "CSV");
  private xAxis = h("select", "mw-xaxis");
  private runSig = "";
  private version = -1;
  private changedAt = Date.now();
  private statusBase = ""; // the status text without its age note (tick adds that)

  constructor(
    private store: Store,
    private style: RunStyle,
    private filters: () => Filters,
    write: (f: Filters) => void,
    private x: { get: () => XAxisMode; set: (m: XAxisMode) => void },
  ) {
    for (const [v, t] of [["epoch", "x: epoch"], ["step", "x: step"], ["time", "x: wall time"]]) {
      const o = h("option", undefined, t);
      o.value = v;
      this.xAxis.appendChild(o);
    }
    this.xAxis.title = "what the charts' x axis counts";
    this.xAxis.addEventListener("change", () => this.x.set(this.xAxis.value as XAxisMode));
    this.problemsBtn.type = "button";
    this.problemsBtn.hidden = true;
    this.problemList.hidden = true;
    this.status.append(this.statusText, this.problemsBtn);
    this.csv.type = "button";
    this.csv.title = "download the whole record as CSV";
    this.runs.hidden = true;
    this.el.append(this.status, this.runs, this.xAxis, this.csv);
    this.problemsBtn.addEventListener("click", () => {
      this.problemList.hidden = !this.problemList.hidden;
    });
    this.csv.addEventListener("click", () => downloadText("monitorch-record.csv", recordCsv(this.store)));
    this.runs.addEventListener("click", (ev) => {
      const b = (ev.target as HTMLElement).closest?.("[data-run]") as HTMLElement | null;
      if (!b || b.getAttribute("data-current") === "1") return;
      const id = Number(b.getAttribute("data-run"));
      const f = this.filters();
      write(setShown(f, "hidden_runs", id, f.hidden_runs.includes(id)));
    });
  }

  render(): void {
    if (this.xAxis.value !== this.x.get()) this.xAxis.value = this.x.get();
    if (this.store.version !== this.version) {
      this.version = this.store.version;
      this.changedAt = Date.now();
    }
    this.renderStatus();
    this.renderRuns();
  }

  /** Re-word the status for its age (the view calls this every few seconds): its text only, nothing else. */
  tick(now: number = Date.now()): void {
    const s = this.store.status;
    const stale = staleNote(s?.state, now - this.changedAt, s?.sec_per_epoch);
    const text = this.statusBase + stale;
    if (this.statusText.textContent !== text) this.statusText.textContent = text;
    this.status.dataset.stale = stale ? "true" : "false";
  }

  private renderStatus(): void {
    const { store } = this;
    const s = store.status;
    const cur = store.current;
    const run = s?.run != null ? store.run(s.run) ?? cur : cur;
    const parts: string[] = [run ? run.label : "no run yet"];
    if (s?.epoch != null) parts.push(`epoch ${s.epoch}`);
    else if (run) parts.push(`epoch ${run.finalRows}`);
    if (s?.sec_per_epoch != null && Number.isFinite(s.sec_per_epoch)) parts.push(`${formatValue(s.sec_per_epoch)} s/epoch`);
    if (s?.state) parts.push(s.state === "stopped" && s.stopped_by ? `stopped (${s.stopped_by})` : s.state);
    this.statusBase = parts.join(" · ");
    this.tick();
    const st = this.status.dataset;
    st.state = s?.state ?? "idle";
    st.run = run ? String(run.id) : "";
    st.epoch = s?.epoch != null ? String(s.epoch) : run ? String(run.finalRows) : "0";
    const { problems, notices, n, flag } = problemSummary(run?.problems ?? [], s);
    st.problems = String(n.problems);
    st.notices = String(n.notices);
    const btn = this.problemsBtn;
    btn.hidden = !flag;
    btn.textContent = flag;
    btn.dataset.kind = n.problems ? "problems" : "notices";
    const line = (p: Problem) => `${p.lens}: ${p.message}${p.count > 1 ? ` (×${p.count})` : ""}`;
    btn.title = [problems.length ? ["problems:", ...problems.map(line)] : [],
                 notices.length ? ["notes:", ...notices.map(line)] : []].map((g) => g.join("\n")).filter(Boolean).join("\n\n");
    // problems first, then notices: each item says its kind (data-kind; a notice is drawn muted, without ⚠)
    this.problemList.replaceChildren(...[...problems, ...notices].map((p) => {
      const li = h("li", p.kind === "notice" ? "mw-note" : "mw-problem", line(p));
      li.dataset.kind = p.kind === "notice" ? "notice" : "warning";
      return li;
    }));
    if (!flag) this.problemList.hidden = true;
  }

  /** One entry per run once there are two or more. */
  private renderRuns(): void {
    const { store } = this;
    const hidden = this.filters().hidden_runs;
    const sig = JSON.stringify([store.runs.map((r) => [r.id, r.label]), hidden]);
    if (sig === this.runSig) return;
    this.runSig = sig;
    this.runs.hidden = store.runs.length < 2;
    const cur = store.current;
    this.runs.replaceChildren(...store.runs.map((r) => {
      const b = h("button", "mw-run");
      b.type = "button";
      b.setAttribute("data-run", String(r.id));
      const isCur = r === cur;
      b.setAttribute("data-current", isCur ? "1" : "0");
      b.setAttribute("data-hidden", hidden.includes(r.id) ? "1" : "0");
      b.title = isCur ? "the current run (drawn solid)" : "click to hide or show this run";
      b.append(dashSample(this.style.dash(r.id), "currentColor"), h("span", "mw-run-label", r.label));
      return b;
    }));
  }
}
