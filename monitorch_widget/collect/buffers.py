"""Per-batch rows on the data's device, written by hooks with ``out=``, and their fold into streams."""

from __future__ import annotations

import torch

from .modes import monitor_mode
from .streams import BankRow, StatStream

_F32 = torch.float32
# Bytes of row storage per site; the capacity (rows folded at once) shrinks for wide layers.
_BUFFER_BYTES = 256 * 1024
_MAX_ROWS = 256


class RowBuffer:
    """Preallocated per-batch rows on the data's device, written by hooks with ``out=``.

    ``rows[i]`` holds, for batch i, one count per channel (number of elements above eps);
    ``checks[i]`` holds a sum over the batch's raw values, non-finite iff the batch had NaN/Inf;
    ``row_sizes[i]`` (host int) is the number of elements per channel in batch i, so a channel's rate is
    ``rows[i, c] / row_sizes[i]``.
    """

    @monitor_mode
    def __init__(self, channels: int, device: torch.device) -> None:
        self.channels = channels
        self.device = device
        self.capacity = max(4, min(_MAX_ROWS, _BUFFER_BYTES // (4 * max(channels, 1))))
        self.data = torch.zeros(self.capacity, channels, dtype=_F32, device=device)
        self.check = torch.zeros(self.capacity, dtype=_F32, device=device)
        # Views made once: indexing a tensor per batch would cost a dispatch each time.
        self.rows = list(self.data.unbind(0))
        self.checks = list(self.check.unbind(0))
        self.row_sizes = [1] * self.capacity
        self.n = 0

    @monitor_mode
    def fold_rates(self, stream: StatStream | BankRow) -> None:
        """Reduce the filled rows to per-batch (activation rate, death rate) and fold into ``stream``."""
        n = self.n
        if n == 0:
            return
        fold_rate_rows(self.data[:n], self.row_sizes[:n], self.check[:n], stream)
        self.n = 0

    @monitor_mode
    def fold_scalars(self, stream: StatStream | BankRow) -> None:
        """Rows hold one value each (channels == 1), e.g. a loss per batch."""
        n = self.n
        if n == 0:
            return
        vals = self.data[:n]
        stream.fold(vals, torch.isfinite(vals[:, 0]))
        self.n = 0



@monitor_mode
def fold_buffers(slots: list[BankRow], bufs: list[RowBuffer]) -> None:
    """Tick path for many sites at once: buffers of equal shape and fill, slots consecutive in one bank.
    Stacks them and folds raw (active count, dead channels) pairs as one block: a handful of ops for all."""
    n = bufs[0].n
    rows = torch.stack([b.data[:n] for b in bufs])  # [g, n, channels]
    check = torch.stack([b.check[:n] for b in bufs])
    raw = torch.stack([rows.sum(2), (rows == 0).sum(2, dtype=rows.dtype)], 2)
    channels = rows.shape[2]
    slots[0].bank.fold_block(slots[0].index, raw, torch.isfinite(check), [(channels, b.row_sizes[:n]) for b in bufs])
    for b in bufs:
        b.n = 0



@monitor_mode
def fold_rate_rows(rows: torch.Tensor, row_sizes: list[int], check: torch.Tensor, stream: StatStream | BankRow) -> None:
    """rows [n, channels]: per-channel counts of active elements; row_sizes: elements per channel in each batch
    (host ints); check [n]: non-finite iff the batch had NaN/Inf. Folds (activation, death) per batch."""
    n = rows.shape[0]
    rates = rows * (1.0 / row_sizes[0])
    if row_sizes.count(row_sizes[0]) != n:
        # Batches of another size (usually only the last one) are rescaled slice by slice, with
        # Python scalars: building a per-row scale tensor would be a host-to-device copy.
        start = 0
        for i in range(1, n + 1):
            if i == n or row_sizes[i] != row_sizes[start]:
                if row_sizes[start] != row_sizes[0]:
                    rates[start:i] = rows[start:i] * (1.0 / row_sizes[start])
                start = i
    act = rates.mean(1)
    dead = (rows == 0).to(_F32).mean(1)
    stream.fold(torch.stack([act, dead], 1), torch.isfinite(check))
