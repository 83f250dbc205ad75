"""A torch.compile'd model: the compiled step with the parameter and loss lenses vs the compiled bare step.

    .venv/bin/python -m benchmarks.compiled [--reps 9] [--steps 40] [--threads 1] [--clock wall|cpu] [--eager]
    .venv/bin/python -m benchmarks.compiled --processes 4 --reps 15    # pooled over 4 processes

Copies of one MLP are compiled once each (same weights, same batches); blocks of ``--steps`` optimizer steps
rotate between them (interleaved, so machine noise hits all alike). Reported: median ms per step of each, and
the median of the per-pair ratios to bare with a bootstrap 95% interval. Target (issue 12): <= 1.05x.
Dynamo's recompile counter is printed too: it must stay 0 after warm-up.

``--processes N`` runs N such processes one after another and pools their blocks: within one process the
ratio is steady, but between processes it moved by several percent (1.003x and 1.078x in two runs of 41
blocks each, minutes apart), with where each copy's tensors landed in memory; the build order alternates.

Variants: ``compiled bare``; ``compiled + lenses`` (large gradients read by the compiled row,
collect/compiled_counts.py); with ``--eager`` also ``eager statistic`` (the same lenses with the eager
formulation, four passes per large gradient: the code before the compiled row), in the same rotation.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import torch
from torch import nn
from torch._dynamo.utils import counters

from .common import bootstrap


def model(width: int = 512, blocks: int = 6) -> nn.Module:
    layers: list[nn.Module] = [nn.Linear(64, width), nn.ReLU()]
    for _ in range(blocks):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def lenses() -> list:
    from monitorch_widget.lens import LossMetrics, ParameterGradientActivation
    return [LossMetrics(loss_fn=nn.CrossEntropyLoss()), ParameterGradientActivation()]


@contextlib.contextmanager
def statistic(fused: bool) -> Iterator[None]:
    """Layouts made inside (at the first backward pass) read large gradients compiled or eagerly."""
    from monitorch_widget.collect import compiled_counts
    saved = compiled_counts.ENABLED
    compiled_counts.ENABLED = fused
    try:
        yield
    finally:
        compiled_counts.ENABLED = saved


class Variant:
    def __init__(self, name: str, base: nn.Module, monitored: bool, fused: bool = True) -> None:
        import monitorch_widget as mw
        self.name = name
        self.model = copy.deepcopy(base)
        self.compiled = torch.compile(self.model)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.inspector = None
        self.loss_fn: nn.Module = nn.CrossEntropyLoss()
        self.fused = fused
        if monitored:
            ls = lenses()
            self.loss_fn = ls[0]._loss_fn
            self.inspector = mw.PyTorchInspector(ls, visualizer="none", module=self.compiled)

    def warm_up(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
        t0 = time.perf_counter()
        with statistic(self.fused):
            self.steps(batches, time.perf_counter)
        return time.perf_counter() - t0

    def steps(self, batches: list[tuple[torch.Tensor, torch.Tensor]], clock=time.perf_counter) -> float:
        t0 = clock()
        for x, y in batches:
            self.opt.zero_grad(set_to_none=True)
            self.loss_fn(self.compiled(x), y).backward()
            self.opt.step()
        if self.inspector is not None:
            self.inspector.tick_epoch()  # one tick per block: the seed ticks once per few steps too
        return (clock() - t0) / len(batches)



def run(args: argparse.Namespace) -> tuple[dict[str, list[float]], dict[str, float], int, int]:
    """One process: compile, warm up, then ``--reps`` rotated blocks; returns per-variant times per block."""
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = model()
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(64, 64, generator=g), torch.randint(0, 10, (64,), generator=g)) for _ in range(args.steps)]
    # Which copy is built (and compiled) first alternates between processes: where a model's tensors land in memory
    # shifts a step by a few percent either way, the same in every block of one process.
    order = [("compiled bare", False, True), ("compiled + lenses", True, True)]
    if args.eager:
        order.append(("  eager statistic", True, False))
    if args.order % 2:
        order.reverse()
    built = {name: Variant(name, base, monitored, fused) for name, monitored, fused in order}
    variants = [built[name] for name in ("compiled bare", "compiled + lenses", "  eager statistic") if name in built]
    first = {v.name: v.warm_up(batches[:3]) for v in variants}  # compile + warm up
    counters.clear()
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    for i in range(args.reps):
        for v in variants[i % len(variants):] + variants[:i % len(variants)]:
            times[v.name].append(v.steps(batches, clock))
    return (times, first, sum(counters["recompiles"].values()), sum(counters["graph_break"].values()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: time.process_time (robust to other jobs on a shared machine)")
    ap.add_argument("--eager", action="store_true", help="also the lenses with the eager gradient statistic")
    ap.add_argument("--processes", type=int, default=1,
                    help="independent processes, one after another, their blocks pooled (build order alternates)")
    ap.add_argument("--order", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run(args)))
        return
    results = []
    for k in range(args.processes):
        if args.processes == 1:
            results.append(run(args))
            continue
        child = [sys.executable, "-m", "benchmarks.compiled", "--child", "--order", str(k), "--reps", str(args.reps),
                 "--steps", str(args.steps), "--threads", str(args.threads), "--clock", args.clock]
        child += ["--eager"] if args.eager else []
        out = subprocess.run(child, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    names = list(results[0][0])
    per_process = [[o / b for b, o in zip(r[0][names[0]], r[0][name])] for r in results for name in names[1:2]]
    print(f"compiled MLP, {sum(p.numel() for p in model().parameters()):,} parameters, batch 64, "
          f"threads={args.threads}, clock={args.clock}; one tick per {args.steps} steps; {args.processes} "
          f"process(es) x {args.reps} blocks; lenses: LossMetrics(loss_fn=...), ParameterGradientActivation()")
    for name in names:
        line = (f"{name:32s} {statistics.median(t for r in results for t in r[0][name]) * 1e3:8.3f} ms/step  "
                f"(warm-up {statistics.median(r[1][name] for r in results):5.1f} s)")
        if name != names[0]:
            ratios = [o / b for r in results for b, o in zip(r[0][names[0]], r[0][name])]
            lo, hi = bootstrap(ratios)
            verdict = "met" if hi <= 1.05 else "not met" if lo > 1.05 else "inside the noise"
            line += f"  {statistics.median(ratios):.3f}x  (95% interval {lo:.3f}-{hi:.3f}; <= 1.05x: {verdict})"
        print(line)
    if args.processes > 1:
        print("per process (x bare, lenses):", ", ".join(f"{statistics.median(r):.3f}" for r in per_process))
    print(f"recompiles after warm-up: {sum(r[2] for r in results)}, graph breaks: {sum(r[3] for r in results)}")


if __name__ == "__main__":
    main()
