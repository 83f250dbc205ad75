"""Reading parameters themselves: their norms (at ticks) and the updates an optimizer's steps make.

:class:`UpdateReader` -- per step of one optimizer, the update u = p_after - p_before of every watched
parameter: the step pre-hook copies the parameters into a preallocated snapshot (one ``_foreach_copy_``
per device), the post-hook subtracts them in place (the snapshot becomes -u; norms and correlations do not
depend on the sign) and writes ||u|| (or RMS) and <u_prev, u> / (||u_prev|| ||u|| + eps) with multi-tensor
ops (:mod:`.geometry`); the buffers of u and u_prev then swap. Memory: one copy of the watched parameters
(two with ``correlation``: the snapshot and the previous update), allocated at the first step. A step
GradScaler skips fires neither hook (no observation), and a parameter a step does not update (not held by
the optimizer, or without a gradient) makes no observation at that step. Without an optimizer, :meth:`UpdateReader.inspect`
measures the change since its previous call (monitorch's ``inspect_update``).

:class:`NormReader` -- ||p|| (or RMS) of every watched parameter, one multi-tensor norm per device, read at
each tick and whenever the user calls ``collect_data()`` (monitorch's ``ParameterNorm``).
"""

from __future__ import annotations

from typing import Any

import torch

from .modes import monitor_mode
from .optimizer_steps import groups_signature
from .parameter_sets import Group, ParameterSet, ParameterSite
from .update_ratio import UpdateRatios

_SNAPSHOT, _PREVIOUS = 0, 1


