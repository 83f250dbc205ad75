"""What every lens shares: tags it draws, sites it hooks, and the calls it makes per epoch.

A lens turns host-side :class:`~monitorch_widget.collect.summary.Summary` objects into *calls* in monitorch's
visualizer vocabulary (``plot_numerical_values`` / ``plot_probabilities`` / ``plot_relations`` with
the same tag and key names). The inspector hands those calls to the :class:`~monitorch_widget.record.Record`
and, if the user passed one, to their own monitorch-style visualizer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple, TypeVar

from torch import nn

from ..collect.compiled import COMPILED_AFTER_ATTACH_ADVICE, CompiledGraphs, compiled_frames
from ..collect.faults import FaultLog, listed
from ..collect.hooks import Site
from ..collect.streams import BankRow, StreamBank
from ..collect.summary import Summary

T = TypeVar("T")


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

    def __repr__(self) -> str:  # as monitorch's (the type's name, not the enum member's repr)
        return (f"TagAttributes(logy={self.logy}, big_plot={self.big_plot}, annotate={self.annotate}, "
                f"type={self.type.name}, ylim={self.ylim})")


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
        #: frozen parameters holding a .grad already named (lens/frozen.py): once per inspector, by whichever
        #: gradient lens sees them first (two lenses watching the same parameter say it once)
        self.said_frozen: set[str] = set()
        #: who pushes the losses when no loss_fn is hooked (a framework callback: ``"<Callback>(train_loss='loss')"``):
        #: the advice when none arrives names it instead of the training loop's wiring
        self.loss_source: str | None = None
        #: forward passes of the attached model so far (the inspector's root pre-hook counts them; never reset)
        self.passes = [0]


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
        """Called by the inspector that owns this lens (its fault log, pushes and step count); not for users."""
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

    #: caches kept per list of sites (:meth:`per_sites`, rate_calls' shown rows, ParameterLens' observed sets):
    #: dropped at detach, as they hold the old sites, and through them the model's tensors and the gradient copies
    SITE_CACHES = ("_per_sites", "_shown_rows", "_all_observed")

    def detach(self) -> None:
        for site in self._sites:
            site.remove()
        self._sites = []
        self.refused = []
        for key in self.SITE_CACHES:
            self.__dict__.pop(key, None)

    def refuse_traced(self, module: nn.Module, name: str) -> bool:
        """For forward-hook lenses: True (and ``name`` noted) if ``module`` runs inside a compiled graph."""
        if self.ctx.graphs.traced(module):
            self.refused.append(name)
            return True
        return False

    def report_in_graph(self) -> None:
        """Say once which hooks found themselves traced by dynamo (a model compiled after attach). Hooks are
        traced only when dynamo compiles a frame: while its count of compiled frames stays, no site is looked at."""
        frames = compiled_frames()
        if frames is not None and self.__dict__.get("_frames_seen") == frames:
            return
        self._frames_seen = frames
        traced = [s for s in self._sites if s.in_graph and s.watching]
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

    def per_sites(self, key: Any, make: Callable[[], T]) -> T:
        """``make()``, kept under ``key`` while the list of sites is the same: a site's stream, reader and kind
        never change, and sites are only ever appended (or the list replaced, at detach)."""
        cache: dict[Any, tuple[list[Site], int, Any]] = self.__dict__.setdefault("_per_sites", {})
        hit = cache.get(key)
        if hit is not None and hit[0] is self._sites and hit[1] == len(self._sites):
            return hit[2]  # type: ignore[no-any-return]
        value = make()
        cache[key] = (self._sites, len(self._sites), value)
        return value

    def _structure(self) -> tuple[list[StreamBank], dict[int, list[BankRow]], list[Any]]:
        """(accumulators, bank slots, gradient readers) of the sites."""
        return self.per_sites("structure", self._find_structure)

    def _find_structure(self) -> tuple[list[StreamBank], dict[int, list[BankRow]], list[Any]]:
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
        return list(seen.values()), slots, list(readers.values())

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
        for site in self._kinds()[0]:
            buf = site.buf
            if buf is not None and buf.n:
                site.flush()

    def _kinds(self) -> tuple[list[Site], list[Site]]:
        """(sites that fill a RowBuffer, sites whose reset may do something): a gradient site has neither (a deep
        model's tick then does not touch it here)."""
        plain = Site.reset
        return self.per_sites("kinds", lambda: (
            [s for s in self._sites if type(s).buffered],
            [s for s in self._sites if type(s).buffered or type(s).reset is not plain or type(s.stream) is not BankRow]))

    def reset_epoch(self) -> None:
        for reader in self._readers():
            reader.reset()
        plain = Site.reset
        for site in self._kinds()[1]:
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
