"""A 2-rank scenario (``ranks.py`` runs it): ``is_active_fn`` answering differently on the ranks at a tick."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from monitorch_widget import MonitorNotice, PyTorchInspector
from monitorch_widget.lens import LossMetrics


def active_differs(rank: int, world: int) -> dict[str, Any]:
    """DDP, ``is_active_fn=lambda _: model.training`` (the README's pattern): in epoch 1 rank 0 validates in
    ``eval()`` and ticks without ``model.train()``, rank 1 stays in training mode; epoch 2 trains on both. Before,
    rank 0 skipped the tick, rank 1 waited for it (DistributedTickError naming rank 0, which had ticked) and rank 0
    hung in the next all-reduce. Returns the losses each rank saw, the record and the notices."""
    from ranks import global_batches, make_model
    from torch.nn.parallel import DistributedDataParallel as DDP

    model = make_model()
    wrapped = DDP(model)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(wrapped.parameters(), lr=0.1)
    inspector = PyTorchInspector([LossMetrics(loss_fn=loss_fn)], visualizer="none", distributed_timeout=10.0,
                                 is_active_fn=lambda _: model.training).attach(wrapped)
    losses: list[list[float]] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MonitorNotice)
        for epoch in range(2):
            wrapped.train()
            losses.append([])
            for x, y in global_batches(epoch, 3, 4, world):
                part = slice(rank * 4, (rank + 1) * 4)
                opt.zero_grad()
                loss = loss_fn(wrapped(x[part]), y[part])
                loss.backward()
                opt.step()
                losses[-1].append(loss.item())
            if epoch == 0 and rank == 0:
                wrapped.eval()  # validation on rank 0 only, and no model.train() before the tick
                with torch.no_grad():
                    wrapped(torch.randn(4, 6))
            inspector.tick_epoch()
    run = inspector.history.runs[0]
    return {"losses": losses, "epochs": run.epochs, "loss": inspector.history.series("Loss", "Loss", "train_loss mean").tolist(),
            "notices": [str(w.message) for w in caught if issubclass(w.category, MonitorNotice)]}


def nonfinite_on_one_rank(rank: int, world: int) -> dict[str, Any]:
    """Rank 0 pushes one NaN training loss: the combined epoch is the same on both ranks, and what it finds (the
    non-finite value left out) is printed by the master rank only (it was printed once per rank); both records
    hold the problem."""
    from ranks import make_model

    from monitorch_widget import MonitorWarning

    model = make_model()
    inspector = PyTorchInspector([LossMetrics()], visualizer="none").attach(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MonitorWarning)
        for value in (0.5, float("nan") if rank == 0 else 0.25, 0.75):
            model(torch.randn(4, 6))
            inspector.push_loss(value, train=True)
        inspector.tick_epoch()
    run = inspector.history.runs[0]
    return {"warnings": [str(w.message) for w in caught if issubclass(w.category, MonitorWarning)],
            "problems": [m for (_, m) in run.problems], "loss": inspector.history.series("Loss", "Loss", "train_loss mean").tolist()}
