"""The headline: the seed tutorial's own workload, epoch by epoch.

    .venv/bin/python -m benchmarks.seed [--reps 9] [--epochs 20] [--threads 1] [--clock wall|cpu]

The seed's 2-D MLP on 56 training samples at batch size 8 (7 optimizer steps per epoch), a validation pass
on 24 samples under ``model.eval()`` + ``no_grad``, one pushed metric, then ``tick_epoch()``. This is where a
monitor's fixed per-epoch cost shows (a 200-step epoch hides it). Variants, each on its own copy of the same
weights and data, run in interleaved blocks of ``--epochs`` epochs (rotated order per repetition):

* ``bare`` - the loop without a monitor;
* ``ours`` - the seed lens set, ``visualizer='none'``;
* ``ours+widget`` - the same with the widget built and its sync subscribed (no front-end: messages go to
  ipywidgets' dummy comm, so comm I/O is excluded);
* ``monitorch`` - monitorch 0.1.0.7 with the same lenses and its 'print' visualizer, silenced.

Reported per variant: median wall ms per epoch and the median of per-repetition ratios to ``bare`` with a
bootstrap 95% interval (targets of issue 13: ours+widget <= 1.25x, stretch 1.15x); and the tick alone.
"""

from __future__ import annotations

import argparse
import copy
import statistics
from collections.abc import Callable

import torch
from torch import nn

from .common import bootstrap, import_monitorch, import_ours, now, seed_lenses, set_clock, silenced
from .workloads import mlp2d

TRAIN, VAL, BATCH = 56, 24, 8


class Variant:
    def __init__(self, name: str, base: nn.Module, make: Callable[[nn.Module, nn.Module], object] | None) -> None:
        self.name = name
        self.model = copy.deepcopy(base)
        self.loss_fn = nn.CrossEntropyLoss()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-2)
        self.inspector = make(self.model, self.loss_fn) if make is not None else None
        self.epoch_times: list[float] = []
        self.tick_times: list[float] = []

    def epochs(self, data: tuple[torch.Tensor, ...], n: int) -> None:
        x, y, xv, yv = data
        ins = self.inspector
        t_block = now()
        ticks = 0.0
        for _ in range(n):
            self.model.train()
            for i in range(0, TRAIN, BATCH):
                self.opt.zero_grad()
                self.loss_fn(self.model(x[i:i + BATCH]), y[i:i + BATCH]).backward()
                self.opt.step()
            self.model.eval()
            with torch.no_grad():
                out = self.model(xv)
                self.loss_fn(out, yv)
                accuracy = (out.argmax(1) == yv).float().mean().item()
            if ins is not None:
                ins.push_metric("accuracy", accuracy)  # type: ignore[attr-defined]
                t0 = now()
                ins.tick_epoch()  # type: ignore[attr-defined]
                ticks += now() - t0
        self.epoch_times.append((now() - t_block) / n)
        self.tick_times.append(ticks / n)


def _ours(widget: bool) -> Callable[[nn.Module, nn.Module], object] | None:
    insp, lens = import_ours()
    if insp is None:
        return None

    def make(model: nn.Module, loss_fn: nn.Module) -> object:
        lenses = seed_lenses(lens, loss_fn, metrics=["accuracy"])
        ins = insp(lenses, visualizer="widget" if widget else "none", module=model)
        if widget:
            ins.widget  # noqa: B018 - build the widget (and its sync) as a notebook user does by displaying it
        return ins

    return make


def _monitorch() -> Callable[[nn.Module, nn.Module], object] | None:
    insp, lens = import_monitorch()
    if insp is None:
        return None

    def make(model: nn.Module, loss_fn: nn.Module) -> object:
        with silenced():
            lenses = seed_lenses(lens, loss_fn, metrics=["accuracy"])
            ins = insp(lenses, visualizer="print")  # silenced below; its own module= path needs attach()
            ins.attach(model)
            return ins

    return make



def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: CPU time of this process, robust on a loaded shared machine")
    args = ap.parse_args(argv)
    set_clock(args.clock)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = mlp2d()
    g = torch.Generator().manual_seed(0)
    x, xv = torch.randn(TRAIN, 2, generator=g), torch.randn(VAL, 2, generator=g)
    y, yv = (x[:, 0] * x[:, 1] > 0).long(), (xv[:, 0] * xv[:, 1] > 0).long()
    makers = {"bare": None, "ours": _ours(False), "ours+widget": _ours(True), "monitorch": _monitorch()}
    variants = [Variant(name, base, make) for name, make in makers.items() if name == "bare" or make is not None]
    with silenced():
        for v in variants:
            v.epochs((x, y, xv, yv), 3)  # warm-up
            v.epoch_times.clear()
            v.tick_times.clear()
        for rep in range(args.reps):
            k = rep % len(variants)
            for v in variants[k:] + variants[:k]:
                v.epochs((x, y, xv, yv), args.epochs)
    bare = variants[0]
    print(f"seed workload: 2-D MLP, {TRAIN // BATCH} steps/epoch + validation + tick, threads={args.threads}, "
          f"{args.reps} interleaved repetitions of {args.epochs} epochs, clock={args.clock}")
    print(f"{'variant':<12} {'ms/epoch':>9} {'x bare':>7} {'95% interval':>14} {'tick ms':>8}")
    for v in variants:
        ratios = [t / b for t, b in zip(v.epoch_times, bare.epoch_times)]
        lo, hi = bootstrap(ratios)
        tick = statistics.median(v.tick_times) * 1e3 if v.inspector is not None else float("nan")
        print(f"{v.name:<12} {statistics.median(v.epoch_times) * 1e3:9.3f} {statistics.median(ratios):7.3f} "
              f"{lo:6.3f}-{hi:<6.3f} {tick:8.3f}")


if __name__ == "__main__":
    main()
