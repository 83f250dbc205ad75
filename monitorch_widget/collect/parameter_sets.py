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
from .geometry import size_scale
from .hooks import Site
from .modes import monitor_mode
from .observation_rows import ObservationRows
from .streams import BankRow, StreamBank


class ParameterSite(Site):
    """One watched parameter of a module (its series is ``name``)."""

    def __init__(self, name: str, module_name: str, module: nn.Module, param_name: str, param: nn.Parameter,
                 lens: str, faults: FaultLog, width: int, slot: BankRow) -> None:
        super().__init__(name, lens, faults, width, False, slot)
        self.module_name = module_name
        self.module_type = type(module).__name__
        self.param_name = param_name
        self.param = param
        self.bank_row = slot


class Group:
    """The sites of one device that are on, their tensors, the rows they write into, and any buffers."""

    def __init__(self, sites: list[ParameterSite], width: int, normalize: bool) -> None:
        self.sites = sites
        self.params = [s.param.detach() for s in sites]
        self.device = self.params[0].device
        self.rows = ObservationRows([s.bank_row for s in sites], self.device, width)
        self.scale = size_scale(self.params, normalize, self.device)
        self.buffers: list[list[torch.Tensor]] = []  # per buffer kind, aligned with sites (see ParameterSet)

    def next_row(self, bank: StreamBank) -> tuple[int, torch.Tensor]:
        if self.rows.full:
            self.rows.fold(bank)
        return self.rows.next_row()


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
        self._key: tuple[tuple[int, str], ...] | None = None
        self._groups: list[Group] = []
        self._retired: list[Group] = []  # groups replaced while holding unfolded rows

    def add(self, site: ParameterSite) -> None:
        self.sites.append(site)

    def groups(self) -> list[Group]:
        """The current groups (rebuilt when a site was added, turned on or off, or its parameter moved)."""
        on = [s for s in self.sites if not s.off]
        key = tuple((id(s), str(s.param.device)) for s in on)
        if key != self._key:
            self._retired += [g for g in self._groups if g.rows.used]
            self._key = key
            self._groups = self._build(on)
        return self._groups

    @monitor_mode
    def _build(self, sites: list[ParameterSite]) -> list[Group]:
        by_device: dict[torch.device, list[ParameterSite]] = {}
        for s in sites:
            by_device.setdefault(s.param.device, []).append(s)
        groups = []
        for members in by_device.values():
            group = Group(members, self.width, self.normalize)
            for s in members:
                mem = self._memory.get(id(s))
                if mem is None or mem[0].shape != s.param.shape or mem[0].device != s.param.device:
                    mem = self._memory[id(s)] = [torch.zeros_like(s.param.detach()) for _ in range(self.n_buffers)]
            group.buffers = [[self._memory[id(s)][k] for s in members] for k in range(self.n_buffers)]
            groups.append(group)
        return groups

    def swap(self, group: Group, a: int, b: int) -> None:
        """Exchange buffer kinds ``a`` and ``b`` of every site of ``group`` (a pointer swap, no copy)."""
        group.buffers[a], group.buffers[b] = group.buffers[b], group.buffers[a]
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
            group.rows.fold(self.bank)
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
