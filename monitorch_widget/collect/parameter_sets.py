"""Watched parameters read together: one site per parameter, one group of device rows per device.

The parameter-norm and parameter-update readers observe every watched parameter at the same moments (a
tick, an optimizer step), so they compute on lists of tensors with multi-tensor ops, per device, and write
one :class:`~.observation_rows.ObservationRows` row per observation for all of them at once. A site that is
off (hidden in the widget, or an inactive epoch) is left out of the lists; the groups are rebuilt only when
the set of sites that are on changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .faults import FaultLog
from .geometry import geometry_partials, size_scale, write_parts
from .hooks import Site
from .modes import monitor_mode
from .observation_rows import GeometryParts, ObservationRows
from .sharding import local, shards_of
from .streams import BankRow, StreamBank


class ParameterSite(Site):
    """One watched parameter of a module (its series is ``name``)."""

    def __init__(self, name: str, module_name: str, module: nn.Module, param_name: str, param: nn.Parameter,
                 lens: str, faults: FaultLog, width: int, slot: BankRow) -> None:
        super().__init__(name, lens, faults, width, False, slot)
        self.module_name = module_name
        self.module_type = type(module).__name__
        self.param_name = param_name
        self.module = module
        self.param = param
        self.bank_row = slot
        self.shards = shards_of(param)  # FSDP2: where this rank's shard lies (raises for unsupported layouts)

    def follow(self) -> None:
        """The module holds another parameter under this name (``fully_shard`` after attach): read that one."""
        current = self.module._parameters.get(self.param_name)
        if current is not None and current is not self.param:
            self.param = current
            self.shards = shards_of(current)


class Group:
    """The sites of one device (and one FSDP2 shard group) that are on, their tensors -- the local shards of
    sharded parameters -- the rows they write into, and any buffers."""

    def __init__(self, sites: list[ParameterSite], width: int, normalize: bool, group: Any = None) -> None:
        self.sites = sites
        self.params = [local(s.param.detach()) for s in sites]
        self.device = self.params[0].device
        self.rows = ObservationRows([s.bank_row for s in sites], self.device, width)
        self.scale = size_scale([s.param for s in sites], normalize, self.device)  # the whole parameters' sizes
        self.buffers: list[list[torch.Tensor]] = []  # per buffer kind, aligned with sites (see ParameterSet)
        self.flat: list[list[torch.Tensor]] = []  # the same buffers as 1-D views (no reshape per observation)
        # the parts of each observation, finished at the fold; sharded: summed over the shard group first, whose
        # rank 0 counts them (.sharding)
        self.parts = GeometryParts(self.rows, width == 2, group)
        self.counts_here = all(s.shards is None or s.shards.counts_here for s in sites)
        # [n] norms of the ``previous`` tensors the next observation correlates with, when this group wrote
        # them (the previous observation's row); None: computed from the tensors
        self.before: torch.Tensor | None = None

    def next_row(self, bank: StreamBank) -> int:
        if self.rows.full:
            self.fold(bank)
        return self.rows.next_row()[0]

    def write(self, row: int, tensors: list[torch.Tensor], previous: list[torch.Tensor] | None,
              taken: list[bool] | None = None) -> None:
        """Observation ``row``: norms (and correlations with ``previous``) of ``tensors``, counted here for
        every site, or for the sites ``taken`` marks. With ``previous``, the caller's next ``previous`` must be
        these ``tensors``, unchanged (a sequence) -- for the sites not ``taken``, their old ``previous``."""
        parts = self.parts.rows_views[row]
        if self.parts.group is None:
            write_parts(parts, tensors, previous, self.before)
            if previous is not None:
                # some sites keep their old previous tensor: their norms are not this row's, recompute next time
                self.before = parts[0] if taken is None else None
        else:  # a shard's rows are summed in place at the fold: its parts are never copied forward
            geometry_partials(parts, tensors, previous)
        if self.counts_here:
            self.rows.mark_taken(row, taken)

    def fold(self, bank: StreamBank) -> None:
        self.before = None  # its row is about to be reused
        self.parts.finish(self.scale)
        moved = self.rows.fold(bank)
        self.parts.moved(moved)


class ParameterSet:
    """The sites of one lens and their per-device groups. ``buffers`` per-site tensors (e.g. a snapshot and
    the previous update) are allocated once per site, like the parameter, and kept across regroupings."""

    def __init__(self, lens: str, faults: FaultLog, bank: StreamBank, width: int, normalize: bool,
                 buffers: int = 0) -> None:
        self.lens = lens
        self.faults = faults
        self.bank = bank
        self.width = width
        self.normalize = normalize
        self.n_buffers = buffers
        self.sites: list[ParameterSite] = []
        self._memory: dict[int, list[torch.Tensor]] = {}
        self._key: tuple[tuple[int, int, torch.device, torch.dtype, int], ...] | None = None
        self._groups: list[Group] = []
        self._retired: list[Group] = []  # groups replaced while holding unfolded rows

    def add(self, site: ParameterSite) -> None:
        self.sites.append(site)

    @staticmethod
    def _reads(site: ParameterSite) -> bool:
        """Whether a site's parameter is read now: at a step, while its hooks are on (``is_active_fn`` included)."""
        return not site.off

    def groups(self, taking: Callable[[ParameterSite], bool] | None = None) -> list[Group]:
        """The current groups of the sites that are on and, with ``taking``, that it accepts (rebuilt when a
        site was added, turned on or off, accepted or not, or its parameter moved or changed dtype)."""
        for s in self.sites:
            s.follow()
        on = [s for s in self.sites if self._reads(s) and (taking is None or taking(s))]
        # A parameter moved by module.to() keeps its identity: its device and dtype are part of the key, and so is
        # its memory: ``param.data = new_tensor`` (a re-initialisation, resize_token_embeddings) keeps the object
        # but not the tensor a group holds a detached alias of (a sharded parameter's local shard follows fully_shard)
        key = tuple((id(s), id(s.param), s.param.device, s.param.dtype, 0 if s.shards is not None else s.param.data_ptr())
                    for s in on)
        if key != self._key:
            self._retired += [g for g in self._groups if g.rows.used]
            self._key = key
            self._groups = self._build(on)
        return self._groups

    @monitor_mode
    def _build(self, sites: list[ParameterSite]) -> list[Group]:
        by_device: dict[tuple[torch.device, int], list[ParameterSite]] = {}
        shard_groups: dict[int, Any] = {}
        for s in sites:
            sg = s.shards.group if s.shards is not None else None
            shard_groups[id(sg)] = sg
            by_device.setdefault((s.param.device, id(sg)), []).append(s)
        groups = []
        for (_, sg_id), members in by_device.items():
            group = Group(members, self.width, self.normalize, shard_groups[sg_id])
            for s, p in zip(members, group.params):
                mem = self._memory.get(id(s))
                # rebuilt for a new shape, device or dtype (model.double() after attach); a lens without
                # buffers (parameter norms) keeps an empty list
                if mem is None or (mem and (mem[0].shape != p.shape or mem[0].device != p.device
                                            or mem[0].dtype != p.dtype)):
                    # contiguous whatever the parameter's strides: each also serves as a flat view
                    mem = self._memory[id(s)] = [torch.zeros(p.shape, dtype=p.dtype, device=p.device)
                                                 for _ in range(self.n_buffers)]
            group.buffers = [[self._memory[id(s)][k] for s in members] for k in range(self.n_buffers)]
            group.flat = [[t.view(-1) for t in kind] for kind in group.buffers]
            groups.append(group)
        return groups

    def swap(self, group: Group, a: int, b: int) -> None:
        """Exchange buffer kinds ``a`` and ``b`` of every site of ``group`` (a pointer swap, no copy)."""
        group.buffers[a], group.buffers[b] = group.buffers[b], group.buffers[a]
        group.flat[a], group.flat[b] = group.flat[b], group.flat[a]
        for s, x, y in zip(group.sites, group.buffers[a], group.buffers[b]):
            mem = self._memory[id(s)]
            mem[a], mem[b] = x, y

    def guarded(self, what: str, fn: Callable[[], Any]) -> None:
        """Run ``fn``; a failure is reported once and turns the lens' sites off (training goes on)."""
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - a monitor must never stop training
            for s in self.sites:
                s.broken = True
                s._update_off()
            self.faults.report(self.lens, f"{what} failed with {type(exc).__name__}: {exc}; this lens stops "
                               "here, training goes on")

    def flush(self) -> None:
        for group in self._retired + self._groups:
            group.fold(self.bank)
        self._retired = []

    def bytes_held(self) -> int:
        """Bytes of the per-site buffers (not counting the few rows of results)."""
        return sum(t.numel() * t.element_size() for mem in self._memory.values() for t in mem)

    def clear(self) -> None:
        self.sites = []
        self._memory = {}
        self._groups = []
        self._retired = []
        self._key = None
