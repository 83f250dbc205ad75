"""The geometry of a set of tensors, computed for all of them together: L2 norms and correlations.

monitorch 0.1.0.7's definition (``monitorch.numerical.GeometryComputation``), for a sequence X_1, X_2, ...
of one tensor (a gradient, an update, a parameter):

- norm n_k = ||X_k||_2, or ||X_k||_2 / sqrt(numel) with ``normalize_by_size`` (the RMS);
- correlation r_k = <X_{k-1}, X_k> / (||X_{k-1}||_2 ||X_k||_2 + eps), eps = 1e-8, with unnormalised norms;
  at the start of each epoch the previous tensor is zero (monitorch's accumulator is rebuilt at every tick),
  so the epoch's first r is 0 -- a zeroed previous buffer gives exactly that, with no host-side flag;
- a non-finite X_k is left out of the epoch's statistics (counted as non-finite) and the next r restarts at
  0 (monitorch's NaN would poison the mean of both).

:func:`write_geometry` writes row 0 (norms) and row 1 (correlations) of an observation for n tensors: the
norms with multi-tensor ops (``torch._foreach_norm``), the inner products with one ``torch.dot`` per tensor
(see :func:`dots`), on the tensors' device, into preallocated rows; nothing is read on the host.

Per-observation paths write *parts* instead and leave the division to the fold, where one call finishes every
row written since the last fold (:class:`~.observation_rows.GeometryParts`): :func:`write_parts` writes the
raw norms, the inner products and the previous tensor's norms (copied from the previous observation's row
where the caller knows it, not recomputed), 3 + n small ops instead of ~13 + n. A tensor held in shards
(FSDP2) is measured from additive parts (squared norms, inner products: :func:`geometry_partials`) summed over
the shards. Both end in :func:`finish_geometry`, which applies the one formula (``_combine``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

_F32 = torch.float32
EPS = 1e-8  # monitorch's eps for the correlation's denominator


def norm_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype to take ``x``'s norm in: float32 (half / bfloat16 sums would overflow or lose digits), but
    float64 for a float64 tensor, which torch refuses to narrow inside a norm (``dtype=float32`` raises)."""
    return x.dtype if x.dtype is torch.float64 else _F32


def norms(tensors: Sequence[torch.Tensor], out: torch.Tensor | None = None) -> torch.Tensor:
    """[n] float32 L2 norms, one multi-tensor op (written into ``out`` when given). With a float64 tensor among
    them (``model.double()``) they are taken in float64 (:func:`norm_dtype`) and rounded to float32."""
    if not isinstance(tensors, list):
        tensors = list(tensors)
    try:  # no per-tensor dtype check in the usual case: torch refuses to narrow float64 (see norm_dtype)
        return torch.stack(torch._foreach_norm(tensors, 2, dtype=_F32), out=out)
    except RuntimeError:
        if not any(t.dtype is torch.float64 for t in tensors):
            raise
    wide = torch.stack(torch._foreach_norm(tensors, 2, dtype=torch.float64))
    return wide.to(_F32) if out is None else out.copy_(wide)


def norm_into(x: torch.Tensor, out: torch.Tensor) -> None:
    """``out`` (a float32 0-d tensor) = ||x||_2, taken in :func:`norm_dtype`."""
    if norm_dtype(x) is _F32:
        torch.linalg.vector_norm(x, dtype=_F32, out=out)
    else:
        out.copy_(torch.linalg.vector_norm(x))


def dots(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor], out: torch.Tensor | None = None) -> torch.Tensor:
    """[n] float32 inner products <a_i, b_i> (equal shapes), one ``torch.dot`` per pair (written into ``out``
    when given), accumulated in float32 (float64 where a tensor is float64): a dot of two float16 / bfloat16
    tensors returns their dtype, so a GradScaler-scaled float16 output gradient's square (~1e7) would overflow
    float16's 65504 to inf and a bfloat16 correlation would keep 3 digits.

    Per tensor on purpose: torch has no multi-tensor reduction with a sign (``_foreach_norm`` /
    ``_foreach_powsum`` sum |x|^p), and ``torch._foreach_mm`` of [1, N] x [N, 1] measured 9x slower than
    ``torch.dot`` on CPU (49 vs 5.5 us for N = 32k); a dot allocates nothing, unlike ``sum(a * b)``."""
    if out is not None and all(u.dtype is _F32 and u.dim() == 1 for u in a) and all(v.dtype is _F32 for v in b):
        try:  # the usual case, 1-D float32 pairs (flat views of a reader's buffers)
            return torch.stack([torch.dot(u, v) for u, v in zip(a, b)], out=out)
        except RuntimeError:  # a 2-D b, a dtype without a dot kernel on this device: pair by pair below
            pass
    products = []
    for x, y in zip(a, b):
        u = x if x.dim() == 1 else x.reshape(-1)  # flat views of the monitor's own buffers come as they are
        v = y if y.dim() == 1 else y.reshape(-1)
        if u.dtype is _F32 and v.dtype is _F32:
            products.append(torch.dot(u, v))
        elif u.dtype is torch.float64 or v.dtype is torch.float64:
            products.append(torch.dot(u.double(), v.double()).to(_F32))
        else:  # float16 / bfloat16 (or a mix): widened, so neither the sum overflows nor the result rounds
            products.append(torch.dot(u.to(_F32), v.to(_F32)))
    return torch.stack(products, out=out)


