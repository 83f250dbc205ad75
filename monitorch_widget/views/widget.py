"""The live widget: an anywidget whose front-end (``static/widget.js``, built from ``js/``) draws a record.

State on the wire (docs/protocol.md): the ``history`` trait holds a full snapshot with binary columns, the
custom ``delta`` messages carry per-tick changes (see :mod:`monitorch_widget.views.sync`), and the ``filters``
trait holds what the user hid in the front-end (view-only: hiding never stops a measurement). Custom messages
from the front-end ask for a snapshot (``resync``) or to stop / resume recording a module (``recording``);
they are queued and run on the training thread. One widget per record; it can be displayed any number of
times, and every view shows the same data and filters.
"""

from __future__ import annotations

import functools
import pathlib
import uuid
from collections.abc import Callable
from typing import Any

import anywidget
import traitlets

from ..record.protocol import default_filters, empty_history, normalize_filters
from .sync import DeltaSync, RecordLike

_STATIC = pathlib.Path(__file__).parent.parent / "static"
_ESM_PATH = _STATIC / "widget.js"

_BUNDLE_MISSING = (
    "monitorch_widget's front-end bundle is missing: {path}.\n"
    "From a source checkout run `npm ci && npm run build` in the repository root (or reinstall the package "
    "with `pip install .`, which builds it), then restart the kernel."
)


