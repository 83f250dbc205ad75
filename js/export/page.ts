// The offline export page's loader (second esbuild entry, inlined by views/html_export.py).
//
// The page holds the widget bundle (base64) and the record's snapshot as JSON in <script type="application/json"
// id="mw-payload">; binary columns are objects {<b64key>: "..."}. This loader decodes them, imports the bundle from
// a blob: URL (the page's CSP forbids every fetch), and drives it through a small in-page model that stands in
// for the kernel-backed anywidget model: get/set/on/off/save_changes/send with Backbone-like change events, so
// hover, filters and the log toggle work as in the notebook. Filter changes stay in the page.

type Listener = (...args: unknown[]) => void;
type State = Record<string, unknown>;

interface Payload {
  b64key: string;
  bundle: string;
  state: unknown;
}

interface Lifecycle {
  initialize?: (ctx: { model: PageModel }) => unknown;
  render: (ctx: { model: PageModel; el: HTMLElement }) => unknown;
}

export interface PageModel {
  get(key: string): unknown;
  set(key: string, value: unknown): void;
  on(name: string, fn: Listener): void;
  off(name?: string, fn?: Listener): void;
  save_changes(): void;
  send(): void;
  widget_manager: Record<string, never>;
}

function base64Bytes(text: string): ArrayBuffer {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out.buffer;
}

/** JSON with {<key>: base64} leaves turned back into ArrayBuffers. */
export function revive(value: unknown, key: string): unknown {
  if (Array.isArray(value)) return value.map((v) => revive(v, key));
  if (value && typeof value === "object") {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj);
    if (keys.length === 1 && typeof obj[key] === "string") return base64Bytes(obj[key] as string);
    const out: Record<string, unknown> = {};
    for (const k of keys) out[k] = revive(obj[k], key);
    return out;
  }
  return value;
}

export function pageModel(state: State): { model: PageModel; emit: (name: string, ...args: unknown[]) => void } {
  const listeners = new Map<string, Set<Listener>>();
  const emit = (name: string, ...args: unknown[]): void => {
    for (const fn of [...(listeners.get(name) ?? [])]) {
      try {
        fn(...args);
      } catch (e) {
        console.error(e);
      }
    }
  };
  const model: PageModel = {
    get: (k) => state[k],
    set: (k, v) => {
      const old = state[k];
      state[k] = v;
      if (old !== v) {
        emit("change:" + k, model, v);
        emit("change", model);
      }
    },
    on: (name, fn) => {
      for (const n of String(name).split(/\s+/)) {
        if (!listeners.has(n)) listeners.set(n, new Set());
        listeners.get(n)!.add(fn);
      }
    },
    off: (name, fn) => {
      if (!name) {
        listeners.clear();
        return;
      }
      for (const n of String(name).split(/\s+/)) {
        const s = listeners.get(n);
        if (!s) continue;
        if (fn) s.delete(fn);
        else s.clear();
      }
    },
    save_changes: () => {}, // no kernel: changes stay in this page
    send: () => {},
    widget_manager: {},
  };
  return { model, emit };
}

function asDataView(b: unknown): DataView {
  if (b instanceof DataView) return b;
  if (ArrayBuffer.isView(b)) return new DataView(b.buffer, b.byteOffset, b.byteLength);
  return new DataView(b as ArrayBuffer);
}

async function boot(): Promise<void> {
  const bootEl = document.getElementById("mw-boot")!;
  const w = window as unknown as { __mw: unknown };
  try {
    const payload = JSON.parse(document.getElementById("mw-payload")!.textContent ?? "") as Payload;
    const state = revive(payload.state, payload.b64key) as State;
    const bundle = new TextDecoder().decode(new Uint8Array(base64Bytes(payload.bundle)));
    const { model, emit } = pageModel(state);
    // Feed a kernel message (protocol 2b delta) as the anywidget model would: used by tests and benchmarks.
    const deliver = (msg: unknown, buffers?: unknown[]): void => emit("msg:custom", msg, (buffers ?? []).map(asDataView));
    const url = URL.createObjectURL(new Blob([bundle], { type: "text/javascript" }));
    const mod = (await import(/* @vite-ignore */ url)) as { default: Lifecycle | (() => Lifecycle | Promise<Lifecycle>) };
    URL.revokeObjectURL(url);
    // As anywidget does: a factory default export is called once for the (one) model.
    const widget = typeof mod.default === "function" ? await mod.default() : mod.default;
    const el = document.getElementById("mw-app")!;
    const t0 = performance.now();
    if (typeof widget.initialize === "function") await widget.initialize({ model });
    await widget.render({ model, el });
    const t1 = performance.now();
    bootEl.hidden = true;
    void document.body.offsetHeight; // style + layout of everything drawn (for benchmarks)
    const t2 = performance.now();
    w.__mw = { model, deliver, state, renderMs: t1 - t0, layoutMs: t2 - t0, ready: true };
    document.documentElement.dataset.mwReady = "1";
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    bootEl.hidden = false;
    bootEl.textContent = "Could not render the panels: " + message;
    console.error(e);
    w.__mw = { error: message, ready: false };
    document.documentElement.dataset.mwReady = "error";
  }
}

if (typeof document !== "undefined" && document.getElementById("mw-payload")) void boot();
