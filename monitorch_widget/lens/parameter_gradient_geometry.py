"""ParameterGradientGeometry: the norm of each parameter's gradient, and its correlation with the previous one."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from ..collect.gradient_geometry import GradientGeometry
from ..collect.gradient_reading import GradientReader
from ..collect.gradient_site import GradientSite
from ..collect.summary import Summary
from .base import Call
from .frozen import say_frozen_with_gradient
from .sequence_geometry import SequenceGeometryLens


class ParameterGradientGeometry(SequenceGeometryLens):
    """Per observation of a parameter's gradient, its L2 norm (or RMS with ``normalize_by_size``) and, with
    ``compute_correlation``, <g_prev, g> / (||g_prev|| ||g|| + 1e-8) with the previous observation (0 for the
    first one of an epoch). Same arguments, tags (``<Parameter> Gradient Norm``, ``<Parameter> Gradient
    Correlation``) and keys as monitorch 0.1.0.7's lens.

    One observation per gradient *use* (:mod:`monitorch_widget.collect.gradient_reading`, the reader
    ``ParameterGradientActivation`` uses): the gradient each ``torch.optim`` step used (after unscaling and
    clipping), or a gradient no step uses as it stood after its last backward pass. With one backward pass per
    step this is monitorch's value; with k accumulated passes it is one observation of their sum (monitorch:
    k observations of partial sums).

    Cost: per backward pass, one ``torch._foreach_norm`` over all watched gradients of a device (plus, with
    correlation, one ``torch.dot`` per parameter, one ``_foreach_copy_`` and a copy of the previous observations'
    norms from their rows: nothing recomputed); the division happens at the fold, for all rows at once
    (:mod:`monitorch_widget.collect.geometry`); no host sync. Memory with ``compute_correlation``: two gradient-sized buffers per
    watched parameter (2x the watched parameters' size: the previous observation, and the latest read while
    its use is undecided; measured 2.00x by ``benchmarks/geometry_memory.py``); without, a few floats per
    observation. ``parameters``: names or glob patterns
    (:mod:`.parameter_lens`).

    Raises TypeError / ValueError for non-boolean flags, bad ``parameters`` and unknown aggregation names;
    ValueError at attach when no parameter of the model matches.
    """

    WHAT = "Gradient"

    def __init__(self, inplace: bool = True, normalize_by_size: bool = False, log_scale: bool = False,
                 compute_correlation: bool = True, parameters: str | Iterable[str] = ("weight", "bias"),
                 line_aggregation: str | Iterable[str] = "mean",
                 range_aggregation: str | Iterable[str] | None = ("std", "min-max")) -> None:
        super().__init__(parameters, inplace, normalize_by_size, log_scale, compute_correlation, line_aggregation,
                         range_aggregation)
        self._reader: GradientReader | None = None
        self._kind = GradientGeometry(normalize_by_size, compute_correlation)

    def watches_parameter(self, param_name: str) -> bool:
        return self.pattern_of(param_name) is not None

    def _add_site(self, name: str, module: nn.Module, pname: str, param: nn.Parameter) -> None:
        if self._reader is None:
            self._reader = GradientReader(self.lens_name, self.ctx.faults, 0.0, self._bank, self._kind)
        site = GradientSite(self.series_name(name, pname), module, pname, param, self.lens_name, self.ctx.faults,
                            self._reader, self._bank.add_row())
        self._reader.add(site)
        self._sites.append(site)

    def detach(self) -> None:
        super().detach()
        if self._reader is not None:
            self._reader.clear()
            self._reader = None
        self._bank = self._new_bank()
        self._kind = GradientGeometry(self._normalize, self._correlation)

    def bytes_held(self) -> int:
        """Bytes of gradient copies held for the correlation (0 without it)."""
        return self._kind.bytes_held()

    def compute(self, summaries: dict[int, list[Summary]]) -> list[Call]:
        say_frozen_with_gradient(self, self.ctx.said_frozen)
        calls = []
        for pattern in self._parameters:
            sites = self.drawn_sites(pattern)
            calls += self.geometry_calls(pattern, sites, summaries)
        return calls
