"""ParameterUpdateGeometry's optimizer, checked: what cannot be hooked (an error), and update series that stay
empty for a reason the user can fix (a notice, once each).

- An object that passes ``isinstance(x, torch.optim.Optimizer)`` but never ran ``Optimizer.__init__`` (timm's
  ``Lookahead``, accelerate's ``AcceleratedOptimizer``): it has no step hooks to register, so the lens refuses
  it at once and names the inner optimizer to pass instead (:func:`unhookable`, :func:`inner_optimizer`).
- No optimizer and no ``inspect_update()`` call while optimizers stepped the model: nothing can be observed
  (a framework user who wrote ``ParameterUpdateGeometry(None)`` without its callback, a forgotten call).
- Watched parameters that require grad but the lens's optimizer does not hold: no optimizer trains them, or
  another one does (a GAN's second optimizer, a head with its own SGD); their series stay empty. Frozen
  parameters (``requires_grad=False``) are left out: not training them is the point.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from ..collect.faults import FaultLog, MonitorNotice, listed
from ..collect.optimizer_steps import groups_signature
from .frozen import REQUIRES_GRAD

#: attributes under which optimizer wrappers keep the optimizer they drive (timm, accelerate, Lightning)
_INNER = ("base_optimizer", "optimizer", "_optimizer")


def hookable(optimizer: Any) -> bool:
    """Whether ``optimizer`` ran ``torch.optim.Optimizer.__init__`` (it has the step-hook dictionaries)."""
    return hasattr(optimizer, "_optimizer_step_pre_hooks")


def inner_optimizer(optimizer: Any) -> tuple[str, torch.optim.Optimizer] | None:
    """(attribute, optimizer) of the hookable optimizer ``optimizer`` wraps, following wrappers of wrappers
    (``AcceleratedOptimizer(Lookahead(AdamW))``); None when there is none."""
    path, current = [], optimizer
    for _ in range(4):
        for attr in _INNER:
            inner = getattr(current, attr, None)
            if isinstance(inner, torch.optim.Optimizer) and inner is not current:
                path.append(attr)
                current = inner
                break
        else:
            return None
        if hookable(current):
            return ".".join(path), current
    return None


def unwrap(optimizer: Any) -> torch.optim.Optimizer | None:
    """``optimizer`` itself when it can be hooked, else the optimizer it wraps (None: neither)."""
    if isinstance(optimizer, torch.optim.Optimizer) and hookable(optimizer):
        return optimizer
    found = inner_optimizer(optimizer)
    return None if found is None else found[1]


def unhookable(optimizer: Any) -> str:
    """The error for an optimizer whose steps cannot be hooked, naming the inner one to pass."""
    name = type(optimizer).__name__
    found = inner_optimizer(optimizer)
    fix = (f"pass the optimizer it wraps, ParameterUpdateGeometry(opt.{found[0]}) ({type(found[1]).__name__}: "
           "its steps are the updates; an interpolation the wrapper adds outside them is not observed)"
           if found is not None else "pass the optimizer it wraps (e.g. opt.base_optimizer)")
    return (f"ParameterUpdateGeometry(optimizer={name}): this {name} is a torch.optim.Optimizer that never ran "
            f"Optimizer.__init__ (a wrapper such as timm's Lookahead), so it has no step hooks and its steps cannot "
            f"be observed; {fix}, or any torch.optim.Optimizer built the usual way")


class StepNotices:
    """What one attach of a ParameterUpdateGeometry said about unobserved steps: each thing once."""

    def __init__(self, lens: str, faults: FaultLog) -> None:
        self.lens = lens
        self.faults = faults
        self.said_no_optimizer = False
        self.named: set[str] = set()  # parameters already named as not held by the optimizer
        self._checked: tuple[Any, ...] | None = None  # what not_held last looked at

    def no_optimizer(self) -> None:
        """Optimizers stepped the model, and the lens has none and ``inspect_update()`` was never called."""
        if self.said_no_optimizer:
            return
        self.said_no_optimizer = True
        self.faults.report(self.lens, (
            "it observed no step: it has no optimizer (ParameterUpdateGeometry(None)) and inspect_update() was never "
            "called, while optimizers updated the model, so its update series stay empty. Pass the optimizer, "
            "ParameterUpdateGeometry(optimizer) or lens.optimizer = optimizer (the Lightning and Hugging Face "
            "callbacks hand over the Trainer's), or call lens.inspect_update() after each update"),
            category=MonitorNotice)

    def not_held(self, optimizer: torch.optim.Optimizer, sites: Iterable[Any]) -> None:
        """Name the watched parameters requiring grad that ``optimizer`` does not hold (each once). Looked at again
        only when the optimizer's groups or the watched set changed (a tick of the usual run costs one signature)."""
        sites = list(sites)
        key = (id(optimizer), groups_signature(optimizer), len(sites), sum(map(REQUIRES_GRAD, sites)))
        if key == self._checked:
            return
        self._checked = key
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        names = {f"{s.module_name}.{s.param_name}" if s.module_name else s.param_name: s for s in sites
                 if not s.hidden and id(s.param) not in held and s.param.requires_grad}
        new = [name for name in names if name not in self.named]
        if not new:
            return
        self.named.update(new)
        self.faults.report(self.lens, (
            f"{len(new)} watched parameter(s) require grad but its optimizer ({type(optimizer).__name__}) does not "
            f"hold them: {listed(new)}; no step of it updates them, so their update series stay empty. If another "
            "optimizer trains them, the lens watches one optimizer at a time: assign lens.optimizer = that_optimizer "
            "to watch its steps instead (mid-training too); if none does, "
            "add them (optimizer.add_param_group) or freeze them (requires_grad_(False))"),
            category=MonitorNotice)
