"""The fold statistics, written once for torch tensors and numpy arrays alike.

The same functions fold on the device (a buffer that fills in the middle of an epoch: no host sync in a hook)
and on the host (the tick, where every buffer's raw rows arrive in one copy per device and fold grouped,
a few numpy ops per group of equal shape instead of a few device ops per site). They use only operations
spelled the same in both namespaces (``where``, ``isfinite``, ``stack``, ``concatenate``, ``swapaxes``,
the ``sum`` method with ``dtype=``) and two primitives spelled per namespace (:func:`amax`, :func:`segment_sums`); :func:`namespace` picks ``torch`` or ``numpy`` from the input.

Per-batch values of ``w`` quantities fold into (see :class:`~.streams.StreamBank`):

* ``sums`` [..., 2 + 2w]: [count, nonfinite, sum_0..w-1, sumsq_0..w-1] (summed across folds and ranks);
* ``extremes`` [..., 2w]: [-min_0..w-1, max_0..w-1] (maximum across folds and ranks);
* ``masked`` [..., n, w]: the values with the batches left out replaced by NaN (kept for quantiles).

A batch whose ``valid`` flag is False (non-finite data) counts in ``nonfinite`` and contributes nothing else;
one whose ``counted`` flag is False is no observation at all (a gradient row another reading counts).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def namespace(x: Any) -> Any:
    """``torch`` for a tensor, ``numpy`` for an array."""
    return torch if isinstance(x, torch.Tensor) else np


def as_f64(x: Any) -> Any:
    return x.double() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)


def amax(x: Any, axis: int) -> Any:
    # numpy's method form: np.amax goes through a Python wrapper that costs more than the reduction here
    return x.amax(axis) if isinstance(x, torch.Tensor) else x.max(axis)


def fold_moments(values: Any, valid: Any, counted: Any = None, keep: bool = False) -> tuple[Any, Any, Any]:
    """values [..., n, w] (float64); valid [..., n] (bool); counted [..., n] (bool) or None (every batch is one)
    -> (sums [..., 2 + 2w], extremes [..., 2w], masked [..., n, w] or None unless ``keep``)."""
    xp = namespace(values)
    if counted is None:
        ok, out = valid[..., None], ~valid[..., None]
    else:
        ok, out = (valid & counted)[..., None], (counted & ~valid)[..., None]
    # NaN * 0 is NaN: batches left out may hold non-finite values, so mask by selection
    z = xp.where(ok, values, 0.0)
    # one reduction for [count, nonfinite, sums, sums of squares]: the flags promote to float64 (exact 0/1)
    sums = xp.concatenate([ok, out, z, z * z], -1).sum(-2)
    extremes = amax(xp.where(ok, xp.concatenate([-values, values], -1), -np.inf), -2)
    masked = xp.where(ok, values, np.nan) if keep else None
    return sums, extremes, masked


def count_rates(active: Any, empty: Any, activation_scale: Any, death_scale: Any) -> tuple[Any, Any]:
    """The rate statistic of counted entries, the one definition every rate path uses: (activation rate,
    death rate) = (active * activation_scale, empty * death_scale), where ``active`` counts the entries above
    eps, ``empty`` the units (channels) without one, activation_scale = 1 / (units * entries per unit) and
    death_scale = 1 / units (monitorch's OutputActivation and ParameterGradientActivation). Multiplications
    keep an exact 0 exact; float64 in, float64 out."""
    return active * activation_scale, empty * death_scale


def rate_values(rows: Any, inv_size: Any, check: Any) -> tuple[Any, Any]:
    """Per-batch (activation rate, death rate) of output channels (monitorch's OutputActivation).

    rows [..., n, C]: per channel, the number of elements above eps in the batch; ``inv_size`` [..., n] or a
    float: 1 / (C * elements per channel); check [..., n]: non-finite iff the batch had NaN/Inf.
    Returns values [..., n, 2] (float64, :func:`count_rates` stacked) and valid [..., n]. Activation rate = active
    elements / all elements; death rate = share of channels with no active element.
    """
    xp = namespace(rows)
    active = rows.sum(-1, dtype=xp.float64)
    empty = (rows == 0).sum(-1, dtype=xp.float64)
    return xp.stack(count_rates(active, empty, inv_size, 1.0 / rows.shape[-1]), -1), xp.isfinite(check)


def segment_sums(rows: Any, starts: Any, stops: Any, nonempty: bool | None = None) -> Any:
    """Float64 sums of the consecutive column segments ``[starts[i], stops[i])`` (in order, covering every
    column; a parameter without units has an empty one, summing to 0) of ``rows`` [..., W]. One primitive,
    two spellings: numpy's ``add.reduceat`` when no segment is empty (``nonempty``: known by the caller, else
    looked up); otherwise differences of the cumulative sum, c[stop] - c[start] with c[0] = 0 (exact for
    integer counts)."""
    if not isinstance(rows, torch.Tensor):
        if nonempty if nonempty is not None else bool((stops > starts).all()):
            return np.add.reduceat(rows, starts, axis=-1, dtype=np.float64)
        cumulative: Any = np.concatenate([np.zeros((*rows.shape[:-1], 1)), rows.cumsum(-1, dtype=np.float64)], -1)
    else:
        cumulative = torch.nn.functional.pad(rows.cumsum(-1, dtype=torch.float64), (1, 0))
    return cumulative[..., stops] - cumulative[..., starts]


def segment_counts(counts: np.ndarray, starts: np.ndarray, exact_in_float32: bool, longest: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Float64 (entries above eps, empty units) of every non-empty segment ``[starts[i], starts[i + 1])`` of the
    flat host counts ``counts`` (the tick's fold plan): :func:`segment_sums` of ``counts`` and of
    ``counts == 0``, with cheaper accumulators where they are exact. ``exact_in_float32``: no segment's total
    can exceed 2^24 (a rate row's total is at most its elements, a parameter's at most its entries), so float32
    partial sums of these integer counts are exact, and summed in the rows' own float32 they are the same
    numbers (3x less work than casting every entry to float64 on the way); ``longest``: the longest segment,
    which bounds an integer accumulator of the empty units (int16 when it fits)."""
    if counts.dtype == np.float32 and exact_in_float32:
        active = np.add.reduceat(counts, starts).astype(np.float64)
    else:
        active = np.add.reduceat(counts, starts, dtype=np.float64)
    acc = np.int16 if longest < (1 << 15) else np.int64
    empty = np.add.reduceat((counts == 0).view(np.int8), starts, dtype=acc).astype(np.float64)
    return active, empty


def unit_rates(counts: Any, starts: Any, stops: Any, activation_scale: Any, death_scale: Any) -> Any:
    """Per-parameter (activation rate, death rate) of gradients (monitorch's ParameterGradientActivation).

    counts [n, W]: per unit (column), the gradient entries above eps; parameter ``i`` owns columns
    ``starts[i]`` to ``stops[i]`` (exclusive); activation_scale [S] = 1 / (units * entries per unit), death_scale [S] =
    1 / units. Returns [S, n, 2] float64: activation = active entries / all entries, death = share of units
    without an active entry. Cumulative sums run in float64, so integer counts stay exact.
    """
    active = segment_sums(counts, starts, stops)
    empty = segment_sums(counts == 0, starts, stops)
    xp = namespace(counts)
    return xp.swapaxes(xp.stack(count_rates(active, empty, activation_scale, death_scale), -1), 0, 1)
