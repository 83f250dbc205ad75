"""Kernel-side sync of a :class:`~monitorch_widget.record.Record` to the widget front-end, without a thread.

The record publishes every change as a small event (``Record.subscribe``). :class:`DeltaSync` folds those
events into protocol-2b ``delta`` messages (docs/protocol.md) and sends them through the widget's comm.

**Every message leaves from the thread that trains** (the one running the record's events, ``pump()``,
``flush()``, ``finish()``) or from IPython's ``post_run_cell`` (the cell's own thread, before its reply):
a send from a thread the kernel did not start is lost on ipykernel 7.0.x and not rendered by Colab
(``/work``'s kernel facts; googlecolab/colabtools#3373). So there is no timer; the rules are:

* a tick (the record's ``status`` event) at least ``interval`` (50 ms) after the previous tick is sent before
  the tick returns;
* faster ticks are merged: what is pending goes out at the first ``pump()`` / tick on the training thread at
  least ``interval`` after the previous message, or at ``flush()``, ``finish()``, or the end of the cell;
* values are held back only while an IPython cell runs on the thread that emits them (its
  ``post_run_cell`` is then certain to come). Without end-of-cell events (a plain script, marimo, a
  training thread or task that outlives its cell) every tick is sent at once.

Front-end requests (a snapshot for a view that saw a sequence gap, stop/resume recording) may arrive on a
kernel subshell thread while training runs: :meth:`DeltaSync.defer` queues them and the training thread runs
them at its next ``pump()`` / tick (or the cell's end); when nothing trains, they run at once.

Ordering invariant: messages are numbered by ``seq`` under one lock, and a snapshot is taken only right
after flushing everything pending, so ``history.seq`` is exactly the last delta contained in it; the
front-end drops deltas with ``seq <= history.seq`` and resynchronises on a gap (``seq > its seq + 1``).
"""

from __future__ import annotations

import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from ..record.protocol import PendingDelta, encode_delta
from .cell_events import CellEvents

Event = tuple[Any, ...]
SendFn = Callable[[dict[str, Any], list[bytes]], None]
HistoryFn = Callable[[dict[str, Any], bool], None]

#: Minimum seconds between two delta messages while values may be held back (see the module docstring).
DELTA_INTERVAL = 0.05
#: Minimum seconds between two throttled history snapshots (end-of-cell snapshots are not throttled).
SNAPSHOT_MIN_INTERVAL = 3.0
#: A snapshot may take at most this fraction of wall time: the interval grows with the measured cost.
SNAPSHOT_MAX_SHARE = 0.02
#: A thread that emitted events less than this many seconds ago counts as training: requests wait for it.
TRAINING_WINDOW = 2.0


class RecordLike(Protocol):
    def subscribe(self, fn: Callable[[Event], None]) -> Callable[[], None]: ...

    def snapshot(self) -> dict[str, Any]: ...


