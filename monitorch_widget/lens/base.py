"""What every lens shares: tags it draws, sites it hooks, and the calls it makes per epoch.

A lens turns host-side :class:`~monitorch_widget.collect.summary.Summary` objects into *calls* in monitorch's
visualizer vocabulary (``plot_numerical_values`` / ``plot_probabilities`` / ``plot_relations`` with
the same tag and key names). The inspector hands those calls to the :class:`~monitorch_widget.record.Record`
and, if the user passed one, to their own monitorch-style visualizer.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple

from torch import nn

from ..collect.compiled import COMPILED_AFTER_ATTACH_ADVICE, CompiledGraphs
from ..collect.faults import FaultLog, listed
from ..collect.hooks import Site
from ..collect.streams import BankRow, StreamBank
from ..collect.summary import SlotTable, Summary


class TagType(Enum):
    NUMERICAL = 0
    PROBABILITY = 1
    RELATIONS = 2


@dataclass
class TagAttributes:
    logy: bool
    big_plot: bool
    annotate: bool
    type: TagType
    ylim: tuple[float, float] | None = None


class Call(NamedTuple):
    method: str  # "numerical" | "probability" | "relations"
    tag: str
    values: OrderedDict[str, dict[Any, float]]
    ranges: OrderedDict[str, dict[tuple[str, str], tuple[float, float]]] | None = None
    #: a series of our own for the record (and the health checks), not one of monitorch's calls: a user's
    #: monitorch-style visualizer never receives it (see :meth:`AbstractLens.record_tags`)
    record_only: bool = False


class LensContext:
    """What the inspector lends a lens: the fault log and the explicitly pushed values."""

    def __init__(self, faults: FaultLog, pushes: Any, train_loss_str: str, non_train_loss_str: str) -> None:
        self.faults = faults
        self.pushes = pushes
        self.train_loss_str = train_loss_str
        self.non_train_loss_str = non_train_loss_str
        #: which modules of the attached model run inside a torch.compile graph (set at each attach)
        self.graphs = CompiledGraphs(nn.Module())
        #: the run's count of optimizer steps that updated the model (``collect.optimizer_steps.StepCounter``,
        #: set at each attach; None before the first)
        self.steps: Any = None


class AbstractLens:
    """Base class of all lenses. Subclasses set ``_sites`` when they hook modules."""

    def __init__(self) -> None:
        self._sites: list[Site] = []
        self._ctx: LensContext | None = None
        #: modules this lens would watch but does not, because their forward runs inside a torch.compile
        #: graph (collect/compiled.py); the inspector says so once at attach
        self.refused: list[str] = []

    @property
    def lens_name(self) -> str:
        return type(self).__name__

    # --- declaration -----------------------------------------------------------------------------
    def tags(self) -> list[tuple[str, TagAttributes]]:
        raise NotImplementedError

    def record_tags(self) -> list[tuple[str, TagAttributes]]:
        """Tags of the lens' ``record_only`` calls: registered with the record only, never with a user's
        visualizer (monitorch's lenses have no such tags)."""
        return []

    def introduce_tags(self, visualizer: Any) -> None:
        for tag, attrs in self.tags():
            visualizer.register_tags(tag, attrs)

    # --- lifecycle ---------------------------------------------------------------------------------
    def bind(self, ctx: LensContext) -> None:
        self._ctx = ctx

    @property
    def ctx(self) -> LensContext:
        if self._ctx is None:
            raise RuntimeError(f"{self.lens_name} is not part of a PyTorchInspector yet; pass it in "
                               "PyTorchInspector(lenses=[...])")
        return self._ctx

    def register_module(self, module: nn.Module, name: str, leaf: bool) -> None:
        """Hook ``module`` if this lens watches it. Called in model definition order."""

    def after_attach(self, model: nn.Module) -> None:
        """Validate what was registered; raise to make the inspector roll the attach back."""

    def detach(self) -> None:
        for site in self._sites:
            site.remove()
        self._sites = []
        self.refused = []

    def refuse_traced(self, module: nn.Module, name: str) -> bool:
        """For forward-hook lenses: True (and ``name`` noted) if ``module`` runs inside a compiled graph."""
        if self.ctx.graphs.traced(module):
            self.refused.append(name)
            return True
        return False

    def report_in_graph(self) -> None:
        """Say once which hooks found themselves traced by dynamo (a model compiled after attach)."""
        traced = [s for s in self._sites if s.in_graph and not s.off]
        if not traced:
            return
        for site in traced:
            site.broken = True
            site._update_off()
        names = listed([s.name for s in traced])
        self.ctx.faults.report(self.lens_name, f"{len(traced)} hooked module(s) ran inside a torch.compile graph "
                               f"({names}), compiled after attach: {COMPILED_AFTER_ATTACH_ADVICE}")

    @property
    def sites(self) -> list[Site]:
        return self._sites

    def _structure(self) -> tuple[list[StreamBank], dict[int, list[BankRow]], list[Any]]:
        """(accumulators, bank slots, gradient readers) of the sites, found once per set of sites: a site's
        stream and reader never change, and sites are only ever appended (or the list replaced, at detach)."""
        cached = self.__dict__.get("_structure_cache")
        if cached is not None and cached[0] is self._sites and cached[1] == len(self._sites):
            return cached[2]  # type: ignore[no-any-return]
        seen: dict[int, StreamBank] = {}
        slots: dict[int, list[BankRow]] = {}
        readers: dict[int, Any] = {}
        for site in self._sites:
            if isinstance(site.stream, BankRow):
                seen.setdefault(id(site.stream.bank), site.stream.bank)
                slots.setdefault(id(site.stream.bank), []).append(site.stream)
            else:
                seen.setdefault(id(site.stream), site.stream)
            reader = getattr(site, "reader", None)
            if reader is not None:
                readers.setdefault(id(reader), reader)
        out = (list(seen.values()), slots, list(readers.values()))
        self._structure_cache = (self._sites, len(self._sites), out)
        return out

    def streams(self) -> list[StreamBank]:
        """Each accumulator once: the lens' bank (rate sites) and scalar sites' own streams."""
        return list(self._structure()[0])

    def slots(self) -> dict[int, list[BankRow]]:
        return self._structure()[1]

    def flush(self, final: bool = True) -> None:
        """Hand every site's filled rows to the lens' banks: at the tick (``final``) or for a provisional
        refresh. Nothing folds here: the rows fold on the host, grouped across sites of equal shape, in the
        tick's copy (collect/host_fold.py); gradient readers hand their layouts' rows over the same way."""
        self.report_in_graph()
        for reader in self._readers():
            bank = getattr(reader, "bank", None)
            if bank is not None:
                bank.at_tick = True
            try:
                reader.flush(final)
            finally:
                if bank is not None:
                    bank.at_tick = False
        for site in self._sites:
            buf = site.buf
            if buf is not None and buf.n:
                site.flush()

    def reset_epoch(self) -> None:
        for reader in self._readers():
            reader.reset()
        plain = Site.reset
        for site in self._sites:
            buf = site.buf
            # a slot of the lens' bank with no rows left (the tick handed them over): its reset does nothing
            if (buf is None or not buf.n) and type(site.stream) is BankRow and type(site).reset is plain:
                continue
            try:
                site.reset()
            except Exception as exc:  # noqa: BLE001 - state a hook left behind (a functorch-transformed tensor
                # kept from a vmapped call) must not make the user's tick_epoch() raise: that series stops
                site.fail(f"resetting it for the next epoch failed with {type(exc).__name__}: {exc}")
        for acc in self.streams():
            acc.reset()

    def _readers(self) -> list[Any]:
        """Each gradient reader of this lens once (its sites share it)."""
        return self._structure()[2]

    def compute(self, summaries: dict[int, list[Summary]]) -> list[Call]:
        """Epoch calls from ``summaries`` (keyed by ``id(stream)``)."""
        raise NotImplementedError

    def vizualize(self, visualizer: Any, epoch: int, calls: list[Call]) -> None:
        """Replay ``calls`` on a monitorch-style visualizer, with fresh dicts each call (the record, which reads
        them in place, gets the calls' own: ``reads_calls_in_place``)."""
        fresh = not getattr(visualizer, "reads_calls_in_place", False)
        own = getattr(visualizer, "keeps_record_only", False)
        for call in calls:
            if call.record_only and not own:
                continue
            values = OrderedDict((k, dict(v)) for k, v in call.values.items()) if fresh else call.values
            if call.method == "numerical":
                # None stays None: monitorch's ParameterNorm plots its lines without ranges
                ranges = call.ranges if call.ranges is None or not fresh else \
                    OrderedDict((k, dict(v)) for k, v in call.ranges.items())
                visualizer.plot_numerical_values(epoch, call.tag, values, ranges)
            elif call.method == "probability":
                visualizer.plot_probabilities(epoch, call.tag, values)
            else:
                visualizer.plot_relations(epoch, call.tag, values)

    def set_hidden(self, modules: set[str], types: set[str]) -> None:
        """Stop (or resume) recording sites of hidden modules; their hooks return at once."""
        for site in self._sites:
            site.set_hidden(site.name in modules or getattr(site, "module_type", None) in types)


def rate_calls(lens: AbstractLens, small_tag: str, sites: list[Site], summaries: dict[int, list[Summary]],
               act_method: str, death_method: str, warning: dict[str, float] | None) -> Call:
    """Per-layer activation/death rates; folds the worst values into ``warning`` (min act, max death)."""
    data: OrderedDict[str, dict[Any, float]] = OrderedDict()
    # the sites' bank read as one table (collect/summary.SlotTable): every layer's two points at once; a slot's
    # row in the table is its row in the bank (BankRow.index)
    table, bank = bank_table(summaries, sites)
    names: list[str] = []
    acts: list[float] = []
    deaths: list[float] = []
    bad: list[int] = []
    rows = _table_rows(sites, bank) if table is not None else None
    points = (table.points(act_method, 0), table.points(death_method, 1)) if table is not None else (None, None)
    if rows is not None and points[0] is not None and points[1] is not None:
        all_acts, all_deaths, all_bad = points[0], points[1], table.nonfinite()  # type: ignore[union-attr]
        names = [s.name for s in sites if not s.hidden]
        visible = rows if len(names) == len(rows) else [r for s, r in zip(sites, rows) if not s.hidden]
        acts = [all_acts[r] for r in visible]
        deaths = [all_deaths[r] for r in visible]
        bad = [all_bad[r] for r in visible]
    else:
        for site in sites:
            if site.hidden:
                continue
            act, dead = summaries[id(site.stream)]
            names.append(site.name)
            acts.append(act.point(act_method))
            deaths.append(dead.point(death_method))
            bad.append(act.nonfinite)
    for name, a, d in zip(names, acts, deaths):
        data[name] = {"activation_rate": a, "death_rate": d}
    if warning is not None:
        # NaN (a layer without batches) never wins; a NaN current worst is always replaced.
        finite_acts = [a for a in acts if a == a]
        finite_deaths = [d for d in deaths if d == d]
        if finite_acts:
            worst = min(finite_acts)
            if not warning["worst activation_rate"] <= worst:
                warning["worst activation_rate"] = worst
        if finite_deaths:
            worst = max(finite_deaths)
            if not warning["worst death_rate"] >= worst:
                warning["worst death_rate"] = worst
    if any(bad):
        for name, nonfinite in zip(names, bad):
            if nonfinite:
                lens.ctx.faults.report(lens.lens_name, f"{name}: {nonfinite} batch(es) with NaN/Inf values "
                                       "were left out of the rates")
    return Call("probability", small_tag, data)


def _table_rows(sites: list[Site], bank: Any) -> list[int] | None:
    """Each site's row in ``bank``'s table (its BankRow.index), or None when some site's slot is elsewhere."""
    rows = [getattr(s.stream, "index", -1) for s in sites]
    if all(getattr(s.stream, "bank", None) is bank for s in sites):
        return rows
    return None


def bank_table(summaries: dict[int, list[Summary]], sites: list[Site]) -> tuple[SlotTable | None, Any]:
    """(the table of the bank the first site's slot belongs to, that bank), or (None, None) when ``summaries``
    holds no table for it (a few slots, kept per-batch values: read as Summary objects)."""
    find = getattr(summaries, "table", None)
    bank = getattr(sites[0].stream, "bank", None) if sites else None
    if find is None or bank is None:
        return None, None
    table = find(bank)
    return (table, bank) if table is not None else (None, None)


def new_warning() -> dict[str, float]:
    return {"worst activation_rate": float("nan"), "worst death_rate": float("nan")}
