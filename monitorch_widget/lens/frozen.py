"""Frozen parameters that still hold a gradient tensor: said once, so a "no gradient reaches it" reads right.

A parameter frozen with ``requires_grad_(False)`` gets no new gradient, but a loop that zeroes with
``optimizer.zero_grad(set_to_none=False)`` keeps its ``.grad`` as a zero tensor: every ``torch.optim`` step still
takes it (momentum and weight decay keep moving the "frozen" weights), and the gradient lenses would read that
zero gradient as they read any other (death rate 1, norm 0), which the health checks would see as a vanishing
gradient (or a dead layer, or weights that do not move). A frozen parameter's zero gradient is no gradient at all:
no optimizer step reads it, and no step's move of it is an update (:mod:`..collect.gradient_reading`,
:mod:`..collect.parameter_reads`: decided at each step, so a GAN's discriminator switched off between its own
steps is read in them; monitorch's hook-based lens reads none either: its hook never fires). A layer frozen
mid-epoch keeps the steps it trained in and has no gradient or update value after, so no health check judges it,
and the notice below names the cause once.
"""

from __future__ import annotations

from operator import attrgetter

from ..collect.faults import MonitorNotice, listed
from .base import AbstractLens

REQUIRES_GRAD = attrgetter("param.requires_grad")  # the site's parameter now (FSDP2 may have replaced it)


def say_frozen_with_gradient(lens: AbstractLens, said: set[str]) -> None:
    """Once per parameter (``said``: the names already given, kept by the inspector's ``LensContext`` and shared
    by its gradient lenses, so two lenses watching the same parameter name it once): watched parameters with
    ``requires_grad=False`` and a ``.grad`` that is not None, which an optimizer step used. Reads a few attributes
    per watched parameter (no device work); the usual tick, nothing frozen, is one C-level pass."""
    sites = lens.per_sites("with_param", lambda: [s for s in lens.sites if getattr(s, "param", None) is not None])
    if all(map(REQUIRES_GRAD, sites)):
        return
    found = []
    for site in sites:
        p = getattr(site, "param", None)  # a parameter lens's site
        # ``stepped``: a torch.optim step used the gradient the site holds (collect/gradient_reading.py); a stale
        # .grad of a frozen parameter no optimizer holds (a backbone frozen after pre-training) is never read
        if (p is not None and not site.hidden and not p.requires_grad and p.grad is not None
                and getattr(site, "stepped", False)):
            pname = getattr(site, "param_name", "")
            found.append(f"{site.name}.{pname}" if site.name else pname)
    names = [name for name in found if name not in said]
    if not names:
        return
    said.update(names)
    lens.ctx.faults.report(lens.lens_name, (
        f"{len(names)} watched parameter(s) do not require grad (frozen with requires_grad_(False)) but still hold "
        f"a .grad tensor: {listed(names)}; no gradient reaches them by design, so their gradient series (and update "
        "ratio) have no value while they are frozen, and no health check judges them. Their .grad is a zero tensor "
        "kept by optimizer.zero_grad(set_to_none=False), so the optimizer still steps them (momentum, weight decay "
        "move the frozen weights): zero_grad() (set_to_none=True, the default) or param.grad = None ends both"),
        category=MonitorNotice)

