"""Observation rows of a gradient reader's parameters: reading a set of watched parameters into a row of their
layout, and deciding on the host which rows are observations.

*When* a gradient is read is :mod:`.gradient_reading`'s definition; this is the part of the reader that writes
rows (:mod:`.gradient_layout`, or the reader's other layout kind) and marks them. A site's ``pending`` is
(layout, generation, row, position): the row read for its current gradient, not yet decided.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

from .gradient_layout import Layout, LayoutKind
from .gradient_site import GradientSite
from .sharding import local
from .streams import StreamBank

_STRIDED = torch.strided


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
        # no site has a pending row: the last step committed every site's row at once (_reuse_row) and nothing
        # was read since; False whenever that is not known
        self.settled = False

    def _observe(self, sites: list[GradientSite], commit: bool) -> None:
        """Read ``sites``' gradients into one row per layout; ``commit``: the row is their observation now (a
        step), else it stays pending (the end of a backward pass)."""
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
        self.settled = False
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
        for pos, s in enumerate(group):
            s.pending = (layout, generation, row, pos)
            # What was read is what a later step must find unchanged: a wrapper may have replaced or
            # rewritten the gradient since its last accumulation (DDP's averaged bucket view).
            g = s.param.grad
            if s.sharded:
                s.remember(g)  # type: ignore[arg-type]
            else:  # remember(g), inlined
                ref = s.grad_ref
                if ref is None or ref() is not g:
                    s.grad_ref = weakref.ref(g)  # type: ignore[arg-type]
                s.grad_version = g._version  # type: ignore[union-attr]
            if commit:
                self._commit(s)

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
        """The usual loop's step, decided for a whole layout at once: when ``sites`` are exactly one layout's
        sites, each read in the same row at the end of the last backward pass and its gradient unchanged since
        (the same tensor, the same version), that row becomes the step's observation of all of them -- what
        ``GradientReader.on_step`` decides site by site -- with one host write. Returns False (nothing done) otherwise.

        Plain loops over the sites on purpose: on CPython 3.11 a specialised attribute load in a loop costs fewer
        instructions than ``map(attrgetter(...), sites)`` (measured with callgrind: +12k instructions a step for
        six parameters)."""
        first = sites[0].pending
        if first is None:
            return False
        layout, generation, row, _ = first
        mark_row = getattr(layout, "mark_row", None)  # a layout whose mark has no side effect
        if mark_row is None or generation != layout.generation:
            return False
        covered = self._covered
        if covered is None or covered[0] is not sites or covered[1] is not layout:
            if len(sites) != len(layout.sites) or {id(s) for s in sites} != {id(s) for s in layout.sites}:
                return False
            self._covered = (sites, layout)
        counted = True
        for s in sites:
            p = s.pending
            if p is None or p[0] is not layout or p[2] != row or p[1] != generation or s.off or s.sharded \
                    or s.handle is None:
                return False
            g = s.param.grad
            ref = s.grad_ref
            if g is None or ref is None or ref() is not g or g._version != s.grad_version:
                return False
            counted = counted and s.counted_here
        if counted:
            mark_row(row)
        else:  # some parameters are counted on another rank (DDP)
            for pos, s in enumerate(layout.sites):
                layout.mark(row, pos, s.counted_here)
        for s in sites:
            s.pending = None
            s.stepped = s.observed = True
        self.settled = len(sites) == len(self.sites)  # every site of the reader: none left pending
        return True

