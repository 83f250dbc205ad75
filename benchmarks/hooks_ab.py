"""Before/after of the hooks' per-step cost: this checkout against another git revision, in one process.

    .venv/bin/python -m benchmarks.hooks_ab --rev 27a7d7c --workload mlp2d --reps 21   # base: this checkout
    .venv/bin/python -m benchmarks.hooks_ab --workload seed --lenses G      # one lens (L, O, G or any mix)

The base revision's ``monitorch_widget`` is extracted (``git archive``) into a temporary folder and imported
as ``mw_base`` next to this checkout's package (the package imports itself relatively), so ``bare``, ``base``
and ``new`` run interleaved blocks on deep copies of one model, with the same data. Each inspector is
attached only for its own block and detached after it: the optimizer-step hooks are process-wide, and a
listener left attached would add its cost to the other variants' steps.

Workloads: ``mlp2d`` (200 steps of batch 8 per block), ``seed`` (the seed's epoch: 7 steps of batch 8, a
validation pass and ``tick_epoch()``; 20 epochs per block), ``deep50`` (20 steps), ``cnn`` (4 steps).
Reported: median CPU time (``time.process_time``, one torch thread) per step (per epoch for ``seed``), the
median of per-repetition ratios to bare with a bootstrap 95% interval, and the tick's share.
"""

from __future__ import annotations

import argparse
import copy
import gc
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import torch
from torch import nn

from .common import bootstrap, train_epoch
from .workloads import CNN, deep_mlp, mlp2d


def import_base(checkout: str, rev: str) -> Any:
    """``monitorch_widget`` of ``checkout`` at ``rev``, imported as the package ``mw_base``."""
    folder = tempfile.mkdtemp(prefix="mw_base_")
    archive = subprocess.run(["git", "-C", checkout, "archive", rev, "monitorch_widget"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    os.rename(os.path.join(folder, "monitorch_widget"), os.path.join(folder, "mw_base"))
    sys.path.insert(0, folder)
    return importlib.import_module("mw_base")


def lenses(pkg: Any, loss_fn: nn.Module, which: str) -> list[Any]:
    lens = importlib.import_module(pkg.__name__ + ".lens")
    out: list[Any] = []
    if "L" in which:
        out.append(lens.LossMetrics(loss_fn=loss_fn, metrics=["accuracy"]))
    if "O" in which:
        out.append(lens.OutputActivation())
    if "G" in which:
        out.append(lens.ParameterGradientActivation())
    return out


class Variant:
    def __init__(self, name: str, base: nn.Module, pkg: Any, which: str) -> None:
        self.name = name
        self.model = copy.deepcopy(base)
        self.loss_fn = nn.CrossEntropyLoss()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.inspector = pkg.PyTorchInspector(lenses(pkg, self.loss_fn, which), visualizer="none") if pkg else None
        self.metric = "L" in which  # the metric is declared by LossMetrics only
        self.times: list[float] = []
        self.ticks: list[float] = []

    def block(self, data: list[tuple[torch.Tensor, torch.Tensor]], val: tuple[torch.Tensor, torch.Tensor] | None,
              epochs: int) -> None:
        ins = self.inspector
        if ins is not None:
            ins.attach(self.model)
        gc.collect()
        clock = time.process_time
        start, tick = clock(), 0.0
        for _ in range(epochs):
            accuracy = train_epoch(self.model, self.opt, self.loss_fn, data, val)
            if ins is not None:
                if self.metric:
                    ins.push_metric("accuracy", accuracy)
                t = clock()
                ins.tick_epoch()
                tick += clock() - t
        elapsed = clock() - start
        if ins is not None:
            ins.detach()
        per = epochs if val is not None else epochs * len(data)  # per epoch (seed) or per step
        self.times.append(elapsed / per)
        self.ticks.append(tick / per)


def workload(name: str) -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]], Any, int]:
    """(model, training batches, validation batch or None, epochs per block)."""
    g = torch.Generator().manual_seed(0)
    if name == "mlp2d":
        return mlp2d(), [(torch.randn(8, 2, generator=g), torch.randint(0, 2, (8,), generator=g))
                         for _ in range(200)], None, 1
    if name == "seed":
        x, y = torch.randn(56, 2, generator=g), torch.randint(0, 2, (56,), generator=g)
        val = (torch.randn(24, 2, generator=g), torch.randint(0, 2, (24,), generator=g))
        return mlp2d(), [(x[i:i + 8], y[i:i + 8]) for i in range(0, 56, 8)], val, 20
    if name == "deep50":
        return deep_mlp(50), [(torch.randn(64, 256, generator=g), torch.randint(0, 256, (64,), generator=g))
                              for _ in range(20)], None, 1
    if name == "cnn":
        return CNN(), [(torch.randn(256, 1, 28, 28, generator=g), torch.randint(0, 10, (256,), generator=g))
                       for _ in range(4)], None, 1
    raise SystemExit(f"--workload {name!r}: one of mlp2d, seed, deep50, cnn")



def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default=".", help="the git checkout holding --rev (default: this one)")
    ap.add_argument("--rev", default="HEAD", help="its revision (default HEAD: committed code)")
    ap.add_argument("--workload", default="mlp2d")
    ap.add_argument("--lenses", default="LOG", help="L=LossMetrics, O=OutputActivation, G=gradient activation")
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    import monitorch_widget as new

    old = import_base(args.base, args.rev)
    model, data, val, epochs = workload(args.workload)
    variants = [Variant("bare", model, None, ""), Variant("base", model, old, args.lenses),
                Variant("new", model, new, args.lenses)]
    for v in variants:
        v.block(data, val, 1)
        v.times.clear()
        v.ticks.clear()
    for rep in range(args.reps):
        k = rep % len(variants)
        for v in variants[k:] + variants[:k]:
            v.block(data, val, epochs)
    unit = "epoch" if val is not None else "step"
    bare = variants[0].times
    print(f"{args.workload}, lenses {args.lenses}, base {args.base}@{args.rev}, {args.reps} interleaved repetitions, "
          f"CPU time, one thread, load {os.getloadavg()[0]:.1f}")
    print(f"{'variant':<8} {'ms/' + unit:>10} {'x bare':>7} {'95% interval':>14} {'over us/' + unit:>14} "
          f"{'tick us/' + unit:>14}")
    for v in variants:
        ratios = [t / b for t, b in zip(v.times, bare)]
        lo, hi = bootstrap(ratios)
        over = [t - b for t, b in zip(v.times, bare)]
        print(f"{v.name:<8} {statistics.median(v.times) * 1e3:10.3f} {statistics.median(ratios):7.3f} "
              f"{lo:6.3f}-{hi:<7.3f} {statistics.median(over) * 1e6:14.1f} {statistics.median(v.ticks) * 1e6:14.1f}")


if __name__ == "__main__":
    main()
