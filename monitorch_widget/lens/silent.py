"""Output series that stay empty for a reason the user can fix: said once, with why."""

from __future__ import annotations

from ..collect.faults import FaultLog, MonitorNotice, listed
from ..collect.passes import COUNT_TRAINING
from ..collect.summary import Summary
from .base import AbstractLens
from .rate_calls import bank_table


def say_silent(lens: AbstractLens, summaries: dict[int, list[Summary]]) -> None:
    """Once: the watched modules that never ran in an epoch in which the lens's other modules did (a module the
    forward does not call: GPT-2's ``attn_dropout`` under SDPA attention, a branch switched off). Their series stay
    empty; this says why."""
    ran, silent = False, []
    table, bank = bank_table(summaries, lens.sites)
    if table is not None:  # every slot's count and non-finite count at once: no Summary object per layer
        seen = table.observed()
        if all(seen):  # every slot of the lens' bank saw a batch (the usual epoch): no site to look at
            return
    for site in lens.sites:
        if site.hidden or site.off:
            continue
        stream = site.stream
        if table is not None and getattr(stream, "bank", None) is bank:
            observed = seen[stream.index]  # type: ignore[union-attr]
        else:
            s = summaries[id(stream)][0]
            observed = bool(s.count or s.nonfinite)
        if observed:
            ran = True
        else:
            silent.append(site.name)
    if ran and silent:
        lens.ctx.faults.report(lens.lens_name, f"{len(silent)} watched module(s) never ran in a counted pass of an "
                               f"epoch in which the others did: {listed(silent)}; the forward pass does not call them "
                               "(a branch not taken, a module the attention kernel skips), so their series stay "
                               "empty",
                               category=MonitorNotice)


def say_eval_training(lenses: list[AbstractLens], faults: FaultLog, passes: list[int], steps: int) -> None:
    """Once: an epoch trained only in eval mode (``model.eval()`` kept for frozen BatchNorm or no dropout): the
    optimizer stepped, every forward pass ran with grad enabled in eval mode, and output lenses that count
    training-mode passes only (monitorch's rule) recorded none of them. ``passes``: [training-mode passes,
    eval-mode passes with grad enabled, eval-mode passes without] of the epoch; ``steps``: its optimizer steps."""
    if not steps or passes[0] or not passes[1]:
        return
    names = [lens.lens_name for lens in lenses if getattr(lens, "_gate", None) == COUNT_TRAINING and lens.sites]
    if names:
        faults.report("model", f"the model trained in eval mode (forward passes with grad enabled and "
                      f"model.training False, then optimizer steps): {' / '.join(dict.fromkeys(names))} count "
                      "training-mode passes only (monitorch's rule), so their series stay empty. Call model.train() "
                      "before training, or, to train in eval mode on purpose (frozen BatchNorm, no dropout), pass "
                      "record_eval=True to them", category=MonitorNotice)
