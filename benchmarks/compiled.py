"""A torch.compile'd model: the compiled step with the parameter and loss lenses vs the compiled bare step.

    .venv/bin/python -m benchmarks.compiled [--reps 9] [--steps 40] [--threads 1]

Two copies of one MLP are compiled once each (same weights, same batches); blocks of ``--steps`` optimizer
steps alternate between them (interleaved, so machine noise hits both alike). Reported: median ms per step
of each, and the median of the per-pair ratios with a bootstrap 95% interval. Target (issue 12): <= 1.05x.
Dynamo's recompile counter is printed too: it must stay 0 after warm-up.
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import time

import torch
from torch import nn
from torch._dynamo.utils import counters


def model(width: int = 512, blocks: int = 6) -> nn.Module:
    layers: list[nn.Module] = [nn.Linear(64, width), nn.ReLU()]
    for _ in range(blocks):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def lenses() -> list:
    from monitorch_widget.lens import LossMetrics, ParameterGradientActivation
    return [LossMetrics(loss_fn=nn.CrossEntropyLoss()), ParameterGradientActivation()]


class Variant:
    def __init__(self, base: nn.Module, monitored: bool) -> None:
        import monitorch_widget as mw
        self.model = copy.deepcopy(base)
        self.compiled = torch.compile(self.model)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.inspector = None
        self.loss_fn: nn.Module = nn.CrossEntropyLoss()
        if monitored:
            ls = lenses()
            self.loss_fn = ls[0]._loss_fn
            self.inspector = mw.PyTorchInspector(ls, visualizer="none", module=self.compiled)

    def steps(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
        t0 = time.perf_counter()
        for x, y in batches:
            self.opt.zero_grad(set_to_none=True)
            self.loss_fn(self.compiled(x), y).backward()
            self.opt.step()
        if self.inspector is not None:
            self.inspector.tick_epoch()  # one tick per block: the seed ticks once per few steps too
        return (time.perf_counter() - t0) / len(batches)


def bootstrap(ratios: list[float], n: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(n))
    return meds[int(0.025 * n)], meds[int(0.975 * n) - 1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = model()
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(64, 64, generator=g), torch.randint(0, 10, (64,), generator=g)) for _ in range(args.steps)]
    bare, ours = Variant(base, False), Variant(base, True)
    for v in (bare, ours):  # compile + warm up
        v.steps(batches[:3])
    counters.clear()
    pairs = []
    for i in range(args.reps):
        order = (bare, ours) if i % 2 == 0 else (ours, bare)
        t = {id(v): v.steps(batches) for v in order}
        pairs.append((t[id(bare)], t[id(ours)]))
    ratios = [o / b for b, o in pairs]
    lo, hi = bootstrap(ratios)
    print(f"compiled MLP, {sum(p.numel() for p in base.parameters()):,} parameters, batch 64, threads={args.threads}")
    print(f"compiled bare      {statistics.median(b for b, _ in pairs) * 1e3:8.3f} ms/step")
    print(f"compiled + lenses  {statistics.median(o for _, o in pairs) * 1e3:8.3f} ms/step "
          f"(LossMetrics(loss_fn=...), ParameterGradientActivation(); one tick per {args.steps} steps)")
    print(f"ratio              {statistics.median(ratios):.3f}x  (95% bootstrap interval {lo:.3f}-{hi:.3f}; "
          f"target <= 1.05x: {'met' if hi <= 1.05 else 'not met' if lo > 1.05 else 'inside the noise'})")
    print(f"recompiles after warm-up: {sum(counters['recompiles'].values())}, "
          f"graph breaks: {sum(counters['graph_break'].values())}")


if __name__ == "__main__":
    main()
