"""ParameterGradientActivation: the activation idea applied to each parameter's gradient units."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from torch import nn

from ..collect.gradient_reading import GradientReader
from ..collect.gradient_site import GradientSite
from ..collect.streams import StreamBank
from ..collect.summary import Summary, as_method_list, needs_all_values
from .base import Call, TagAttributes, TagType
from .frozen import say_frozen_with_gradient
from .kinds import SPARSE_GRADIENT_ROWS
from .parameter_lens import ParameterLens
from .rate_calls import new_warning, rate_calls


class ParameterGradientActivation(ParameterLens):
    """Per parameter unit (an output neuron / channel, a vocabulary or gate row: see
    :mod:`monitorch_widget.collect.units`), the share of gradient entries with |g| > eps (activation rate)
    and the share of units whose gradient is all zero (death rate); a 1-D parameter (bias) uses its entries.
    One observation per gradient use (:mod:`monitorch_widget.collect.gradient_reading`): per optimizer step.

    ``parameters``: local parameter names or glob patterns (``"weight"``, ``"weight_ih_l*"``,
    ``"*_proj_weight"``, ``"original*"`` for weight-norm parametrizations). Every module that directly owns
    a matching parameter is tracked, per parameter. Parameters frozen at attach are tracked from their first
    gradient on. Memory: one row of units per observation, up to 256 rows per distinct parameter set.
    The warning panel's worst rates leave out ``nn.Embedding`` / ``nn.EmbeddingBag`` weights, whose rows have no
    gradient for the tokens a batch lacks (their death rate is 1 - the share of the vocabulary in the batch);
    their own series are recorded as any other.
    """

    _BIG_TAG_NAME = "Warning Gradient Activations"

    def __init__(self, inplace: bool = True, warning_plot: bool = True,
                 parameters: str | Iterable[str] = ("weight", "bias"), activation_aggregation: str = "mean",
                 death_aggregation: str = "mean", eps: float = 1e-8) -> None:
        super().__init__(parameters)
        self._act_method = as_method_list(activation_aggregation, argument="activation_aggregation", ranges=False)[0]
        self._death_method = as_method_list(death_aggregation, argument="death_aggregation", ranges=False)[0]
        self._keep_all = (not inplace) or needs_all_values([self._act_method, self._death_method])
        self._warning_plot = bool(warning_plot)
        self._eps = float(eps)
        self._bank = StreamBank(2, self._keep_all)
        self._reader: GradientReader | None = None

    @staticmethod
    def tag_for(parameter: str) -> str:
        return f"{parameter} Gradient Activation".title()

    def tags(self) -> list[tuple[str, TagAttributes]]:
        tags = [(self.tag_for(p), TagAttributes(False, False, True, TagType.PROBABILITY)) for p in self._parameters]
        if self._warning_plot:
            tags.append((self._BIG_TAG_NAME, TagAttributes(False, True, True, TagType.PROBABILITY)))
        return tags

    def watches_parameter(self, param_name: str) -> bool:
        return self.pattern_of(param_name) is not None

    def _reader_(self) -> GradientReader:
        if self._reader is None:
            self._reader = GradientReader(self.lens_name, self.ctx.faults, self._eps, self._bank)
        return self._reader

    def _add_site(self, name: str, module: nn.Module, pname: str, param: nn.Parameter) -> None:
        reader = self._reader_()
        site = GradientSite(self.series_name(name, pname), module, pname, param, self.lens_name, self.ctx.faults,
                            reader, self._bank.add_row())
        site.ranked = not isinstance(module, SPARSE_GRADIENT_ROWS)
        reader.add(site)
        self._sites.append(site)

    def detach(self) -> None:
        super().detach()
        if self._reader is not None:
            self._reader.clear()
            self._reader = None
        self._bank = StreamBank(2, self._keep_all)

    def compute(self, summaries: dict[int, list[Summary]]) -> list[Call]:
        say_frozen_with_gradient(self, self.ctx.said_frozen)
        warning = new_warning() if self._warning_plot else None
        calls = []
        for pattern in self._parameters:
            sites = self.drawn_sites(pattern)
            calls.append(rate_calls(self, self.tag_for(pattern), sites, summaries, self._act_method,
                                    self._death_method, warning))
        if warning is not None:
            calls.append(Call("probability", self._BIG_TAG_NAME, OrderedDict([(self._BIG_TAG_NAME, warning)])))
        return calls
