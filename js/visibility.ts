// Which chart containers of a view are on screen (or close to it).
//
// An IntersectionObserver reports changes asynchronously (after the next frame's layout), so until it has
// reported on an element its state is "unknown"; the view asks for a one-off geometric check of such
// elements (one layout, then getBoundingClientRect each) when it needs an answer now: at the first render,
// and when a chart is added or un-hidden.
//
// The observer's root is the nearest scrolling ancestor of the view (JupyterLab's notebook scroller), so
// that the margin applies inside it; without one, the viewport. Where IntersectionObserver does not exist,
// everything counts as visible (every chart is drawn, as without culling).

export const MARGIN_PX = 200;

export type VisState = boolean | undefined;

/** Nearest ancestor of `el` that scrolls vertically, or null (the viewport). */
export function scrollParent(el: Element): Element | null {
  for (let p = el.parentElement; p && p !== document.body && p !== document.documentElement; p = p.parentElement) {
    let oy = "";
    try {
      oy = getComputedStyle(p).overflowY;
    } catch {
      oy = "";
    }
    if (oy === "auto" || oy === "scroll" || oy === "overlay") return p;
  }
  return null;
}

interface Rect {
  top: number;
  bottom: number;
  left: number;
  right: number;
}

export class Visibility {
  readonly supported: boolean;
  private io: IntersectionObserver | null = null;
  private root: Element | null = null;
  private state = new Map<Element, boolean>();
  private observed = new Set<Element>();

  /** `onShown` is called (from the observer's callback) when an element becomes visible. */
  constructor(private readonly onShown: () => void, private readonly margin = MARGIN_PX) {
    this.supported = typeof IntersectionObserver === "function";
  }

  get started(): boolean {
    return this.io !== null;
  }

  /** Start observing, with the scroller around `anchor` as the root (call once `anchor` is in the page). */
  start(anchor: Element): void {
    if (!this.supported || this.io) return;
    this.root = scrollParent(anchor);
    this.io = new IntersectionObserver((entries) => this.report(entries), {
      root: this.root,
      rootMargin: `${this.margin}px`,
    });
    for (const el of this.observed) this.io.observe(el);
  }

  /** Stop observing; every state becomes unknown. Elements stay registered for the next start(). */
  stop(): void {
    this.io?.disconnect();
    this.io = null;
    this.root = null;
    this.state.clear();
  }

  observe(el: Element): void {
    if (this.observed.has(el)) return;
    this.observed.add(el);
    this.io?.observe(el);
  }

  unobserve(el: Element): void {
    if (!this.observed.delete(el)) return;
    this.io?.unobserve(el);
    this.state.delete(el);
  }

  /** true / false, or undefined while unknown (neither reported nor measured). */
  get(el: Element): VisState {
    if (!this.supported) return true;
    return this.state.get(el);
  }

  /** Forget what is known about `el` (its next answer comes from measure() or the observer). */
  forget(el: Element): void {
    this.state.delete(el);
  }

  /** Geometric check now: one layout, then one rectangle per element (only where the answer is needed). */
  measure(els: Element[]): void {
    if (!this.supported || els.length === 0) return;
    const r = this.rootRect();
    const m = this.margin;
    for (const el of els) {
      const b = el.getBoundingClientRect();
      // display:none (or detached) elements have an empty box: not visible
      const laidOut = b.width > 0 || b.height > 0 || el.getClientRects().length > 0;
      const vis = laidOut && b.bottom >= r.top - m && b.top <= r.bottom + m && b.right >= r.left - m && b.left <= r.right + m;
      this.state.set(el, vis);
    }
  }

  private rootRect(): Rect {
    if (this.root && this.root.isConnected) {
      const b = this.root.getBoundingClientRect();
      return { top: b.top, bottom: b.bottom, left: b.left, right: b.right };
    }
    const w = window.innerWidth || document.documentElement.clientWidth || 0;
    const h = window.innerHeight || document.documentElement.clientHeight || 0;
    return { top: 0, bottom: h, left: 0, right: w };
  }

  private report(entries: IntersectionObserverEntry[]): void {
    let shown = false;
    for (const e of entries) {
      if (!this.observed.has(e.target)) continue;
      const was = this.state.get(e.target);
      this.state.set(e.target, e.isIntersecting);
      if (e.isIntersecting && was !== true) shown = true;
    }
    if (shown) this.onShown();
  }
}
