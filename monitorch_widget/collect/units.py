"""The units of a layer: which axis of a parameter's gradient holds one output neuron / channel.

A parameter's gradient statistics are taken per *unit* (an output neuron, channel, vocabulary row or gate
row): a unit is "dead" in an observation when every gradient entry that belongs to it is within eps of zero.
Which entries belong to a unit follows the layer, not the tensor position:

=========================================  ==================================  =====================
layer (parameter)                          weight shape                        unit axis
=========================================  ==================================  =====================
``Linear``, ``Bilinear``, ``ConvNd``       ``[out, in/groups, *k]``            0 (output channel)
``ConvTransposeNd``                        ``[in, out/groups, *k]``            output channel: axis 1
                                                                               within each group
transformers ``Conv1D`` (GPT-2)            ``[in, out]``                       1
``Embedding``                              ``[vocab, dim]``                    0 (vocabulary row)
``LSTM`` / ``GRU`` / ``RNN`` weights       ``[gates*hidden, in]``              0 (gate row)
``MultiheadAttention.in_proj_weight``      ``[3*embed, embed]``                0 (q/k/v row)
any 1-D parameter (bias, norm scale)       ``[n]``                             each entry
=========================================  ==================================  =====================

Anything else uses axis 0. :func:`register_unit_axis` adds or overrides a rule for a module type.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass

import torch
from torch import nn

TRANSPOSED = "transposed"  # output channels of a ConvTranspose weight [in, out/groups, *k]

# (module type or class name, parameter-name pattern, axis): later rules win.
_RULES: list[tuple[type[nn.Module] | str, str, int | str]] = [
    (nn.modules.conv._ConvTransposeNd, "weight", TRANSPOSED),
    ("Conv1D", "weight", 1),  # transformers.pytorch_utils.Conv1D: weight [nx, nf], y = x @ W + b
]


@dataclass(frozen=True)
class UnitSpec:
    """How a gradient of ``shape`` splits into ``units`` units of ``per_unit`` elements each.

    ``view`` (or None) reshapes the gradient so that reducing (summing) over ``dims`` leaves the units, in
    unit order, as the remaining dimensions.
    """

    shape: tuple[int, ...]
    units: int
    per_unit: int
    view: tuple[int, ...] | None
    dims: tuple[int, ...]

    def counts_out(self, row: torch.Tensor) -> torch.Tensor:
        """``row`` (a [units] slice) shaped as the reduction's result, for ``torch.sum(..., out=)``."""
        if self.view is None:
            return row
        return row.view(tuple(s for d, s in enumerate(self.view) if d not in self.dims))

    def unit_index(self, device: torch.device | None = None) -> torch.Tensor:
        """[numel] long: the unit of each element of the flattened gradient (for ``index_add_``)."""
        full = self.view if self.view is not None else self.shape
        if not full:
            return torch.zeros(1, dtype=torch.long, device=device)
        kept = [d for d in range(len(full)) if d not in self.dims]
        ids = torch.zeros((), dtype=torch.long, device=device)
        for d in kept:  # mixed-radix number over the kept dims, in order
            shape = [1] * len(full)
            shape[d] = full[d]
            ids = ids * full[d] + torch.arange(full[d], device=device).view(shape)
        return ids.expand(full).reshape(-1)


def register_unit_axis(module_type: type[nn.Module] | str, parameter: str, axis: int | str) -> None:
    """Declare the unit axis of ``module_type``'s parameters matching ``parameter`` (a glob pattern).

    ``module_type``: a module class (subclasses match too) or a class name (matched on the class and its
    bases, for libraries that need not be imported). ``axis``: an int (the axis of the weight that indexes
    output units) or ``"transposed"`` (ConvTranspose layout ``[in, out/groups, *k]``). Raises ``TypeError``
    or ``ValueError`` for anything else.
    """
    if not (isinstance(module_type, str) or (isinstance(module_type, type) and issubclass(module_type, nn.Module))):
        raise TypeError(f"register_unit_axis: module_type must be an nn.Module subclass or a class name, "
                        f"got {module_type!r}")
    if not isinstance(parameter, str) or not parameter:
        raise TypeError(f"register_unit_axis: parameter must be a name or glob pattern, got {parameter!r}")
    if not ((isinstance(axis, int) and not isinstance(axis, bool)) or axis == TRANSPOSED):
        raise ValueError(f"register_unit_axis: axis must be an int or {TRANSPOSED!r}, got {axis!r}")
    _RULES.append((module_type, parameter, axis))


def _matches(rule_type: type[nn.Module] | str, module: nn.Module) -> bool:
    if isinstance(rule_type, str):
        return any(cls.__name__ == rule_type for cls in type(module).__mro__)
    return isinstance(module, rule_type)


def unit_axis(module: nn.Module, parameter: str) -> int | str:
    for rule_type, pattern, axis in reversed(_RULES):
        if _matches(rule_type, module) and fnmatch.fnmatchcase(parameter, pattern):
            return axis
    return 0


def parameter_units(module: nn.Module, parameter: str, shape: torch.Size | tuple[int, ...]) -> UnitSpec:
    """The units of ``module``'s parameter ``parameter`` (local name) with gradient ``shape``.

    Raises ``ValueError`` when a registered axis does not fit the shape."""
    shape = tuple(int(s) for s in shape)
    numel = math.prod(shape)
    if len(shape) <= 1:  # a bias, a norm's scale, a scalar: each entry is a unit
        return UnitSpec(shape, max(numel, 1), 1, None, ())
    axis = unit_axis(module, parameter)
    if axis == TRANSPOSED:
        groups = int(getattr(module, "groups", 1) or 1)
        if shape[0] % groups:
            raise ValueError(f"{type(module).__name__}.{parameter}: shape {shape} has no {groups} groups on axis 0")
        view = (groups, shape[0] // groups, *shape[1:])
        dims = (1, *range(3, len(view)))
        units = groups * shape[1]
        return UnitSpec(shape, units, numel // max(units, 1), view, dims)
    assert isinstance(axis, int)
    ax = axis % len(shape)
    dims = tuple(d for d in range(len(shape)) if d != ax)
    return UnitSpec(shape, shape[ax], numel // max(shape[ax], 1), None, dims)
