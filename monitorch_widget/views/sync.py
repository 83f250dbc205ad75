"""Kernel-side sync of a :class:`~monitorch_widget.record.Record` to the widget front-end.

The record publishes every change as a small event (``Record.subscribe``). :class:`DeltaSync` folds those
events into protocol-2b ``delta`` messages (docs/protocol.md) and sends them through the widget's comm:

* at most one message per ``interval`` seconds (50 ms); events arriving in between are merged, and a
  timer guarantees the trailing flush, so the last tick of a burst is never held back;
* a message carries only what changed since the previous one, so its size does not depend on how many
  epochs were recorded before;
* the full ``history`` snapshot (protocol 2a) is refreshed rarely: at most every few seconds (longer when
  a snapshot is expensive) and always at the end of the cell that ran training (IPython ``post_run_cell``).

Ordering invariant: messages are numbered by ``seq`` under one lock, and a snapshot is taken only right
after flushing everything pending, so ``history.seq`` is exactly the last delta contained in it; the
front-end drops deltas with ``seq <= history.seq``.

The record is read (snapshot) only from the thread that emits its events or from ``post_run_cell``, never
from the timer thread: the timer only sends what was already copied out of the events.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from typing import Any, Protocol

from ..record.protocol import PendingDelta, encode_delta

Event = tuple[Any, ...]
SendFn = Callable[[dict[str, Any], list[bytes]], None]
HistoryFn = Callable[[dict[str, Any]], None]

#: Minimum seconds between two delta messages.
DELTA_INTERVAL = 0.05
#: Minimum seconds between two throttled history snapshots (end-of-cell snapshots are not throttled).
SNAPSHOT_MIN_INTERVAL = 3.0
#: A snapshot may take at most this fraction of wall time: the interval grows with the measured cost.
SNAPSHOT_MAX_SHARE = 0.02


class RecordLike(Protocol):
    def subscribe(self, fn: Callable[[Event], None]) -> Callable[[], None]: ...

    def snapshot(self) -> dict[str, Any]: ...


class DeltaSync:
    """Streams a record's events to the front-end as coalesced deltas plus throttled snapshots."""

    def __init__(
        self,
        record: RecordLike,
        send: SendFn,
        set_history: HistoryFn,
        *,
        interval: float = DELTA_INTERVAL,
        snapshot_min_interval: float = SNAPSHOT_MIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        timer_factory: Callable[[float, Callable[[], None]], Any] = threading.Timer,
        hook_ipython: bool = True,
        on_cell_end: Callable[[], None] | None = None,
    ) -> None:
        self._record = record
        self._on_cell_end = on_cell_end  # runs after the end-of-cell snapshot (the widget's static picture)
        self._send = send
        self._set_history = set_history
        self._interval = float(interval)
        self._snapshot_min_interval = float(snapshot_min_interval)
        self._clock = clock
        self._timer_factory = timer_factory
        self._lock = threading.RLock()
        self._pending = PendingDelta()
        self._seq = 0
        self._last_send = -float("inf")
        self._last_status: dict[str, Any] | None = None
        self._timer: Any = None
        self._snapshot_at = -float("inf")
        self._snapshot_cost = 0.0
        self._dirty = False  # changes not yet contained in the history trait
        self._closed = False
        self.messages_sent = 0
        self.snapshots_sent = 0
        self.errors = 0
        self._ipython: Any = None
        self.refresh_history()
        self._unsubscribe = record.subscribe(self._on_event)
        if hook_ipython:
            self._register_ipython()

    # --- public ---------------------------------------------------------------------------------
    @property
    def seq(self) -> int:
        return self._seq

    def flush(self) -> bool:
        """Send everything pending now; True if a message was sent."""
        with self._lock:
            self._cancel_timer()
            if self._closed or self._pending.empty():
                return False
            self._seq += 1
            msg, buffers = encode_delta(self._pending, self._seq, self._last_status)
            if "status" in msg:
                self._last_status = msg["status"]
            self._pending = PendingDelta()
            self._last_send = self._clock()
            # sent under the lock so that seq order is wire order even with the timer thread
            self._send(msg, buffers)
            self.messages_sent += 1
            return True

    def refresh_history(self) -> None:
        """Flush pending deltas, then publish a full snapshot whose seq is the last delta sent."""
        with self._lock:
            if self._closed:
                return
            self.flush()
            t0 = time.perf_counter()
            snap = dict(self._record.snapshot())
            snap["seq"] = self._seq
            if snap.get("status") is not None:
                self._last_status = snap["status"]
            self._set_history(snap)
            self._snapshot_cost = time.perf_counter() - t0
            self._snapshot_at = self._clock()
            self._dirty = False
            self.snapshots_sent += 1

    def snapshot_interval(self) -> float:
        """Current minimum spacing of throttled snapshots: grows when snapshots get expensive."""
        return max(self._snapshot_min_interval, self._snapshot_cost / SNAPSHOT_MAX_SHARE)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self.flush()
            self._closed = True
            self._cancel_timer()
        self._unsubscribe()
        self._unregister_ipython()

    # --- event path -----------------------------------------------------------------------------
    # Errors here must never reach the training loop (events are emitted from inside it) nor repeat after
    # every cell: the first one is reported as a warning, the sync keeps going with the next events.
    def _report(self, where: str, exc: BaseException) -> None:
        self.errors += 1
        if self.errors == 1:
            warnings.warn(f"monitorch_widget: live widget update failed in {where}: {exc!r} "
                          "(training continues; the widget may lag until the next refresh)", RuntimeWarning,
                          stacklevel=3)

    def _on_event(self, event: Event) -> None:
        try:
            self._handle(event)
        except Exception as exc:  # noqa: BLE001 - see _report
            self._report("event", exc)

    def _handle(self, event: Event) -> None:
        with self._lock:
            if self._closed:
                return
            self._pending.add(event)
            self._dirty = True
            now = self._clock()
            # status events end a tick (or a problem report): the record is consistent, a good moment for
            # a throttled snapshot.
            if event[0] == "status" and now - self._snapshot_at >= self.snapshot_interval():
                self.refresh_history()
                return
            wait = self._interval - (now - self._last_send)
            if wait <= 0:
                self.flush()
            elif self._timer is None:
                self._timer = self._timer_factory(wait, self._on_timer)
                if hasattr(self._timer, "daemon"):
                    self._timer.daemon = True
                self._timer.start()

    def _on_timer(self) -> None:
        try:
            with self._lock:
                self._timer = None
                self.flush()
        except Exception as exc:  # noqa: BLE001
            self._report("timer", exc)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # --- IPython end-of-cell snapshot -------------------------------------------------------------
    def _register_ipython(self) -> None:
        try:
            from IPython import get_ipython
        except ImportError:  # pragma: no cover - IPython is a dependency of ipywidgets
            return
        ip = get_ipython()
        if ip is None or not hasattr(ip, "events"):
            return
        ip.events.register("post_run_cell", self._post_run_cell)
        self._ipython = ip

    def _unregister_ipython(self) -> None:
        if self._ipython is not None:
            try:
                self._ipython.events.unregister("post_run_cell", self._post_run_cell)
            except ValueError:
                pass
            self._ipython = None

    def _post_run_cell(self, *_args: Any) -> None:
        try:
            settle = getattr(self._record, "settle", None)
            if settle is not None:
                settle()  # the training cell ended: "training" -> "idle" (emits a status event)
            if self._dirty:
                self.refresh_history()
            else:
                self.flush()
            if self._on_cell_end is not None:
                self._on_cell_end()
        except Exception as exc:  # noqa: BLE001
            self._report("end of cell", exc)
