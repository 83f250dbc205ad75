// @vitest-environment happy-dom
import { describe, expect, it } from "vitest";
import { isStopped, recordingToggle, syncRecordingToggle } from "../recording";

describe("the stop / resume recording control", () => {
  it("sends the request the kernel queues, and shows the state the kernel reports", () => {
    const sent: unknown[] = [];
    const b = recordingToggle((m) => sent.push(m), "enc.relu");
    expect(b.dataset.stopped).toBe("false");
    b.click();
    expect(sent).toEqual([{ type: "recording", module: "enc.relu", on: false }]);
    expect(b.dataset.pending).toBe("true");
    syncRecordingToggle(b, []); // a redraw before the kernel answered: still pending
    expect(b.dataset.pending).toBe("true");
    syncRecordingToggle(b, [[3, null]]); // the kernel stopped it at epoch 3
    expect(b.dataset.pending).toBeUndefined();
    expect(b.dataset.stopped).toBe("true");
    b.click();
    expect(sent.at(-1)).toEqual({ type: "recording", module: "enc.relu", on: true });
    syncRecordingToggle(b, [[3, 5]]); // resumed after epoch 5
    expect(b.dataset.stopped).toBe("false");
  });

  it("a group is stopped while its last span is open", () => {
    expect(isStopped([])).toBe(false);
    expect(isStopped([[1, 2]])).toBe(false);
    expect(isStopped([[1, 2], [4, null]])).toBe(true);
  });
});
