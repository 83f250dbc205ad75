"""The fold statistics, written once for torch tensors and numpy arrays alike.

The same functions fold on the device (a buffer that fills in the middle of an epoch: no host sync in a hook)
and on the host (the tick, where every buffer's raw rows arrive in one copy per device and fold grouped,
a few numpy ops per group of equal shape instead of a few device ops per site). They use only operations
spelled the same in both namespaces (``where``, ``isfinite``, ``amax``, ``stack``, ``concatenate``, the
``sum``/``cumsum`` methods with ``dtype=``); :func:`namespace` picks ``torch`` or ``numpy`` from the input.

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


def fold_moments(values: Any, valid: Any, counted: Any = None, keep: bool = False) -> tuple[Any, Any, Any]:
    """values [..., n, w] (float64); valid [..., n] (bool); counted [..., n] (bool) or None (every batch is one)
    -> (sums [..., 2 + 2w], extremes [..., 2w], masked [..., n, w] or None unless ``keep``)."""
    xp = namespace(values)
    if counted is None:
        ok = valid
        nonfinite = (~valid).sum(-1, dtype=xp.float64)
    else:
        ok = valid & counted
        nonfinite = (counted & ~valid).sum(-1, dtype=xp.float64)
    okw = ok[..., None]
    # NaN * 0 is NaN: batches left out may hold non-finite values, so mask by selection
    z = xp.where(okw, values, 0.0)
    count = ok.sum(-1, dtype=xp.float64)
    sums = xp.concatenate([count[..., None], nonfinite[..., None], z.sum(-2), (z * z).sum(-2)], -1)
    hi = xp.amax(xp.where(okw, values, -np.inf), -2)
    lo = xp.amax(xp.where(okw, -values, -np.inf), -2)
    masked = xp.where(okw, values, np.nan) if keep else None
    return sums, xp.concatenate([lo, hi], -1), masked


def rate_values(rows: Any, inv_size: Any, check: Any) -> tuple[Any, Any]:
    """Per-batch (activation rate, death rate) of output channels (monitorch's OutputActivation).

    rows [..., n, C]: per channel, the number of elements above eps in the batch; ``inv_size`` [..., n] or a
    float: 1 / (C * elements per channel); check [..., n]: non-finite iff the batch had NaN/Inf.
    Returns values [..., n, 2] (float64) and valid [..., n]. Activation rate = active elements / all elements;
    death rate = share of channels with no active element. (Multiplications keep an exact 0 exact.)
    """
    xp = namespace(rows)
    act = rows.sum(-1, dtype=xp.float64) * inv_size
    dead = (rows == 0).sum(-1, dtype=xp.float64) * (1.0 / rows.shape[-1])
    return xp.stack([act, dead], -1), xp.isfinite(check)


def segment_sums(cumulative: Any, rows: Any, starts: Any, lasts: Any) -> Any:
    """Sums of the column segments ``[starts[i], lasts[i]]`` (inclusive, non-empty) of ``rows`` [..., W], from
    ``cumulative`` = its cumulative sum along the last axis: c[last] - c[start] + rows[start]."""
    return cumulative[..., lasts] - cumulative[..., starts] + rows[..., starts]


def unit_rates(counts: Any, starts: Any, lasts: Any, activation_scale: Any, death_scale: Any) -> Any:
    """Per-parameter (activation rate, death rate) of gradients (monitorch's ParameterGradientActivation).

    counts [n, W]: per unit (column), the gradient entries above eps; parameter ``i`` owns columns
    ``starts[i] .. lasts[i]``; activation_scale [S] = 1 / (units * entries per unit), death_scale [S] =
    1 / units. Returns [S, n, 2] float64: activation = active entries / all entries, death = share of units
    without an active entry. Cumulative sums run in float64, so integer counts stay exact.
    """
    xp = namespace(counts)
    active = segment_sums(counts.cumsum(-1, dtype=xp.float64), counts, starts, lasts)
    zero = counts == 0
    dead = segment_sums(zero.cumsum(-1, dtype=xp.float64), zero, starts, lasts)
    return xp.swapaxes(xp.stack([active * activation_scale, dead * death_scale], -1), 0, 1)
