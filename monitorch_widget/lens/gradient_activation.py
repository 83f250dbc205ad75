"""ParameterGradientActivation: the activation idea applied to each parameter's gradient units."""

from __future__ import annotations

import fnmatch
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from torch import nn
from torch.nn.parameter import UninitializedParameter

from ..collect.compiled import named_modules, named_parameters
from ..collect.gradient_reading import GradientReader, GradientSite
from ..collect.streams import StreamBank
from ..collect.summary import Summary, as_method_list, needs_all_values
from .base import AbstractLens, Call, TagAttributes, TagType, new_warning, rate_calls


class ParameterGradientActivation(AbstractLens):
    """Per parameter unit (an output neuron / channel, a vocabulary or gate row: see
    :mod:`monitorch_widget.collect.units`), the share of gradient entries with |g| > eps (activation rate)
    and the share of units whose gradient is all zero (death rate); a 1-D parameter (bias) uses its entries.
    One observation per gradient use (:mod:`monitorch_widget.collect.gradient_reading`): per optimizer step.

    ``parameters``: local parameter names or glob patterns (``"weight"``, ``"weight_ih_l*"``,
    ``"*_proj_weight"``, ``"original*"`` for weight-norm parametrizations). Every module that directly owns
    a matching parameter is tracked, per parameter. Parameters frozen at attach are tracked from their first
    gradient on. Memory: one row of units per observation, up to 256 rows per distinct parameter set.
    """

    _BIG_TAG_NAME = "Warning Gradient Activations"

    def __init__(self, inplace: bool = True, warning_plot: bool = True,
                 parameters: str | Iterable[str] = ("weight", "bias"), activation_aggregation: str = "mean",
                 death_aggregation: str = "mean", eps: float = 1e-8) -> None:
        super().__init__()
        params = [parameters] if isinstance(parameters, str) else list(parameters)
        if not params or not all(isinstance(p, str) and p for p in params):
            raise TypeError(f"parameters= must be a parameter name or a non-empty list of names such as "
                            f"('weight', 'bias'); got {parameters!r}")
        if len(set(params)) != len(params):
            raise ValueError(f"parameters= lists a name twice: {parameters!r}")
        self._parameters = params
        self._act_method = as_method_list(activation_aggregation, argument="activation_aggregation", ranges=False)[0]
        self._death_method = as_method_list(death_aggregation, argument="death_aggregation", ranges=False)[0]
        self._keep_all = (not inplace) or needs_all_values([self._act_method, self._death_method])
        self._warning_plot = bool(warning_plot)
        self._eps = float(eps)
        self._pending: list[Any] = []  # one-shot hooks waiting for lazy parameters to materialise
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

    def pattern_of(self, param_name: str) -> str | None:
        """The first entry of ``parameters`` that ``param_name`` (a local name) matches, or None."""
        for pattern in self._parameters:
            if fnmatch.fnmatchcase(param_name, pattern):
                return pattern
        return None

    def watches_parameter(self, param_name: str) -> bool:
        return self.pattern_of(param_name) is not None

    def _reader_(self) -> GradientReader:
        if self._reader is None:
            self._reader = GradientReader(self.lens_name, self.ctx.faults, self._eps, self._bank)
        return self._reader

    def register_module(self, module: nn.Module, name: str, leaf: bool) -> None:
        for pname, param in module._parameters.items():
            if param is None or self.pattern_of(pname) is None:
                continue
            if isinstance(param, UninitializedParameter):
                self._wait_for_materialisation(module, name, pname)
            else:
                self._add_site(name, module, pname, param)

    def _add_site(self, name: str, module: nn.Module, pname: str, param: nn.Parameter) -> None:
        reader = self._reader_()
        # an exact name keeps monitorch's series name (the module); a glob may match several parameters of one
        # module (an LSTM's weight_ih_l0 and weight_hh_l0), so its series are named module.parameter
        exact = pname in self._parameters
        site = GradientSite(name if exact else f"{name}.{pname}" if name else pname, module, pname, param,
                            self.lens_name, self.ctx.faults, reader, self._bank.add_row())
        reader.add(site)
        self._sites.append(site)

    def _wait_for_materialisation(self, module: nn.Module, name: str, pname: str) -> None:
        def once(mod: nn.Module, args: Any, out: Any) -> None:
            handle.remove()
            self._pending.remove(handle)
            param = mod._parameters.get(pname)
            if param is None or isinstance(param, UninitializedParameter):
                self.ctx.faults.report(self.lens_name, f"{name}.{pname} is still uninitialised after a forward "
                                       "pass; its gradient cannot be tracked")
                return
            self._add_site(name, mod, pname, param)
            self._sites.sort(key=lambda s: self._order.get(s.name, 0))

        handle = module.register_forward_hook(once)
        self._pending.append(handle)

    def after_attach(self, model: nn.Module) -> None:
        self._order = {name: i for i, (name, _) in enumerate(named_modules(model))}
        if not self._sites and not self._pending:
            available = sorted({n.rsplit(".", 1)[-1] for n, _ in named_parameters(model)})
            raise ValueError(f"ParameterGradientActivation(parameters={self._parameters!r}): no module of the model "
                             f"has a parameter matching {', '.join(self._parameters)}; parameter names in this "
                             f"model: {', '.join(available) or '(none)'} (glob patterns such as 'weight_*' work)")

    def detach(self) -> None:
        for handle in self._pending:
            handle.remove()
        self._pending = []
        super().detach()
        if self._reader is not None:
            self._reader.clear()
            self._reader = None
        self._bank = StreamBank(2, self._keep_all)

    def compute(self, summaries: dict[int, list[Summary]]) -> list[Call]:
        warning = new_warning() if self._warning_plot else None
        calls = []
        for pattern in self._parameters:
            # a parameter frozen since attach shows up once it has had a gradient
            sites = [s for s in self._sites if self.pattern_of(getattr(s, "param_name", "")) == pattern
                     and (getattr(s, "observed", False) or s.param.requires_grad)]  # type: ignore[attr-defined]
            calls.append(rate_calls(self, self.tag_for(pattern), sites, summaries, self._act_method,
                                    self._death_method, warning))
        if warning is not None:
            calls.append(Call("probability", self._BIG_TAG_NAME, OrderedDict([(self._BIG_TAG_NAME, warning)])))
        return calls