class MonitorWidget(anywidget.AnyWidget):
    """Live training panels for one record. ``display(widget)`` as often as you like."""

    # The bundle's text, not its Path: for a Path anywidget connects every instance to a class-level file-change
    # signal with a strong reference, so no widget (nor the inspector, lenses and model it reaches) was ever
    # collected (trial r15b: every re-run of a build cell kept the old model's weights). Without the bundle the
    # module must still import (the inspector works headless), so the check moves to __init__.
    if _ESM_PATH.is_file():
        _esm = _ESM_PATH.read_text(encoding="utf-8")

    history = traitlets.Dict(default_value=empty_history()).tag(sync=True)
    # Changed by the front-end, possibly on a kernel subshell thread while training runs: ipywidgets must not
    # echo it back from that thread (every message of ours leaves from the training thread; views/sync.py).
    filters = traitlets.Dict(default_value=default_filters()).tag(sync=True, echo_update=False)

    def __init__(self, record: RecordLike | None = None, **kwargs: Any) -> None:
        if not _ESM_PATH.is_file():
            raise FileNotFoundError(_BUNDLE_MISSING.format(path=_ESM_PATH))
        if "_esm" not in MonitorWidget.__dict__:
            # built after this module was imported: adopt the file now
            MonitorWidget._esm = _ESM_PATH.read_text(encoding="utf-8")  # type: ignore[assignment]
        super().__init__(**kwargs)
        self._record = record
        self._filter_callbacks: list[Callable[[dict[str, Any]], None]] = []
        self._recording_callbacks: list[Callable[[str, bool], None]] = []
        self.observe(self._on_filters_trait, names="filters")
        self.on_msg(self._on_front_end_msg)
        self._sync: DeltaSync | None = None
        if record is not None:
            self._sync = DeltaSync(record, send=self._send_delta, set_history=self._set_history,
                                   on_cell_end=self._mw_refresh_fallback)

    # --- kernel -> front-end --------------------------------------------------------------------
    def _send_delta(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        if self.comm is not None:
            self.send(content, buffers)

    def _set_history(self, snapshot: dict[str, Any], force: bool = False) -> None:
        if force and self.comm is not None and snapshot == self.history:
            self.send_state("history")  # a view asked: an unchanged trait would not be sent again
        else:
            self.history = snapshot

    def refresh(self) -> None:
        """Publish a full snapshot now (normally done throttled and at the end of each cell)."""
        if self._sync is not None:
            self._sync.refresh_history()

    def flush(self) -> None:
        """Send pending per-tick changes now (call it on the thread that trains)."""
        if self._sync is not None:
            self._sync.flush()

    def _mw_pump(self) -> None:
        """A monitor call on the training thread (views/sync.py: DeltaSync.pump)."""
        sync = self._sync
        if sync is not None:
            sync.pump()

    # --- front-end -> kernel --------------------------------------------------------------------
    def on_filters(self, fn: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """Call ``fn(filters)`` whenever the filters change (in the kernel, once it is free); returns an
        unsubscribe function."""
        self._filter_callbacks.append(fn)

        def remove() -> None:
            if fn in self._filter_callbacks:
                self._filter_callbacks.remove(fn)

        return remove

    def on_recording(self, fn: Callable[[str, bool], None]) -> Callable[[], None]:
        """Call ``fn(module, on)`` when a view asks to stop (``on=False``) or resume recording a module; run on
        the training thread at its next monitor call (at once when nothing trains). Returns an unsubscribe."""
        self._recording_callbacks.append(fn)
        return lambda: self._recording_callbacks.remove(fn) if fn in self._recording_callbacks else None

    def _on_filters_trait(self, change: dict[str, Any]) -> None:
        value = normalize_filters(change["new"])
        for fn in list(self._filter_callbacks):
            self._on_training_thread(functools.partial(fn, value))

    def _on_front_end_msg(self, _widget: Any, content: Any, _buffers: Any = None) -> None:
        """Custom messages from a view (docs/protocol.md section 4); may run on a kernel subshell thread."""
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        if kind == "resync" and self._sync is not None:
            self._sync.request_snapshot(content.get("seq"))
        elif kind == "recording" and isinstance(content.get("module"), str):
            module, on = content["module"], bool(content.get("on"))
            for cb in list(self._recording_callbacks):
                self._on_training_thread(functools.partial(cb, module, on))

    def _on_training_thread(self, fn: Callable[[], None]) -> None:
        if self._sync is not None:
            self._sync.defer(fn)
        else:
            fn()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        # remembered so that callers (the visualizer's show_fig) can avoid displaying it twice
        self._mw_displayed = True
        bundle = super()._repr_mimebundle_(**kwargs)
        # >>> static fallback (monitorch_widget/views/static_picture.py) >>>
        # For hosts that take this bundle directly instead of IPython's display (which publishes the widget
        # and a sibling picture, _ipython_display_): a static picture as the bundle's text/html.
        bundle = _with_fallback(bundle, self)
        # <<< static fallback <<<
        return bundle

    # >>> static fallback: a sibling output with a display_id, refreshed at the end of each cell >>>
    def _ipython_display_(self, **kwargs: Any) -> None:
        """Publish two outputs: the widget view, then its static picture as a sibling ``text/html`` output
        with a ``display_id``, brought up to date at the end of every cell that changed the record.

        The picture cannot live only in the widget's own bundle: JupyterLab prefers the widget-view mimetype
        even when the widget's state was not saved (it then draws nothing, never the bundle's ``text/html``),
        and nbconvert does the same when the state was saved. Unlike before, the view's own output is not
        re-published at the end of a cell, so live views (and their zoom) persist. As a sibling output it shows
        wherever the widget cannot render, and a style rule in it hides it while a live view of the widget
        is in the same output area (static_picture.HIDE_WHEN_LIVE)."""
        from IPython.display import display

        self._mw_displayed = True
        bundle = super()._repr_mimebundle_(**kwargs)
        data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
        display(data, metadata=metadata, raw=True)
        if self._record is None:
            return
        display_id = uuid.uuid4().hex
        display(self._mw_sibling(), raw=True, display_id=display_id)
        ids: list[str] = self.__dict__.setdefault("_mw_display_ids", [])
        ids.append(display_id)
        self._mw_fallback_seq = self._sync.seq if self._sync is not None else None

    def _mw_sibling(self) -> dict[str, str]:
        from .static_picture import fallback_html

        html = fallback_html(self._record, filters=normalize_filters(self.filters), sibling=True)
        return {"text/html": html, "text/plain": "(monitorch-widget static picture)"}

    def _mw_refresh_fallback(self, *_args: Any) -> None:
        """End of a cell: if the record changed since the picture was last published, update every sibling
        picture of this widget's displays (the saved notebook then holds the final plots)."""
        try:
            if self._sync is None or self.comm is None or not getattr(self, "_mw_display_ids", None):
                return
            seq = self._sync.seq
            if seq == getattr(self, "_mw_fallback_seq", None):
                return
            self._mw_fallback_seq = seq
            from IPython.display import update_display

            data = self._mw_sibling()
            for display_id in self._mw_display_ids:
                update_display(data, raw=True, display_id=display_id)
        except Exception:  # noqa: BLE001, S110 - a stale picture must never break the user's cell
            pass
    # <<< static fallback <<<

    # --- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        sync = getattr(self, "_sync", None)
        if sync is not None:
            sync.close()
            self._sync = None
        super().close()

    def __repr__(self) -> str:
        runs = getattr(self._record, "runs", None) if getattr(self, "_record", None) is not None else None
        if runs is None:
            snap_runs = self.history.get("runs", [])
            n_runs = len(snap_runs)
            epochs = int(snap_runs[-1].get("n_rows", 0)) - int(bool(snap_runs[-1].get("provisional"))) if snap_runs else 0
        else:
            n_runs = len(runs)
            last = runs[-1] if runs else None
            epochs = 0
            if last is not None:
                epochs = len(last.epochs) - int(bool(getattr(last, "provisional", False)))
        return f"MonitorWidget(runs={n_runs}, epochs={epochs})"


# >>> static fallback >>>
def _with_fallback(bundle: Any, widget: MonitorWidget) -> Any:
    """``bundle`` (a dict, or (data, metadata)) with a ``text/html`` static picture of the widget's record."""
    record = getattr(widget, "_record", None)
    if record is None:
        return bundle
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    if not isinstance(data, dict):
        return bundle
    from .static_picture import fallback_html

    data["text/html"] = fallback_html(record, filters=normalize_filters(widget.filters))
    return bundle
# <<< static fallback <<<


