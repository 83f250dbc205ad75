"""Modules and parameters added to the model after ``attach``: not watched, and said so once.

Lenses hook the modules and parameters the model has when the inspector attaches. A head added for fine-tuning,
a LoRA adapter set on a module, ``Sequential.append`` or a parametrization registered later would otherwise go
unwatched without a word. PyTorch's global registration hooks
(``torch.nn.modules.module.register_module_module_registration_hook`` and
``register_module_parameter_registration_hook``) fire whenever any module registers a submodule or a parameter
(``add_module``, attribute assignment, ``register_parameter``); while attached, :class:`ModelGrowth` notes those
made on one of the model's modules and :meth:`ModelGrowth.take_notice` words them once, at the next tick.

Not noted: a parameter assigned under a name its module already had (the lenses follow a replaced parameter:
FSDP2's sharded parameters, ``module.weight = nn.Parameter(...)``), and a module already in the model
registered again (moved or tied). Registrations on other modules (a new model, DDP or ``torch.compile``
wrapping this one) cost one dictionary lookup.
"""

from __future__ import annotations

import weakref
from typing import Any

from torch import nn
from torch.nn.modules.module import (
    register_module_module_registration_hook,
    register_module_parameter_registration_hook,
)

from .compiled import named_modules
from .faults import listed


class ModelGrowth:
    """Notes what is registered on ``model``'s modules from now on, until :meth:`remove`."""

    def __init__(self, model: nn.Module) -> None:
        # module -> its qualified name; weak keys: a module dropped from the model is forgotten with it
        self._names: weakref.WeakKeyDictionary[nn.Module, str] = weakref.WeakKeyDictionary()
        for name, module in named_modules(model):
            self._names[module] = name
        self._added: list[str] = []
        self._said: set[str] = set()
        self._handles = [register_module_module_registration_hook(self._on_module),
                         register_module_parameter_registration_hook(self._on_parameter)]

    def _on_module(self, parent: nn.Module, name: str, child: Any) -> None:
        try:
            where = self._names.get(parent)
            if where is None or not isinstance(child, nn.Module) or child in self._names:
                return
            full = f"{where}.{name}" if where else name
            for sub, module in named_modules(child):  # its submodules are as new as it is
                self._names.setdefault(module, f"{full}.{sub}" if sub else full)
            self._added.append(f"{full} ({type(child).__name__})")
        except Exception:  # noqa: BLE001, S110 - never fail the user's module assignment
            pass

    def _on_parameter(self, module: nn.Module, name: str, param: Any) -> None:
        try:
            where = self._names.get(module)
            if where is None or param is None or name in module._parameters or any(
                    p is param for p in module._parameters.values()):
                return  # not our model, a None placeholder, a replacement the lenses follow, or a parameter
                # registered again under a new name (pruning's ``weight_orig``: the lenses follow the object)
            self._added.append(f"{where}.{name}" if where else name)
        except Exception:  # noqa: BLE001, S110 - never fail the user's register_parameter
            pass

    def take_notice(self) -> str | None:
        """The notice for what was added since the last call (each name once per attach), or None."""
        new = [n for n in dict.fromkeys(self._added) if n not in self._said]
        self._added = []
        if not new:
            return None
        self._said.update(new)
        shown = listed(new)
        return (f"{len(new)} module(s) / parameter(s) were added to the model after the inspector attached and are "
                f"not watched: {shown}. Lenses hook what the model holds at attach: build the model completely "
                "first, or attach again (inspector.attach(model): a new run of the record) to watch them")

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
