// Resynchronisation of one model's Store with the kernel (docs/protocol.md section 4).
//
// Hosts differ: marimo calls `initialize` only when the first view mounts and drops custom messages sent before
// it; others may drop messages too. The Store never applies a delta across a sequence gap (store.ts); this unit
// asks the kernel for a snapshot (`{type: "resync", seq}`) when the store goes stale, once when the model is
// wired (a view that mounts late cannot know whether its snapshot is current), and again every `retryMs` while
// still stale (the kernel answers on its training thread, at its next monitor call, or at once when idle).

import type { Store } from "./store";

export interface MessageSender {
  send(content: unknown): void;
}

export const RESYNC_RETRY_MS = 2000;
/** Retries while stale before waiting for the next delta to ask again. */
export const RESYNC_MAX_RETRIES = 10;

export class Resync {
  requests = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private retries = 0;

  constructor(
    private readonly model: MessageSender,
    private readonly store: Store,
    private readonly retryMs = RESYNC_RETRY_MS,
  ) {}

  /** The model was wired to the store: ask once whether the kernel holds more than the snapshot we started from. */
  hello(): void {
    this.request();
  }

  /** After every delta message (applied or not). */
  afterDelta(): void {
    if (this.store.stale && this.timer === null) {
      this.retries = 0;
      this.request();
    }
  }

  /** After every snapshot: a fresh one ends the staleness and the retries. */
  afterHistory(): void {
    if (!this.store.stale) this.cancel();
  }

  private request(): void {
    try {
      this.model.send({ type: "resync", seq: this.store.seq });
      this.requests++;
    } catch {
      // the comm is gone: nothing to resynchronise with
    }
    if (this.store.stale && this.retries < RESYNC_MAX_RETRIES && this.timer === null) {
      this.timer = setTimeout(() => {
        this.timer = null;
        if (!this.store.stale) return;
        this.retries++;
        this.request();
      }, this.retryMs);
    }
  }

  cancel(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}
