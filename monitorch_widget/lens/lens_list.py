"""The ``lenses=`` argument checked: instances of our lenses, each given once."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .base import AbstractLens


def check_lenses(lenses: Any) -> list[AbstractLens]:
    """``lenses`` as a list; raises ``TypeError`` for a non-list, a lens class instead of an instance or a
    monitorch lens, and ``ValueError`` for a lens object given twice or two lenses that write the same panel (one
    would overwrite the other's values: two ``OutputActivation`` lenses with different aggregations)."""
    if isinstance(lenses, AbstractLens) or not isinstance(lenses, Iterable):
        raise TypeError("lenses= must be a list of lenses, e.g. [LossMetrics(loss_fn=loss_fn), OutputActivation()]")
    lenses = list(lenses)
    for i, lens in enumerate(lenses):
        if isinstance(lens, type) and issubclass(lens, AbstractLens):
            raise TypeError(f"lenses[{i}] is the class {lens.__name__}, not an instance; write {lens.__name__}()")
        if not isinstance(lens, AbstractLens):
            origin = type(lens).__module__
            hint = (" (a lens from the monitorch package: import it from monitorch_widget.lens instead)"
                    if origin.startswith("monitorch.") else "")
            raise TypeError(f"lenses[{i}] is a {type(lens).__name__}{hint}; accepted: lenses from "
                            "monitorch_widget.lens (LossMetrics, OutputActivation, ParameterGradientActivation, "
                            "OutputNorm, OutputGradientGeometry, ParameterGradientGeometry, ParameterNorm, "
                            "ParameterUpdateGeometry)")
    for i, lens in enumerate(lenses):
        for j in range(i):
            if lenses[j] is lens:
                raise ValueError(f"lenses[{i}] is the same {type(lens).__name__} object as lenses[{j}]; "
                                 "a lens can be given once (create a second instance if you really want two)")
    _check_panels(lenses)
    return lenses


def _check_panels(lenses: list[AbstractLens]) -> None:
    # a warning panel lists the worst layers of each lens that feeds it: two lenses of one kind watching other
    # parameters (weights, biases) share it, as in monitorch
    writes: dict[str, int] = {}
    for i, lens in enumerate(lenses):
        for tag, _ in [*lens.tags(), *lens.record_tags()]:
            if tag.startswith("Warning "):
                continue
            j = writes.setdefault(tag, i)
            if j != i:
                raise ValueError(
                    f"lenses[{i}] ({type(lens).__name__}) and lenses[{j}] ({type(lenses[j]).__name__}) both write "
                    f"the panel {tag!r}: one would overwrite the other's values. Give one lens every aggregation "
                    "you want (e.g. activation_aggregation=..., line_aggregation=[...]) or the parameters= it "
                    "should watch, or record the other in a second inspector")
