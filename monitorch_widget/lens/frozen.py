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
    ``requires_grad=False`` and a ``.grad`` that is not None, which an optimizer step used, and the other frozen ones
    an optimizer that stepped holds (frozen by mistake, perhaps). Reads a few attributes
    per watched parameter (no device work); the usual tick, nothing frozen, is one C-level pass."""
    sites = lens.per_sites("with_param", lambda: [s for s in lens.sites if getattr(s, "param", None) is not None])
    if all(map(REQUIRES_GRAD, sites)):
        return
    found, plain = [], []
    reader = getattr(lens, "_reader", None)
    held = reader.held_by_optimizers() if reader is not None else set()
    for site in sites:
        p = getattr(site, "param", None)  # a parameter lens's site
        if p is None or site.hidden or p.requires_grad:
            continue
        pname = getattr(site, "param_name", "")
        name = f"{site.name}.{pname}" if site.name else pname
        if name in said:
            continue
        # ``stepped``: a torch.optim step used the gradient the site holds (collect/gradient_reading.py); a stale
        # .grad of a frozen parameter no optimizer holds (a backbone frozen after pre-training) is never read
        if p.grad is not None and getattr(site, "stepped", False):
            found.append(name)
        elif id(site) in held:  # frozen but given to the optimizer: maybe by mistake (a backbone frozen on purpose
            plain.append(name)  # and left out of the optimizer is the user's plain choice: nothing to say)
    said.update(found, plain)
    if found:
        lens.ctx.faults.report(lens.lens_name, (
            f"{len(found)} watched parameter(s) do not require grad (frozen with requires_grad_(False)) but still "
            f"hold a .grad tensor: {listed(found)}; no gradient reaches them by design, so their gradient series (and "
            "update ratio) have no value while they are frozen, and no health check judges them. Their .grad is a "
            "zero tensor kept by optimizer.zero_grad(set_to_none=False), so the optimizer still steps them "
            "(momentum, weight decay move the frozen weights): zero_grad() (set_to_none=True, the default) or "
            "param.grad = None ends both"), category=MonitorNotice)
    if plain:
        # trial r13b: a layer frozen by mistake (requires_grad_(False) before attach, all parameters given to the
        # optimizer) left the gradient panels without a word
        lens.ctx.faults.report(lens.lens_name, (
            f"{len(plain)} watched parameter(s) are frozen (requires_grad=False) but held by the optimizer: "
            f"{listed(plain)}; no gradient reaches them, so they have no gradient series (nor update ratio) while "
            "frozen, and no health check judges them. If that is not meant, call requires_grad_(True) on them "
            "(they are read from the next step on)"), category=MonitorNotice)
