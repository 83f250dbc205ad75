"""Small fixtures shared by the core tests: modules that emit known tensors."""

from __future__ import annotations

import math

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


class Recorder:
    """A monitorch visualizer that keeps the latest value of every (epoch, tag, group, key or band names)."""

    def __init__(self):
        self.values = {}

    def register_tags(self, tag, attrs):
        pass

    def plot_numerical_values(self, epoch, tag, values, ranges=None):
        for group, lines in values.items():
            for key, v in lines.items():
                self.values[(epoch, tag, group, key)] = v
        for group, bands in (ranges or {}).items():
            for names, (lo, hi) in bands.items():
                self.values[(epoch, tag, group, names)] = (lo, hi)

    def plot_probabilities(self, epoch, tag, values):
        self.plot_relations(epoch, tag, values)

    def plot_relations(self, epoch, tag, values):
        for group, lines in values.items():
            for key, v in lines.items():
                self.values[(epoch, tag, group, key)] = v


def closest_observation(x: torch.Tensor, p: float) -> float:
    """Hyndman & Fan's definition 3 (monitorch's median, IQR and Q1-Q3 band): with np - 1/2 = j + g, the j-th
    order statistic when g == 0 and j is even, else the (j+1)-th (1-based, clamped to the sample)."""
    v = torch.sort(x).values.tolist()
    k = len(v) * p - 0.5
    j = math.floor(k)
    order = j if (k == j and j % 2 == 0) else j + 1
    return v[min(max(order, 1), len(v)) - 1]
