// anywidget entry point (AFM). The default export is a factory: anywidget calls it once per model, so the
// Store it creates is that model's (shared by every view of it) without any registry or id trait.
// `initialize` wires the Store to the model once; `render` draws one view from it. Deltas that arrive while
// no view is shown still land in the Store, so a view opened later starts complete.

import type { AnyModel, Initialize, Render } from "@anywidget/types";
import type { DeltaMessage, WidgetModelTraits } from "./protocol";
import { followHostTheme } from "./hosttheme";
import { Resync } from "./resync";
import { Store } from "./store";
import { mountView } from "./view";

type Model = AnyModel<WidgetModelTraits>;

/** Wire a Store to a model's `history` trait and `delta` messages; returns the unwiring function. */
export function connectStore(model: Model, store: Store): () => void {
  const resync = new Resync(model, store);
  const onHistory = (): void => {
    store.applyHistory(model.get("history"));
    resync.afterHistory();
  };
  const onMsg = (msg: unknown, buffers?: DataView[]): void => {
    if (msg && typeof msg === "object" && (msg as { type?: unknown }).type === "delta") {
      store.applyDelta(msg as DeltaMessage, buffers ?? []);
      resync.afterDelta();
    }
  };
  onHistory();
  model.on("change:history", onHistory);
  model.on("msg:custom", onMsg);
  resync.hello();
  return () => {
    resync.cancel();
    model.off("change:history", onHistory);
    model.off("msg:custom", onMsg);
  };
}

export interface WidgetLifecycle {
  initialize: Initialize<WidgetModelTraits>;
  render: Render<WidgetModelTraits>;
}

/** One model's lifecycle: its Store lives in this closure. */
export function createWidget(): WidgetLifecycle {
  let shared: Store | null = null;
  return {
    initialize({ model }) {
      const store = new Store();
      const disconnect = connectStore(model, store);
      shared = store;
      return () => {
        disconnect();
        if (shared === store) shared = null;
      };
    },
    render({ model, el }) {
      const unwatch = followHostTheme(el);
      if (shared) {
        const unmount = mountView(model, shared, el);
        return () => {
          unmount();
          unwatch();
        };
      }
      // A host that did not call initialize: this view keeps its own Store.
      const own = new Store();
      const disconnect = connectStore(model, own);
      const unmount = mountView(model, own, el);
      return () => {
        unmount();
        disconnect();
        unwatch();
      };
    },
  };
}

// Only the default export: anywidget treats a named `render` export as the deprecated pre-0.9 API.
export default createWidget;
