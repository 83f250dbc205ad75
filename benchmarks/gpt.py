"""Issue 12's real client (``tests/gpt_client.py``): a small GPT trained with the parameter lenses, vs bare.

    .venv/bin/python -m benchmarks.gpt [--reps 9] [--cycles 2] [--every 10] [--compile] [--split] [--monitorch] [--rev REV]
                                       [--dim 64] [--layers 4] [--vocab 256] [--batch 8] [--seq 64]

The client's training script, as in ``tests/test_gpt_client.py``: AdamW, ``model(x, y)`` returns the loss, one
backward pass per optimizer step, ``zero_grad(set_to_none=True)``; every ``--every`` steps an evaluation pass
(2 batches under ``model.eval()`` + ``no_grad``), then, monitored, ``push_metric('val_bpb', ...)`` and
``inspector.tick()``. Monitored = ``LossMetrics(loss_fn=model, metrics=['val_bpb'])``,
``ParameterGradientActivation(parameters=['weight'])``, ``ParameterUpdateGeometry(optimizer,
parameters=['weight'])``, ``is_active_fn=lambda _: model.training``, ``visualizer='none'``.

Variants (each its own copy of the same weights, same batches; ``--compile``: each its own
``torch.compile``): ``bare``; ``ours``; with ``--split`` also ``ours: loss only``, ``ours: loss + gradient
activation``, ``ours: loss + update geometry`` (which lens costs what); with ``--monitorch`` (uncompiled only)
monitorch 0.1.0.7 with the same lenses. One block = ``--cycles`` tick cycles; after one warm-up block each
(which also compiles), blocks run in rotated order ``--reps`` times. Reported: ms per optimizer step (median)
and the median per-repetition ratio to ``bare`` with a bootstrap 95% interval. Target (issue 13): ours <=
1.05x. The clock is the process CPU time (``--clock wall`` on a quiet machine).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .common import bootstrap, silenced
from .lenses import CLOCKS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.gpt_client import GPT, batches  # noqa: E402 - the client itself, shared with its test

LENS_SETS = {
    "ours": ("loss", "gradient", "update"),
    "ours: loss only": ("loss",),
    "ours: loss + gradient activation": ("loss", "gradient"),
    "ours: loss + update geometry": ("loss", "update"),
}


class Variant:
    def __init__(self, name: str, base: GPT, compiled: bool, package: str | None, lenses: tuple[str, ...],
                 device: torch.device | None = None) -> None:
        self.name = name
        self.model = copy.deepcopy(base).to(device or torch.device("cpu"))
        self.run = torch.compile(self.model) if compiled else self.model
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=3e-3, weight_decay=0.0)
        self.inspector: Any = None
        self.times: list[float] = []
        if package is not None:
            insp_mod = __import__(f"{package}.inspector", fromlist=["PyTorchInspector"])
            lens = __import__(f"{package}.lens", fromlist=["LossMetrics"])
            made = {"loss": lambda: lens.LossMetrics(loss_fn=self.run, metrics=["val_bpb"]),
                    "gradient": lambda: lens.ParameterGradientActivation(parameters=["weight"]),
                    "update": lambda: lens.ParameterUpdateGeometry(self.opt, parameters=["weight"])}
            model = self.model
            with silenced():
                self.inspector = insp_mod.PyTorchInspector(
                    module=self.run, lenses=[made[k]() for k in lenses],
                    visualizer="print" if package == "monitorch" else "none",
                    is_active_fn=lambda _: model.training)

    def block(self, train: list, val: list, cycles: int, every: int, clock: Callable[[], float]) -> None:
        run, model, opt, ins = self.run, self.model, self.opt, self.inspector
        t0 = clock()
        for c in range(cycles):
            for x, y in train[c * every:(c + 1) * every]:
                model.train()
                run(x, y).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            model.eval()
            with torch.no_grad():
                val_loss = sum(run(x, y).item() for x, y in val) / len(val)
            model.train()
            if ins is not None:
                ins.push_metric(name="val_bpb", value=val_loss / math.log(2), running=True)
                ins.tick()
        self.times.append((clock() - t0) / (cycles * every))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--cycles", type=int, default=2)
    ap.add_argument("--every", type=int, default=10, help="optimizer steps per tick")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--split", action="store_true", help="also time each lens with LossMetrics alone")
    ap.add_argument("--monitorch", action="store_true", help="also time monitorch 0.1.0.7 (uncompiled only)")
    ap.add_argument("--rev", default=None, help="also time this checkout's package at git revision REV ('base', "
                    "imported as mw_base: a before/after in one process)")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=64)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    torch.manual_seed(0)
    base = GPT(vocab=args.vocab, dim=args.dim, heads=args.heads, layers=args.layers)
    steps = args.cycles * args.every
    train = batches(steps, batch=args.batch, seq=args.seq, vocab=args.vocab, seed=1)
    val = batches(2, batch=args.batch, seq=args.seq, vocab=args.vocab, seed=2)
    names = ["ours"] + ([k for k in LENS_SETS if k != "ours"] if args.split else [])
    variants = [Variant("bare", base, args.compile, None, ())]
    variants += [Variant(n, base, args.compile, "monitorch_widget", LENS_SETS[n]) for n in names]
    if args.monitorch and not args.compile:
        variants.append(Variant("monitorch", base, False, "monitorch", LENS_SETS["ours"]))
    if args.rev is not None:
        from .hooks_ab import import_base

        import_base(".", args.rev)
        variants.append(Variant(f"base ({args.rev})", base, args.compile, "mw_base", LENS_SETS["ours"]))
    clock = CLOCKS[args.clock]
    load_start = os.getloadavg()[0]
    with silenced():
        for v in variants:
            v.block(train, val, args.cycles, args.every, clock)  # warm-up (and compilation)
            v.times.clear()
        for rep in range(args.reps):
            k = rep % len(variants)
            for v in variants[k:] + variants[:k]:
                v.block(train, val, args.cycles, args.every, clock)
    n_params = sum(p.numel() for p in base.parameters())
    print(f"GPT client: vocab {args.vocab}, dim {args.dim}, {args.heads} heads, {args.layers} layers "
          f"({n_params / 1e6:.2f} M parameters), batch {args.batch} x {args.seq} tokens, tick every {args.every} "
          f"steps; {'compiled' if args.compile else 'uncompiled'}; {args.reps} interleaved repetitions of "
          f"{args.cycles} cycles; clock={args.clock}, threads={args.threads}; load average "
          f"{load_start:.2f} (start), {os.getloadavg()[0]:.2f} (end)")
    print("| variant | ms/step | x bare | 95% interval |")
    print("|---|---|---|---|")
    bare = variants[0].times
    for v in variants:
        ratios = [t / b for t, b in zip(v.times, bare)]
        lo, hi = bootstrap(ratios, statistics.median)
        print(f"| {v.name} | {statistics.median(v.times) * 1e3:.2f} | {statistics.median(ratios):.3f} "
              f"| {lo:.3f}-{hi:.3f} |")


if __name__ == "__main__":
    main()
