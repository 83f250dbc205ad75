"""The seed's models and data, as the notebooks build them (notebooks/quickstart.ipynb, notebooks/activations.ipynb).

Shared by the health-check tests so that "the seed 2-D MLP" and "the seed CNN" mean the notebooks' code: same
layers and names, same data, seeds, optimizer, batch sizes and loops (including the CNN runs' early stopper).
The notebooks keep their own copy of this code on purpose: they are the demos users read.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

RND_SEED = 42


def train_one_epoch(model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader) -> None:
    for data, label in loader:
        optimizer.zero_grad()
        loss = loss_fn(model(data), label)
        loss.backward()
        optimizer.step()


@torch.no_grad()
def validate_one_epoch(model: nn.Module, loss_fn: nn.Module, loader: DataLoader) -> float:
    correct = n = 0
    for data, label in loader:
        pred = model(data)
        loss_fn(pred, label)
        n += data.shape[0]
        correct += pred.argmax(dim=1).eq(label).float().sum().item()
    return correct / n


# --- quickstart.ipynb ------------------------------------------------------------------------------
def quickstart() -> tuple[nn.Module, DataLoader, DataLoader]:
    torch.manual_seed(0)
    centres = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]])
    labels = torch.arange(3).repeat_interleave(200)
    points = centres[labels] + 0.8 * torch.randn(len(labels), 2)
    dataset = TensorDataset(points, labels)
    train_set, val_set = torch.utils.data.random_split(dataset, [480, 120], generator=torch.Generator().manual_seed(0))
    train_loader = DataLoader(train_set, batch_size=32, shuffle=True)
    val_loader = DataLoader(val_set, batch_size=120)
    model = nn.Sequential(
        nn.Linear(2, 32), nn.ReLU(),
        nn.Linear(32, 32), nn.ReLU(),
        nn.Linear(32, 3), nn.Softmax(dim=1),
    )
    return model, train_loader, val_loader


# --- activations.ipynb: the 2-D MLP ----------------------------------------------------------------------
def two_d_data() -> tuple[DataLoader, DataLoader]:
    np.random.seed(RND_SEED)
    pos = np.random.standard_normal(size=(40, 2)) * 0.5 - 1
    neg = np.random.standard_normal(size=(40, 2)) * 0.5 + 1
    X = np.vstack((pos, neg))
    y = np.hstack((np.ones(len(pos)), np.zeros(len(neg))))
    full = TensorDataset(torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.long))
    train_size = int(0.7 * len(full))
    train, val = torch.utils.data.random_split(full, [train_size, len(full) - train_size],
                                               generator=torch.Generator().manual_seed(RND_SEED))
    return DataLoader(train, batch_size=8, shuffle=True), DataLoader(val, batch_size=8, shuffle=False)


def two_d_mlp() -> nn.Module:
    return nn.Sequential(OrderedDict([
        ("lin1", nn.Linear(2, 16)),
        ("relu1", nn.ReLU()),
        ("lin2", nn.Linear(16, 16)),
        ("relu2", nn.ReLU()),
        ("lin3", nn.Linear(16, 2)),
        ("softmax", nn.Softmax(dim=1)),
    ]))


# --- activations.ipynb: the CNN on digits ---------------------------------------------------------------
def digits_data() -> tuple[DataLoader, DataLoader]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = nn.functional.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False)
    images = (images - 0.5) / 0.5
    targets = torch.tensor(digits.target, dtype=torch.long)
    digit_set = TensorDataset(images, targets)
    n_train = int(0.8 * len(digit_set))
    trainset, testset = torch.utils.data.random_split(
        digit_set, [n_train, len(digit_set) - n_train], generator=torch.Generator().manual_seed(RND_SEED))
    return DataLoader(trainset, batch_size=32, shuffle=True), DataLoader(testset, batch_size=256, shuffle=False)


class CNN(nn.Module):
    def __init__(self, dropout: tuple[float, float, float] = (0, 0, 0)) -> None:
        super().__init__()
        self.conv = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(1, 64, kernel_size=7, padding="same")),
            ("pool1", nn.MaxPool2d(kernel_size=7)),
            ("relu1", nn.ReLU()),
            ("dropout", nn.Dropout(dropout[0])),
            ("conv2", nn.Conv2d(64, 128, kernel_size=4)),
            ("relu2", nn.ReLU()),
        ]))
        self.dense = nn.Sequential(OrderedDict([
            ("dropout1", nn.Dropout(dropout[1])),
            ("lin1", nn.Linear(128, 32)),
            ("relu1", nn.ReLU()),
            ("dropout2", nn.Dropout(dropout[2])),
            ("lin2", nn.Linear(32, 10)),
            ("softmax", nn.Softmax(dim=1)),
        ]))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.dense(torch.flatten(self.conv(X), start_dim=1))


class EarlyStopper:
    def __init__(self, patience: int = 5, eps: float = 1e-3) -> None:
        self.loss = float("+inf")
        self.timer = 0
        self.eps = eps
        self.patience = patience

    def __call__(self, new_loss: float) -> bool:
        if self.loss - new_loss > self.eps:
            self.loss = new_loss
            self.timer = 0
            return False
        self.timer += 1
        return self.timer >= self.patience


def run_epochs(inspector, model: nn.Module, loss_fn: nn.Module, train: DataLoader, val: DataLoader, epochs: int,
               stop: Callable[[], bool] | None = None) -> int:
    """The notebooks' loop: Adam, train, validate, push val_accuracy, tick; returns the epochs run."""
    optimizer = torch.optim.Adam(model.parameters())
    for epoch in range(epochs):
        train_one_epoch(model, loss_fn, optimizer, train)
        inspector.push_metric("val_accuracy", validate_one_epoch(model, loss_fn, val))
        inspector.tick_epoch()
        if stop is not None and stop():
            return epoch + 1
    return epochs
