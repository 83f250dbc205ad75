"""Gradients held as shards (FSDP2's ``fully_shard``: a ``DTensor`` per parameter): which part of the
parameter's units this rank holds, and the counts reduced over the shard group.

A sharded gradient is read where it lies -- its local shard, ``DTensor._local_tensor`` -- never gathered:
each rank writes the per-unit counts of |g| > eps of its rows into the columns of the parameter's *global*
units (zeros elsewhere), so the ranks' rows add up to the counts of the whole gradient. Before a layout's rows
become rates (:meth:`.gradient_layout.Layout.fold`) they are summed over the shard group: a unit split across
ranks is dead only if it is zero on every rank, and a row-sharded weight's dead rows are counted where they
lie and summed. The summed rows are the same on every rank of the group; its rank 0 counts them.

FSDP2 shards dimension 0 the way ``torch.chunk`` does (``ceil(n / world)`` rows per rank, fewer or none
on the last ranks); one sharded mesh dimension, with any replicated ones (HSDP), is supported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from .units import UnitSpec

try:
    from torch.distributed.tensor import DTensor, Replicate, Shard
except ImportError:  # pragma: no cover - a torch without torch.distributed
    DTensor = None  # type: ignore[assignment,misc]


def is_dtensor(t: Any) -> bool:
    return DTensor is not None and isinstance(t, DTensor)


def local(g: torch.Tensor) -> torch.Tensor:
    """The part of a gradient this rank holds (the gradient itself unless it is a DTensor)."""
    return g._local_tensor if is_dtensor(g) else g  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Shards:
    """Where this rank's shard of a parameter lies: ``dim``, ``offset`` and ``length`` (``dim`` None: a
    replicated whole), the process ``group`` to sum counts over (None: nothing to sum), and whether this rank
    counts the observations (rank 0 of every mesh dimension)."""

    dim: int | None
    offset: int
    length: int
    group: Any
    counts_here: bool

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.dim, self.offset, self.length, id(self.group))


def shards_of(param: torch.Tensor) -> Shards | None:
    """None for a plain tensor; raises ``ValueError`` for placements that cannot be read shard by shard.

    Mesh dimensions placed ``Replicate()`` hold copies (HSDP's replica groups): only their rank 0 counts.
    At most one mesh dimension may shard the parameter (``Shard(d)``, as FSDP2 and HSDP do)."""
    if not is_dtensor(param):
        return None
    mesh, placements = param.device_mesh, param.placements  # type: ignore[attr-defined]
    sharded = [d for d, p in enumerate(placements) if not isinstance(p, Replicate)]
    if len(sharded) > 1 or any(type(placements[d]) is not Shard for d in sharded):
        raise ValueError(f"a DTensor parameter placed as {tuple(placements)} is not supported; gradient statistics "
                         "read parameters sharded along one mesh dimension with Shard(d) (FSDP2, HSDP)")
    first = all(mesh.get_local_rank(d) == 0 for d in range(mesh.ndim))
    if not sharded:
        return Shards(None, 0, 0, None, first)
    m = sharded[0]
    rank, size = mesh.get_local_rank(m), mesh.size(m)
    dim = placements[m].dim % param.dim()
    n = param.shape[dim]
    chunk = math.ceil(n / size) if n else 0
    offset = min(rank * chunk, n)
    return Shards(dim, offset, max(0, min(chunk, n - offset)), mesh.get_group(m), first)


def local_unit_index(spec: UnitSpec, shards: Shards, device: torch.device) -> torch.Tensor:
    """[local numel] long: the global unit of each element of this rank's shard (flattened)."""
    assert shards.dim is not None
    full = spec.unit_index(device).view(spec.shape)
    return full.narrow(shards.dim, shards.offset, shards.length).reshape(-1)


def rows_unit_aligned(spec: UnitSpec, shards: Shards) -> bool:
    """True when the shard holds whole units (units along the sharded dimension): its counts are a slice."""
    return spec.view is None and shards.dim is not None and shards.dim not in spec.dims and len(spec.shape) >= 1


def reduce_rows(counts: torch.Tensor, check: torch.Tensor, group: Any) -> None:
    """Sum a layout's new rows over the shard group, in place (one collective each)."""
    torch.distributed.all_reduce(counts, group=group)
    torch.distributed.all_reduce(check, group=group)
