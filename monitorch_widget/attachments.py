"""Re-running the notebook cell that builds an inspector and attaches it to the same model (or hands it the lens
objects an earlier cell made) replaces the previous inspector instead of stacking a second set of hooks, or
sharing a lens' sites and buffers between two.

An earlier inspector of the same model is taken for the re-run cell's when the two share a lens type (the same
statistic twice is never wanted); inspectors with disjoint lens sets stay attached side by side, as monitorch
allows (a cheap inspector ticked every epoch next to a geometry one with ``is_active_fn=10``).

The table holds weak references only (a detached model or a dropped inspector is collectable).
"""

from __future__ import annotations

import weakref
from typing import Any

from torch import nn

_OWNER: weakref.WeakKeyDictionary[nn.Module, list[weakref.ref[Any]]] = weakref.WeakKeyDictionary()
_LENS_OWNER: weakref.WeakKeyDictionary[Any, weakref.ref[Any]] = weakref.WeakKeyDictionary()
_CRITERION_OWNERS: weakref.WeakKeyDictionary[Any, list[weakref.ref[Any]]] = weakref.WeakKeyDictionary()


def _replace(previous: Any, why: str) -> None:
    previous.detach()
    previous.replaced_on = why  # its next tick_epoch() says why it is detached
    previous._live.close()  # its views belonged to the replaced inspector (usually the re-run cell's old output)


def _lens_types(inspector: Any) -> set[type]:
    return {type(lens) for lens in getattr(inspector, "lenses", ())}


def claim(model: nn.Module, inspector: Any) -> str | None:
    """Attach ``inspector`` to ``model`` in the table. An inspector still attached to it that shares a lens type
    with ``inspector`` is detached and its live widget closed; returns the notice to report (None when none)."""
    alive = [ref for ref in _OWNER.get(model, []) if ref() is not None and ref() is not inspector
             and getattr(ref(), "_model", None) is model]
    mine = _lens_types(inspector)
    replaced = [ref() for ref in alive if _lens_types(ref()) & mine]
    shared = sorted({t.__name__ for previous in replaced for t in _lens_types(previous) & mine})
    _OWNER[model] = [ref for ref in alive if ref() not in replaced] + [weakref.ref(inspector)]
    for previous in replaced:
        _replace(previous, f"another inspector sharing a lens type with this one was attached to this {type(model).__name__}, "
                 "which detached this one (a re-run cell replaces its earlier inspector); tick that one")
    if not replaced:
        return None
    return (f"{type(model).__name__} was attached to another inspector with a lens type of this one "
            f"({', '.join(shared)}): that one was detached (its record keeps its runs) and its widget closed. Two "
            "inspectors watch one model side by side only with different lens types")


def release(model: nn.Module | None, inspector: Any) -> None:
    if model is None:
        return
    refs = _OWNER.get(model)
    if refs is not None:
        refs[:] = [ref for ref in refs if ref() is not None and ref() is not inspector]
        if not refs:
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



def claim_criteria(inspector: Any) -> None:
    """Note ``inspector``'s loss criteria (``LossMetrics(loss_fn=...)``), for :func:`shared_criteria`."""
    for lens in getattr(inspector, "lenses", ()):
        criterion = getattr(lens, "_loss_fn", None)
        if criterion is not None:
            owners = [o for ref in _CRITERION_OWNERS.get(criterion, []) if (o := ref()) is not None]
            _CRITERION_OWNERS[criterion] = [weakref.ref(o) for o in owners if o is not inspector] + \
                [weakref.ref(inspector)]


def shared_criteria(inspector: Any) -> str | None:
    """At a tick, before the epoch's passes are reset: a notice when a criterion of ``inspector``'s is hooked by
    another attached inspector whose model ran a training pass since that one's last tick (an eval pass of an
    old model, e.g. to plot its decision boundary, trains nothing). The hook of each counts every call,
    so both record both models' losses, mixed (trial r15b: both read 50.6 for hand values 1.1 and 100.1). Two
    inspectors used one after the other (the seed tutorial's two runs with one criterion) never train together:
    nothing to say."""
    shared: list[str] = []
    for lens in getattr(inspector, "lenses", ()):
        criterion = getattr(lens, "_loss_fn", None)
        owners = [o for ref in _CRITERION_OWNERS.get(criterion, []) if (o := ref()) is not None] \
            if criterion is not None else []
        if any(o is not inspector and o.state.attached and o._model is not inspector._model and o._passes[0]
               for o in owners):
            shared.append(type(criterion).__name__)
    if not shared:
        return None
    return (f"the loss_fn of LossMetrics ({', '.join(dict.fromkeys(shared))}) is the same object as that of another "
            "inspector whose model trained in this epoch too: both record every call of it, so each records the "
            "other model's losses too, mixed. Give each inspector its own criterion object (e.g. "
            "LossMetrics(loss_fn=nn.CrossEntropyLoss()) per model)")
