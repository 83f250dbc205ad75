"""Parameters a distributed wrapper manages, as the gradient reader (:mod:`.gradient_reading`) must see them.

- **DDP**: after the reducer's all-reduce every rank holds the same gradient, so one optimizer step is one
  observation, not one per rank: only rank 0 of the DDP's process group counts it (the tick sums the ranks).
  A DDP module is recognised inside its forward (``DistributedDataParallel._active_ddp_module``), by one
  forward pre-hook on the first watched module, so attaching before or after wrapping both work.
- **FSDP2** (``fully_shard``) replaces every parameter with a sharded ``DTensor`` parameter under the same
  name. Sites follow the parameter their module holds now, outside forward/backward (an optimizer's first
  step, the tick), where FSDP2 modules hold their sharded parameters. A parameter replaced by something
  else (FSDP1's flattening) is reported, never silently left unread.
"""

from __future__ import annotations

from operator import is_
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn.utils.parametrize import is_parametrized

from .faults import MonitorNotice

if TYPE_CHECKING:
    from .gradient_reading import GradientReader


def note_ddp(reader: GradientReader) -> None:
    """Forward pre-hook body: inside a DDP forward, mark the DDP's parameters as counted on its rank 0 only."""
    ddp = getattr(torch.nn.parallel.DistributedDataParallel, "_active_ddp_module", None)
    if ddp is None or id(ddp) in reader.wrappers:
        return
    reader.wrappers.add(id(ddp))
    try:
        here = torch.distributed.get_rank(ddp.process_group) == 0
        ignored = set(getattr(ddp, "parameters_to_ignore", ()))
        for name, param in ddp.module.named_parameters():
            site = reader.by_param.get(id(param))
            if site is not None and name not in ignored:
                site.counted_here = here
    except Exception as exc:  # noqa: BLE001 - a monitor must never stop training
        reader.faults.report(reader.lens, f"inspecting the DDP wrapper failed with {type(exc).__name__}: {exc}; "
                             "each rank's gradient observations are counted")


def follow_replaced(reader: GradientReader) -> bool:
    """Re-bind every site whose module holds another parameter of the same shape under its name; returns
    whether any did (the reader then rebuilds its layouts)."""
    sites = reader.sites
    # every tick: the usual answer (nothing replaced) in three C-level passes, not a Python loop per site
    held = [s.module._parameters.get(s.param_name) for s in sites]
    if all(map(is_, held, [s.param for s in sites])):
        return False
    changed = False
    for s in sites:
        current = s.module._parameters.get(s.param_name)
        if current is None and s.watching and is_parametrized(s.module, s.param_name):
            s.fail(_parametrized(s))
            continue
        if current is None and _renamed(reader, s):
            continue
        if current is None:  # (getattr only then: a module's __getattr__ costs a Python call per site and tick)
            current = getattr(s.module, s.param_name, None)
        if current is s.param or not s.watching:  # (an is_active_fn that said no at the last pass: followed too)
            continue
        if not isinstance(current, nn.Parameter) or current.shape != s.param.shape:
            hooked = _hook_reparametrized(s)
            s.fail(hooked or f"parameter {s.param_name!r} was replaced by a {type(current).__name__} of shape "
                   f"{tuple(getattr(current, 'shape', ()))} after attach: something now computes it (a "
                   "reparametrization) or flattened it (FullyShardedDataParallel, FSDP1: not supported; shard with "
                   "fully_shard, FSDP2, before or after attach). Attach again (inspector.attach(model)) to watch "
                   "the parameters the module holds now")
            continue
        reader.by_param.pop(id(s.param), None)
        s.bind(current)
        reader.by_param[id(current)] = s
        changed = True
    return changed


def _renamed(reader: GradientReader, site: Any) -> bool:
    """Whether the module still holds the site's parameter object under another name: ``torch.nn.utils.prune``
    re-registers ``weight`` as ``weight_orig`` (the same Parameter, still trained) and computes ``weight`` =
    ``weight_orig * weight_mask`` in a forward pre-hook. The series go on reading the trained parameter (its
    gradient is the one the mask lets through: pruned entries read as inactive); said once."""
    new = next((name for name, p in site.module._parameters.items() if p is site.param), None)
    if new is None:
        return False
    if getattr(site, "renamed_to", None) != new:
        site.renamed_to = new
        reader.faults.report(reader.lens, f"{site.name}: the module now holds this parameter as {new!r} (pruning, "
                             f"torch.nn.utils.prune: {site.param_name!r} is computed from it and a mask); the series "
                             f"go on with {new!r}, the parameter the optimizer trains", category=MonitorNotice)
    return True


def _parametrized(site: Any) -> str:
    """What to say when a watched parameter became the output of a ``torch.nn.utils.parametrize`` parametrization
    after attach (``weight_norm``, ``spectral_norm``, ``orthogonal``, a LoRA-style wrapper): the module's
    attribute is now computed at every access, and the gradient reaches the parametrization's own tensors."""
    chain = site.module.parametrizations[site.param_name]
    kinds = ", ".join(dict.fromkeys(type(p).__name__ for p in chain))
    return _computed_from(site, f"a parametrization ({kinds})", chain.named_parameters())


def _hook_reparametrized(site: Any) -> str | None:
    """The same for the older hook-based ``torch.nn.utils.weight_norm`` / ``spectral_norm`` (a forward pre-hook
    recomputes the attribute from ``<name>_g`` / ``<name>_v`` or ``<name>_orig``); None for anything else."""
    for hook in site.module._forward_pre_hooks.values():
        if getattr(hook, "name", None) == site.param_name and type(hook).__name__ in ("WeightNorm", "SpectralNorm"):
            prefix = f"{site.param_name}_"
            tensors = [(n, p) for n, p in site.module.named_parameters(recurse=False) if n.startswith(prefix)]
            return _computed_from(site, f"torch.nn.utils.{type(hook).__name__.lower().replace('norm', '_norm')} "
                                  "(its hook-based form)", tensors)
    return None


def _computed_from(site: Any, what: str, tensors: Any) -> str:
    trained = [name for name, p in tensors if p.requires_grad]
    names = ", ".join(repr(n) for n in trained) or "(none that requires grad)"
    patterns = ", ".join(repr(n.rsplit(".", 1)[-1]) for n in trained)
    return (f"{site.param_name!r} is computed by {what} applied after attach; the gradient now reaches "
            f"{names}, not a parameter {site.param_name!r}. To watch them, attach again after the change "
            f"(inspector.attach(model)) and name them in parameters=" + (f", e.g. parameters=[{patterns}]"
                                                                          if patterns else ""))

