"""One inspector per model: re-running the notebook cell that builds an inspector and attaches it to the same
model replaces the previous inspector instead of stacking a second set of hooks.

The table holds weak references only (a detached model or a dropped inspector is collectable).
"""

from __future__ import annotations

import weakref
from typing import Any

from torch import nn

_OWNER: weakref.WeakKeyDictionary[nn.Module, weakref.ref[Any]] = weakref.WeakKeyDictionary()


def claim(model: nn.Module, inspector: Any) -> str | None:
    """Make ``inspector`` the one attached to ``model``. A different inspector still attached to it is detached
    and its live widget closed; returns the notice to report (None when there was none)."""
    ref = _OWNER.get(model)
    previous = ref() if ref is not None else None
    _OWNER[model] = weakref.ref(inspector)
    if previous is None or previous is inspector or getattr(previous, "_model", None) is not model:
        return None
    previous.detach()
    previous.replaced_on = type(model).__name__  # its next tick_epoch() says why it is detached
    previous._live.close()  # its views belonged to the replaced inspector (usually the re-run cell's old output)
    return (f"{type(model).__name__} was attached to another inspector: that one was detached (its record "
            "keeps its runs) and its widget closed; one inspector per model")


def release(model: nn.Module | None, inspector: Any) -> None:
    if model is None:
        return
    ref = _OWNER.get(model)
    if ref is not None and ref() is inspector:
        del _OWNER[model]
