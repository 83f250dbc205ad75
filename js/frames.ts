// Redraw scheduling of one view: changes are coalesced into one flush per animation frame. A flush draws the
// visible charts whose data changed, for at most FRAME_BUDGET_MS, then continues in the next frame. A flush
// that took T ms is followed by at least T ms without one, so the page stays responsive.

/**
 * Drawing time per animation frame; what is left is drawn in the next frame (at least one chart per frame).
 * It counts the script time of the frame plus, per chart drawn, an estimate of the time the browser then
 * spends putting that canvas on screen (rasterizing the recorded canvas commands: in software rendering it
 * exceeds the script time). The estimate is measured: a message posted at the end of a frame's drawing
 * runs once the browser has finished that frame.
 */
export const FRAME_BUDGET_MS = 8;
/** Starting estimate of the per-chart rendering cost after the script (ms), before one was measured. */
const RASTER_GUESS_MS = 0.5;

export const now = (): number => (typeof performance !== "undefined" ? performance.now() : Date.now());

export class Frames {
  /** Measured browser cost per chart drawn (ms). */
  rasterMs = RASTER_GUESS_MS;
  private pending = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private raf: number | null = null;
  private nextAllowed = 0;
  private probe: MessageChannel | null = null;
  private probeFor: { drew: number; t: number } | null = null;
  private disposed = false;

  /** `draw(t0, budget)` returns how many charts it drew. */
  constructor(private draw: (t0: number, budget: number) => number) {}

  schedule(): void {
    if (this.disposed || this.pending) return;
    this.pending = 1;
    const wait = this.nextAllowed - now();
    if (wait > 4) {
      this.timer = setTimeout(() => this.flush(), wait);
      return;
    }
    // rAF pauses in background tabs; the timeout keeps the view current anyway (whichever fires first wins)
    if (typeof requestAnimationFrame === "function") this.raf = requestAnimationFrame((t) => this.flush(t));
    this.timer = setTimeout(() => this.flush(), 120);
  }

  private flush(fromFrame?: number): void {
    if (!this.pending || this.disposed) return;
    this.pending = 0;
    this.cancel();
    const t0 = now();
    const drew = this.draw(t0, FRAME_BUDGET_MS);
    const t1 = now();
    this.nextAllowed = t1 + (t1 - t0);
    // called by requestAnimationFrame (with a timestamp): the rest of this frame is the browser's
    if (drew > 0 && typeof fromFrame === "number") this.measureRaster(drew, t1);
  }

  private cancel(): void {
    if (this.raf !== null && typeof cancelAnimationFrame === "function") cancelAnimationFrame(this.raf);
    if (this.timer !== null) clearTimeout(this.timer);
    this.raf = null;
    this.timer = null;
  }

  /** Per-chart cost of the browser's part of a frame (style, layout, paint, canvas raster). */
  private measureRaster(drew: number, t: number): void {
    if (typeof MessageChannel !== "function" || this.probeFor) return;
    if (!this.probe) {
      this.probe = new MessageChannel();
      this.probe.port1.onmessage = () => {
        const p = this.probeFor;
        this.probeFor = null;
        if (!p || this.disposed) return;
        const per = Math.max(0, now() - p.t - 0.5) / p.drew;
        this.rasterMs = Math.min(20, 0.6 * this.rasterMs + 0.4 * per);
      };
    }
    this.probeFor = { drew, t };
    this.probe.port2.postMessage(0);
  }

  dispose(): void {
    this.disposed = true;
    this.cancel();
    if (this.probe) this.probe.port1.onmessage = null;
    this.probe?.port1.close();
  }
}
