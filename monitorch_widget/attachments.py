"""One inspector per model, and one per lens object: re-running the notebook cell that builds an inspector and
attaches it to the same model (or hands it the lens objects an earlier cell made) replaces the previous
inspector instead of stacking a second set of hooks, or sharing a lens' sites and buffers between two.

The table holds weak references only (a detached model or a dropped inspector is collectable).
"""

from __future__ import annotations

import weakref
from typing import Any

from torch import nn

_OWNER: weakref.WeakKeyDictionary[nn.Module, weakref.ref[Any]] = weakref.WeakKeyDictionary()
_LENS_OWNER: weakref.WeakKeyDictionary[Any, weakref.ref[Any]] = weakref.WeakKeyDictionary()


def _replace(previous: Any, why: str) -> None:
    previous.detach()
    previous.replaced_on = why  # its next tick_epoch() says why it is detached
    previous._live.close()  # its views belonged to the replaced inspector (usually the re-run cell's old output)


def claim(model: nn.Module, inspector: Any) -> str | None:
    """Make ``inspector`` the one attached to ``model``. A different inspector still attached to it is detached
    and its live widget closed; returns the notice to report (None when there was none)."""
    ref = _OWNER.get(model)
    previous = ref() if ref is not None else None
    _OWNER[model] = weakref.ref(inspector)
    if previous is None or previous is inspector or getattr(previous, "_model", None) is not model:
        return None
    _replace(previous, f"another inspector was attached to this {type(model).__name__}, which detached this one: "
             "one inspector per model; tick that one")
    return (f"{type(model).__name__} was attached to another inspector: that one was detached (its record "
            "keeps its runs) and its widget closed; one inspector per model")


def release(model: nn.Module | None, inspector: Any) -> None:
    if model is None:
        return
    ref = _OWNER.get(model)
    if ref is not None and ref() is inspector:
        del _OWNER[model]


def claim_lenses(lenses: list[Any], inspector: Any) -> str | None:
    """Make ``inspector`` the owner of ``lenses``. A different inspector still attached with any of them is
    detached and its widget closed (a lens' hooks, buffers and context serve one inspector: shared, the first one
    recorded NaN and failed); returns the notice to report (None when there was none)."""
    taken: dict[int, tuple[Any, list[str]]] = {}
    for lens in lenses:
        ref = _LENS_OWNER.get(lens)
        previous = ref() if ref is not None else None
        _LENS_OWNER[lens] = weakref.ref(inspector)
        if previous is not None and previous is not inspector and previous.state.attached:
            taken.setdefault(id(previous), (previous, []))[1].append(type(lens).__name__)
    names: list[str] = []
    for previous, lens_names in taken.values():
        _replace(previous, f"another inspector took its lens objects ({', '.join(lens_names)}), which detached "
                 "this one: a lens belongs to one inspector; create new lens objects for each")
        names += lens_names
    if not names:
        return None
    return (f"the lens objects {', '.join(names)} belonged to another attached inspector: that one was detached "
            "(its record keeps its runs) and its widget closed; a lens belongs to one inspector (create new lens "
            "objects to run two)")

