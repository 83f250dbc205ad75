"""ParameterNorm: the L2 norm (or RMS) of each watched parameter, read at every tick."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from torch import nn

from ..collect.parameter_reads import NormReader
from ..collect.parameter_sets import ParameterSite
from ..collect.streams import StreamBank
from ..collect.summary import Summary, as_method_list, needs_all_values
from .base import Call, TagAttributes, TagType
from .geometry_calls import check_flags, flush_sites
from .parameter_lens import ParameterLens


class ParameterNorm(ParameterLens):
    """||p||_2 of each watched parameter (or ||p||_2 / sqrt(numel), the RMS, with ``normalize_by_size``),
    read when the epoch is ticked and whenever :meth:`collect_data` is called, as monitorch 0.1.0.7 reads it;
    the epoch's value is ``aggregation_method`` over those reads. Same arguments, tags (``<Parameter> Norm``,
    and with ``comparison_plot`` the big ``<Parameter> [Log] Norm Comparison`` of each layer's share of the
    summed norms) and keys as monitorch's lens. Frozen parameters are read too.

    Cost: one ``torch._foreach_norm`` per device over all watched parameters per read; no host sync.
    Memory: a few floats per read. ``parameters``: names or glob patterns (:mod:`.parameter_lens`).

    Raises TypeError / ValueError for non-boolean flags, bad ``parameters`` and an unknown
    ``aggregation_method``; ValueError at attach when no parameter of the model matches.
    """

    def __init__(self, inplace: bool = True, parameters: Iterable[str] = ("weight", "bias"),
                 normalize_by_size: bool = False, log_scale: bool = False, comparison_plot: bool = True,
                 aggregation_method: str = "mean") -> None:
        super().__init__(parameters)
        check_flags(inplace=inplace, normalize_by_size=normalize_by_size, log_scale=log_scale,
                    comparison_plot=comparison_plot)
        if not isinstance(aggregation_method, str):
            raise TypeError(f"aggregation_method= must be one aggregation name such as 'mean', got "
                            f"{aggregation_method!r}")
        self._method = as_method_list(aggregation_method, argument="aggregation_method", ranges=False)[0]
        self._normalize = normalize_by_size
        self._log = log_scale
        self._comparison = comparison_plot
        self._keep_all = (not inplace) or needs_all_values([self._method])
        self._bank = StreamBank(1, self._keep_all)
        self._reader: NormReader | None = None

    @staticmethod
    def tag_for(parameter: str) -> str:
        return f"{parameter} Norm".title()

    def comparison_tag(self, parameter: str) -> str:
        return f"{parameter}{' Log' if self._log else ''} Norm Comparison".title()

    def tags(self) -> list[tuple[str, TagAttributes]]:
        tags = [(self.tag_for(p), TagAttributes(self._log, False, False, TagType.NUMERICAL)) for p in self._parameters]
        if self._comparison:
            tags += [(self.comparison_tag(p), TagAttributes(False, True, False, TagType.RELATIONS))
                     for p in self._parameters]
        return tags

    def _add_site(self, name: str, module: nn.Module, pname: str, param: nn.Parameter) -> None:
        if self._reader is None:
            self._reader = NormReader(self.lens_name, self.ctx.faults, self._bank, self._normalize)
        site = ParameterSite(self.series_name(name, pname), name, module, pname, param, self.lens_name,
                             self.ctx.faults, 1, self._bank.add_row())
        self._reader.add(site)
        self._sites.append(site)

    def collect_data(self) -> None:
        """Read the norms now (monitorch's ``collect_data``): one more observation of this epoch."""
        if self._reader is not None:
            self._reader.read()

    def flush(self, final: bool = True) -> None:
        if self._reader is not None:
            if final:  # monitorch reads the norms when the epoch is finalised
                self._reader.read()
            self._reader.flush()
        flush_sites(self, final)

    def detach(self) -> None:
        super().detach()
        if self._reader is not None:
            self._reader.clear()
            self._reader = None
        self._bank = StreamBank(1, self._keep_all)

    def compute(self, summaries: dict[int, list[Summary]]) -> list[Call]:
        calls = []
        for pattern in self._parameters:
            lines: OrderedDict[str, dict[Any, float]] = OrderedDict()
            for site in self.sites_of(pattern):
                if not site.hidden:
                    lines[site.name] = {self._method: summaries[id(site.stream)][0].point(self._method)}
            calls.append(Call("numerical", self.tag_for(pattern), lines, None))
        if self._comparison:
            for pattern in self._parameters:
                values = calls[self._parameters.index(pattern)].values
                total = 1e-7 + sum(v[self._method] for v in values.values())  # monitorch's share, NaN included
                tag = self.comparison_tag(pattern)
                calls.append(Call("relations", tag, OrderedDict([(tag, {k: v[self._method] / total
                                                                        for k, v in values.items()})])))
        return calls
