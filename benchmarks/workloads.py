"""Benchmark workloads: models, synthetic data and the monitored lens set.

The 2-D MLP and the CNN are the two networks of the seed tutorial
(``activations-notebook``); the deep MLP is a stack of ``Linear(256, 256) + ReLU`` blocks.
Data is random (timing only); every variant of a workload starts from the same weights.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


def mlp2d() -> nn.Module:
    """The seed's over-parameterised 2-D classifier."""
    return nn.Sequential(
        OrderedDict(
            [
                ('lin1', nn.Linear(2, 16)),
                ('relu1', nn.ReLU()),
                ('lin2', nn.Linear(16, 16)),
                ('relu2', nn.ReLU()),
                ('lin3', nn.Linear(16, 2)),
                ('softmax', nn.Softmax(dim=1)),
            ]
        )
    )


def deep_mlp(n_blocks: int, width: int = 256) -> nn.Module:
    """``n_blocks`` x (Linear(width, width) + ReLU): 2 * n_blocks hooked layers."""
    layers: list[tuple[str, nn.Module]] = []
    for i in range(n_blocks):
        layers.append((f'lin{i}', nn.Linear(width, width)))
        layers.append((f'relu{i}', nn.ReLU()))
    return nn.Sequential(OrderedDict(layers))


class CNN(nn.Module):
    """The seed's MNIST CNN (same layer names and shapes)."""

    def __init__(self, dropout: tuple[float, float, float] = (0.0, 0.0, 0.0)):
        super().__init__()
        self.conv = nn.Sequential(
            OrderedDict(
                [
                    ('conv1', nn.Conv2d(1, 64, kernel_size=7, padding='same')),
                    ('pool1', nn.MaxPool2d(kernel_size=7)),
                    ('relu1', nn.ReLU()),
                    ('dropout', nn.Dropout(dropout[0])),
                    ('conv2', nn.Conv2d(64, 128, kernel_size=4)),
                    ('relu2', nn.ReLU()),
                ]
            )
        )
        self.dense = nn.Sequential(
            OrderedDict(
                [
                    ('dropout1', nn.Dropout(dropout[1])),
                    ('lin1', nn.Linear(128, 32)),
                    ('relu1', nn.ReLU()),
                    ('dropout2', nn.Dropout(dropout[2])),
                    ('lin2', nn.Linear(32, 10)),
                    ('softmax', nn.Softmax(dim=1)),
                ]
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(torch.flatten(self.conv(x), start_dim=1))


@dataclass
class Workload:
    name: str  # row label, e.g. "deep-50"
    group: str  # --only key: mlp2d | deep | cnn
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]  # per batch, including the batch dimension
    n_classes: int
    steps_per_epoch: int  # K: training steps between two tick_epoch() calls
    target: float | None  # max ours/bare ratio, None = no target
    note: str = ''
    max_repeats: int | None = None  # cap on interleaved repetitions (slow workloads)

    def make_data(self, device: torch.device, n_batches: int = 4, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        xs = [torch.randn(self.input_shape, generator=g) for _ in range(n_batches)]
        ys = [torch.randint(0, self.n_classes, (self.input_shape[0],), generator=g) for _ in range(n_batches)]
        return [(x.to(device), y.to(device)) for x, y in zip(xs, ys)]


def all_workloads(quick: bool = False) -> list[Workload]:
    deep_ns = (5, 50) if quick else (5, 10, 25, 50)
    ws = [
        Workload('mlp2d', 'mlp2d', mlp2d, (8, 2), 2, steps_per_epoch=200, target=1.25,
                 note='seed 2-D MLP, batch 8'),
    ]
    for n in deep_ns:
        ws.append(
            Workload(f'deep-{n}', 'deep', lambda n=n: deep_mlp(n), (64, 256), 256, steps_per_epoch=20,
                     target=1.10 if n == 50 else None, note=f'{n} x (Linear(256,256)+ReLU), batch 64')
        )
    ws.append(
        Workload('cnn', 'cnn', CNN, (256, 1, 28, 28), 10, steps_per_epoch=4, target=1.02,
                 note='seed CNN, 28x28, batch 256', max_repeats=3 if quick else 7)
    )
    return ws


def clone_model(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)


# --------------------------------------------------------------------------------------------------------
# Which modules / tensors the seed lens set hooks (used by the "empty hooks" and "read pass" floors).

_ACTIVATION_TYPES: tuple[type, ...] = tuple(
    getattr(nn, n)
    for n in (
        'ReLU', 'ReLU6', 'LeakyReLU', 'PReLU', 'RReLU', 'ELU', 'SELU', 'CELU', 'GELU', 'GLU', 'SiLU', 'Mish',
        'Sigmoid', 'LogSigmoid', 'Tanh', 'Hardtanh', 'Hardsigmoid', 'Hardswish', 'Hardshrink', 'Softshrink',
        'Tanhshrink', 'Softplus', 'Softsign', 'Softmax', 'Softmin', 'LogSoftmax', 'Softmax2d', 'Threshold',
    )
    if hasattr(nn, n)
)
_DROPOUT_TYPES: tuple[type, ...] = (
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
)


def hooked_sites(model: nn.Module) -> tuple[list[nn.Module], list[torch.Tensor]]:
    """(modules whose outputs OutputActivation hooks, parameters ParameterGradientActivation hooks)."""
    out_modules = [m for m in model.modules() if isinstance(m, _ACTIVATION_TYPES + _DROPOUT_TYPES)]
    params: list[torch.Tensor] = []
    for m in model.modules():
        w, b = getattr(m, 'weight', None), getattr(m, 'bias', None)
        if isinstance(w, torch.Tensor) and isinstance(b, torch.Tensor) and w.requires_grad and b.requires_grad:
            params += [w, b]
    return out_modules, params
