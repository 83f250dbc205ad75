"""Output series that stay empty for a reason the user can fix: said once, with why."""

from __future__ import annotations

from ..collect.faults import FaultLog, MonitorNotice, listed
from ..collect.passes import COUNT_GRAD_ENABLED, COUNT_TRAIN_MODE, COUNT_TRAINING
from ..collect.summary import Summary
from .base import AbstractLens
from .rate_calls import bank_table

#: what each pass rule counts (collect/passes.py), for the notice
_RULES = {COUNT_TRAINING: "a pass counts when grad is enabled and the module is in training mode (monitorch's rule)",
          COUNT_GRAD_ENABLED: "a pass counts when grad is enabled (evaluation_from_grad=True)",
          COUNT_TRAIN_MODE: "a pass counts when the module is in training mode (evaluation_from_grad=False)"}


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
        if not site.watching:
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
    if not ran:
        return
    # a module whose hook saw calls the pass rule dropped did run: in passes this lens does not count
    quiet = set(silent)
    uncounted = [site.name for site in lens.sites if site.name in quiet and site.uncounted_calls()]
    dropped = set(uncounted)
    uncalled = [name for name in silent if name not in dropped]
    if uncalled:
        lens.ctx.faults.report(lens.lens_name, f"{len(uncalled)} watched module(s) never ran in a counted pass of an "
                               f"epoch in which the others did: {listed(uncalled)}; the forward pass does not call "
                               "them (a branch not taken, a module the attention kernel skips), so their series stay "
                               "empty",
                               category=MonitorNotice)
    if uncounted:
        lens.ctx.faults.report(lens.lens_name, f"{len(uncounted)} watched module(s) ran only in passes this lens does "
                               f"not count, in an epoch in which the others ran in counted ones: {listed(uncounted)}; "
                               f"{_RULES.get(getattr(lens, '_gate', COUNT_TRAINING), _RULES[COUNT_TRAINING])} (a frozen "
                               "backbone called under torch.no_grad() inside forward, a module switched to eval()), "
                               "so their series stay empty. To count them too, build the lens with record_eval=True "
                               "(every pass counts, evaluation passes included)",
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


def say_eval_counted_as_training(lenses: list[AbstractLens], faults: FaultLog, passes: list[int]) -> None:
    """Once: an epoch with training-mode passes and eval-mode passes with grad enabled (a validation loop under
    ``model.eval()`` without ``torch.no_grad()``), watched by a ``LossMetrics(loss_fn=...)`` that classifies a loss
    by grad mode (``evaluation_from_grad=True``, monitorch's rule): those passes' losses were counted as training
    losses (the values are kept, as monitorch records them). ``passes`` as in :func:`say_eval_training`."""
    if not passes[0] or not passes[1]:
        return
    from .loss_metrics import LossMetrics  # the lens imports this module

    if any(isinstance(lens, LossMetrics) and lens._from_grad and lens._loss_fn is not None for lens in lenses):
        faults.report("model", "forward passes ran in eval mode with grad enabled next to training passes in one "
                      "epoch (a validation loop under model.eval() without torch.no_grad()): LossMetrics counts a "
                      "loss under grad as training (evaluation_from_grad=True, monitorch's rule), so their losses "
                      "went into the training loss and the validation loss got none. Wrap evaluation in "
                      "torch.no_grad() or torch.inference_mode(), or build LossMetrics(evaluation_from_grad=False) "
                      "and switch the loss module with the model (loss_fn.eval() / loss_fn.train()): that rule "
                      "reads its training flag", category=MonitorNotice)
