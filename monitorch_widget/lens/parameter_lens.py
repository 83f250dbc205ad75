"""What lenses that watch parameters by name share: the ``parameters=`` argument and which modules it selects.

``parameters``: local parameter names or glob patterns (``"weight"``, ``"weight_ih_l*"``, ``"*_proj_weight"``,
``"original*"`` for weight-norm parametrizations). Every module that directly owns a matching parameter is
watched, per parameter (monitorch skips a module that lacks one of the listed names; see the README's
"Differences from monitorch"). A lazy parameter is watched once its first forward pass materialised it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Any

from torch import nn
from torch.nn.parameter import UninitializedParameter

from ..collect.compiled import named_modules, named_parameters
from ..collect.faults import listed
from ..collect.held_hooks import HeldHook
from .base import AbstractLens


def parameter_names(parameters: Any) -> list[str]:
    """Validate a ``parameters=`` argument: a name or a non-empty list of distinct names."""
    params = [parameters] if isinstance(parameters, str) else list(parameters) \
        if isinstance(parameters, Iterable) else None
    if not params or not all(isinstance(p, str) and p for p in params):
        raise TypeError(f"parameters= must be a parameter name or a non-empty list of names such as "
                        f"('weight', 'bias'); got {parameters!r}")
    if len(set(params)) != len(params):
        raise ValueError(f"parameters= lists a name twice: {parameters!r}")
    return params


class ParameterLens(AbstractLens):
    """Selects parameters by ``parameters=``; subclasses create one site per selected parameter."""

    def __init__(self, parameters: Any) -> None:
        super().__init__()
        self._parameters = parameter_names(parameters)
        self._pending: list[Any] = []  # one-shot hooks waiting for lazy parameters to materialise
        self._order: dict[str, int] = {}

    def pattern_of(self, param_name: str) -> str | None:
        """The first entry of ``parameters`` that ``param_name`` (a local name) matches, or None."""
        for pattern in self._parameters:
            if fnmatch.fnmatchcase(param_name, pattern):
                return pattern
        return None

    def series_name(self, module_name: str, param_name: str) -> str:
        # an exact name keeps monitorch's series name (the module); a glob may match several parameters of one
        # module (an LSTM's weight_ih_l0 and weight_hh_l0), so its series are named module.parameter
        if param_name in self._parameters:
            return module_name
        return f"{module_name}.{param_name}" if module_name else param_name

    def register_module(self, module: nn.Module, name: str, leaf: bool) -> None:
        for pname, param in module._parameters.items():
            if param is None or self.pattern_of(pname) is None:
                continue
            if isinstance(param, UninitializedParameter):
                self._wait_for_materialisation(module, name, pname)
            elif not self._tied(param, name, pname):
                self._add_site(name, module, pname, param)

    def _tied(self, param: nn.Parameter, module_name: str, pname: str) -> bool:
        """Whether ``param`` is already watched under another name (tied weights: GPT-2's ``lm_head.weight`` is
        ``transformer.wte.weight``): one tensor is one series, under its first name in model order (a second
        would repeat its values and count it twice in comparisons); the alias is named in the attach notice."""
        full = f"{module_name}.{pname}" if module_name else pname
        seen: dict[int, str] = self.__dict__.setdefault("_watched_tensors", {})
        first = seen.setdefault(id(param), full)
        if first == full:
            return False
        self.__dict__.setdefault("tied", []).append((full, first))
        return True

    def _add_site(self, name: str, module: nn.Module, pname: str, param: nn.Parameter) -> None:
        raise NotImplementedError

    def _wait_for_materialisation(self, module: nn.Module, name: str, pname: str) -> None:
        def once(mod: nn.Module, args: Any, out: Any) -> None:
            handle.remove()
            self._pending.remove(handle)
            param = mod._parameters.get(pname)
            if param is None or isinstance(param, UninitializedParameter):
                self.ctx.faults.report(self.lens_name, f"{name}.{pname} is still uninitialised after a forward "
                                       "pass; it cannot be tracked")
                return
            if not self._tied(param, name, pname):
                self._add_site(name, mod, pname, param)
            self._sites.sort(key=lambda s: self._order.get(getattr(s, "module_name", s.name), 0))

        handle = module.register_forward_hook(HeldHook(once))
        self._pending.append(handle)

    def after_attach(self, model: nn.Module) -> None:
        self.attach_notice: str | None = None  # said by the attach notice (lens/coverage.py)
        self._order = {name: i for i, (name, _) in enumerate(named_modules(model))}
        if not self._sites and not self._pending:
            below = [n for n, _ in named_parameters(model) if self.pattern_of(n.rsplit(".", 1)[-1]) is not None]
            if below:  # held by submodules under the inspector's depth=: monitorch records nothing, and so do we
                self.attach_notice = (f"{self.lens_name} watches no parameter: the modules at the inspector's depth= "
                                      f"hold none of their own, and the {len(below)} parameter(s) matching "
                                      f"{', '.join(self._parameters)} belong to their submodules "
                                      f"({listed(below, 4)}); raise depth= to reach those modules, or leave it at -1 "
                                      "(every module)")
                return
            available = sorted({n.rsplit(".", 1)[-1] for n, _ in named_parameters(model)})
            raise ValueError(f"{self.lens_name}(parameters={self._parameters!r}): no module of the model "
                             f"has a parameter matching {', '.join(self._parameters)}; parameter names in this "
                             f"model: {', '.join(available) or '(none)'} (glob patterns such as 'weight_*' work)")

    def detach(self) -> None:
        for handle in self._pending:
            handle.remove()
        self._pending = []
        self.__dict__.pop("_watched_tensors", None)
        self.__dict__.pop("tied", None)
        super().detach()

    def drawn_sites(self, pattern: str) -> list[Any]:
        """The sites of one ``parameters`` entry that have a series: those read at least once, and those whose
        parameter requires grad (a parameter frozen since attach shows up once it has had a gradient). Once every
        site was read the answer is all of them for good (``observed`` never goes back), kept without a scan."""
        base = self.sites_of(pattern)
        settled: dict[str, tuple[list[Any], int]] = self.__dict__.setdefault("_all_observed", {})
        hit = settled.get(pattern)
        if hit is not None and hit[0] is base and hit[1] == len(base):
            return base
        if all(s.observed for s in base):
            settled[pattern] = (base, len(base))
            return base
        return [s for s in base if s.observed or s.param.requires_grad]

    def sites_of(self, pattern: str) -> list[Any]:
        """The sites of one ``parameters`` entry, in model order."""
        # every tick asks for every site: kept while the site list is the same
        return self.per_sites(("sites of", pattern), lambda: [
            s for s in self._sites if self.pattern_of(getattr(s, "param_name", "")) == pattern])
