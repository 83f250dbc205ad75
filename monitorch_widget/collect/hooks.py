"""Hook objects: one per (lens, module) or (lens, parameter), called by PyTorch on every batch.

Each site owns a :class:`~monitorch_widget.collect.buffers.RowBuffer` (allocated on first use, on the data's
device) and a :class:`~monitorch_widget.collect.streams.StatStream`. The ``__call__`` methods are the hot path:
see the invariants in :mod:`monitorch_widget.collect.streams`. Anything unusual (a new shape, a new device, a
non-tensor output) leaves the fast path through ``_slow``; any exception disables the site, reports once
through the lens' :class:`~monitorch_widget.collect.faults.FaultLog`, and training goes on.
"""


from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
from torch.utils.hooks import RemovableHandle

from .buffers import RowBuffer
from .faults import FaultLog
from .held_hooks import NotCopied
from .scratch import ScratchPool
from .streams import BankRow, StatStream

_F32 = torch.float32
#: ticks so far, of any inspector: a site's uncounted calls are those since the tick it last counted one at
TICKS = [0]

#: how many times any site was hidden or shown: what lenses keep about their shown sites is valid while it stays
VISIBILITY = [0]


class Site(NotCopied):
    """Common state of a hook object. ``off`` is the single flag the hot path checks."""

    #: False for a kind of site that never fills a RowBuffer (its rows live elsewhere): the tick skips it
    buffered = True
    #: False where the site's rates are set by the module's kind, not by training (an embedding's gradient rows:
    #: zero for every token a batch lacks): it is left out of its lens' warning panel (lens/rate_calls.py)
    ranked = True

    def __init__(self, name: str, lens: str, faults: FaultLog, stream_width: int, keep_all: bool,
                 slot: BankRow | None = None) -> None:
        self.name = name
        self.lens = lens
        self.faults = faults
        # Rate sites share their lens' StreamBank through a slot; scalar sites own a stream.
        self.stream: StatStream | BankRow = slot if slot is not None else StatStream(stream_width, keep_all)
        self.scratch: torch.Tensor | None = None
        self.pool: ScratchPool | None = None
        # Registers this site's hook (again, after it was hidden); returns the hook's handle.
        self._register: Callable[[], RemovableHandle] | None = None
        self.buf: RowBuffer | None = None
        self.handle: RemovableHandle | None = None
        self.broken = False
        self.hidden = False
        self.active = True
        self.off = False
        #: calls the pass rule did not count (grad disabled, eval mode) since tick ``uncounted_at``: a module that
        #: never ran in a counted pass but has some ran all the same (a frozen backbone under no_grad); read with
        #: :meth:`uncounted_calls` (lens/silent.py). Stamped, not reset per tick: no loop over the sites at a tick
        self.uncounted = 0
        self.uncounted_at = 0
        # Set (by a store dynamo replays after each compiled call) when the hook was traced into a graph.
        self.in_graph = False

    def watch_forward(self, module: torch.nn.Module) -> None:
        """Hook ``module``'s forward (this site is the hook) and keep how to hook it again once shown."""
        self.module_type = type(module).__name__
        hook = cast("Callable[[torch.nn.Module, Any, Any], None]", self)  # a subclass's __call__ is the hook
        self._register = lambda: module.register_forward_hook(hook)
        self.handle = self._register()

    @property
    def watching(self) -> bool:
        """Hooked and working (neither broken nor hidden), whatever ``is_active_fn`` answered at the last pass:
        what a tick's notices ask of a site. ``off`` also holds after an evaluation pass that
        ``is_active_fn=lambda _: model.training`` turned off, which says nothing about the epoch's training."""
        return not (self.broken or self.hidden)

    def _update_off(self) -> None:
        self.off = self.broken or self.hidden or not self.active

    def set_active(self, active: bool) -> None:
        self.active = active
        self._update_off()

    def set_hidden(self, hidden: bool) -> None:
        """Hidden in the widget: the hook is removed (and registered again when shown)."""
        if hidden == self.hidden:
            return
        self.hidden = hidden
        VISIBILITY[0] += 1
        self._update_off()
        if hidden and self.handle is not None:
            self.handle.remove()
            self.handle = None
        elif not hidden and self.handle is None and self._register is not None:
            self.handle = self._register()

    def drop(self) -> None:
        """A call the pass rule does not count (the hook's early exit: grad disabled, eval mode)."""
        if self.uncounted_at != TICKS[0]:
            self.uncounted_at, self.uncounted = TICKS[0], 0
        self.uncounted += 1

    def uncounted_calls(self) -> int:
        """Calls dropped since the last tick."""
        return self.uncounted if self.uncounted_at == TICKS[0] else 0

    def fail(self, message: str) -> None:
        self.broken = True
        self._update_off()
        self.faults.report(self.lens, f"{self.name}: {message}; this series stops here, training goes on")

    def flush(self) -> None:
        """Tick: hand the buffer's filled rows to the bank; they fold on the host (collect/host_fold.py)."""
        if self.buf is not None and self.buf.n:
            self.buf.defer_rates(self.stream)

    def reset(self) -> None:
        """A new epoch (no device op: the rows are overwritten, the stream drops its moments)."""
        if self.buf is not None:
            self.buf.n = 0
        self.stream.reset()

    def remove(self) -> None:
        self._register = None
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
        self.buf = None
        self.scratch = None
        if self.pool is not None:
            self.pool.clear()


class ScalarSite(Site):
    """One value per batch (a loss, an output norm); the row is the value itself."""


    def __init__(self, name: str, lens: str, faults: FaultLog, keep_all: bool) -> None:
        super().__init__(name, lens, faults, 1, keep_all)

    def slot(self, device: torch.device) -> torch.Tensor:
        """The 1-element row to write this batch's value into (``copy_`` broadcasts a 0-d tensor)."""
        buf = self.buf
        if buf is None or buf.device != device:
            if buf is not None and buf.n:
                buf.fold_scalars(self.stream)
            buf = self.buf = RowBuffer(1, device)
        elif buf.n == buf.capacity:
            buf.fold_scalars(self.stream)
        n = buf.n
        buf.n = n + 1
        return buf.rows[n]

    def flush(self) -> None:
        if self.buf is not None and self.buf.n:
            self.buf.defer_scalars(self.stream)


class Unsupported(Exception):
    pass

