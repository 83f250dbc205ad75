"""One gradient observation row (``Layout.compute``), this checkout against another revision, on the same fresh
gradients right after each backward pass.

    .venv/bin/python -m benchmarks.row_ab --rev 0585357 --workload seed --steps 3000
    .venv/bin/python -m benchmarks.row_ab --rev 0585357 --workload mlp512 --fused --only weight

Both revisions' ``Layout`` classes are imported side by side (the base one from ``git archive``, as
``benchmarks.hooks_ab`` does) and built for the same parameters. After every backward pass of a bare training
loop both compute a row from the same gradients, in alternating order; only the first one is timed (the
second would find the gradients in cache, where the first found them as the backward pass left them). Reported:
median CPU time of the thread (``time.thread_time_ns``) with a bootstrap 95% interval. ``--fused`` builds the
layouts with the compiled row (``collect/compiled_counts.py``) for gradients of ``FUSE_MIN`` elements or more,
as for a torch.compile'd model; ``--only weight|bias`` keeps one kind of parameter.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import time
import types
from typing import Any

import torch
from torch import nn

from .common import bootstrap
from .hooks_ab import import_base


def workload(name: str) -> tuple[nn.Module, torch.Tensor, int]:
    if name == "seed":
        return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2)), \
            torch.randn(8, 2), 2
    if name == "deep50":
        layers: list[nn.Module] = []
        for _ in range(50):
            layers += [nn.Linear(256, 256), nn.ReLU()]
        return nn.Sequential(*layers), torch.randn(64, 256), 256
    if name == "mlp512":  # benchmarks/compiled.py's MLP (run eagerly: the row is what is timed)
        layers = [nn.Linear(64, 512), nn.ReLU()]
        for _ in range(6):
            layers += [nn.Linear(512, 512), nn.ReLU()]
        return nn.Sequential(*layers, nn.Linear(512, 10)), torch.randn(64, 64), 10
    raise SystemExit(f"unknown workload {name!r}: seed, deep50 or mlp512")


def layout(pkg: Any, params: list[tuple[nn.Module, str, nn.Parameter]], fused: bool) -> Any:
    units = importlib.import_module(pkg.__name__ + ".collect.units").parameter_units
    cls = importlib.import_module(pkg.__name__ + ".collect.gradient_layout").Layout
    sites = [types.SimpleNamespace(module=m, units=units(m, n, p.shape), numel=p.numel(), shards=None,
                                   bank_row=types.SimpleNamespace(index=i)) for i, (m, n, p) in enumerate(params)]
    return cls(sites, torch.device("cpu"), 1e-8, fused=fused)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default=".", help="the git checkout holding --rev (default: this one)")
    ap.add_argument("--rev", default="HEAD")
    ap.add_argument("--workload", default="seed")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--fused", action="store_true")
    ap.add_argument("--only", choices=("weight", "bias"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    import monitorch_widget as new
    base = import_base(args.base, args.rev)
    model, x, n_out = workload(args.workload)
    y = torch.randint(0, n_out, (x.shape[0],))
    params = [(m, n, p) for m in model.modules() for n, p in m.named_parameters(recurse=False)
              if args.only in (None, n)]
    rows = {"base": layout(base, params, args.fused), "new": layout(new, params, args.fused)}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times: dict[str, list[float]] = {"base": [], "new": []}
    for step in range(args.steps + 20):
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        grads = [p.grad for _, _, p in params]
        order = ("base", "new") if step % 2 else ("new", "base")
        for k, name in enumerate(order):
            row = rows[name]
            row.used = 0  # the same row every time: no fold in the timed loop
            t0 = time.thread_time_ns()
            row.compute(grads)
            if k == 0 and step >= 20:
                times[name].append((time.thread_time_ns() - t0) / 1e3)
        opt.step()
    print(f"{args.workload}{' fused' if args.fused else ''}{' ' + args.only if args.only else ''}: "
          f"Layout.compute, first after backward, thread CPU time, {args.steps // 2} steps each")
    for name, ts in times.items():
        lo, hi = bootstrap(ts)
        print(f"  {name:5s} {statistics.median(ts):9.1f} us  (95% interval {lo:.1f}-{hi:.1f})")


if __name__ == "__main__":
    main()
