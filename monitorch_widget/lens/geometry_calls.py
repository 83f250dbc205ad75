"""What the geometry lenses share: their aggregation arguments, tags, and per-epoch calls.

Each observation of a site is (norm[, correlation]); per epoch, a norm tag gets
``{site: {method: value}}`` lines and ``{site: {(lo_name, hi_name): (lo, hi)}}`` bands, and a correlation
tag the same for correlations, exactly as monitorch 0.1.0.7's geometry lenses call
``plot_numerical_values``. Correlation tags carry ``ylim=(1, -1)`` as monitorch's do; the record draws them
on a fixed [-1, 1] axis.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from ..collect.hooks import Site
from ..collect.summary import RANGE_NAMES, Summary, as_method_list
from .base import AbstractLens, Call, TagAttributes, TagType

CORRELATION_LIMITS = (1, -1)  # monitorch's TagAttributes.ylim for correlation tags, as it writes it


class Aggregations:
    """``line_aggregation`` / ``range_aggregation`` as monitorch takes them, validated."""

    def __init__(self, line_aggregation: str | Iterable[str], range_aggregation: str | Iterable[str] | None) -> None:
        self.line = as_method_list(line_aggregation, argument="line_aggregation", ranges=False)
        if not self.line:
            raise ValueError("line_aggregation= must name at least one aggregation, e.g. 'mean'")
        self.range = as_method_list(range_aggregation, argument="range_aggregation", ranges=True)

    @property
    def methods(self) -> list[str]:
        return self.line + self.range


def check_flags(**flags: Any) -> None:
    """monitorch's boolean arguments must be booleans (``log_scale='yes'`` is a mistake, not True)."""
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise TypeError(f"{name}= must be True or False, got {value!r}")


def norm_tags(norm_tag: str, correlation_tag: str | None, log_scale: bool) -> list[tuple[str, TagAttributes]]:
    tags = [(norm_tag, TagAttributes(log_scale, False, True, TagType.NUMERICAL))]
    if correlation_tag is not None:
        tags.append((correlation_tag, TagAttributes(False, False, True, TagType.NUMERICAL, CORRELATION_LIMITS)))
    return tags


def geometry_calls(lens: AbstractLens, sites: Sequence[Site], summaries: dict[int, list[Summary]],
                   aggregations: Aggregations, norm_tag: str, correlation_tag: str | None) -> list[Call]:
    """The epoch's calls for ``sites`` (each with a (norm[, correlation]) bank row)."""
    tags = [norm_tag] if correlation_tag is None else [norm_tag, correlation_tag]
    lines: list[OrderedDict[str, dict[Any, float]]] = [OrderedDict() for _ in tags]
    ranges: list[OrderedDict[str, dict[tuple[str, str], tuple[float, float]]]] = [OrderedDict() for _ in tags]
    bad: list[tuple[str, int]] = []
    for site in sites:
        if site.hidden:
            continue
        per_column = summaries[id(site.stream)]
        for q in range(len(tags)):
            s = per_column[q]
            lines[q][site.name] = {m: s.point(m) for m in aggregations.line}
            ranges[q][site.name] = {RANGE_NAMES[r]: s.range(r) for r in aggregations.range}
        if per_column[0].nonfinite:
            bad.append((site.name, per_column[0].nonfinite))
    lens.ctx.faults.report_nonfinite(lens.lens_name, bad, "observations", "the statistics")
    return [Call("numerical", tag, lines[q], ranges[q]) for q, tag in enumerate(tags)]


def flush_sites(lens: AbstractLens, final: bool) -> None:
    """Fold what sites without a RowBuffer hold (their own rows), then what the lens' banks staged."""
    for site in lens.sites:
        if site.buf is None:
            site.flush()
    AbstractLens.flush(lens, final)
