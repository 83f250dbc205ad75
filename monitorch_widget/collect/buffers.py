"""Per-batch rows on the data's device, written by hooks with ``out=``, and how they reach a bank."""

from __future__ import annotations

import numpy as np
import torch

from .fold_math import rate_values
from .modes import monitor_mode
from .streams import BankRow, Pending, StatStream

_F32 = torch.float32
# Bytes of row storage per site; the capacity (rows folded at once) shrinks for wide layers.
_BUFFER_BYTES = 256 * 1024
_MAX_ROWS = 256


def _target(stream: StatStream | BankRow) -> tuple[StatStream, int]:
    return (stream, 0) if isinstance(stream, StatStream) else (stream.bank, stream.index)  # type: ignore[return-value]


class RowBuffer:
    """Preallocated per-batch rows on the data's device, written by hooks with ``out=``.

    ``rows[i]`` holds, for batch i, one count per channel (number of elements above eps);
    ``checks[i]`` holds the batch's largest magnitude (or 0), non-finite iff the batch had NaN/Inf (a max,
    never a sum: a sum of large finite values overflows);
    ``row_sizes[i]`` (host int) is the number of elements per channel in batch i, so a channel's rate is
    ``rows[i, c] / row_sizes[i]``. A scalar site's buffer (channels == 1) holds the value itself.
    A full buffer reduces on the device (``fold_*``: per-batch values, staged in the bank); at a tick its
    filled rows go to the host as they are (``defer_*``).
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
        # On the CPU the tick reads the rows in place: numpy views made once
        self.host_views = (self.data.numpy(), self.check.numpy()) if self.device.type == "cpu" else None

    @monitor_mode
    def fold_rates(self, stream: StatStream | BankRow) -> None:
        """Reduce the filled rows to per-batch (activation rate, death rate) on the device and stage them."""
        n = self.n
        if n == 0:
            return
        sizes = self.row_sizes[:n]
        if sizes.count(sizes[0]) == n:  # the usual case: a Python scalar, no host-to-device copy
            inv: float | torch.Tensor = 1.0 / (self.channels * sizes[0])
        else:
            inv = torch.from_numpy(1.0 / (self.channels * np.asarray(sizes, dtype=np.float64))).to(
                self.device, non_blocking=True)
        values, valid = rate_values(self.data[:n], inv, self.check[:n])
        stream.fold(values, valid)
        self.n = 0

    @monitor_mode
    def fold_scalars(self, stream: StatStream | BankRow) -> None:
        """Rows hold one value each (channels == 1), e.g. a loss per batch: staged as float64 copies."""
        n = self.n
        if n == 0:
            return
        values = self.data[:n].double()
        stream.fold(values, torch.isfinite(values[:, 0]))
        self.n = 0

    def defer_rates(self, stream: StatStream | BankRow) -> None:
        """Tick: hand the filled rows over as they are; the host reduces them (:func:`.fold_math.rate_values`)."""
        bank, slot = _target(stream)
        n = self.n
        data, check = self.host_views or (self.data, self.check)
        bank.defer(Pending("rates", slot, ((data, n), (check, n)), self.row_sizes[:n]))
        self.n = 0

    def defer_scalars(self, stream: StatStream | BankRow) -> None:
        """Tick: hand the filled rows (one value each) over as they are."""
        bank, slot = _target(stream)
        bank.defer(Pending("scalars", slot, ((self.host_views[0] if self.host_views else self.data, self.n),)))
        self.n = 0
