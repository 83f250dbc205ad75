"""Before/after of ``tick_epoch()`` alone: this checkout against another git revision, in one process.

    .venv/bin/python -m benchmarks.tick_ab --rev 0585357 --workload seed --reps 15
    .venv/bin/python -m benchmarks.tick_ab --rev 0585357 --workload deep50 --reps 9 --epochs 10

The base revision's package is extracted as ``mw_base`` (:func:`benchmarks.hooks_ab.import_base`). Each variant
trains its own copy of one model (the seed lens set, ``visualizer='none'``) and stays attached; per
repetition every variant runs ``--epochs`` epochs in turn (rotated order), and every ``tick_epoch()`` is timed
with the process's CPU clock (``time.process_time``, one torch thread), with ``PyTorchInspector._compute``
(the collect side: flush, host fold, the lenses' calls) timed inside it. Workloads: ``seed`` (the seed's
epoch: 7 steps of batch 8, a validation pass, one pushed metric) and ``deep50`` (50 x Linear(256, 256) +
ReLU, 2 steps of batch 64 per epoch: 151 hooked sites). Reported: the median tick and ``_compute`` per
variant, and the median over repetitions of (new / base) of the per-repetition median ticks, with a
bootstrap 95% interval.
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import statistics
import time
from typing import Any

import torch
from torch import nn

from .common import bootstrap, train_epoch
from .hooks_ab import import_base, lenses
from .workloads import deep_mlp, mlp2d


class Variant:
    def __init__(self, name: str, base: nn.Module, pkg: Any) -> None:
        self.name = name
        self.model = copy.deepcopy(base)
        self.loss_fn = nn.CrossEntropyLoss()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.inspector = pkg.PyTorchInspector(lenses(pkg, self.loss_fn, "LOG"), visualizer="none",
                                              module=self.model)
        self.ticks: list[float] = []
        self.computes: list[float] = []
        self.rep_ticks: list[float] = []
        cls = type(self.inspector)
        compute = cls._compute
        spent = self.computes

        def timed(ins: Any, final: bool = True) -> Any:
            t = time.process_time()
            out = compute(ins, final)
            spent.append(time.process_time() - t)
            return out

        self.inspector._compute = timed.__get__(self.inspector)  # this instance only

    def block(self, data: list[tuple[torch.Tensor, torch.Tensor]], val: tuple[torch.Tensor, torch.Tensor] | None,
              epochs: int, keep: bool = True) -> None:
        ins = self.inspector
        gc.collect()
        here = []
        for _ in range(epochs):
            ins.push_metric("accuracy", train_epoch(self.model, self.opt, self.loss_fn, data, val))
            t = time.process_time()
            ins.tick_epoch()
            here.append(time.process_time() - t)
        if keep:
            self.ticks += here
            self.rep_ticks.append(statistics.median(here))
        else:
            self.computes.clear()


def workload(name: str) -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]], Any]:
    g = torch.Generator().manual_seed(0)
    if name == "seed":
        x, y = torch.randn(56, 2, generator=g), torch.randint(0, 2, (56,), generator=g)
        val = (torch.randn(24, 2, generator=g), torch.randint(0, 2, (24,), generator=g))
        return mlp2d(), [(x[i:i + 8], y[i:i + 8]) for i in range(0, 56, 8)], val
    if name == "deep50":
        return deep_mlp(50), [(torch.randn(64, 256, generator=g), torch.randint(0, 256, (64,), generator=g))
                              for _ in range(2)], None
    raise SystemExit(f"--workload {name!r}: one of seed, deep50")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default=".", help="the git checkout holding --rev (default: this one)")
    ap.add_argument("--rev", default="HEAD", help="its revision (default HEAD: committed code)")
    ap.add_argument("--workload", default="seed")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--epochs", type=int, default=40, help="epochs (ticks) per variant and repetition")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    import monitorch_widget as new

    old = import_base(args.base, args.rev)
    model, data, val = workload(args.workload)
    variants = [Variant("base", model, old), Variant("new", model, new)]
    for v in variants:
        v.block(data, val, 5, keep=False)  # warm-up: the first epochs make columns, plans, caches
    load = [os.getloadavg()[0]]
    for rep in range(args.reps):
        k = rep % len(variants)
        for v in variants[k:] + variants[:k]:
            v.block(data, val, args.epochs)
    load.append(os.getloadavg()[0])
    base, now = variants
    ratios = [b / a for a, b in zip(base.rep_ticks, now.rep_ticks)]
    lo, hi = bootstrap(ratios)
    print(f"tick_epoch(), {args.workload}, base {args.base}@{args.rev}, {args.reps} interleaved repetitions x "
          f"{args.epochs} ticks, CPU time, one thread, load {load[0]:.2f} -> {load[1]:.2f}")
    print(f"{'variant':<8} {'tick us':>9} {'95% interval':>16} {'_compute us':>12} {'outside us':>11}")
    for v in variants:
        t_lo, t_hi = bootstrap(v.rep_ticks)
        tick, comp = statistics.median(v.ticks), statistics.median(v.computes)
        print(f"{v.name:<8} {tick * 1e6:9.1f} {t_lo * 1e6:7.1f}-{t_hi * 1e6:<8.1f} {comp * 1e6:12.1f} "
              f"{(tick - comp) * 1e6:11.1f}")
    print(f"new / base: {statistics.median(ratios):.3f} [{lo:.3f}-{hi:.3f}]")


if __name__ == "__main__":
    main()
