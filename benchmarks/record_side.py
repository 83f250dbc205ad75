"""The tick's record side alone: a run's lens calls replayed into fresh records.

    .venv/bin/python -m benchmarks.record_side [--root CHECKOUT] [--epochs 120] [--reps 3] [--only seed,deep50]

First a real run (the seed MLP or the 50-block MLP, seed lenses, ``visualizer='none'``) is trained for
``--epochs`` epochs while every call its lenses make on the record is kept. Then the calls are replayed, epoch
by epoch, into a fresh record: ``open_row``, the calls (ingest), ``close_row`` (health checks, status). Timed
with ``time.thread_time`` per epoch (CPU time of this thread: little disturbed by neighbours on a shared
machine); reported: the median over the epochs after the first 20, best of ``--reps`` replays, without a widget
and with one (ipywidgets' dummy comm: outside IPython every tick is sent, so this includes encoding one delta
per tick but no comm I/O). ``--root``: import ``monitorch_widget`` from that checkout (compare two by running
this script for each, in turn).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from typing import Any

import torch
from torch import nn

from .workloads import deep_mlp, mlp2d

Calls = list[tuple[str, tuple[Any, ...]]]


def capture(workload: str, epochs: int) -> tuple[dict[str, Any], dict[str, str], list[Calls]]:
    """Train ``workload`` for ``epochs`` epochs; the record's tags, module types and each epoch's calls."""
    from monitorch_widget import PyTorchInspector
    from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation

    torch.manual_seed(0)
    if workload == "seed":
        model, x, y, batch = mlp2d(), torch.randn(56, 2), torch.randint(0, 2, (56,)), 8
    else:
        model, x, y, batch = deep_mlp(50), torch.randn(128, 256), torch.randint(0, 256, (128,)), 64
    loss_fn = nn.CrossEntropyLoss()
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn, metrics=["accuracy"]), OutputActivation(),
                            ParameterGradientActivation()], visualizer="none", module=model)
    opt = torch.optim.Adam(model.parameters())
    record = ins.history
    current: Calls = []
    for name in ("plot_numerical_values", "plot_probabilities", "plot_relations"):
        method = getattr(record, name)

        def kept(*args: Any, _method: Any = method, _name: str = name) -> None:
            current.append((_name, copy.deepcopy(args[1:])))  # the epoch is given again at replay
            _method(*args)

        setattr(record, name, kept)
    ticks = []
    for _ in range(epochs):
        for i in range(0, len(x), batch):
            opt.zero_grad()
            loss_fn(model(x[i:i + batch]), y[i:i + batch]).backward()
            opt.step()
        with torch.no_grad():
            loss_fn(model(x), y)
        ins.push_metric("accuracy", 0.5)
        current = []
        ins.tick_epoch()
        ticks.append(current)
    ins.detach()
    return dict(record._tags), dict(record.runs[0].module_types), ticks


def replay(tags: dict[str, Any], module_types: dict[str, str], ticks: list[Calls], widget: bool) -> list[float]:
    """CPU seconds of each epoch's open_row + calls + close_row on a fresh record."""
    from monitorch_widget.record import Record

    record = Record()
    for tag, panel in tags.items():
        record._tags[tag] = panel
    record.start_run("run 1", module_types)
    view = None
    if widget:
        from monitorch_widget.views.widget import MonitorWidget

        view = MonitorWidget(record)
    out = []
    for epoch, calls in enumerate(ticks, 1):
        t0 = time.thread_time()
        record.open_row(epoch, step=float(epoch))
        for name, args in calls:
            getattr(record, name)(epoch, *args)
        record.close_row()
        out.append(time.thread_time() - t0)
    if view is not None:
        view.close()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=120)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default="seed,deep50")
    ap.add_argument("--root", default=None, help="checkout whose monitorch_widget to import (default: as found)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.root:
        sys.path.insert(0, args.root)
    import monitorch_widget

    print(f"record side per tick (CPU us, median of epochs 21-{args.epochs}, best of {args.reps}); "
          f"monitorch_widget from {monitorch_widget.__file__}")
    for workload in args.only.split(","):
        tags, module_types, ticks = capture(workload, args.epochs)
        for widget in (False, True):
            best = min(statistics.median(replay(tags, module_types, ticks, widget)[20:]) for _ in range(args.reps))
            print(f"  {workload:<7} {'widget' if widget else 'no widget':<10} {best * 1e6:8.1f}")


if __name__ == "__main__":
    main()