def size_scale(tensors: Sequence[torch.Tensor], normalize: bool, device: torch.device) -> torch.Tensor | None:
    """The per-tensor factor of ``normalize_by_size`` (1/sqrt(numel)) as a device tensor, or None."""
    if not normalize:
        return None
    return torch.tensor([1.0 / math.sqrt(max(t.numel(), 1)) for t in tensors], dtype=_F32, device=device)


def _combine(row: torch.Tensor, raw: torch.Tensor, products: torch.Tensor | None, before: torch.Tensor | None,
             scale: torch.Tensor | float | None) -> None:
    """The one formula: ``row[0]`` = ``raw`` norms (times ``scale``); with ``products`` (<X_{k-1}, X_k>) and
    ``before`` (||X_{k-1}||, a fresh tensor: changed in place), ``row[1]`` = the correlations."""
    if scale is None:
        row[0].copy_(raw)
    else:
        torch.mul(raw, scale, out=row[0])
    if products is not None and before is not None:
        # a non-finite previous tensor (after a NaN gradient) restarts the sequence like a zero one: only the
        # non-finite observation itself is left out, not the next one too
        products = torch.where(torch.isfinite(before), products, 0.0)
        torch.div(products, before.nan_to_num_(0.0, 0.0, 0.0).mul_(raw).add_(EPS), out=row[1])


def write_parts(out: torch.Tensor | Sequence[torch.Tensor], tensors: Sequence[torch.Tensor],
                previous: Sequence[torch.Tensor] | None, before: torch.Tensor | None = None) -> None:
    """Write the raw parts of one observation of n tensors into ``out`` ([1 or 3, n] float32, or its rows as
    views made once: no indexing op per observation), to be turned
    into values later, for many observations at once, by :func:`finish_geometry` (``squared=False``):
    ``out[0]`` = norms and, with ``previous``, ``out[1]`` = inner products with it and ``out[2]`` = its norms
    -- copied from ``before`` ([n], the norms the previous observation wrote) when given, else computed."""
    norms(tensors, out=out[0])
    if previous is not None:
        dots(previous, tensors, out=out[1])
        if before is None:
            norms(previous, out=out[2])
        else:
            out[2].copy_(before)


def write_parts_one(out: Sequence[torch.Tensor], x: torch.Tensor, previous: torch.Tensor | None,
                    before: torch.Tensor | None = None) -> None:
    """:func:`write_parts` for one tensor, into the 0-d views ``out`` = (norm[, inner product, previous norm])
    of one row: one ``torch.linalg.vector_norm`` and one ``torch.dot`` with ``out=``, and a copy of ``before``
    (a 0-d tensor: the previous observation's norm, written by this function) when given."""
    norm_into(x, out[0])
    if previous is None:
        return
    if x.dtype is _F32 and previous.dtype is _F32:
        torch.dot(previous.reshape(-1), x.reshape(-1), out=out[1])
    else:  # accumulated in float32 (see dots)
        out[1].copy_(dots([previous], [x])[0])
    if before is None:
        norm_into(previous, out[2])
    else:
        out[2].copy_(before)


def write_geometry(row: torch.Tensor, tensors: Sequence[torch.Tensor], previous: Sequence[torch.Tensor] | None,
                   scale: torch.Tensor | float | None) -> None:
    """Write ``row[0]`` = norms (times ``scale``: [n] or one number) and, when ``previous`` is given, ``row[1]`` =
    correlations with it, at once. ``row``: [width, n] float32 on the tensors' device."""
    if previous is None and scale is None:
        norms(tensors, out=row[0])
        return
    raw = norms(tensors)
    if previous is None:
        _combine(row, raw, None, None, scale)
    else:
        _combine(row, raw, dots(previous, tensors), norms(previous), scale)


def geometry_partials(out: torch.Tensor | Sequence[torch.Tensor], tensors: Sequence[torch.Tensor],
                      previous: Sequence[torch.Tensor] | None) -> None:
    """Write the additive parts of an observation into ``out`` ([1 or 3, n] float32): ``out[0]`` = squared
    norms and, with ``previous``, ``out[1]`` = inner products with it and ``out[2]`` = its squared norms. Parts
    of one tensor held in pieces (FSDP2 shards) add up to the parts of the whole: sum them, then
    :func:`finish_geometry` with ``squared=True``."""
    torch.square(norms(tensors), out=out[0])
    if previous is not None:
        dots(previous, tensors, out=out[1])
        torch.square(norms(previous), out=out[2])


def finish_geometry(row: torch.Tensor, parts: torch.Tensor, scale: torch.Tensor | float | None,
                    squared: bool = True) -> None:
    """What :func:`write_geometry` writes, from parts ([1 or 3, ...] -> ``row`` [1 or 2, ...], any trailing
    shape): summed :func:`geometry_partials` (``squared``) or :func:`write_parts` (raw)."""
    raw = torch.sqrt(parts[0]) if squared else parts[0]
    if parts.shape[0] == 3:
        before = torch.sqrt(parts[2]) if squared else parts[2].clone()
        _combine(row, raw, parts[1], before, scale)
    else:
        _combine(row, raw, None, None, scale)
