"""Small fixtures shared by the core tests: modules that emit known tensors."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Emit(nn.Module):
    """Ignores its input and returns the next preset tensor (so rates can be computed by hand)."""

    def __init__(self, batches: list[torch.Tensor]) -> None:
        super().__init__()
        self.batches = list(batches)
        self.i = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.batches[self.i % len(self.batches)]
        self.i += 1
        return out


def rates_by_hand(batch: np.ndarray, channel_axis: int = 1, eps: float = 1e-8) -> tuple[float, float]:
    """(activation rate, death rate) of one batch, straight from the definitions."""
    active = np.abs(batch) > eps
    active = np.moveaxis(active, channel_axis, 0).reshape(active.shape[channel_axis], -1)
    per_channel = active.mean(axis=1)
    return float(per_channel.mean()), float((per_channel == 0).mean())