class DeltaSync(CellEvents):
    """Streams a record's events to the front-end as coalesced deltas plus throttled snapshots.

    ``send(msg, buffers)`` sends one custom message; ``set_history(snapshot, force)`` publishes a snapshot
    (``force``: resend it even if equal to the last one: a view asked for it). ``hook_ipython``: use the
    running IPython's ``pre_run_cell`` / ``post_run_cell`` events when there is one."""

    def __init__(
        self,
        record: RecordLike,
        send: SendFn,
        set_history: HistoryFn,
        *,
        interval: float = DELTA_INTERVAL,
        snapshot_min_interval: float = SNAPSHOT_MIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
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
        self._lock = threading.RLock()
        self._pending = PendingDelta()
        self._has_pending = False
        # the findings the front-end holds after the last message (its snapshot merged with the deltas since):
        # a delta then sends a held finding's changed fields only (record/protocol.py encode_delta)
        self._findings_sent: dict[str, dict[str, Any]] = {}
        self._seq = 0
        self._last_send = -float("inf")
        self._last_tick = -float("inf")
        self._last_status: dict[str, Any] | None = None
        self._snapshot_at = -float("inf")
        self._snapshot_cost = 0.0
        self._dirty = False  # changes not yet contained in the history trait
        self._closed = False
        self._requests: deque[Callable[[], None]] = deque()
        self._owner: int | None = None  # thread that emitted the last event
        self._owner_at = -float("inf")
        #: the thread running the current IPython cell (None: no cell runs, or no end-of-cell event exists)
        self._cell_thread: int | None = None
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
            if self._closed or not self._has_pending:
                return False
            self._seq += 1
            msg, buffers = encode_delta(self._pending, self._seq, self._last_status, self._findings_sent)
            if "status" in msg:
                self._last_status = msg["status"]
            self._pending = PendingDelta()
            self._has_pending = False
            self._last_send = self._clock()
            self._send(msg, buffers)  # under the lock: seq order is wire order
            self.messages_sent += 1
            return True

    def refresh_history(self, force: bool = False) -> None:
        """Flush pending deltas, then publish a full snapshot whose seq is the last delta sent."""
        with self._lock:
            if self._closed:
                return
            self.flush()
            t0 = time.perf_counter()
            snap = dict(self._record.snapshot())
            snap["seq"] = self._seq
            self._findings_sent = {f["id"]: f for f in snap.get("findings") or []}
            if snap.get("status") is not None:
                self._last_status = snap["status"]
            self._set_history(snap, force)
            self._snapshot_cost = time.perf_counter() - t0
            self._snapshot_at = self._clock()
            self._dirty = False
            self.snapshots_sent += 1

    def snapshot_interval(self) -> float:
        """Current minimum spacing of throttled snapshots: grows when snapshots get expensive."""
        return max(self._snapshot_min_interval, self._snapshot_cost / SNAPSHOT_MAX_SHARE)

    def pump(self) -> None:
        """A monitor call on the training thread: run queued front-end requests, send what waited long enough.
        Cheap when there is nothing to do (two attribute reads)."""
        if not (self._requests or self._has_pending) or self._closed:
            return
        try:
            self._run_requests()
            if self._has_pending and (not self.holds_back or self._clock() - self._last_send >= self._interval):
                self.flush()
        except Exception as exc:  # noqa: BLE001 - see _report
            self._report("pump", exc)

    def finish(self) -> None:
        """Training stopped (detach, the end of ``inspector.iter``): send everything now; without an end-of-cell
        event to come, also publish a snapshot, since a view that mounted late cannot be known current."""
        try:
            self._run_requests()
            settle = getattr(self._record, "settle", None)
            if self._cell_thread is None and settle is not None:
                settle()  # no end-of-cell event will say so: the status reads "done"
            if self._cell_thread is None and self._dirty:
                self.refresh_history()
            else:
                self.flush()
        except Exception as exc:  # noqa: BLE001
            self._report("finish", exc)

    def request_snapshot(self, have_seq: Any = None) -> None:
        """A view asks for the full record (it mounted late or saw a sequence gap): answered by the training
        thread (at once when nothing trains) unless the view already holds the latest seq."""

        def answer() -> None:
            if isinstance(have_seq, int) and not isinstance(have_seq, bool) and have_seq == self._seq \
                    and not self._has_pending:
                return
            self.refresh_history(force=True)

        self.defer(answer)

    def defer(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the training thread: now when called there or when nothing trains, otherwise at the
        training thread's next ``pump()`` / tick, or at the end of the running cell."""
        if self._closed:
            return
        if self._training_elsewhere():
            self._requests.append(fn)
        else:
            self._requests.append(fn)
            self._run_requests()
            self.flush()  # what the request changed (e.g. not-recorded spans) must not wait for a tick

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self.flush()
            self._closed = True
            self._requests.clear()
        self._unsubscribe()
        self._unregister_ipython()

    # --- threads --------------------------------------------------------------------------------
    def _training_elsewhere(self) -> bool:
        me = threading.get_ident()
        if self._cell_thread is not None and me != self._cell_thread:
            return True  # a cell runs (e.g. a handler on a kernel subshell thread during training)
        owner = self._owner
        if owner is None or owner == me or self._clock() - self._owner_at > TRAINING_WINDOW:
            return False
        return any(t.ident == owner for t in threading.enumerate())

    def _run_requests(self) -> None:
        while self._requests:
            fn = self._requests.popleft()
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - a bad request must not stop training
                self._report("front-end request", exc)

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
            self._has_pending = True
            self._dirty = True
            if event[0] != "status":
                return  # a tick (or a problem report) ends with a status event: decide there
            now = self._clock()
            self._owner, self._owner_at = threading.get_ident(), now
            since_tick, self._last_tick = now - self._last_tick, now
        self._run_requests()
        with self._lock:
            # the record is consistent at a status event: a good moment for a throttled snapshot
            if now - self._snapshot_at >= self.snapshot_interval():
                self.refresh_history()
            elif not self.holds_back or since_tick >= self._interval or now - self._last_send >= self._interval:
                self.flush()

    def _cell_ended(self, result: Any) -> None:
        """IPython's ``post_run_cell`` (``cell_events.py``): queued requests run, the status settles ("done", or
        "stopped" when the cell raised), everything pending goes out with a snapshot if anything changed."""
        try:
            self._run_requests()
            settle = getattr(self._record, "settle", None)
            if settle is not None:  # the training cell ended: "training" -> "done", or "stopped" if it raised
                error = getattr(result, "error_in_exec", None)
                settle(type(error).__name__ if error is not None else None)
            if self._dirty:
                self.refresh_history()
            else:
                self.flush()
            if self._on_cell_end is not None:
                self._on_cell_end()
        except Exception as exc:  # noqa: BLE001
            self._report("end of cell", exc)
