// @vitest-environment happy-dom
// The status line's state: a training cell that ended by raising reads "stopped (<exception>)", not "done".
import { describe, expect, it, vi } from "vitest";

vi.mock("uplot", async () => ({ default: (await import("./fakes")).FakePlot }));
vi.mock("../css", () => ({ default: ".mw-root{}" }));

import { Store } from "../store";
import { mountView } from "../view";
import { FakeModel } from "./fakes";
import { column, delta, history, panel, snapRun, status } from "./helpers";

const LOSS = panel("Loss", { big: true });
const model = (st: ReturnType<typeof status>) => new FakeModel({ filters: {},
  history: history(1, [snapRun(0, "run 1: MLP", [LOSS], [column(0, LOSS.tag, LOSS.tag, "train_loss mean")], [1, 2], [[1], [0.5]])], st) });

function statusText(st: ReturnType<typeof status>): string {
  const host = document.createElement("div");
  document.body.appendChild(host);
  const m = model(st);
  const store = new Store();
  store.applyHistory(m.get("history") as never);
  const cleanup = mountView(m as never, store, host);
  const text = host.querySelector(".mw-status-text")?.textContent ?? "";
  const state = (host.querySelector(".mw-status") as HTMLElement).dataset.state;
  cleanup();
  host.remove();
  return `${text} [${state}]`;
}

describe("status line", () => {
  it("says how the training cell ended", () => {
    expect(statusText(status({ run: 0, epoch: 2, state: "done" }))).toBe("run 1: MLP · epoch 2 · done [done]");
    expect(statusText(status({ run: 0, epoch: 2, state: "stopped", stopped_by: "KeyboardInterrupt" })))
      .toBe("run 1: MLP · epoch 2 · stopped (KeyboardInterrupt) [stopped]");
    expect(statusText(status({ run: 0, epoch: 2, state: "stopped" }))).toBe("run 1: MLP · epoch 2 · stopped [stopped]");
  });
});

import { staleAfterMs, staleNote } from "../header";

describe("a training status that has gone quiet", () => {
  it("says so after a minute, or five epochs when epochs are slower (a restarted kernel sends no event)", () => {
    expect(staleAfterMs(null)).toBe(60_000);
    expect(staleAfterMs(30)).toBe(150_000); // 5 epochs of 30 s
    expect(staleNote("training", 59_000, 0.1)).toBe("");
    expect(staleNote("training", 61_000, 0.1)).toBe(" · no update for 1 min (kernel restarted or busy?)");
    expect(staleNote("training", 149_000, 30)).toBe("");
    expect(staleNote("training", 185_000, 30)).toBe(" · no update for 3 min (kernel restarted or busy?)");
    expect(staleNote("done", 10 * 60_000, 0.1)).toBe(""); // only "training" can be stale
  });

  it("the mounted view's status line picks it up on its timer, and a new message clears it", () => {
    vi.useFakeTimers();
    try {
      const host = document.createElement("div");
      document.body.appendChild(host);
      const m = model(status({ run: 0, epoch: 2, state: "training", sec_per_epoch: 0.5 }));
      const store = new Store();
      store.applyHistory(m.get("history") as never);
      const cleanup = mountView(m as never, store, host);
      const text = () => host.querySelector(".mw-status-text")?.textContent ?? "";
      expect(text()).toBe("run 1: MLP · epoch 2 · 0.5 s/epoch · training");
      vi.advanceTimersByTime(65_000);
      expect(text()).toBe("run 1: MLP · epoch 2 · 0.5 s/epoch · training · no update for 1 min (kernel restarted or busy?)");
      expect((host.querySelector(".mw-status") as HTMLElement).dataset.stale).toBe("true");
      const [msg, buffers] = delta(2, { status: status({ run: 0, epoch: 3, state: "training", sec_per_epoch: 0.5 }) });
      expect(store.applyDelta(msg, buffers)).toBe(true); // the kernel speaks again
      vi.advanceTimersByTime(6_000);
      expect(text()).toBe("run 1: MLP · epoch 3 · 0.5 s/epoch · training");
      cleanup();
      host.remove();
    } finally {
      vi.useRealTimers();
    }
  });
});
