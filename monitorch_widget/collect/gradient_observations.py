"""Observation rows of a gradient reader's parameters: reading a set of watched parameters into a row of their
layout, and deciding on the host which rows are observations.

*When* a gradient is read is :mod:`.gradient_reading`'s definition; this is the part of the reader that writes
rows (:mod:`.gradient_layout`, or the reader's other layout kind) and marks them. A site's ``pending`` is
(layout, generation, row, position): the row read for its current gradient, not yet decided.
"""

from __future__ import annotations

import weakref
from itertools import repeat
from operator import attrgetter, eq, is_
from typing import Any

import torch

from .gradient_layout import Layout, LayoutKind
from .gradient_site import GradientSite
from .sharding import local
from .streams import StreamBank

_STRIDED = torch.strided
_PENDING, _OFF, _HANDLE = attrgetter("pending"), attrgetter("off"), attrgetter("handle")
_PARAM, _GRAD, _VERSION = attrgetter("param"), attrgetter("grad"), attrgetter("_version")
_COUNTED_HERE = attrgetter("counted_here")
_GRAD_REF, _GRAD_VERSION = attrgetter("grad_ref"), attrgetter("grad_version")
_SHARDED, _REQUIRES_GRAD, _LAYOUT = attrgetter("sharded"), attrgetter("requires_grad"), attrgetter("layout")
_SHAPE, _UNITS_SHAPE, _DEVICE = attrgetter("shape"), attrgetter("units.shape"), attrgetter("device")
_DEREF = weakref.ref.__call__  # operator.call is Python 3.11+


