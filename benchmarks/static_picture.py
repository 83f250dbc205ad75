"""Cost of the static picture (views/static_picture.py) refreshed at the end of each cell.

    .venv/bin/python -m benchmarks.static_picture            # 50-block MLP, three lenses, 3 runs
    .venv/bin/python -m benchmarks.static_picture --epochs 30,300,3000

A real PyTorchInspector (LossMetrics with one metric, OutputActivation, ParameterGradientActivation) watches
``workloads.deep_mlp(50, width=8)`` (the 50-block model's layers, panels and names; the width does not change
the record's shape) for N epochs of one step, three runs (re-attached). Then ``fallback_html(record,
sibling=True)`` (what the widget publishes) is timed: median of 15 calls after 2 warm-ups, CPU time of the
process (``time.process_time``; on the shared 2-core machine wall time mostly measures the neighbours, see
README "Clock") and wall clock, one torch thread. Target: <= 100 kB and <= 20 ms at 300 epochs with 3 runs.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from torch import nn

from benchmarks.workloads import deep_mlp


def build(epochs: int, runs: int = 3, blocks: int = 50) -> object:
    from monitorch_widget import PyTorchInspector
    from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation

    torch.manual_seed(0)
    loss_fn = nn.MSELoss()
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn, metrics=["val_acc"]), OutputActivation(),
                            ParameterGradientActivation()], visualizer="none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # smooth-activation notices etc. are not what is measured
        for _ in range(runs):
            model = deep_mlp(blocks, width=8)
            ins.attach(model)
            opt = torch.optim.SGD(model.parameters(), lr=0.05)
            x = torch.randn(16, 8)
            for _ in range(epochs):
                loss = loss_fn(model(x), x)
                opt.zero_grad()
                loss.backward()
                opt.step()
                ins.push_metric("val_acc", float(torch.rand(())))
                ins.tick_epoch()
            ins.detach()
    return ins.history


def measure(record: object, repeats: int = 15) -> tuple[int, float, float]:
    """(bytes of the HTML, median CPU ms, median wall ms) of ``fallback_html(record, sibling=True)``."""
    from monitorch_widget.views.static_picture import fallback_html

    for _ in range(2):
        html = fallback_html(record, sibling=True)
    cpu, wall = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        html = fallback_html(record, sibling=True)
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - t)
    return len(html.encode("utf-8")), statistics.median(cpu) * 1e3, statistics.median(wall) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", default="30,100,300")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print("| epochs | runs | size kB | CPU ms (median) | wall ms (median) |\n|---|---|---|---|---|")
    for e in (int(v) for v in args.epochs.split(",")):
        size, cpu, wall = measure(build(e, args.runs))
        print(f"| {e} | {args.runs} | {size / 1000:.1f} | {cpu:.1f} | {wall:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
