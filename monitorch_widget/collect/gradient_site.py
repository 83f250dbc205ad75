"""A watched parameter of a gradient-reading lens: its units, its bank row, and the life of its current gradient.

The post-accumulate-grad hook lives here; what a gradient's life is and when it is read is
:mod:`.gradient_reading`'s definition (the reader this site reports to).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .compiled import in_graph
from .faults import FaultLog
from .hooks import Site
from .optimizer_steps import STEPS
from .sharding import Shards, local, shards_of
from .streams import BankRow
from .units import UnitSpec, parameter_units

if TYPE_CHECKING:
    from .gradient_reading import GradientReader


class GradientSite(Site):
    """One watched parameter: its units, its bank row, and the life of its current gradient."""

    buffered = False  # its rows are its reader's layout's (collect/gradient_layout.py)

    def __init__(self, name: str, module: nn.Module, param_name: str, param: nn.Parameter, lens: str,
                 faults: FaultLog, reader: GradientReader, bank_row: BankRow) -> None:
        super().__init__(name, lens, faults, 2, False, bank_row)
        self.param = param
        self.param_name = param_name
        self.module = module
        self.module_type = type(module).__name__
        self.units: UnitSpec = parameter_units(module, param_name, param.shape)
        self.numel = param.numel()
        self.bank_row = bank_row
        self.reader = reader  # shared by the lens' sites; the lens flushes and resets it through them
        # the current gradient's life
        self.grad_ref: weakref.ref[torch.Tensor] | None = None
        self.grad_version = -1
        self.stepped = False     # a step used this gradient
        self.counted = False     # this gradient was counted without a step (at its end or at a tick)
        self.scaled = False      # a GradScaler drove a step that read this parameter: its unused gradients are scaled
        self.observed = False    # any gradient was ever counted
        # False on all ranks but one when the gradient is the same on every rank (DDP's all-reduced one):
        # one optimizer step is one observation, not one per rank
        self.counted_here = True
        self.shards: Shards | None = None
        self.sharded = False  # a DTensor parameter: its gradient is read from its local shard (.sharding)
        self.pending: tuple[Any, int, int, int] | None = None  # (layout, generation, row, position)
        self._register = lambda: self.param.register_post_accumulate_grad_hook(self._on_accumulate)
        self.bind(param)

    def bind(self, param: nn.Parameter) -> None:
        """Watch ``param`` (at attach, or the parameter that replaced it: FSDP2's sharded DTensor)."""
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
        self.param = param
        self.pending, self.grad_ref = None, None
        try:
            self.shards = shards_of(param)
        except ValueError as exc:
            self.fail(str(exc))
            return
        self.sharded = self.shards is not None
        if self.shards is not None:
            self.counted_here = self.shards.counts_here
        if param.requires_grad and not self.hidden and self._register is not None:
            self.handle = self._register()

    def _on_accumulate(self, param: torch.Tensor) -> None:
        # The hot path (once per parameter per backward pass): the reader's ``on_accumulate`` inlined for an
        # unsharded parameter (the same steps, without three helper calls per parameter).
        if in_graph():  # compiled autograd traces this hook: say so at the tick instead
            self.in_graph = True
            return
        if self.off:
            return
        try:
            reader = self.reader
            if self.sharded:
                reader.on_accumulate(self)
                return
            g = self.param.grad
            if g is None:
                return
            running = STEPS.running
            ref = self.grad_ref
            if ref is not None and ref() is g and g._version == self.grad_version + 1:
                self.grad_version += 1  # accumulated in place: the same gradient's life goes on
                self.counted = False  # counted at a tick, accumulated since: counted again (its end, the next tick)
            else:  # a new gradient: the previous one was discarded
                if self.pending is not None:  # inside a step too (SAM: the gradient its first half used, zeroed)
                    reader.end_life(self)
                self.stepped = self.counted = False
                if ref is None or ref() is not g:
                    self.grad_ref = weakref.ref(g)
                self.grad_version = g._version
            if running is None:  # else a closure inside a step: the step reads it
                reader.dirty.append(self)
                if not reader.queued:
                    reader.queue()
        except Exception as exc:  # noqa: BLE001 - a monitor must never stop training
            self.fail(f"gradient hook failed with {type(exc).__name__}: {exc}")

    def ensure_hook(self) -> None:
        """A parameter frozen at attach and unfrozen later: hook it from now on."""
        if self.handle is None and self._register is not None and not self.hidden and self.param.requires_grad:
            self.handle = self._register()

    def same_gradient(self, g: torch.Tensor, extra_versions: int = 0) -> bool:
        if self.sharded:
            g = local(g)  # a sharded gradient lives (and accumulates) in its local shard
        ref = self.grad_ref
        return ref is not None and ref() is g and g._version == self.grad_version + extra_versions

    def remember(self, g: torch.Tensor) -> None:
        if self.sharded:
            g = local(g)
        ref = self.grad_ref
        if ref is None or ref() is not g:  # a new weakref only for a new gradient tensor (3 calls per step)
            self.grad_ref = weakref.ref(g)
        self.grad_version = g._version

    def remove(self) -> None:
        super().remove()
        self.pending = None
        self.grad_ref = None
