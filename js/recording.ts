// "Not recorded": epochs in which the kernel stopped measuring a module on purpose (inspector.stop_recording,
// docs/protocol.md), drawn as a hatched band over the gap so it never reads as a failure or as zero.

import type uPlot from "uplot";
import type { ChartSpec } from "./panels";
import type { UnrecordedSpan } from "./protocol";
import type { Store } from "./store";

/** Spans of the chart's group in the current run (big panels are not per module: none). */
export function unrecordedFor(store: Store, spec: ChartSpec): UnrecordedSpan[] {
  if (spec.big) return [];
  return store.current?.unrecorded.get(spec.group) ?? [];
}

/** Pixel ranges [x0, x1) of the spans on a chart whose x scale spans [xmin, xmax] epochs. */
export function spanPixels(
  spans: readonly UnrecordedSpan[],
  toPx: (epoch: number) => number,
  xmax: number,
): [number, number][] {
  const out: [number, number][] = [];
  for (const [first, last] of spans) {
    const end = last ?? Math.max(first, xmax);
    if (end < first) continue;
    out.push([toPx(first - 0.5), toPx(end + 0.5)]);
  }
  return out;
}

/** A uPlot plugin drawing `spans()` as hatched bands labelled "not recorded". */
export function unrecordedPlugin(spans: () => readonly UnrecordedSpan[], color: string): uPlot.Plugin {
  return {
    hooks: {
      drawAxes: (u: uPlot) => {
        const list = spans();
        if (!list.length) return;
        const { ctx, bbox } = u;
        const xmax = u.scales.x.max ?? 0;
        ctx.save();
        ctx.beginPath();
        ctx.rect(bbox.left, bbox.top, bbox.width, bbox.height);
        ctx.clip();
        for (const [a, b] of spanPixels(list, (e) => u.valToPos(e, "x", true), xmax)) {
          const x0 = Math.max(bbox.left, a);
          const x1 = Math.min(bbox.left + bbox.width, b);
          if (x1 <= x0) continue;
          ctx.fillStyle = "rgba(128,128,128,0.12)";
          ctx.fillRect(x0, bbox.top, x1 - x0, bbox.height);
          ctx.strokeStyle = "rgba(128,128,128,0.35)";
          ctx.lineWidth = 1;
          for (let x = x0 - bbox.height; x < x1; x += 8) {
            ctx.beginPath();
            ctx.moveTo(x, bbox.top + bbox.height);
            ctx.lineTo(x + bbox.height, bbox.top);
            ctx.stroke();
          }
          ctx.fillStyle = color;
          ctx.font = `${Math.round(10 * (devicePixelRatio || 1))}px sans-serif`;
          ctx.fillText("not recorded", x0 + 3, bbox.top + 12 * (devicePixelRatio || 1));
        }
        ctx.restore();
      },
    },
  };
}

/** Whether the group is stopped now (its last span is still open). */
export function isStopped(spans: readonly UnrecordedSpan[]): boolean {
  return spans.length > 0 && spans[spans.length - 1][1] === null;
}

/**
 * The small-multiple control that asks the kernel to stop / resume measuring `group` (docs/protocol.md
 * section 4, `recording`). Unlike hiding (a filter, view-only), this changes what is recorded; the kernel
 * applies it on its training thread and the resulting spans come back through the store.
 */
export function recordingToggle(send: (msg: unknown) => void, group: string): HTMLButtonElement {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "mw-rec";
  b.dataset.group = group;
  syncRecordingToggle(b, []);
  b.addEventListener("click", () => {
    const stopped = b.dataset.stopped === "true";
    send({ type: "recording", module: group, on: stopped });
    b.dataset.pending = "true";
    b.textContent = "…";
  });
  return b;
}

/** Show the state the kernel reported (called when the chart is drawn). */
export function syncRecordingToggle(b: HTMLElement, spans: readonly UnrecordedSpan[]): void {
  const stopped = isStopped(spans);
  const was = b.dataset.stopped;
  b.dataset.stopped = String(stopped);
  if (b.dataset.pending === "true" && was === String(stopped)) return; // the request is not answered yet
  delete b.dataset.pending;
  // WGL4 glyphs only (every desktop font has them): "⏸" drew an empty box where no emoji font is installed
  b.textContent = stopped ? "● record" : "■";
  b.title = stopped
    ? "Not recorded since the epoch marked: resume measuring this module (from the next epoch)"
    : "Stop measuring this module (hiding it with Filters only hides it)";
}
