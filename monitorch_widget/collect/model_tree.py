"""The attached model: wrappers peeled, FSDP1 refused, modules listed under the user's names.

``attach(module)`` accepts what the user trains: a plain module, ``torch.compile(model)``, DDP /
DataParallel wrappers in any nesting (:func:`.compiled.peel`). FSDP1's flattened parameters hide the
gradients and names the lenses read, so it is refused here, at attach, with the way out (FSDP2).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from .compiled import CompiledGraphs, children, peel


def attached_graphs(model: Any) -> CompiledGraphs:
    """The user's module behind ``model``'s wrappers, the module the user calls, and which modules run in a
    compiled graph. Raises ``TypeError`` for a non-module and for FSDP1."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"attach() needs a torch.nn.Module, got {type(model).__name__}")
    inner, call_root, whole = peel(model)
    fsdp = getattr(torch.distributed, "fsdp", None) if torch.distributed.is_available() else None
    fsdp1 = getattr(fsdp, "FullyShardedDataParallel", None)
    for name, module in inner.named_modules():
        if fsdp1 is not None and isinstance(module, fsdp1):
            raise TypeError(f"attach() found FullyShardedDataParallel (FSDP1) at {name or 'the root'}: its flattened "
                            "parameters hide the gradients and names this monitor reads. Shard with FSDP2 "
                            "instead (torch.distributed.fsdp.fully_shard), before or after attach, and attach "
                            "the model itself")
    return CompiledGraphs(inner, call_root, whole)


def traverse(module: nn.Module, depth: int, sep: str, prefix: str = "",
             aliases: dict[int, tuple[str, list[str]]] | None = None) -> Iterator[tuple[nn.Module, str, bool]]:
    """(module, name, is_leaf) in definition order; leaves are the modules at ``depth`` (or true leaves), the
    inner modules follow their children. Names are the user's: a compiled submodule is entered under its own
    name (no ``_orig_mod``); ``sep`` joins the parts (monitorch's ``module_name_prefix``). A module reachable
    under several names (``self.act`` also inside ``self.block``) is yielded once, under its first name, as
    ``named_modules()`` does; ``aliases`` collects id(module) -> (that name, [its other names])."""
    if aliases is None:
        aliases = {}
    seen = aliases.get(id(module))
    if seen is not None:
        seen[1].append(prefix)
        return
    aliases[id(module)] = (prefix, [])
    kids = list(children(module))
    if depth == 0 or not kids:
        yield module, prefix, True
        return
    for name, child in kids:
        yield from traverse(child, depth - 1, sep, f"{prefix}{sep}{name}" if prefix else name, aliases)
    yield module, prefix, False


def alias_notice(aliases: dict[int, tuple[str, list[str]]]) -> str | None:
    """The notice for modules reachable under several names (:func:`traverse`), or None."""
    pairs = [f"{other!r} is {first!r}" for first, others in aliases.values() for other in others]
    if not pairs:
        return None
    return (f"{len(pairs)} module name(s) are another name of a module already watched, which is watched once, "
            f"under its first name: {', '.join(pairs[:8])}{f' and {len(pairs) - 8} more' if len(pairs) > 8 else ''}")
