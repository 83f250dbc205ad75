"""The ``lenses=`` argument checked: instances of our lenses, each given once."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .base import AbstractLens


def check_lenses(lenses: Any) -> list[AbstractLens]:
    """``lenses`` as a list; raises ``TypeError`` for a non-list, a lens class instead of an instance or a
    monitorch lens, and ``ValueError`` for a lens object given twice."""
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
    return lenses
