"""Large gradients of a layout's row read by one ``torch.compile``'d call (for models that run compiled).

:meth:`.gradient_layout.Layout.compute` in eager mode reads each large gradient four times (``|g|``, the
comparison with eps, the per-unit sum, the non-finite check: ``max |g|``). Compiled, each parameter's count per unit and
its check (a scaled sum) come out of one loop over the gradient (inductor fuses them), and the gradients of
one row are one call. Measured on one CPU thread (float32): 512x512 gradients cost ~30 µs each instead of ~80 µs warm in
cache, ~25% less fresh from a backward pass (where inductor's reductions read memory at about half the speed
of ATen's ``sum``), plus ~25 µs per call; at 256x256 there is no gain. So a row is read here only when one of
its gradients has ``gradient_layout.FUSE_MIN`` (2^18) elements or more; then every gradient of the row joins the
call (each costs its own loop there, less than its eager passes, and the results are the whole row in column
order: 875 -> 670 µs a step for the compiled MLP of ``benchmarks/compiled.py``, fresh from its backward pass).
Gradients of mixed dtypes take the eager formulation, whose small gradients compare widened to float32.

Used when a watched module runs inside a torch.compile graph (:func:`.compiled.runs_compiled`): the user
already pays for compilation there. Facts and choices:

* One compiled function per layout, each with its own code object, so dynamo caches them apart: a second
  layout is a first compile (``unique_graphs``), never a recompile, and no layout counts against dynamo's
  recompile limit of another. Shapes are fixed per layout (``dynamic=False``; parameters do not change shape,
  whatever the user's model does with ``dynamic=True``), ``fullgraph=True``.
* The first call compiles, at the end of the first backward pass, right after the user's own graphs: for
  six 512x512 gradients ~3 s more on top of the model's 33 s (a fresh inductor cache, a loaded 2-core
  machine; ``benchmarks/compiled.py``'s warm-up column), 0.3-1 s with a warm cache; 48 gradients alone took 41 s
  wall from a cold cache with no worker pool running (6: 32 s). If compiling or running fails (no C++
  compiler, an unsupported device), the layout falls back to the eager formulation for good (``error`` says
  why); the values are the same either way.
* A guard failure later (a gradient that changes dtype or memory layout) recompiles the function once per
  change, as any compiled function would; after dynamo's recompile limit it runs eagerly (still exact).
* Values equal the eager ones: counts are the same integers (the comparison runs in the dtype the eager path
  uses, eps rounded to it beforehand); the check is 0, or NaN iff the gradient had NaN/Inf, exactly as finite as the
  eager check (only finiteness is read): the sum of ``g * 2^-100``, which cannot overflow for finite entries
  (a float32 sum of large finite entries did).
* Dtypes: any floating dtype; the comparison runs in the gradient's dtype as in eager mode. FSDP2 shard
  layouts (``shards``, ``shard_index``, ``rows_unit_aligned``) stay eager: nothing of theirs changed.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Sequence
from itertools import count
from typing import Any

import torch

from .units import UnitSpec

_F32 = torch.float32
_F64 = torch.float64
_TINY = 2.0 ** -100
_NAN = float("nan")
_IDS = count()
#: False: layouts made from now on keep the eager formulation even for compiled models (to compare the two)
ENABLED = True


def row_function(specs: Sequence[UnitSpec]) -> Callable[..., Any]:
    """``row(grads, eps) -> (counts [sum of units] f32, check [len(grads)] f32)``; ``eps[i]`` is eps already
    in gradient ``i``'s dtype (the eager comparison ``|g| > eps`` runs in the gradient's dtype)."""

    def row(grads: list[torch.Tensor], eps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        counts, checks = [], []
        for g, e, spec in zip(grads, eps, specs):
            if spec.view is not None:
                g = g.reshape(spec.view)
            active = g.abs() > e
            if spec.dims:  # per unit: the count and the partial sums of the check in one loop
                counts.append(active.sum(spec.dims, dtype=_F32).reshape(-1))
            else:
                counts.append(active.reshape(-1).to(_F32))
            # The check: the sum of g * 2^-100, accumulated in float32 (float64 for float64 gradients) in the same
            # loop as the count. Scaled, finite entries cannot add up to inf (at most 2^31 entries of 2.7e8), so
            # the sum is NaN/Inf iff an entry is. (The plain float32 sum overflowed for large finite gradients;
            # inductor folds ``x * 0`` to 0; its NaN-aware max or a float64 accumulator cost more per element.)
            acc = _F64 if g.dtype == _F64 else _F32
            scaled = g * _TINY
            checks.append(scaled.sum(spec.dims, dtype=acc).sum() if spec.dims else scaled.sum(dtype=acc))
        # 0, or NaN iff the gradient had NaN/Inf (a finite float64 sum may exceed float32)
        check = torch.stack([c.to(_F64) for c in checks])
        return torch.cat(counts), torch.where(torch.isfinite(check), 0.0, _NAN).to(_F32)

    # a code object of its own: dynamo keeps its compiled code (and counts recompiles) per code object
    code = row.__code__.replace(co_name=f"gradient_row_{next(_IDS)}")
    return types.FunctionType(code, row.__globals__, code.co_name, row.__defaults__, row.__closure__)


class CompiledRow:
    """The compiled part of one layout's row: ``read`` returns (counts, check) of the given gradients, or
    None (and stays off) when compiling or running failed, with the reason in ``error``."""

    def __init__(self, specs: Sequence[UnitSpec]) -> None:
        self.specs = list(specs)
        self.fn: Callable[..., Any] | None = None
        self.eps: dict[tuple[torch.dtype, ...], list[torch.Tensor]] = {}
        self.error: str | None = None

    def read(self, grads: list[torch.Tensor], eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.error is not None:
            return None
        try:
            dtypes = tuple(g.dtype for g in grads)
            eps_list = self.eps.get(dtypes)
            if eps_list is None:  # the eager comparison rounds the float32 eps to the gradient's dtype
                eps_list = self.eps[dtypes] = [eps.to(d) for d in dtypes]
            if self.fn is None:
                self.fn = torch.compile(row_function(self.specs), dynamic=False, fullgraph=True)
            return self.fn(grads, eps_list)
        except Exception as exc:  # noqa: BLE001 - no compiler, an unsupported device: the eager path is exact
            self.error = f"{type(exc).__name__}: {exc}"
            return None
