// A view whose element left the page (JupyterLab keeps the old view of an output replaced by update_display
// alive) draws nothing; after PARK_AFTER_MS it is parked (its uPlots destroyed, its observer stopped). If the
// element comes back (a windowed notebook re-attaches cells), it is drawn again.

import { now } from "./frames";

/** A view whose element left the page is parked after this long. */
export const PARK_AFTER_MS = 1000;

export class Parking {
  parked = false;
  private everConnected: boolean;
  private detachedAt: number | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(private el: HTMLElement, private onPark: () => void) {
    this.everConnected = el.isConnected;
  }

  /** Whether the view is off the page (and parks it once it has been for PARK_AFTER_MS). */
  detached(): boolean {
    if (this.el.isConnected) {
      this.everConnected = true;
      this.detachedAt = null;
      this.clear();
      return false;
    }
    if (!this.everConnected) return false; // not yet placed in the page: build it, draw what we can
    if (this.detachedAt === null) {
      this.detachedAt = now();
      this.timer = setTimeout(() => {
        this.timer = null;
        if (!this.el.isConnected) this.park();
      }, PARK_AFTER_MS);
    } else if (now() - this.detachedAt >= PARK_AFTER_MS) this.park();
    return true;
  }

  private park(): void {
    if (this.parked) return;
    this.parked = true;
    this.onPark();
  }

  clear(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}