class GradientObservations:
    """The rows half of :class:`~.gradient_reading.GradientReader`: its sites, their layouts, and their rows."""

    def __init__(self, kind: LayoutKind, bank: StreamBank) -> None:
        self.kind = kind
        self.bank = bank
        self.sites: list[GradientSite] = []
        self.layouts: dict[tuple[Any, ...], Any] = {}
        # (sites, device, layout) of the last unsharded observation: the usual loop observes the same set
        self._last_layout: tuple[list[GradientSite], torch.device, Any] | None = None
        # (an optimizer's sites, a layout) found to hold the same parameters (:meth:`_reuse_row`)
        self._covered: tuple[list[GradientSite], Any] | None = None
        # (layout, pending tuples, gradient weakrefs, versions) of the last whole-layout speculative read
        self._speculative: tuple[Any, list[Any], list[Any], list[int]] | None = None

    def _observe(self, sites: list[GradientSite], commit: bool) -> None:
        last = self._last_layout
        if not commit and last is not None and last[0] == sites and self._observe_again(sites, last[1], last[2]):
            return
        device = None
        grads: list[torch.Tensor] = []
        for s in sites:  # the usual case: dense unsharded gradients of their parameters' shapes, one device
            g = s.param.grad
            if g is None or s.sharded or g.requires_grad or g.layout != _STRIDED or g.shape != s.units.shape:
                break
            if device is None:
                device = g.device
            elif g.device != device:
                break
            grads.append(g)
        else:
            if device is not None:
                self._observe_on(sites, grads, device, commit)
            return
        self._observe_each(sites, commit)

    def _observe_again(self, sites: list[GradientSite], device: torch.device, layout: Any) -> bool:
        """The end of a backward pass of the usual loop: ``sites`` are those of the last unsharded read (their
        ``layout``); when their gradients are dense, of their parameters' shapes, on ``device`` and need no
        detaching, write the row with C-level checks over the sites instead of :meth:`_observe`'s loop, and
        return True. Returns False (nothing done) otherwise."""
        grads = list(map(_GRAD, map(_PARAM, sites)))
        if any(map(is_, grads, repeat(None))) or any(map(_SHARDED, sites)) or any(map(_REQUIRES_GRAD, grads)) \
                or not all(map(is_, map(_LAYOUT, grads), repeat(_STRIDED))) \
                or list(map(_SHAPE, grads)) != list(map(_UNITS_SHAPE, sites)) \
                or not all(map(eq, map(_DEVICE, grads), repeat(device))):
            return False
        try:
            if layout.full:
                self._fold(layout)
            row = layout.compute(grads)
        except Exception as exc:  # noqa: BLE001
            for s in sites:
                s.fail(f"gradient statistics failed with {type(exc).__name__}: {exc}")
            return True
        generation = layout.generation
        for pos, s in enumerate(sites):
            s.pending = (layout, generation, row, pos)
        # What was read is what a later step must find unchanged (remember(g) for each site): a wrapper may have
        # replaced or rewritten the gradient since its last accumulation (DDP's averaged bucket view). Usually
        # each site remembers this very tensor at this version already.
        refs, versions = list(map(_GRAD_REF, sites)), list(map(_VERSION, grads))
        if None in refs or not all(map(is_, grads, map(_DEREF, refs))) \
                or list(map(_GRAD_VERSION, sites)) != versions:
            for s, g in zip(sites, grads):
                s.remember(g)
            refs = list(map(_GRAD_REF, sites))
        whole = hasattr(layout, "mark_row") and (layout.sites is sites or layout.sites == sites)
        self._speculative = (layout, list(map(_PENDING, sites)), refs, versions) if whole else None
        return True

    def _observe_each(self, sites: list[GradientSite], commit: bool) -> None:
        """:meth:`_observe` site by site: sparse or misshapen gradients, shards, several devices."""
        grads = []
        usable: list[GradientSite] = []
        sharded = False
        for s in sites:
            g = s.param.grad
            if g is None:
                continue
            if g.layout != _STRIDED:  # sparse: COO (is_sparse), CSR, ...
                s.fail("gradient is sparse; gradient statistics need dense gradients")
                continue
            if g.shape != s.units.shape:
                s.fail(f"gradient shape {tuple(g.shape)} differs from the parameter's {s.units.shape}")
                continue
            if s.sharded:
                g, sharded = local(g), True
            grads.append(g.detach() if g.requires_grad else g)  # requires grad after create_graph=True
            usable.append(s)
        if not usable:
            return
        device = grads[0].device
        if not sharded and all(g.device == device for g in grads):  # the usual case: one layout
            self._observe_on(usable, grads, device, commit)
            return
        by_device: dict[tuple[torch.device, int], list[int]] = {}
        for i, g in enumerate(grads):  # one layout per device (model-parallel) and per shard group (FSDP2)
            shards = usable[i].shards
            key = 0 if shards is None or shards.group is None else id(shards.group)
            by_device.setdefault((g.device, key), []).append(i)
        for (device, _), members in by_device.items():
            self._observe_on([usable[i] for i in members], [grads[i] for i in members], device, commit)

    def _observe_on(self, group: list[GradientSite], grads: list[torch.Tensor], device: torch.device,
                    commit: bool) -> None:
        """One observation row of ``group`` (sites of one layout: one device, one shard group)."""
        try:
            last = self._last_layout
            if last is not None and last[0] == group and last[1] == device:
                layout = last[2]  # the same parameters as last time (every backward pass of the usual loop)
            else:
                layout = self._layout(group, device)
                if not any(s.sharded for s in group):
                    self._last_layout = (group, device, layout)
            if layout.full:
                self._fold(layout)
            row = layout.compute(grads)
        except Exception as exc:  # noqa: BLE001
            for s in group:
                s.fail(f"gradient statistics failed with {type(exc).__name__}: {exc}")
            return
        generation = layout.generation
        # the read of a whole layout at the end of a backward pass, for a step to reuse at once (_reuse_row)
        whole = not commit and hasattr(layout, "mark_row") and (layout.sites is group or layout.sites == group)
        for pos, s in enumerate(group):
            s.pending = (layout, generation, row, pos)
            # What was read is what a later step must find unchanged: a wrapper may have replaced or
            # rewritten the gradient since its last accumulation (DDP's averaged bucket view).
            g = s.param.grad
            if s.sharded:
                s.remember(g)  # type: ignore[arg-type]
                whole = False
            else:  # remember(g), inlined
                ref = s.grad_ref
                if ref is None or ref() is not g:
                    s.grad_ref = weakref.ref(g)  # type: ignore[arg-type]
                s.grad_version = g._version  # type: ignore[union-attr]
            if commit:
                self._commit(s)
        self._speculative = (layout, list(map(_PENDING, group)), list(map(_GRAD_REF, group)),
                             list(map(_GRAD_VERSION, group))) if whole else None

    def _layout(self, sites: list[GradientSite], device: torch.device) -> Any:
        key = (device, *(id(s) for s in sites), *(s.shards.key for s in sites if s.shards is not None))
        layout = self.layouts.get(key)
        if layout is None:
            layout = self.layouts[key] = self.kind.new(sites, device)
        return layout

    def _fold(self, layout: Layout, candidates: list[GradientSite] | None = None) -> None:
        """Fold ``layout``; rows still pending for some parameter survive, renumbered. ``candidates``: the sites
        that may still hold a pending row (default: all)."""
        pending = [s for s in (self.sites if candidates is None else candidates) if s.pending is not None
                   and s.pending[0] is layout and s.pending[1] == layout.generation]
        moved = layout.fold(self.bank, [s.pending[2] for s in pending])  # type: ignore[index]
        for s in pending:
            _, _, row, pos = s.pending  # type: ignore[misc]
            s.pending = (layout, layout.generation, moved[row], pos)

    def _commit(self, site: GradientSite) -> None:
        if site.pending is None:
            return
        layout, generation, row, pos = site.pending
        site.pending = None
        if generation == layout.generation:  # else the row was folded before it was decided: dropped
            layout.mark(row, pos, site.counted_here)
            site.observed = True


    def _reuse_row(self, sites: list[GradientSite]) -> bool:
        """The usual loop's step, decided for a whole layout at once: when ``sites`` are exactly the sites of the
        layout read at the end of the last backward pass, each still holding that read (``pending``) and its
        gradient unchanged since (the same tensor, the same version), that row becomes the step's observation
        of all of them -- what the reader's ``on_step`` decides site by site -- with one host write and
        C-level checks over the sites. Returns False (nothing done) otherwise."""
        spec = self._speculative
        if spec is None:
            return False
        layout, pendings, refs, versions = spec
        group = layout.sites
        covered = self._covered
        if covered is None or covered[0] is not sites or covered[1] is not layout:
            if len(sites) != len(group) or {id(s) for s in sites} != {id(s) for s in group}:
                return False
            self._covered = (sites, layout)
        if pendings[0][1] != layout.generation or not all(map(is_, map(_PENDING, group), pendings)):
            return False  # a site's read was decided, renumbered or replaced since; or a fold dropped the row
        if any(map(_OFF, group)) or any(map(is_, map(_HANDLE, group), repeat(None))):
            return False  # a site failed, or is not hooked (the step hooks it)
        grads = list(map(_GRAD, map(_PARAM, group)))
        if any(map(is_, grads, repeat(None))) or not all(map(is_, grads, map(_DEREF, refs))) \
                or list(map(_VERSION, grads)) != versions:
            return False  # a gradient replaced, changed in place, or gone (set to None) since the read
        row = pendings[0][2]
        if all(map(_COUNTED_HERE, group)):
            layout.mark_row(row)
        else:  # some parameters are counted on another rank (DDP)
            for pos, s in enumerate(group):
                layout.mark(row, pos, s.counted_here)
        for s in group:
            s.pending = None
            s.stepped = s.observed = True
        self._speculative = None
        return True
