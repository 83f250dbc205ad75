"""Headless demo: the quickstart notebook's training, one line per epoch on stdout.

    python -m monitorch_widget.demo [--epochs N] [--visualizer print|none]

``--visualizer print`` (default) lets the inspector's ``'print'`` visualizer write the line;
``--visualizer none`` records silently and the demo writes its own line from ``inspector.history``.
Only the public API is used, so this file doubles as a copy-and-paste example for scripts.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from monitorch_widget.inspector import PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation
from monitorch_widget.record import Record


def make_data(seed: int = 0) -> tuple[DataLoader, DataLoader]:
    """Three Gaussian blobs in the plane (600 points), split 480 / 120."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]])
    labels = torch.arange(3).repeat_interleave(200)
    points = centres[labels] + 0.8 * torch.randn(len(labels), 2, generator=gen)
    train_set, val_set = torch.utils.data.random_split(
        TensorDataset(points, labels), [480, 120], generator=gen
    )
    return (
        DataLoader(train_set, batch_size=32, shuffle=True, generator=gen),
        DataLoader(val_set, batch_size=120),
    )


def make_model() -> nn.Module:
    return nn.Sequential(
        nn.Linear(2, 32),
        nn.ReLU(),
        nn.Linear(32, 32),
        nn.ReLU(),
        nn.Linear(32, 3),
        nn.Softmax(dim=1),
    )


def _last(record: Record, panel: str, group: str, key: str) -> float:
    try:
        values = record.series(panel, group, key)
    except (KeyError, LookupError):
        return math.nan
    return float(values[-1]) if len(values) else math.nan


def summary_line(record: Record, n_epochs: int, seconds: float) -> str:
    """One line for the latest epoch of the latest run, read from the record."""
    run = record.runs[-1]
    epoch = int(run.epochs[-1])
    lm = "Loss & Metrics"
    wo, wg = "Warning Output Activations", "Warning Gradient Activations"
    fields = [
        f"epoch {epoch:>{len(str(n_epochs))}}/{n_epochs}",
        f"train_loss {_last(record, lm, lm, 'train_loss mean'):.4f}",
        f"val_loss {_last(record, lm, lm, 'val_loss mean'):.4f}",
        f"val_acc {_last(record, lm, lm, 'val_accuracy mean'):.3f}",
        f"min act(out) {_last(record, wo, wo, 'worst activation_rate'):.3f}",
        f"max death(out) {_last(record, wo, wo, 'worst death_rate'):.3f}",
        f"max death(grad) {_last(record, wg, wg, 'worst death_rate'):.3f}",
        f"{seconds:.2f}s",
    ]
    return " | ".join(fields)


def run(epochs: int = 15, visualizer: str = "print", seed: int = 0) -> PyTorchInspector:
    """Train the quickstart model for ``epochs`` epochs; return the inspector (its record holds the run)."""
    torch.manual_seed(seed)
    train_loader, val_loader = make_data(seed)
    model = make_model()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters())
    inspector = PyTorchInspector(
        [
            LossMetrics(loss_fn=loss_fn, separate_loss_and_metrics=False, metrics=["val_accuracy"]),
            OutputActivation(),
            ParameterGradientActivation(),
        ],
        visualizer=visualizer,
    )
    inspector.attach(model)
    for _ in range(epochs):
        started = time.perf_counter()
        for x, y in train_loader:
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()
        correct = total = 0
        with torch.no_grad():  # recognised by LossMetrics as a validation pass
            for x, y in val_loader:
                pred = model(x)
                loss_fn(pred, y)
                correct += int((pred.argmax(dim=1) == y).sum())
                total += len(y)
        inspector.push_metric("val_accuracy", correct / total)
        inspector.tick_epoch()
        if visualizer == "none":
            print(summary_line(inspector.history, epochs, time.perf_counter() - started), flush=True)
    inspector.detach()
    return inspector


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m monitorch_widget.demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--epochs", type=int, default=15, help="number of epochs (default 15)")
    parser.add_argument(
        "--visualizer",
        choices=("print", "none"),
        default="print",
        help="'print': the inspector prints each line; 'none': the demo prints a summary "
        "read from inspector.history",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    run(args.epochs, args.visualizer, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
