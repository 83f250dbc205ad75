"""Models and training loops shared by the overview browser tests and their notebook cells.

``deep_mlp(40)`` is a 40-block MLP (``fc<i>`` Linear + ``relu<i>`` ReLU per block) whose block ``DEAD``
starts with a bias of -10, so ``relu<DEAD>`` is the one layer whose every channel is zero in every batch
(death rate 1.0); the layers after it see a constant input, so their death rate is the share of negative
biases, below 1.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

DEAD = 23
EPOCHS = 8


def deep_mlp(blocks: int = 40, width: int = 16, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[tuple[str, nn.Module]] = []
    for i in range(blocks):
        layers += [(f"fc{i}", nn.Linear(8 if i == 0 else width, width)), (f"relu{i}", nn.ReLU())]
    layers.append(("out", nn.Linear(width, 2)))
    model = nn.Sequential(OrderedDict(layers))
    if DEAD < blocks:
        with torch.no_grad():
            getattr(model, f"fc{DEAD}").bias.fill_(-10.0)
    return model


def train(inspector: Any, model: nn.Module, loss_fn: nn.Module, epochs: int = EPOCHS, lr: float = 0.05,
          run_name: str | None = None) -> None:
    """``epochs`` epochs of 4 batches of a fixed, seeded two-class problem (``loss_fn`` is the one the
    inspector's LossMetrics watches)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 8, generator=g)
    y = (x[:, 0] > 0).long()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    inspector.attach(model, run_name=run_name)
    for _ in range(epochs):
        for i in range(0, 256, 64):
            opt.zero_grad()
            loss_fn(model(x[i:i + 64]), y[i:i + 64]).backward()
            opt.step()
        inspector.tick_epoch()


def worst_death_layer(record: Any, tag: str = "Output Activations") -> str:
    """The layer with the highest last-epoch death rate, read from the record (first one on ties)."""
    run = record.runs[-1]
    best, best_v = None, -1.0
    for g in run.groups(tag):
        v = float(record.series(tag, g, "death_rate")[-1])
        if v > best_v:
            best, best_v = g, v
    assert best is not None
    return best
