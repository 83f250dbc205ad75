"""When a gradient is read: one observation per gradient *use*.

Definition (the same for every parameter size):

- Each ``torch.optim`` step reads the gradient of every watched parameter it updates, as the step used it:
  after its closure ran, unscaled by a GradScaler, after any clipping (:mod:`.optimizer_steps`); a frozen
  parameter's (``requires_grad=False``) stale ``.grad`` is no gradient and is not read. With
  gradient accumulation (k backward passes, then one step) that is one observation of the summed gradient.
- A gradient that no ``torch.optim`` step uses -- a hand-written update, an optimizer outside
  ``torch.optim``, the remainder of an accumulation window -- is counted once, as it stood at the end of its
  last backward pass, when it is discarded (the next backward pass starts a new gradient) or at the tick (and
  again at each later tick or its end if it keeps accumulating: a parameter no optimizer holds).
- Under a GradScaler (known from the first step it drives) a gradient no step uses is no observation: it is
  the scaled gradient (x the loss scale), and a step the scaler skipped had an inf/NaN somewhere -- a routine
  event while the scale calibrates, not the model's. The remainder of a window is read by the next step.
  Before the scaler's first step, such gradients still count as above.

A gradient's *life* runs from the backward pass that creates it to the one that finds it replaced
(``zero_grad()`` set it to None, or it was zeroed in place): a post-accumulate-grad hook compares the
gradient tensor and its version counter with what it saw last (an in-place accumulation adds exactly one
to the version). To count lives that no step uses, each backward pass is read speculatively at its end
(one engine callback for all parameters); a step that finds the gradient unchanged since then simply
marks that row as its observation, so the usual loop (backward, step, zero_grad) reads each gradient once.
Backward passes inside a step (a closure) are read by that step only.

Under distributed wrappers the gradient read is the one the optimizer uses: the end-of-pass read runs after
every engine callback queued during the pass (DDP's reducer finalisation: the all-reduced gradient), a
DDP-managed gradient is counted on one rank (:mod:`.wrapped`), and an FSDP2 gradient is read from its local
shard, its counts summed over the shard group (:mod:`.sharding`).

Everything here runs under ``torch.no_grad()`` on detached gradients (``create_graph=True`` leaves
gradients that require grad) and allocates outside inference mode.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .faults import FaultLog
from .gradient_layout import ActivityCounts, LayoutKind
from .gradient_observations import GradientObservations
from .gradient_site import GradientSite
from .held_hooks import HeldHook
from .hooks import VISIBILITY
from .optimizer_steps import STEPS, groups_signature
from .streams import StreamBank
from .wrapped import follow_replaced, note_ddp

_ENGINE = torch.autograd.Variable._execution_engine
_DDP = torch.nn.parallel.DistributedDataParallel
_TASK = torch._C._current_graph_task_id  # -1 outside a backward pass

#: readers whose end-of-pass read is queued in the engine. A backward pass that raises (an in-place autograd
#: error, Ctrl-C in a hook) drops its queued callbacks: such a reader would wait forever (``queued`` never reset,
#: no later pass read). :func:`recover_lost_reads` reads them where no backward pass can be running.
WAITING: set[GradientReader] = set()


def recover_lost_reads() -> None:
    """Read what the readers in :data:`WAITING` were to read at the end of a backward pass that raised. Called at a
    forward pass of the attached model, an optimizer step and a tick (cheap when the set is empty); outside a
    backward pass only (a reentrant checkpoint's recomputation runs inside one, its pass still to end)."""
    if WAITING and _TASK() == -1:
        for reader in list(WAITING):
            reader.on_backward_end()


class GradientReader(GradientObservations):
    """Reads the gradients of one lens' parameters per the module docstring, into the lens' bank. What a read
    computes is the lens' ``kind`` (default: gradient activation counts with threshold ``eps``); the rows are
    written and marked by :class:`~.gradient_observations.GradientObservations`."""

    def __init__(self, lens: str, faults: FaultLog, eps: float, bank: StreamBank,
                 kind: LayoutKind | None = None) -> None:
        super().__init__(kind if kind is not None else ActivityCounts(eps), bank)
        self.lens = lens
        self.faults = faults
        self.by_param: dict[int, GradientSite] = {}
        self.dirty: list[GradientSite] = []
        self.queued = False
        self._optimizers: dict[int, tuple[list[int], list[GradientSite]]] = {}
        self._wrapper_hook: Any = None
        self.wrappers: set[int] = set()
        self._unhooked: tuple[int, int, list[GradientSite]] | None = None  # see flush
        self._scaled_for: list[GradientSite] | None = None  # the sites a GradScaler-driven step last marked
        STEPS.listen(self)

    def add(self, site: GradientSite) -> None:
        self.sites.append(site)
        self.by_param[id(site.param)] = site
        if self._wrapper_hook is None and torch.distributed.is_available():
            # one cheap hook, on the first watched module: it runs inside a DDP forward wherever DDP wraps
            self._wrapper_hook = site.module.register_forward_pre_hook(HeldHook(self._note_ddp))

    def _note_ddp(self, module: nn.Module, args: Any) -> None:
        if getattr(_DDP, "_active_ddp_module", None) is not None:  # inside a DDP forward (else: one getattr)
            note_ddp(self)

    # --- backward passes ----------------------------------------------------------------------------
    def on_accumulate(self, site: GradientSite) -> None:
        """A gradient accumulated (the post-accumulate-grad hook; :meth:`.GradientSite._on_accumulate` inlines
        this for an unsharded parameter)."""
        g = site.param.grad
        if g is None:
            return
        running = STEPS.running
        if site.same_gradient(g, 1):  # accumulated in place: the same gradient's life goes on
            site.grad_version = g._version
            site.counted = False  # counted at a tick, accumulated since: counted again at its end or the next tick
        else:  # a new gradient: the previous one was discarded (inside a step too: SAM's first half used it)
            self.end_life(site)
            site.stepped = site.counted = False
            site.remember(g)
        if running is not None:
            return  # a closure inside a step: the step reads it
        self.dirty.append(site)
        if not self.queued:
            self.queue()

    def queue(self) -> None:
        """Read the parameters accumulated since (``dirty``) at the end of this backward pass."""
        self.queued = True
        WAITING.add(self)
        try:
            _ENGINE.queue_callback(self._after_engine_callbacks)
        except RuntimeError:  # not inside a backward pass (a hook called by hand)
            self.on_backward_end()

    def _after_engine_callbacks(self) -> None:
        # Runs among the engine's final callbacks, queued at the first accumulation -- before those that
        # finish the gradient: DDP's reducer queues its finalisation (wait for the all-reduce, copy the
        # averaged bucket into .grad) when its last bucket is ready, FSDP waits for its reduce-scatter in
        # one too. A callback queued from a callback runs after every one queued during the pass, so the
        # read below sees the gradient the optimizer will use.
        try:
            _ENGINE.queue_callback(self.on_backward_end)
        except RuntimeError:
            self.on_backward_end()

    def on_backward_end(self) -> None:
        sites, self.dirty, self.queued = self.dirty, [], False
        WAITING.discard(self)
        sites = [s for s in dict.fromkeys(sites) if not s.off and s.param is not None]
        if sites:
            try:
                self._observe(sites, commit=False)
            except Exception as exc:  # noqa: BLE001 - raised here it would abort the user's backward()
                self.faults.report(self.lens, f"reading gradients at the end of a backward pass failed with "
                                   f"{type(exc).__name__}: {exc}; training goes on")

    def end_life(self, site: GradientSite) -> None:
        if site.pending is not None:
            if not site.stepped and not site.counted and not site.scaled:
                self._commit(site)
            site.pending = None  # (a scaled gradient no step used: a step GradScaler skipped, no observation)

    # --- optimizer steps ----------------------------------------------------------------------------
    def on_step(self, optimizer: torch.optim.Optimizer) -> None:
        try:
            if WAITING:
                recover_lost_reads()
            watched = self._sites_of(optimizer)
            if STEPS.scaled and self._scaled_for is not watched:  # once per parameter set
                for s in watched:
                    s.scaled = True
                self._scaled_for = watched
            if watched and not STEPS.scaled and self._reuse_row(watched):
                return
            # a parameter that does not require grad got no gradient from any backward pass: a .grad it holds is a
            # stale one (zero_grad(set_to_none=False) keeps it as a zero tensor after requires_grad_(False)), no
            # observation -- so a layer frozen mid-epoch keeps the steps it trained in (lens/frozen.py says why)
            sites = [s for s in watched if not s.off and s.param.grad is not None and s.param.requires_grad]
            if not sites:
                return
            fresh = []
            scaled = STEPS.scaled  # unscaled in place by a GradScaler, version unchanged: read again
            for s in sites:
                if s.handle is None:
                    s.ensure_hook()
                if scaled or s.pending is None or not s.same_gradient(s.param.grad):  # type: ignore[arg-type]
                    fresh.append(s)
                    continue
                # read at the end of the backward pass, unchanged since: that row is this step's observation
                self._commit(s)
                s.stepped = True  # remember(g) is a no-op: g is the remembered gradient, unchanged
            if fresh:
                self._observe(fresh, commit=True)
                for s in fresh:
                    s.stepped = True
                    s.remember(s.param.grad)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - a monitor must never stop training
            self.faults.report(self.lens, f"reading gradients at the optimizer step failed with "
                               f"{type(exc).__name__}: {exc}; training goes on")

    def _sites_of(self, optimizer: torch.optim.Optimizer) -> list[GradientSite]:
        groups = optimizer.param_groups
        signature = groups_signature(optimizer)  # a group added, or a parameter list swapped: look again
        cached = self._optimizers.get(id(optimizer))
        if cached is None or cached[0] != signature:
            self.follow_replaced()
            sites = [self.by_param[id(p)] for g in groups for p in g["params"] if id(p) in self.by_param]
            cached = self._optimizers[id(optimizer)] = (signature, sites)
        return cached[1]

    def held_by_optimizers(self) -> set[int]:
        """``id`` of every site whose parameter an optimizer that stepped holds (frozen ones included)."""
        return {id(s) for _, sites in self._optimizers.values() for s in sites}

    def follow_replaced(self) -> bool:
        """Re-bind sites whose module now holds another parameter (``fully_shard``): see :mod:`.wrapped`. Returns
        whether any was."""
        if follow_replaced(self):
            for layout in self.layouts.values():
                self._fold(layout)
            self.layouts = {}
            self._last_layout = None
            self._optimizers = {}
            self._covered = None
            return True
        return False

    # --- the tick -------------------------------------------------------------------------------------
    def flush(self, final: bool = True) -> None:
        """Fold every layout into the bank. At the tick (``final``) the gradients no step used yet are
        counted first; a provisional refresh (``update_every``) leaves them undecided."""
        undecided: list[GradientSite] | None = None  # at the tick: the sites whose row stays pending
        if final:
            STEPS.abandon()  # a step that raised never reached its post-hook
            recover_lost_reads()
            replaced = self.follow_replaced()
            unhooked = self._unhooked
            if replaced or unhooked is None or unhooked[:2] != (VISIBILITY[0], len(self.sites)):
                # parameters without a hook (frozen at attach, hidden): kept while no site was hidden or shown,
                # replaced or added, so that a deep model's tick touches only those (each site is a cache miss)
                unhooked = self._unhooked = (VISIBILITY[0], len(self.sites), [s for s in self.sites if s.handle is None])
            for s in unhooked[2]:
                s.ensure_hook()  # unfrozen since: hooked from now on (a no-op once it has a hook)
            undecided = []
            if not self.settled:  # else every site's row was committed by the last step (_reuse_row): none pending
                for s in self.sites:
                    if s.pending is not None:
                        if s.scaled and not s.stepped:  # under a GradScaler: read unscaled by its next step
                            s.pending = None
                        elif not s.stepped and not s.counted:
                            self._commit(s)
                            s.counted = True
                        else:
                            undecided.append(s)
        for layout in self.layouts.values():
            if not final and getattr(layout, "group", None) is not None:
                continue  # a shard group sums its rows in step (the tick, a full buffer); ranks refresh apart
            try:
                self._fold(layout, undecided)
            except Exception as exc:  # noqa: BLE001 - (a shard group's sum) the epoch goes on without them
                for s in layout.sites:
                    s.fail(f"folding gradient statistics failed with {type(exc).__name__}: {exc}")
                layout.used, layout.present[:] = 0, False

    def reset(self) -> None:
        """A new epoch: rows were folded at the tick; undecided ones stay with their gradients."""
        self.kind.reset()

    def clear(self) -> None:
        STEPS.leave(self)
        WAITING.discard(self)
        if self._wrapper_hook is not None:
            self._wrapper_hook.remove()
            self._wrapper_hook = None
        self.layouts = {}
        self._last_layout = None
        self.sites = []
        self.by_param = {}
        self._optimizers = {}
        self._covered = None
        self.dirty = []
