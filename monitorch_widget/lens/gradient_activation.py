"""ParameterGradientActivation: the activation idea applied to each parameter's gradient rows."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from torch import nn
from torch.nn.parameter import UninitializedParameter

from ..collect.gradient_hooks import GradientGroup, GradientSite
from ..collect.scratch import ScratchPool
from ..collect.streams import BankRow, StreamBank
from ..collect.summary import Summary, as_method_list, needs_all_values
from .base import AbstractLens, Call, TagAttributes, TagType, new_warning, rate_calls


class ParameterGradientActivation(AbstractLens):
    """Per parameter row (dim 0: one output neuron / channel), the share of gradient entries with
    |g| > eps (activation rate) and the share of rows whose gradient is all zero (death rate); a 1-D
    parameter (bias) uses its entries. Every module that directly owns a listed parameter is tracked, per
    parameter: a module with ``weight`` but no ``bias`` still gets its weight tracked.
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
        self._group: GradientGroup | None = None
        self._bank = StreamBank(2, self._keep_all)
        # Parameters batched by the GradientGroup get consecutive slots of their own bank, so that one
        # group fold stages one run of slots (see StreamBank.commit).
        self._small_bank = StreamBank(2, self._keep_all)
        self._pool = ScratchPool()

    @staticmethod
    def tag_for(parameter: str) -> str:
        return f"{parameter} Gradient Activation".title()

    def tags(self) -> list[tuple[str, TagAttributes]]:
        tags = [(self.tag_for(p), TagAttributes(False, False, True, TagType.PROBABILITY)) for p in self._parameters]
        if self._warning_plot:
            tags.append((self._BIG_TAG_NAME, TagAttributes(False, True, True, TagType.PROBABILITY)))
        return tags

    def register_module(self, module: nn.Module, name: str, leaf: bool) -> None:
        if self._group is None:
            self._group = GradientGroup(self._eps, self.ctx.faults, self.lens_name)
        for pname in self._parameters:
            param = module._parameters.get(pname)
            if param is None or not param.requires_grad:
                continue
            if isinstance(param, UninitializedParameter):
                self._wait_for_materialisation(module, name, pname)
            else:
                self._sites.append(GradientSite(name, module, pname, param, self.lens_name, self.ctx.faults,
                                                eps=self._eps, keep_all=self._keep_all, group=self._group,
                                                slot=self._slot_for(param), pool=self._pool))

    def _slot_for(self, param: nn.Parameter) -> BankRow:
        return (self._small_bank if param.numel() <= GradientGroup.SMALL else self._bank).add_row()

    def _wait_for_materialisation(self, module: nn.Module, name: str, pname: str) -> None:
        def once(mod: nn.Module, args: Any, out: Any) -> None:
            handle.remove()
            self._pending.remove(handle)
            param = mod._parameters.get(pname)
            if param is None or isinstance(param, UninitializedParameter):
                self.ctx.faults.report(self.lens_name, f"{name}.{pname} is still uninitialised after a forward "
                                       "pass; its gradient cannot be tracked")
                return
            self._sites.append(GradientSite(name, mod, pname, param, self.lens_name, self.ctx.faults,
                                            eps=self._eps, keep_all=self._keep_all, group=self._group,
                                                slot=self._slot_for(param), pool=self._pool))
            self._sites.sort(key=lambda s: self._order.get(s.name, 0))

        handle = module.register_forward_hook(once)
        self._pending.append(handle)

    def after_attach(self, model: nn.Module) -> None:
        self._order = {name: i for i, (name, _) in enumerate(model.named_modules())}
        found = {p for p in self._parameters for s in self._sites if getattr(s, "param_name", None) == p}
        found |= {p for p in self._parameters if self._pending}
        missing = [p for p in self._parameters if p not in found]
        if missing and len(missing) == len(self._parameters):
            available = sorted({n.rsplit(".", 1)[-1] for n, _ in model.named_parameters()})
            raise ValueError(f"ParameterGradientActivation(parameters={self._parameters!r}): no module of the model "
                             f"has a trainable parameter named {', '.join(missing)}; parameter names in this model: "
                             f"{', '.join(available) or '(none)'}")

    def detach(self) -> None:
        for handle in self._pending:
            handle.remove()
        self._pending = []
        super().detach()
        self._group = None
        self._bank = StreamBank(2, self._keep_all)
        self._small_bank = StreamBank(2, self._keep_all)

    def compute(self, summaries: dict[int, list[Summary]]) -> list[Call]:
        warning = new_warning() if self._warning_plot else None
        calls = []
        for pname in self._parameters:
            sites = [s for s in self._sites if getattr(s, "param_name", None) == pname]
            calls.append(rate_calls(self, self.tag_for(pname), sites, summaries, self._act_method,
                                    self._death_method, warning))
        if warning is not None:
            calls.append(Call("probability", self._BIG_TAG_NAME, OrderedDict([(self._BIG_TAG_NAME, warning)])))
        return calls
