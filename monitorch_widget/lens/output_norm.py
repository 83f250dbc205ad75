"""OutputNorm: per batch, the mean over samples of each sample's output L2 norm (or RMS)."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..collect.compiled import in_graph, in_transform
from ..collect.geometry import norm_dtype
from ..collect.hooks import ScalarSite
from ..collect.nested import is_nested, sample_norms
from ..collect.passes import is_counted_pass, pass_rule_for
from ..collect.summary import RANGE_NAMES, Summary, as_method_list, needs_all_values
from .base import AbstractLens, Call, TagAttributes, TagType
from .kinds import check_module_types, is_activation
from .silent import say_silent


class NormSite(ScalarSite):
    def __init__(self, name: str, module: nn.Module, lens: str, faults: Any, *, pass_rule: int, normalize: bool,
                 channel_last: bool, keep_all: bool) -> None:
        super().__init__(name, lens, faults, keep_all)
        self.pass_rule = pass_rule
        self.normalize = normalize
        self.watch_forward(module)

    def __call__(self, module: nn.Module, args: Any, out: Any) -> None:
        if in_graph():  # traced by dynamo: leave only this flag in the graph (collect/compiled.py)
            self.in_graph = True
            return
        if self.off:
            return
        if not is_counted_pass(self.pass_rule, module):
            self.drop()
            return
        try:
            if in_transform(out):  # a call under a torch.func transform (per-sample gradients): not a training pass
                return
            y = out.detach()
            if y.numel() == 0:  # a batch of no rows: no observation (its mean norm would be NaN)
                return
            per_sample = torch.linalg.vector_norm(y.reshape(y.shape[0], -1), dim=1, dtype=norm_dtype(y))
            if per_sample.dtype is not torch.float32:  # a float64 output: its norms rounded for the float32 row
                per_sample = per_sample.float()
            if self.normalize:
                per_sample = per_sample * (1.0 / math.sqrt(max(y[0].numel(), 1)))
            torch.mean(per_sample, 0, keepdim=True, out=self.slot(y.device))
        except Exception as exc:  # noqa: BLE001
            self._on_error(out, exc)

    def _on_error(self, out: Any, exc: Exception) -> None:
        if is_nested(out):  # nn.TransformerEncoder's eval fast path: one norm per component (collect/nested)
            try:
                torch.mean(sample_norms(out, self.normalize), 0, keepdim=True, out=self.slot(out.device))
                return
            except Exception as exc2:  # noqa: BLE001
                exc = exc2
        if not isinstance(out, torch.Tensor):
            self.fail(f"output is a {type(out).__name__}, not a tensor")
        else:
            self.fail(f"hook failed with {type(exc).__name__}: {exc}")


class OutputNorm(AbstractLens):
    """Output norms of activation modules (and ``include`` types). Same arguments as monitorch's."""

    _SMALL_TAG_NAME = "Output Norm"

    def __init__(self, inplace: bool = True, record_eval: bool = False, evaluation_from_grad: bool | None = None,
                 normalize_by_size: bool = False, log_scale: bool = False, activation: bool = True,
                 include: Iterable[type[nn.Module]] = (), exclude: Iterable[type[nn.Module]] = (),
                 channel_last: bool = False, comparison_plot: bool = True, comparison_aggregation: str | None = None,
                 line_aggregation: str | Iterable[str] = "mean",
                 range_aggregation: str | Iterable[str] | None = ("std", "min-max")) -> None:
        super().__init__()
        self._include = check_module_types(include, "include")
        self._exclude = check_module_types(exclude, "exclude")
        self._line = as_method_list(line_aggregation, argument="line_aggregation", ranges=False)
        self._range = as_method_list(range_aggregation, argument="range_aggregation", ranges=True)
        if not self._line:
            raise ValueError("line_aggregation= must name at least one aggregation, e.g. 'mean'")
        self._comparison = bool(comparison_plot)
        self._comparison_method = comparison_aggregation or self._line[0]
        as_method_list(self._comparison_method, argument="comparison_aggregation", ranges=False)
        self._keep_all = (not inplace) or needs_all_values(self._line + self._range + [self._comparison_method])
        self._gate = pass_rule_for(record_eval, evaluation_from_grad)
        self._normalize = bool(normalize_by_size)
        self._log = bool(log_scale)
        self._activation = bool(activation)
        self._channel_last = bool(channel_last)
        self._comparison_tag = f"{self._comparison_method} Output{' Log' if self._log else ''} Norm Comparison".title()

    def tags(self) -> list[tuple[str, TagAttributes]]:
        tags = [(self._SMALL_TAG_NAME, TagAttributes(self._log, False, True, TagType.NUMERICAL))]
        if self._comparison:
            tags.append((self._comparison_tag, TagAttributes(False, True, False, TagType.RELATIONS)))
        return tags

    def register_module(self, module: nn.Module, name: str, leaf: bool) -> None:
        if not leaf or (self._exclude and isinstance(module, self._exclude)):
            return
        if ((self._activation and is_activation(module)) or (self._include and isinstance(module, self._include))) \
                and not self.refuse_traced(module, name):
            self._sites.append(NormSite(name, module, self.lens_name, self.ctx.faults, pass_rule=self._gate,
                                        normalize=self._normalize, channel_last=self._channel_last,
                                        keep_all=self._keep_all))

    def compute(self, summaries: dict[int, list[Summary]]) -> list[Call]:
        lines: OrderedDict[str, dict[Any, float]] = OrderedDict()
        ranges: OrderedDict[str, dict[tuple[str, str], tuple[float, float]]] = OrderedDict()
        comparison: OrderedDict[str, float] = OrderedDict()
        for site in self._sites:
            if site.hidden:
                continue
            s = summaries[id(site.stream)][0]
            lines[site.name] = {m: s.point(m) for m in self._line}
            ranges[site.name] = {RANGE_NAMES[r]: s.range(r) for r in self._range}
            comparison[site.name] = s.point(self._comparison_method)
        say_silent(self, summaries)
        calls = [Call("numerical", self._SMALL_TAG_NAME, lines, ranges)]
        if self._comparison:
            finite = [v for v in comparison.values() if not math.isnan(v)]
            total = sum(finite) + 1e-7
            shares = {k: v / total for k, v in comparison.items()}
            calls.append(Call("relations", self._comparison_tag, OrderedDict([(self._comparison_tag, shares)])))
        return calls
