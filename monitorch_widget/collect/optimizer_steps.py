"""Every ``torch.optim`` step, told to the gradient readers that watch one of its parameters.

PyTorch's global ``register_optimizer_step_pre_hook`` / ``register_optimizer_step_post_hook`` fire once
per ``step()`` of every ``torch.optim`` optimizer (foreach, fused, LBFGS, wrapped by an LR scheduler). The
post-hook sees the gradient the step used: after a closure ran (Lightning's automatic optimisation, LBFGS,
SAM), unscaled by a GradScaler, clipped if the user clipped. A step GradScaler skips fires neither hook. An
optimizer that steps another inside its own ``step`` (Lookahead, SAM written as ``Optimizer`` subclasses) is one
step, told at the outer step's end: the inner one's hooks fire too, and would otherwise read each gradient twice.

The hooks are process-wide, so they are registered once, while at least one reader is listening, and
removed when the last one leaves; each reader filters by the parameters it watches.

A step driven by ``GradScaler.step`` (``_amp_foreach_non_finite_check_and_unscale_`` unscales the gradients in
place without bumping their version counters, and a fused optimizer unscales them inside its kernel) is told as
such (:attr:`_Steps.scaled`): a reader must not reuse what it read at the end of the backward pass, which was
the scaled gradient. The pre-hook finds the scaler among its few calling frames (a code-object comparison per
frame, no tensor touched).
"""

from __future__ import annotations

import sys
import weakref
from types import FrameType
from typing import Any, Protocol

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
from torch.utils.hooks import RemovableHandle


def _scaler_codes() -> frozenset[int]:
    """The ids of ``GradScaler.step``'s and ``_maybe_opt_step``'s code objects (kept alive by the class): an int
    is hashed for free, a code object hashes its bytecode and constants at every lookup."""
    try:
        from torch.amp.grad_scaler import GradScaler
    except ImportError:  # pragma: no cover - every supported torch has it
        return frozenset()
    return frozenset(id(getattr(GradScaler, name).__code__) for name in ("step", "_maybe_opt_step")
                     if hasattr(GradScaler, name))


_SCALER_CODES = _scaler_codes()


def _called_by_scaler(depth: int = 8) -> bool:
    """Whether one of the ``depth`` frames above the step pre-hook's caller is ``GradScaler.step`` (the
    optimizer's hook wrapper, an LR scheduler's counting wrapper and ``_maybe_opt_step`` sit in between)."""
    frame: FrameType | None = sys._getframe(2)
    codes = _SCALER_CODES
    while depth and frame is not None:
        if id(frame.f_code) in codes:
            return True
        frame = frame.f_back
        depth -= 1
    return False


class StepListener(Protocol):
    def on_step(self, optimizer: torch.optim.Optimizer) -> None: ...


class _Steps:
    def __init__(self) -> None:
        self.listeners: weakref.WeakSet[Any] = weakref.WeakSet()
        # What the post-hook iterates: weak references, rebuilt when a listener comes or goes (iterating a
        # WeakSet costs a generator and a guard per step).
        self._refs: tuple[weakref.ref[Any], ...] = ()
        self.handles: list[RemovableHandle] = []
        #: id of the optimizer whose step() is running (between its pre- and post-hook), else None. Backward
        #: passes inside a step (a closure) belong to that step: they are read at its end.
        self.running: int | None = None
        #: the running (or just finished) step was driven by a GradScaler: its gradients were unscaled in place
        self.scaled = False
        #: steps of other optimizers running inside the running one's (a Lookahead or SAM written as an Optimizer
        #: subclass steps its base optimizer inside its own step): told as the outer step only, once
        self.nested = 0
        self._outer: FrameType | None = None  # the frame that called the outer step's hooks

    def listen(self, listener: StepListener) -> None:
        self.listeners.add(listener)
        self._refs = tuple(weakref.ref(x) for x in self.listeners)
        if not self.handles:
            self.handles = [register_optimizer_step_pre_hook(self._pre), register_optimizer_step_post_hook(self._post)]

    def leave(self, listener: StepListener) -> None:
        self.listeners.discard(listener)
        self._refs = tuple(weakref.ref(x) for x in self.listeners)
        if not self.listeners:
            for handle in self.handles:
                handle.remove()
            self.handles = []
            self.running = None
            self._outer = None
            self.nested = 0

    def _pre(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self.running is not None and self._inside_outer():
            self.nested += 1
            return
        self.running = id(optimizer)
        self.nested = 0
        self._outer = sys._getframe(1)
        self.scaled = _called_by_scaler()

    def abandon(self) -> None:
        """No step is running (the tick: a step that raised never reached its post-hook)."""
        self.running = self._outer = None
        self.nested = 0

    def _inside_outer(self, depth: int = 16) -> bool:
        """Whether the running step's frame is still on the stack (a step inside it), not left behind by a step
        that raised before its post-hook (then this is a new outermost step)."""
        outer = self._outer
        frame: FrameType | None = sys._getframe(2)
        while depth and frame is not None:
            if frame is outer:
                return True
            frame = frame.f_back
            depth -= 1
        return False

    def _post(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self.nested:
            self.nested -= 1
            return
        self.running = None
        self._outer = None
        for ref in self._refs:
            listener = ref()
            if listener is not None:
                listener.on_step(optimizer)


STEPS = _Steps()


def groups_signature(optimizer: torch.optim.Optimizer) -> list[int]:
    """What identifies an optimizer's parameter set cheaply, for caches keyed by ``id(optimizer)``: the number of
    groups and each group's size and first parameter (a group added or a parameter list swapped changes it)."""
    groups = optimizer.param_groups
    signature = [len(groups)]
    for g in groups:
        params = g["params"]
        signature.append(len(params))
        if params:
            signature.append(id(params[0]))
    return signature


class StepCounter:
    """Counts the ``torch.optim`` steps that update a parameter of ``model`` while it listens (a step a
    GradScaler skips is not counted, as it fires no hook): the record's per-row step count (x axis "step").
    Steps of other optimizers in the process (a second model and its inspector, a bare baseline) are not
    counted. Without a model every step counts."""

    def __init__(self, model: nn.Module | None = None) -> None:
        self.count = 0
        self._model = None if model is None else weakref.ref(model)
        # id(optimizer) -> (signature of its parameter groups, whether it updates one of the model's parameters)
        self._mine: dict[int, tuple[list[int], bool]] = {}

    def on_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self._model is None:
            self.count += 1
            return
        signature = groups_signature(optimizer)
        known = self._mine.get(id(optimizer))
        if known is None or known[0] != signature:
            model = self._model()
            # the model's parameters now (FSDP2 may have replaced them since attach)
            watched = set() if model is None else {id(p) for p in model.parameters()}
            known = self._mine[id(optimizer)] = (signature, any(id(p) in watched for g in optimizer.param_groups
                                                                for p in g["params"]))
        if known[1]:
            self.count += 1
