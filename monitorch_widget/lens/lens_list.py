"""The ``lenses=`` argument checked: instances of our lenses, each given once."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .base import AbstractLens
from .custom import METHODS, MonitorchStyleLens, is_monitorch_style


def check_lenses(lenses: Any) -> list[AbstractLens]:
    """``lenses`` as a list; raises ``TypeError`` for a non-list, a lens class instead of an instance or a
    monitorch lens, and ``ValueError`` for a lens object given twice or two lenses that write the same panel (one
    would overwrite the other's values: two ``OutputActivation`` lenses with different aggregations). A lens of the
    user's own that implements monitorch's lens interface is wrapped (:class:`~.custom.MonitorchStyleLens`)."""
    if isinstance(lenses, AbstractLens) or not isinstance(lenses, Iterable):
        raise TypeError("lenses= must be a list of lenses, e.g. [LossMetrics(loss_fn=loss_fn), OutputActivation()]")
    # a lens of the user's own written for monitorch's interface runs through an adapter (lens/custom.py)
    lenses = [MonitorchStyleLens(lens) if is_monitorch_style(lens) else lens for lens in lenses]
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
                            "ParameterUpdateGeometry), or a lens of your own with monitorch's lens methods ("
                            + ", ".join(METHODS) + ")")
    for i, lens in enumerate(lenses):
        for j in range(i):
            if _own(lenses[j]) is _own(lens):
                raise ValueError(f"lenses[{i}] is the same {type(lens).__name__} object as lenses[{j}]; "
                                 "a lens can be given once (create a second instance if you really want two)")
    _check_panels(lenses)
    return lenses


def _own(lens: Any) -> Any:
    return lens.lens if isinstance(lens, MonitorchStyleLens) else lens


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
