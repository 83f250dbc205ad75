"""Watched modules that never run: their series stay empty, and that is said once, with why."""

from __future__ import annotations

from ..collect.faults import MonitorNotice
from ..collect.summary import Summary
from .base import AbstractLens


def _names(items: list[str], shown: int = 8) -> str:
    return ", ".join(repr(i) for i in items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")


def say_silent(lens: AbstractLens, summaries: dict[int, list[Summary]]) -> None:
    """Once: the watched modules that never ran in an epoch in which the lens's other modules did (a module the
    forward does not call: GPT-2's ``attn_dropout`` under SDPA attention, a branch switched off). Their series stay
    empty; this says why."""
    ran, silent = False, []
    for site in lens.sites:
        if site.hidden or site.off:
            continue
        s = summaries[id(site.stream)][0]
        if s.count or s.nonfinite:
            ran = True
        else:
            silent.append(site.name)
    if ran and silent:
        lens.ctx.faults.report(lens.lens_name, f"{len(silent)} watched module(s) never ran in a counted pass of an "
                               f"epoch in which the others did: {_names(silent)}; the forward pass does not call them "
                               "(a branch not taken, a module the attention kernel skips), so their series stay "
                               "empty",
                               category=MonitorNotice)
