"""When ``is_active_fn`` is asked: once per forward pass of the model and once per backward pass.

monitorch asks ``is_active_fn(counter)`` in every hook call, so ``is_active_fn=lambda _: model.training``
turns recording off for evaluation passes run with ``model.eval()``. Asking it per hook costs a Python call
per hooked module and parameter; the answer can only change between passes, so :class:`ActivityGate` asks
it in a forward pre-hook on the attached (root) model, and once more when a backward pass starts through
the model's outputs (a hook on each output tensor; the first one per backward pass asks, an engine callback
at its end re-arms). When the answer changes, ``apply(active)`` turns every site's Python ``active`` flag,
which the hooks read (no tensor is read, nothing is synchronised). Hooks of modules called outside the
model's forward (a separate loss module) follow the answer of the latest pass.

A failing ``is_active_fn`` is reported once (the last answer stays) and training goes on.

A tick while ``is_active_fn`` says no only moves the epoch counter (monitorch's rule), so with
``lambda _: model.training`` a loop that ticks after its evaluation passes, still in eval mode, would never
record anything: every tick is inactive while the training passes keep gathering. :meth:`ActivityGate.ticked`
names that once (a :class:`~.faults.MonitorNotice`) at the first inactive tick after passes that gathered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .compiled import in_graph
from .faults import FaultLog, MonitorNotice
from .held_hooks import HeldHook

DEFERRED_TICK = ("tick_epoch() came while is_active_fn said no, after passes it said yes to: as in monitorch, "
                 "that tick records nothing and what they gathered waits for the next tick while it says yes. "
                 "With is_active_fn=lambda _: model.training, call model.train() before tick_epoch() (after the "
                 "evaluation passes), or every epoch is left unrecorded")


class ActivityGate:
    """Asks ``ask()`` per pass and calls ``apply(active)`` when the answer changes."""

    def __init__(self, ask: Callable[[], bool], apply: Callable[[bool], None], faults: FaultLog) -> None:
        self.ask = ask
        self.apply = apply
        self.faults = faults
        self.active = True
        self._handles: list[RemovableHandle] = []
        self._in_backward = False
        self._failed = False
        self._no_output_hooks = False
        #: a forward or backward pass since the last active tick was answered yes (its values were gathered)
        self.gathered = False

    def attach(self, model: nn.Module, per_pass: bool = True) -> None:
        """Ask now; with ``per_pass``, also at every forward / backward pass of ``model``. An ``is_active_fn``
        given as an int n depends on the epoch counter alone, so asking it at ticks is enough: no hooks."""
        self.detach()
        if per_pass:
            self._handles = [model.register_forward_pre_hook(HeldHook(self._on_forward)),
                             model.register_forward_hook(HeldHook(self._on_output))]
        self.refresh(force=True)

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._in_backward = False

    def refresh(self, force: bool = False) -> bool:
        """Ask now; apply the answer if it changed (or ``force``). Returns the answer."""
        try:
            active = bool(self.ask())
        except Exception as exc:  # noqa: BLE001 - a monitor must never stop training
            if not self._failed:
                self._failed = True
                self.faults.report("is_active_fn", f"is_active_fn raised {type(exc).__name__}: {exc}; the inspector "
                                   f"stays {'active' if self.active else 'inactive'} until it answers again")
            active = self.active
        if force or active != self.active:
            self.active = active
            self.apply(active)
        return active

    def ticked(self, active: bool) -> None:
        """A tick, ``active`` or not: an inactive one after passes that gathered is named once."""
        if active:
            self.gathered = False
        elif self.gathered:
            self.faults.report("is_active_fn", DEFERRED_TICK, category=MonitorNotice)

    # --- hooks ------------------------------------------------------------------------------------------
    def _on_forward(self, module: nn.Module, args: Any) -> None:
        if in_graph():  # a model compiled after attach: the answer read here would become a guard
            return
        self._in_backward = False  # a new graph (re-arms also after a backward pass that raised)
        if self.refresh():
            self.gathered = True

    def _on_output(self, module: nn.Module, args: Any, out: Any) -> None:
        if in_graph() or self._no_output_hooks or not torch.is_grad_enabled():
            return
        try:
            for t in _tensors(out):
                if t.requires_grad:
                    t.register_hook(self._on_backward)
        except Exception as exc:  # noqa: BLE001 - e.g. a tensor subclass refusing hooks
            self._no_output_hooks = True
            self.faults.report("is_active_fn", f"cannot hook the model's output ({type(exc).__name__}: {exc}); "
                               "is_active_fn is asked per forward pass only, training goes on")

    def _on_backward(self, grad: torch.Tensor) -> None:
        if self._in_backward:
            return
        self._in_backward = True
        try:
            torch.autograd.Variable._execution_engine.queue_callback(self._end_backward)
        except RuntimeError:  # called outside a backward pass (by hand)
            self._in_backward = False
        if self.refresh():
            self.gathered = True

    def _end_backward(self) -> None:
        self._in_backward = False


def _tensors(out: Any) -> list[torch.Tensor]:
    """The tensors of a model's output: itself, or the members of a tuple / list / dict (ModelOutput)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for t in out if isinstance(t, torch.Tensor)]
    if isinstance(out, dict):
        return [t for t in out.values() if isinstance(t, torch.Tensor)]
    return []


class InspectorState:
    """``counter``: the epoch the next tick records (starts at 1); ``attached``; ``is_active``."""

    def __init__(self, is_active_fn: int | Callable[[int], bool] = 1) -> None:
        if isinstance(is_active_fn, bool) or not (isinstance(is_active_fn, int) or callable(is_active_fn)):
            raise TypeError(f"is_active_fn= must be a positive int n (record every n-th epoch) or a function "
                            f"epoch -> bool, got {is_active_fn!r}")
        if isinstance(is_active_fn, int):
            if is_active_fn < 1:
                raise ValueError(f"is_active_fn={is_active_fn}: must be >= 1 (1 records every epoch)")
            n = is_active_fn
            self.is_active_fn: Callable[[int], bool] = lambda epoch: epoch % n == 0
        else:
            self.is_active_fn = is_active_fn
        #: a function may answer differently within an epoch (``lambda _: model.training``): asked per pass
        self.per_pass = not isinstance(is_active_fn, int)
        self.counter = 1
        self.attached = False

    def tick(self, n_ticks: int = 1) -> int:
        self.counter += n_ticks
        return self.counter

    @property
    def is_active(self) -> bool:
        return bool(self.is_active_fn(self.counter))
