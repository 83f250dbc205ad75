"""The geometry and parameter lenses, each against monitorch 0.1.0.7's same lens on the same workload.

    .venv/bin/python -m benchmarks.lenses [--reps 9] [--epochs 5] [--workloads seed,deep10] [--lenses ...]
                                          [--clock cpu|wall] [--threads 1]

Issue 13's target: each lens' overhead (monitored - bare, same workload) at most half monitorch's, i.e. the
ratio ours-overhead / monitorch-overhead <= 0.5, met when the upper end of its bootstrap 95% interval is.

Lenses (``--lenses``, comma-separated keys): ``ogg`` ``OutputGradientGeometry()``, ``ogg-nocorr`` the same
with ``compute_correlation=False``; ``pgg`` / ``pgg-nocorr`` ``ParameterGradientGeometry``; ``pug`` /
``pug-nocorr`` ``ParameterUpdateGeometry(optimizer)``; ``pn`` ``ParameterNorm()``. Default arguments
otherwise (``compute_correlation=True`` is the default of the three geometry lenses).

Workloads: ``seed`` - the seed's 2-D MLP, 56 samples at batch size 8 (7 Adam steps per epoch) then
``tick_epoch()`` (no validation pass: it costs the same with and without a lens); ``deep10`` - ``deep_mlp(10)`` (10 x Linear(256, 256) + ReLU), batch 64, 10 Adam steps per
epoch, then ``tick_epoch()``. Each variant (bare; ours and monitorch per lens) trains its own copy of the same
weights on the same batches; one *block* is ``--epochs`` epochs. Per lens, after a warm-up block each, the
three variants run their blocks in rotated order, ``--reps`` times (``gc.collect()`` before each block, untimed);
then both inspectors are detached (our optimizer-step hooks are process-wide) before the next lens. The inspector holds only the lens measured (ours with
``visualizer='none'``, monitorch with its 'print' visualizer, silenced), so its tick is part of the lens' cost.

Reported per lens: ms per epoch (median over repetitions) of bare, ours and monitorch, the overheads
(variant - bare within each repetition, median), and the ratio median(ours overhead) / median(monitorch
overhead) with a bootstrap 95% interval (repetitions resampled, pairs kept). The clock defaults to process CPU
time (the development machine is shared); ``--clock wall`` on a quiet machine.
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .common import bootstrap, import_monitorch, import_ours, silenced
from .workloads import deep_mlp, mlp2d

CLOCKS: dict[str, Callable[[], float]] = {"cpu": time.process_time, "wall": time.perf_counter}

LENSES: dict[str, tuple[str, dict[str, Any]]] = {
    "ogg": ("OutputGradientGeometry", {}),
    "ogg-nocorr": ("OutputGradientGeometry", {"compute_correlation": False}),
    "pgg": ("ParameterGradientGeometry", {}),
    "pgg-nocorr": ("ParameterGradientGeometry", {"compute_correlation": False}),
    "pug": ("ParameterUpdateGeometry", {}),
    "pug-nocorr": ("ParameterUpdateGeometry", {"compute_correlation": False}),
    "pn": ("ParameterNorm", {}),
}


def make_lens(lens_mod: Any, key: str, optimizer: torch.optim.Optimizer) -> Any:
    cls_name, kwargs = LENSES[key]
    cls = getattr(lens_mod, cls_name)
    return cls(optimizer, **kwargs) if cls_name == "ParameterUpdateGeometry" else cls(**kwargs)


class Workload:
    def __init__(self, name: str, build: Callable[[], nn.Module], in_dim: int, classes: int, batch: int,
                 steps: int) -> None:
        self.name = name
        torch.manual_seed(0)
        self.base = build()
        g = torch.Generator().manual_seed(0)
        self.batches = [(torch.randn(batch, in_dim, generator=g), torch.randint(0, classes, (batch,), generator=g))
                        for _ in range(steps)]


def workloads() -> dict[str, Callable[[], Workload]]:
    return {"seed": lambda: Workload("seed", mlp2d, 2, 2, 8, 7),
            "deep10": lambda: Workload("deep10", lambda: deep_mlp(10), 256, 256, 64, 10)}


class Variant:
    """One monitored (or bare) copy of the workload's model with its own optimizer and loss module."""

    def __init__(self, name: str, wl: Workload, package: str | None, lens_key: str | None) -> None:
        self.name = name
        self.lens_key = lens_key
        self.model = copy.deepcopy(wl.base)
        self.loss_fn = nn.CrossEntropyLoss()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.inspector: Any = None
        self.times: list[float] = []
        if package == "ours":
            insp, lens_mod = import_ours()
            self.inspector = insp([make_lens(lens_mod, lens_key, self.opt)], visualizer="none", module=self.model)
        elif package == "monitorch":
            insp, lens_mod = import_monitorch()
            with silenced():
                self.inspector = insp([make_lens(lens_mod, lens_key, self.opt)], visualizer="print")
                self.inspector.attach(self.model)

    def block(self, wl: Workload, epochs: int, clock: Callable[[], float]) -> None:
        model, loss_fn, opt, ins = self.model, self.loss_fn, self.opt, self.inspector
        t0 = clock()
        for _ in range(epochs):
            for x, y in wl.batches:
                opt.zero_grad()
                loss_fn(model(x), y).backward()
                opt.step()
            if ins is not None:
                ins.tick_epoch()
        self.times.append((clock() - t0) / epochs)



