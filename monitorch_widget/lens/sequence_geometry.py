"""The common part of the lenses that follow a sequence per parameter: its norm and the correlation of
consecutive elements (``ParameterGradientGeometry``: gradients; ``ParameterUpdateGeometry``: updates)."""

from __future__ import annotations

from collections.abc import Iterable

from ..collect.streams import StreamBank
from ..collect.summary import Summary, needs_all_values
from .base import Call, TagAttributes
from .geometry_calls import Aggregations, check_flags, geometry_calls, norm_tags
from .parameter_lens import ParameterLens


class SequenceGeometryLens(ParameterLens):
    """Tags ``"<parameter> <WHAT> Norm"`` / ``"... Correlation"`` (monitorch's), arguments checked, one
    StreamBank of (norm[, correlation]) rows. Subclasses set ``WHAT`` and read the sequence."""

    WHAT = ""

    def __init__(self, parameters: str | Iterable[str], inplace: bool, normalize_by_size: bool, log_scale: bool,
                 compute_correlation: bool, line_aggregation: str | Iterable[str],
                 range_aggregation: str | Iterable[str] | None) -> None:
        super().__init__(parameters)
        check_flags(inplace=inplace, normalize_by_size=normalize_by_size, log_scale=log_scale,
                    compute_correlation=compute_correlation)
        self._agg = Aggregations(line_aggregation, range_aggregation)
        self._normalize = normalize_by_size
        self._log = log_scale
        self._correlation = compute_correlation
        self._keep_all = (not inplace) or needs_all_values(self._agg.methods)
        self._bank = self._new_bank()

    def _new_bank(self) -> StreamBank:
        return StreamBank(2 if self._correlation else 1, self._keep_all)

    @classmethod
    def tag_for(cls, parameter: str, what: str) -> str:
        return f"{parameter} {cls.WHAT} {what}".title()

    def tags(self) -> list[tuple[str, TagAttributes]]:
        return [tag for p in self._parameters for tag in
                norm_tags(self.tag_for(p, "Norm"), self.tag_for(p, "Correlation") if self._correlation else None,
                          self._log)]

    def geometry_calls(self, pattern: str, sites: list, summaries: dict[int, list[Summary]]) -> list[Call]:
        return geometry_calls(self, sites, summaries, self._agg, self.tag_for(pattern, "Norm"),
                              self.tag_for(pattern, "Correlation") if self._correlation else None)
