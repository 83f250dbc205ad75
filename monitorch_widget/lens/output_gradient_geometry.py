"""OutputGradientGeometry: the norm of the gradient with respect to each layer's output, and its correlation."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from torch import nn

from ..collect.faults import MonitorNotice, listed
from ..collect.output_gradients import OutputGradientRows, OutputGradientSite
from ..collect.streams import StreamBank
from ..collect.summary import Summary, needs_all_values
from .base import AbstractLens, Call, TagAttributes
from .geometry_calls import Aggregations, check_flags, geometry_calls, norm_tags
from .kinds import is_activation


class OutputGradientGeometry(AbstractLens):
    """Per backward pass through a leaf module, the L2 norm of dL/d(output) over the whole output tensor
    (batch included), or its RMS with ``normalize_by_size``; with ``compute_correlation``, the correlation
    <g_prev, g> / (||g_prev|| ||g|| + 1e-8) with the module's previous output gradient (0 for the first one of
    an epoch). Same arguments, tags (``Output Gradient Norm``, ``Output Gradient Correlation``) and keys as
    monitorch 0.1.0.7's lens (``monitorch.numerical.GeometryComputation``).

    Watches every leaf module except activations (``skip_activation=True``, see
    :func:`~monitorch_widget.lens.register_activation`). Read by a tensor hook on the output
    (:mod:`monitorch_widget.collect.output_gradients`), not a full backward hook: a following
    ``ReLU(inplace=True)`` works, and the value is the gradient before that in-place change.

    Cost: 4 small device ops per module per backward pass (1 without correlation), no host sync; at each fold
    (every tick, and after 32 observations of a module) a fixed number of ops for all modules together.
    Memory: with ``compute_correlation``, one copy of each watched module's output gradient (the previous one:
    about the size of its activations for one batch); without, a few floats per observation; on the host, at
    most 96 cached 0-d views per module (3 per row of the 32 its share of the row buffer holds).

    Raises TypeError / ValueError for non-boolean flags and unknown aggregation names.
    """

    _SMALL_NORM_TAG_NAME = "Output Gradient Norm"
    _SMALL_PROD_TAG_NAME = "Output Gradient Correlation"

    def __init__(self, inplace: bool = True, normalize_by_size: bool = False, log_scale: bool = False,
                 compute_correlation: bool = True, skip_activation: bool = True,
                 line_aggregation: str | Iterable[str] = "mean",
                 range_aggregation: str | Iterable[str] | None = ("std", "min-max")) -> None:
        super().__init__()
        check_flags(inplace=inplace, normalize_by_size=normalize_by_size, log_scale=log_scale,
                    compute_correlation=compute_correlation, skip_activation=skip_activation)
        self._agg = Aggregations(line_aggregation, range_aggregation)
        self._normalize = normalize_by_size
        self._log = log_scale
        self._correlation = compute_correlation
        self._skip_activation = skip_activation
        self._keep_all = (not inplace) or needs_all_values(self._agg.methods)
        self._bank = StreamBank(2 if compute_correlation else 1, self._keep_all)
        self._rows = OutputGradientRows(normalize_by_size, compute_correlation)

    def tags(self) -> list[tuple[str, TagAttributes]]:
        return norm_tags(self._SMALL_NORM_TAG_NAME, self._SMALL_PROD_TAG_NAME if self._correlation else None,
                         self._log)

    def introduce_tags(self, visualizer: Any) -> None:
        # monitorch declares this correlation tag without ylim (its parameter lenses give (1, -1)): a user's
        # visualizer gets exactly that; our record still draws it on [-1, 1] (tags())
        for tag, attrs in self.tags():
            visualizer.register_tags(tag, replace(attrs, ylim=None))

    def register_module(self, module: nn.Module, name: str, leaf: bool) -> None:
        if not leaf or (self._skip_activation and is_activation(module)) or self.refuse_traced(module, name):
            return
        self._sites.append(OutputGradientSite(name, module, self.lens_name, self.ctx.faults, self._bank.add_row(),
                                              self._rows))

    def detach(self) -> None:
        super().detach()
        self._bank = StreamBank(2 if self._correlation else 1, self._keep_all)
        self._rows = OutputGradientRows(self._normalize, self._correlation)

    def flush(self, final: bool = True) -> None:
        self._rows.flush()
        AbstractLens.flush(self, final)

    def compute(self, summaries: dict[int, list[Summary]]) -> list[Call]:
        # a module whose output never required grad (no backward reaches it) is not drawn, as in monitorch
        sites = [s for s in self._sites if getattr(s, "seen", False)]
        if self._correlation:
            self._say_reshaped(sites)
        self._say_unreached(sites)
        return geometry_calls(self, sites, summaries, self._agg, self._SMALL_NORM_TAG_NAME,
                              self._SMALL_PROD_TAG_NAME if self._correlation else None)

    def _say_reshaped(self, sites: list[Any]) -> None:
        """Once: modules whose output gradient changed shape between consecutive batches more than once in an
        epoch (one change is a smaller last batch). Each such observation has no previous gradient to correlate
        with, so its correlation is 0 (as the first of an epoch), and the module's mean correlation reads low."""
        reshaped = [s for s in sites if s.reshaped > 1]
        if not reshaped:
            return
        changes = sum(s.reshaped for s in reshaped)
        seen = sum(s.observed for s in reshaped)
        self.ctx.faults.report(self.lens_name, f"in {len(reshaped)} module(s) ({listed([s.name for s in reshaped])}) "
                               f"{changes} of {seen} output gradients this epoch had another shape than the one "
                               "before (variable sequence lengths, dynamic padding, or one module called on inputs of "
                               "two shapes in a step, such as an embedding shared by encoder and decoder): their "
                               "correlation is 0 by "
                               "definition (nothing of the same shape to correlate with), which pulls the mean "
                               "correlation towards 0. Batches of one shape (padding to a fixed length) give "
                               "comparable correlations; the norms are unaffected", category=MonitorNotice)

    def _say_unreached(self, sites: list[Any]) -> None:
        """Once: modules whose output required grad but got no gradient in an epoch in which others did. Only the
        first output is read (monitorch's ``grad_output[0]``): an RNN whose loss uses its last hidden state
        ``h_n`` instead of its output sequence leaves that output without a gradient, and its series empty."""
        if not any(s.observed for s in sites):
            return
        unreached = [s for s in sites if not s.observed and s.watching]
        frozen = [s for s in unreached if s.detached]
        if frozen:
            self.ctx.faults.report(self.lens_name, f"{len(frozen)} module(s) got no gradient for their output in an "
                                   f"epoch in which the others did: {listed([s.name for s in frozen])}; their output "
                                   "did not require grad, because nothing before it does, their own parameters "
                                   "included (frozen layers, requires_grad_(False), at the start of the model, or a "
                                   "detach() before them): no gradient flows to them, so their series stay empty "
                                   "(expected for frozen layers)", category=MonitorNotice)
            unreached = [s for s in unreached if not s.detached]
        if unreached:
            self.ctx.faults.report(self.lens_name, f"{len(unreached)} module(s) never received a gradient for their "
                                   f"(first) output in an epoch in which the others did: "
                                   f"{listed([s.name for s in unreached])}; this lens reads the gradient of a "
                                   "module's output or of the first element of a tuple output (monitorch's "
                                   "grad_output[0]), which the loss does not use here (an RNN classifier that reads "
                                   "its hidden state h_n, an output only used under no_grad), so their series stay "
                                   "empty", category=MonitorNotice)
