"""ParameterUpdateGeometry: the norm of the update each optimizer step makes, and its correlation."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..collect.faults import MonitorNotice
from ..collect.parameter_reads import UpdateReader
from ..collect.parameter_sets import ParameterSite
from ..collect.streams import BankRow, StreamBank
from ..collect.summary import Summary
from ..collect.update_ratio import UpdateRatios
from .base import Call, TagAttributes, TagType
from .geometry_calls import flush_sites
from .sequence_geometry import SequenceGeometryLens
from .update_notices import StepNotices, hookable, unhookable


class ParameterUpdateGeometry(SequenceGeometryLens):
    """Per step of ``optimizer``, the L2 norm (or RMS with ``normalize_by_size``) of the update
    u = p_after - p_before of each watched parameter and, with ``compute_correlation``,
    <u_prev, u> / (||u_prev|| ||u|| + 1e-8) with the previous step's update (0 for the first one of an epoch).
    Same arguments, tags (``<Parameter> Update Norm``, ``<Parameter> Update Correlation``) and keys as
    monitorch 0.1.0.7's lens.

    Read by ``optimizer``'s step pre- and post-hooks (:mod:`monitorch_widget.collect.parameter_reads`): the
    update is exactly what each step changed, the first step included (monitorch differences the parameters
    between consecutive post-step hooks, so it has no value for the first step and counts changes made between
    steps into the next one). A step GradScaler skips is not an observation, and neither is a step for a
    parameter it does not update (one the optimizer does not hold, or whose ``.grad`` is None: a module no batch
    reached, a frozen one). With ``optimizer=None``, call
    :meth:`inspect_update` to observe the change since its previous call (monitorch's behaviour).

    Cost per step: one ``_foreach_copy_`` and one ``_foreach_sub_`` over the watched parameters, one
    ``_foreach_norm`` (and, with correlation, one ``torch.dot`` per parameter and a copy of the previous
    update's norms from its row), per device; the division happens at the fold, for all rows at once; no
    host sync. Memory: one
    copy of the watched parameters, two with ``compute_correlation`` (the snapshot and the previous update):
    2.0x the watched parameters' bytes (1.0x without correlation), measured by ``benchmarks/geometry_memory.py``;
    allocated at the first step.

    Also, for the record only (not a monitorch call; ``Call.record_only``), the update-to-weight ratio of each
    step, ||u|| / ||p_before|| (:mod:`monitorch_widget.collect.update_ratio`): tag ``<Parameter> Update Ratio``,
    keys ``mean`` and ``max`` over the epoch's steps, which the health check ``update_ratio`` reads. Cost: one
    more ``_foreach_norm`` (of the snapshot) and one division per step, per device.

    Raises TypeError when ``optimizer`` is neither a ``torch.optim.Optimizer`` nor None, or is a wrapper that never
    ran ``Optimizer.__init__`` (timm's ``Lookahead``: the message names the inner optimizer to pass), for non-boolean
    flags and bad ``parameters``; ValueError for unknown aggregation names, and at attach when no parameter of
    the model matches.
    """

    WHAT = "Update"

    def __init__(self, optimizer: torch.optim.Optimizer | None, inplace: bool = True,
                 normalize_by_size: bool = False, log_scale: bool = False, compute_correlation: bool = True,
                 parameters: str | Iterable[str] = ("weight", "bias"), line_aggregation: str | Iterable[str] = "mean",
                 range_aggregation: str | Iterable[str] | None = ("std", "min-max")) -> None:
        super().__init__(parameters, inplace, normalize_by_size, log_scale, compute_correlation, line_aggregation,
                         range_aggregation)
        self._reader: UpdateReader | None = None
        self._ratios = UpdateRatios()
        self._epoch_start = 0  # the model's optimizer-step count when the epoch began
        self._inspected = False  # inspect_update() was called since attach
        self._said: StepNotices | None = None  # what was said once about unobserved steps (update_notices.py)
        self.optimizer = optimizer

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        """The optimizer whose steps are observed. Assigning another one (a new optimizer mid-training, or
        before a re-attach) observes its steps from the next one on, and no longer the old one's."""
        return self._optimizer

    @optimizer.setter
    def optimizer(self, optimizer: torch.optim.Optimizer | None) -> None:
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"ParameterUpdateGeometry(optimizer=...) must be a torch.optim.Optimizer (the one whose "
                            f"steps update the model) or None (then call inspect_update()); got "
                            f"{type(optimizer).__name__}")
        if optimizer is not None and not hookable(optimizer):
            raise TypeError(unhookable(optimizer))
        self._optimizer = optimizer
        if self._reader is not None:
            self._reader.hook(optimizer)

    def _reader_(self) -> UpdateReader:
        if self._reader is None:
            self._reader = UpdateReader(self.lens_name, self.ctx.faults, self._bank, self._normalize,
                                        self._correlation, self._ratios)
            if self.optimizer is not None:
                self._reader.hook(self.optimizer)
        return self._reader

    def _add_site(self, name: str, module: nn.Module, pname: str, param: nn.Parameter) -> None:
        site = ParameterSite(self.series_name(name, pname), name, module, pname, param, self.lens_name,
                             self.ctx.faults, 2 if self._correlation else 1, self._bank.add_row())
        self._reader_().add(site)
        self._ratios.add(site)
        self._sites.append(site)

    def inspect_update(self) -> None:
        """Observe the change of the watched parameters since the previous call (the first call only takes a
        snapshot). For ``optimizer=None``; with an optimizer its steps are observed already."""
        self._inspected = True
        if self._reader is not None:
            self._reader.inspect()

    def bytes_held(self) -> int:
        """Bytes of parameter copies held (snapshot and previous update)."""
        return 0 if self._reader is None else self._reader.bytes_held()

    def flush(self, final: bool = True) -> None:
        if self._reader is not None:
            self._reader.flush()
            if final:
                self._check_optimizer()
        flush_sites(self, final)

    def _check_optimizer(self) -> None:
        """An epoch in which other optimizers stepped the model and ours never did: most likely a new
        optimizer replaced it (a notebook cell re-run, a fine-tuning phase), its steps unobserved. Named once.
        Also once each (:mod:`.update_notices`): no optimizer and no ``inspect_update()`` call (nothing can be
        observed), and watched parameters that require grad but the optimizer does not hold."""
        steps = self.ctx.steps
        stepped = steps is not None and steps.count > self._epoch_start
        if (self.optimizer is not None and self._reader is not None and self._reader.steps == 0
                and stepped):
            self.ctx.faults.report(
                self.lens_name, f"its optimizer ({type(self.optimizer).__name__}) took no step this epoch while "
                "other optimizers updated the model, so no update was measured; if it was replaced, assign "
                "the new one: lens.optimizer = new_optimizer", category=MonitorNotice)
        if self._said is None:
            self._said = StepNotices(self.lens_name, self.ctx.faults)
        if self.optimizer is None:
            if stepped and not self._inspected:
                self._said.no_optimizer()
        elif self._reader is not None and self._reader.steps:
            self._said.not_held(self.optimizer, self._sites)

    def reset_epoch(self) -> None:
        super().reset_epoch()
        steps = self._ctx.steps if self._ctx is not None else None
        self._epoch_start = steps.count if steps is not None else 0
        if self._reader is not None:
            self._reader.reset()

    def detach(self) -> None:
        super().detach()
        if self._reader is not None:
            self._reader.clear()
            self._reader = None
        self._bank = self._new_bank()
        self._ratios = UpdateRatios()
        self._epoch_start = 0  # the next attach counts its steps from 0
        self._inspected = False
        self._said = None

    # --- the per-step update ratio: a bank of its own, read with the lens' other banks --------------------
    def streams(self) -> list[StreamBank]:
        return [*super().streams(), self._ratios.bank]

    def slots(self) -> dict[int, list[BankRow]]:
        own = dict(super().slots())
        own[id(self._ratios.bank)] = self._ratios.rows_of(self._sites)
        return own

    def record_tags(self) -> list[tuple[str, TagAttributes]]:
        return [(self.tag_for(p, "Ratio"), TagAttributes(True, False, True, TagType.NUMERICAL))
                for p in self._parameters]

    def compute(self, summaries: dict[int, list[Summary]]) -> list[Call]:
        calls = []
        for pattern in self._parameters:
            sites = self.sites_of(pattern)
            calls += self.geometry_calls(pattern, sites, summaries)
            ratios: OrderedDict[str, dict[Any, float]] = OrderedDict()
            for site in sites:
                slot = self._ratios.slots.get(id(site))
                found = None if site.hidden or slot is None else summaries.get(id(slot))
                if found is not None:
                    ratios[site.name] = {"mean": found[0].point("mean"), "max": found[0].point("max")}
            if ratios:
                calls.append(Call("numerical", self.tag_for(pattern, "Ratio"), ratios, None, record_only=True))
        return calls