def overhead_ratio(pairs: Sequence[tuple[float, float]]) -> float:
    """median(ours overhead) / median(monitorch overhead) of (ours, monitorch) overhead pairs."""
    theirs = statistics.median(p[1] for p in pairs)
    return statistics.median(p[0] for p in pairs) / theirs if theirs > 0 else float("inf")


def compare(wl: Workload, key: str, reps: int, epochs: int, clock: Callable[[], float]) -> str:
    """One lens: bare, ours and monitorch, interleaved; the inspectors are detached before the next lens (our
    optimizer-step hooks are process-wide: a live inspector would also cost every other variant's steps)."""
    variants = [Variant("bare", wl, None, None), Variant(f"ours {key}", wl, "ours", key),
                Variant(f"monitorch {key}", wl, "monitorch", key)]
    with silenced():
        for v in variants:
            v.block(wl, 1, clock)
            v.times.clear()
        for rep in range(reps):
            k = rep % len(variants)
            for v in variants[k:] + variants[:k]:
                gc.collect()
                v.block(wl, epochs, clock)
        for v in variants[1:]:
            v.inspector.detach()
    bare, ours, theirs = (v.times for v in variants)
    pairs = [(o - b, m - b) for o, m, b in zip(ours, theirs, bare)]
    ratio = overhead_ratio(pairs)
    lo, hi = bootstrap(pairs, overhead_ratio)
    verdict = "PASS" if hi <= 0.5 else ("miss" if lo > 0.5 else "within noise")
    return (f"| {wl.name} | {LENSES[key][0]}{'' if '-' not in key else ' (no corr.)'} "
            f"| {statistics.median(bare) * 1e3:.3f} | {statistics.median(ours) * 1e3:.3f} "
            f"| {statistics.median(theirs) * 1e3:.3f} | {statistics.median(p[0] for p in pairs) * 1e3:.3f} "
            f"| {statistics.median(p[1] for p in pairs) * 1e3:.3f} | {ratio:.2f} | {lo:.2f}-{hi:.2f} | {verdict} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    ap.add_argument("--workloads", default="seed,deep10")
    ap.add_argument("--lenses", default=",".join(LENSES))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    # monitorch's full backward hooks warn on every backward pass of a model whose input needs no grad
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    if import_ours()[0] is None or import_monitorch()[0] is None:
        raise SystemExit(f"needs both packages: ours {import_ours()[1]!r}, monitorch {import_monitorch()[1]!r}")
    keys = [k.strip() for k in args.lenses.split(",") if k.strip()]
    unknown = [k for k in keys if k not in LENSES]
    if unknown:
        raise SystemExit(f"unknown lens keys {unknown}; choose from {', '.join(LENSES)}")
    print(f"lenses vs monitorch: {args.reps} interleaved repetitions of {args.epochs} epochs, clock={args.clock}, "
          f"threads={args.threads}, load average {os.getloadavg()[0]:.2f}")
    print("| workload | lens | bare ms/epoch | ours ms/epoch | monitorch ms/epoch | ours overhead ms "
          "| monitorch overhead ms | ratio | 95% interval | <= 0.5 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.workloads.split(","):
        wl = workloads()[name.strip()]()
        for key in keys:
            print(compare(wl, key, args.reps, args.epochs, CLOCKS[args.clock]), flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