class UpdateReader(ParameterSet):
    """The watched parameters' updates per optimizer step (see the module docstring)."""

    def __init__(self, lens: str, faults: Any, bank: Any, normalize: bool, correlation: bool,
                 ratios: UpdateRatios | None = None) -> None:
        super().__init__(lens, faults, bank, 2 if correlation else 1, normalize, 2 if correlation else 1)
        self.correlation = correlation
        #: where each step's ||update|| / ||weight before the step|| goes (:mod:`.update_ratio`), or None
        self.ratios = ratios
        self.armed: list[Group] | None = None  # the groups snapshotted and not yet observed
        self.handles: list[Any] = []
        self.steps = 0  # observations since the last reset (steps of the hooked optimizer, inspect() calls)
        self._held: tuple[list[int], set[int]] | None = None  # (groups signature, ids of the optimizer's params)
        self._stepping = False  # the armed snapshot is an optimizer step's (not an inspect() call's)

    def hook(self, optimizer: torch.optim.Optimizer | None) -> None:
        """Observe the steps of ``optimizer`` from now on (and no longer those of the previous one); None:
        observe only :meth:`inspect` calls."""
        for handle in self.handles:
            handle.remove()
        self.handles = []
        self.armed = None  # a step of the previous optimizer that is under way is not observed
        self._held = None
        if optimizer is not None:
            self.handles = [optimizer.register_step_pre_hook(
                                lambda opt, *_: self.guarded("snapshot before the step", lambda: self.snapshot(opt))),
                            optimizer.register_step_post_hook(lambda *_: self.guarded("reading the update",
                                                                                      self.observe))]

    def inspect(self) -> None:
        """The change since the previous call (the first call only takes the snapshot)."""
        self.guarded("inspect_update", self._inspect)

    def _inspect(self) -> None:
        self.observe()
        self.snapshot()

    @monitor_mode
    def snapshot(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Copy the watched parameters ``optimizer`` holds before its step (None, ``inspect``: all of them).
        Which of them the step updates is known only after it (a closure -- LBFGS, Lightning -- makes the
        gradients inside the step): see :meth:`observe`."""
        taking = None
        if optimizer is not None:
            signature = groups_signature(optimizer)  # the held set is rebuilt only when the groups change
            if self._held is None or self._held[0] != signature:
                self._held = (signature, {id(p) for g in optimizer.param_groups for p in g["params"]})
            held = self._held[1]
            taking = lambda site: id(site.param) in held  # noqa: E731
        groups = self.groups(taking)
        for group in groups:
            torch._foreach_copy_(group.buffers[_SNAPSHOT], group.params)
        self.armed = groups if groups else None
        self._stepping = optimizer is not None

    @monitor_mode
    def observe(self) -> None:
        """After a step: the update of every snapshotted parameter the step updated -- one whose ``.grad`` is
        not None now (every ``torch.optim`` optimizer skips a parameter without a gradient: a module no batch
        reached, a frozen one) and that requires grad at this step (a frozen parameter's kept zero ``.grad``,
        ``zero_grad(set_to_none=False)``: its move is momentum or weight decay, not training; a GAN's discriminator
        switched off between its steps trains in its own). The others make no observation, and their next
        correlation is with their own previous update."""
        self.steps += 1
        groups, self.armed = self.armed, None
        for group in groups or ():
            delta = group.buffers[_SNAPSHOT]
            # the snapshot still holds the weights before the step: their norms, for the update ratio
            ratio_row = self.ratios.begin(group, delta) if self.ratios is not None else None
            torch._foreach_sub_(delta, group.params)  # before - after = -update
            took = [s.param.grad is not None and s.param.requires_grad for s in group.sites] if self._stepping else None
            if took is not None and all(took):
                took = None
            if took is not None and not any(took):
                continue
            row = group.next_row(self.bank)
            group.write(row, group.flat[_SNAPSHOT], group.flat[_PREVIOUS] if self.correlation else None, took)
            if ratio_row is not None and self.ratios is not None:  # row 0 of the parts: the update's norms
                self.ratios.end(group, ratio_row, group.parts.rows_views[row][0], took)
            if self.correlation:
                if took is None:
                    self.swap(group, _SNAPSHOT, _PREVIOUS)
                else:
                    self._swap_taken(group, took)

    def _swap_taken(self, group: Group, took: list[bool]) -> None:
        """:meth:`swap` of the snapshot and the previous update for the sites that ``took`` the step only."""
        a, b = _SNAPSHOT, _PREVIOUS
        for i, s in enumerate(group.sites):
            if took[i]:
                x, y = group.buffers[a][i], group.buffers[b][i]
                group.buffers[a][i], group.buffers[b][i] = y, x
                group.flat[a][i], group.flat[b][i] = group.flat[b][i], group.flat[a][i]
                mem = self._memory[id(s)]
                mem[a], mem[b] = y, x

    @monitor_mode
    def reset(self) -> None:
        """A new epoch: the previous update is zero again (monitorch's first correlation of an epoch is 0)."""
        self.steps = 0
        if self.correlation:
            previous = [mem[_PREVIOUS] for mem in self._memory.values()]
            if previous:
                torch._foreach_zero_(previous)
            for group in self._groups:
                group.before = None

    def flush(self) -> None:
        super().flush()
        if self.ratios is not None:
            self.ratios.flush(self._groups)

    def clear(self) -> None:
        self.hook(None)
        super().clear()
        if self.ratios is not None:
            self.ratios.clear()


class NormReader(ParameterSet):
    """The watched parameters' norms, read on demand (see the module docstring)."""

    def __init__(self, lens: str, faults: Any, bank: Any, normalize: bool) -> None:
        super().__init__(lens, faults, bank, 1, normalize)

    @staticmethod
    def _reads(site: ParameterSite) -> bool:
        # read at a tick (or collect_data()): whatever is_active_fn answered at the last pass, an evaluation pass
        # that is_active_fn=lambda _: model.training turned off (trial r10: every norm NaN)
        return site.watching

    def read(self) -> None:
        self.guarded("reading parameter norms", self._read)

    @monitor_mode
    def _read(self) -> None:
        for group in self.groups():
            row = group.next_row(self.bank)
            group.write(row, group.params, None)
