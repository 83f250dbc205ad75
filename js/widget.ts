// anywidget entry point (AFM): `initialize` runs once per model and owns the Store; `render` runs once per
// view and draws from that Store.
//
// anywidget hands initialize and render different proxy objects for the same model, so the Store is found
// through the model's `_uid` trait (set once in Python). Deltas that arrive while no view is shown still
// land in the Store, so a view opened later starts complete.

import type { AnyModel, Initialize, Render } from "@anywidget/types";
import type { DeltaMessage, WidgetModelTraits } from "./protocol";
import { Store } from "./store";
import { mountView } from "./view";

type Model = AnyModel<WidgetModelTraits>;

const stores = new Map<string, Store>();

/** Wire a Store to a model's `history` trait and `delta` messages; returns the unwiring function. */
export function connectStore(model: Model, store: Store): () => void {
  const onHistory = (): void => {
    store.applyHistory(model.get("history"));
  };
  const onMsg = (msg: unknown, buffers?: DataView[]): void => {
    if (msg && typeof msg === "object" && (msg as { type?: unknown }).type === "delta") {
      store.applyDelta(msg as DeltaMessage, buffers ?? []);
    }
  };
  onHistory();
  model.on("change:history", onHistory);
  model.on("msg:custom", onMsg);
  return () => {
    model.off("change:history", onHistory);
    model.off("msg:custom", onMsg);
  };
}

const initialize: Initialize<WidgetModelTraits> = ({ model }) => {
  const uid = model.get("_uid");
  const store = new Store();
  const disconnect = connectStore(model, store);
  if (uid) stores.set(uid, store);
  return () => {
    disconnect();
    if (uid && stores.get(uid) === store) stores.delete(uid);
  };
};

const render: Render<WidgetModelTraits> = ({ model, el }) => {
  const uid = model.get("_uid");
  const shared = uid ? stores.get(uid) : undefined;
  if (shared) return mountView(model, shared, el);
  // A host that did not call initialize (or a model without _uid): this view keeps its own Store.
  const own = new Store();
  const disconnect = connectStore(model, own);
  const unmount = mountView(model, own, el);
  return () => {
    unmount();
    disconnect();
  };
};

// Only the default export: anywidget treats a named `render` export as the deprecated pre-0.9 API.
export default { initialize, render };
