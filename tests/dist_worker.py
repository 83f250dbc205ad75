"""One rank of the distributed test (run as a script by test_distributed.py).

Every rank runs the same frozen model on its share of the batches; the inspector reduces all statistics
across ranks at each tick. The result is written as a saved history (rank 0 only) for comparison with a
single process that saw every batch.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation


def batches(epoch: int):
    g = torch.Generator().manual_seed(100 + epoch)
    for _ in range(6):
        x = torch.randn(8, 3, generator=g)
        x[:, 2] = torch.where(torch.rand(8, generator=g) > 0.5, x[:, 2], torch.zeros(8))
        yield x, torch.randint(0, 2, (8,), generator=g)


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))


def train(inspector: PyTorchInspector, rank: int, world: int, epochs: int = 3) -> None:
    model = make_model()
    loss_fn = inspector.lenses[0]._loss_fn
    inspector.attach(model)
    for epoch in range(epochs):
        for i, (x, y) in enumerate(batches(epoch)):
            if i % world != rank:
                continue
            model.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()  # no optimizer step: every rank keeps identical weights
            inspector.push_metric("acc", float(i))
        inspector.tick_epoch()


def make_inspector() -> PyTorchInspector:
    return PyTorchInspector([LossMetrics(loss_fn=nn.CrossEntropyLoss(), metrics=["acc"], loss_range="min-max"),
                             OutputActivation(), ParameterGradientActivation()], visualizer="none")


def main() -> None:
    rank, world, init_file, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    calls = {"n": 0}
    real = torch.distributed.all_reduce

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    torch.distributed.all_reduce = counting
    inspector = make_inspector()
    train(inspector, rank, world)
    if rank == 0:
        inspector.save(out)
        with open(out + ".calls", "w") as fh:
            fh.write(str(calls["n"]))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
