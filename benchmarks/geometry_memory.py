"""State memory of the geometry lenses vs the watched parameters' bytes (not a unit test; nothing is timed).

Trains a small GPT-like MLP stack a few steps with each lens attached and reports the bytes each lens holds
between steps (its copies of parameters / gradients; the few KiB of result rows are not counted).

    python benchmarks/geometry_memory.py [--width 256] [--depth 4]
"""

from __future__ import annotations

import argparse
import warnings

import torch
from torch import nn

from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import ParameterGradientGeometry, ParameterNorm, ParameterUpdateGeometry


def model_of(width: int, depth: int) -> nn.Module:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, 4 * width), nn.ReLU(), nn.Linear(4 * width, width)]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def nbytes(params: list[torch.Tensor]) -> int:
    return sum(p.numel() * p.element_size() for p in params)


def measure(width: int, depth: int) -> list[tuple[str, int, int]]:
    rows = []
    for label, make, names in [
        ("ParameterUpdateGeometry(opt)", lambda o: ParameterUpdateGeometry(o), ("weight", "bias")),
        ("ParameterUpdateGeometry(opt, compute_correlation=False)",
         lambda o: ParameterUpdateGeometry(o, compute_correlation=False), ("weight", "bias")),
        ("ParameterUpdateGeometry(opt, parameters=['weight'])",
         lambda o: ParameterUpdateGeometry(o, parameters=["weight"]), ("weight",)),
        ("ParameterGradientGeometry()", lambda o: ParameterGradientGeometry(), ("weight", "bias")),
        ("ParameterGradientGeometry(compute_correlation=False)",
         lambda o: ParameterGradientGeometry(compute_correlation=False), ("weight", "bias")),
        ("ParameterNorm()", lambda o: ParameterNorm(), ("weight", "bias")),
    ]:
        torch.manual_seed(0)
        model = model_of(width, depth)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        lens = make(opt)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ins = PyTorchInspector([lens], visualizer="none", module=model)
        for _ in range(3):
            x, y = torch.randn(32, width), torch.randint(0, 10, (32,))
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        held = lens.bytes_held() if hasattr(lens, "bytes_held") else 0
        watched = nbytes([p for n, p in model.named_parameters() if n.rsplit(".", 1)[-1] in names])
        rows.append((label, held, watched))
        ins.tick_epoch()
        ins.detach()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=4)
    args = parser.parse_args()
    rows = measure(args.width, args.depth)
    print(f"model: {args.depth} blocks of Linear({args.width}, {4 * args.width}) / Linear({4 * args.width}, "
          f"{args.width}), AdamW, 3 steps")
    print(f"{'lens':58s} {'held MiB':>9s} {'watched MiB':>12s} {'held/watched':>13s}")
    for label, held, watched in rows:
        print(f"{label:58s} {held / 2**20:9.2f} {watched / 2**20:12.2f} {held / watched:13.2f}")


if __name__ == "__main__":
    main()
