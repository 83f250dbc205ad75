"""Where the seed's training step cannot go below: the cost of the same device ops with no bookkeeping at all.

    .venv/bin/python -m benchmarks.seed_floor [--reps 21] [--epochs 20]

The seed's 2-D MLP (batch 8, 7 Adam steps per epoch, no validation, no tick), one thread, CPU time, interleaved
blocks on deep copies of one model. Variants, each a set of hooks at exactly the sites the seed lens set hooks
(ReLU, ReLU, Softmax outputs; the loss module; six parameters; the root module; the optimizer step):

* ``bare`` - no hooks;
* ``no-op hooks`` - every hook registered, each returning at once: PyTorch's dispatch of our hooks;
* ``same ops, no bookkeeping`` - each hook runs the device ops our hooks run per call and nothing else: per
  activation output ``amax``, ``gt``, a per-channel ``sum`` into a preallocated row; the loss copied into a row;
  at the end of the backward pass (one engine callback) the six gradients flattened, ``abs_``, ``gt``, ``mul``,
  ``index_add_`` into one row. No pass rule, no lives, no step bookkeeping: a lower bound for this design;
* ``activations at pass end, copies`` / ``refs`` - the same, but the activation outputs only cloned (or only
  referenced) in their hooks and counted for all three sites at once at the end of the forward pass (flatten,
  ``abs_``, ``gt``, ``mul``, ``index_add_``): what batching the activation sites would save;
* ``ours`` - ``PyTorchInspector`` with the seed lens set (``visualizer='none'``; no tick in the blocks);
* each lens alone: its ops with no bookkeeping against ours, to tell where our Python costs.

Reported: µs per step and the excess over ``bare`` (median of the repetitions). Measured on the development
machine (2-core VM, load < 1): see benchmarks/README.md, "Sixth round".
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .workloads import mlp2d

_ENGINE = torch.autograd.Variable._execution_engine
_FLATTEN = torch._C._nn.flatten_dense_tensors
_ROWS = 4096


def _activations(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.Softmax))]


def _noop(*args: Any) -> None:
    return None


def _no_op_hooks(model: nn.Module, loss_fn: nn.Module, opt: torch.optim.Optimizer) -> None:
    for m in _activations(model):
        m.register_forward_hook(_noop)
    loss_fn.register_forward_hook(_noop)
    model.register_forward_pre_hook(_noop)
    for p in model.parameters():
        p.register_post_accumulate_grad_hook(_noop)
    opt.register_step_pre_hook(_noop)
    opt.register_step_post_hook(_noop)


def _widths(model: nn.Module) -> list[int]:
    """The output width of each activation module (one no_grad pass of one sample, before any hook)."""
    out: list[int] = []
    handles = [m.register_forward_hook(lambda m, a, y: out.append(y.shape[-1]) and None) for m in _activations(model)]
    with torch.no_grad():
        model(torch.zeros(1, 2))
    for h in handles:
        h.remove()
    return out


def _same_ops(batched: str | None, parts: str = "LOG") -> Callable[[nn.Module, nn.Module, torch.optim.Optimizer], None]:
    """The ops our hooks run (module docstring) for the lenses in ``parts`` (L: LossMetrics, O: OutputActivation,
    G: ParameterGradientActivation); ``batched``: the activation outputs counted together at the end of the
    forward pass, 'copy' (cloned in their hooks) or 'ref' (referenced), instead of in their hooks."""
    def install(model: nn.Module, loss_fn: nn.Module, opt: torch.optim.Optimizer) -> None:
        acts, widths = _activations(model), _widths(model)
        model.register_forward_pre_hook(_noop)
        if "G" in parts:
            opt.register_step_pre_hook(_noop)
            opt.register_step_post_hook(_noop)
        eps, zero = torch.tensor(1e-8), torch.tensor(0.0)
        at = [0]
        if "O" not in parts:
            pass
        elif batched is None:
            for m, width in zip(acts, widths):
                rows = list(torch.zeros(_ROWS, width).unbind(0))
                checks = list(torch.zeros(_ROWS).unbind(0))
                scratch = torch.empty(8, width)

                def hook(mod: nn.Module, args: Any, out: torch.Tensor, rows: list = rows, checks: list = checks,
                         scratch: torch.Tensor = scratch) -> None:
                    y = out.detach()
                    n = at[0] = (at[0] + 1) % _ROWS
                    torch.amax(y, out=checks[n])
                    torch.sum(torch.gt(y, eps, out=scratch), 0, out=rows[n])
                m.register_forward_hook(hook)
        else:
            stash: list[torch.Tensor] = []
            starts = [sum(widths[:i]) for i in range(len(widths))]
            per_element = torch.cat([torch.arange(w).repeat(8) + s for w, s in zip(widths, starts)])
            n_act = per_element.numel()
            act_index = torch.cat([per_element, torch.full((n_act,), sum(widths))])
            act_source = torch.empty(2 * n_act)
            act_rows = list(torch.zeros(_ROWS, sum(widths) + 1).unbind(0))
            clone = batched == "copy"

            def stash_hook(mod: nn.Module, args: Any, out: torch.Tensor) -> None:
                stash.append(out.detach().clone() if clone else out.detach())

            def pass_end(mod: nn.Module, args: Any, out: Any) -> None:
                if len(stash) == len(acts) and stash[0].shape[0] == 8:
                    magnitude = _FLATTEN(stash).abs_()
                    torch.gt(magnitude, eps, out=act_source[:n_act])
                    torch.mul(magnitude, zero, out=act_source[n_act:])
                    n = at[0] = (at[0] + 1) % _ROWS
                    act_rows[n].index_add_(0, act_index, act_source)
                stash.clear()
            for m in acts:
                m.register_forward_hook(stash_hook)
            model.register_forward_hook(pass_end)
        losses = list(torch.zeros(_ROWS, 1).unbind(0))
        if "L" in parts:
            loss_fn.register_forward_hook(lambda mod, args, out: losses[at[0]].copy_(out.detach()) and None)
        if "G" not in parts:
            return
        params = list(model.parameters())
        n_el = sum(p.numel() for p in params)
        index = torch.randint(0, 80, (2 * n_el,))
        source = torch.empty(2 * n_el)
        active, flags = source[:n_el], source[n_el:]
        grad_rows = list(torch.zeros(_ROWS, 80).unbind(0))
        queued = [False]

        def read() -> None:
            queued[0] = False
            magnitude = _FLATTEN([p.grad for p in params]).abs_()
            torch.gt(magnitude, eps, out=active)
            torch.mul(magnitude, zero, out=flags)
            row = grad_rows[at[0]]
            row.zero_()
            row.index_add_(0, index, source)

        def on_accumulate(p: torch.Tensor) -> None:
            if not queued[0]:
                queued[0] = True
                _ENGINE.queue_callback(read)
        for p in params:
            p.register_post_accumulate_grad_hook(on_accumulate)
    return install


def _ours(parts: str = "LOG") -> Callable[[nn.Module, nn.Module, torch.optim.Optimizer], Any]:
    def install(model: nn.Module, loss_fn: nn.Module, opt: torch.optim.Optimizer) -> Any:
        import monitorch_widget as mw
        from monitorch_widget import lens

        chosen = {"L": lambda: lens.LossMetrics(loss_fn=loss_fn), "O": lens.OutputActivation,
                  "G": lens.ParameterGradientActivation}
        return mw.PyTorchInspector([chosen[p]() for p in parts], visualizer="none", module=model)
    return install


VARIANTS: dict[str, Callable[..., Any] | None] = {
    "bare": None,
    "no-op hooks": _no_op_hooks,
    "same ops, no bookkeeping": _same_ops(None),
    "  activations at pass end, copies": _same_ops("copy"),
    "  activations at pass end, refs": _same_ops("ref"),
    "ours": _ours(),
    "same ops: LossMetrics only": _same_ops(None, "L"),
    "ours: LossMetrics only": _ours("L"),
    "same ops: OutputActivation only": _same_ops(None, "O"),
    "ours: OutputActivation only": _ours("O"),
    "same ops: gradient activation only": _same_ops(None, "G"),
    "ours: gradient activation only": _ours("G"),
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=21)
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    base = mlp2d()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(56, 2, generator=gen)
    y = (x[:, 0] * x[:, 1] > 0).long()
    runs = {}
    for name, install in VARIANTS.items():
        model = copy.deepcopy(base)
        loss_fn = nn.CrossEntropyLoss()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        keep = install(model, loss_fn, opt) if install is not None else None
        runs[name] = (model, loss_fn, opt, keep)
    times: dict[str, list[float]] = {name: [] for name in runs}

    def block(name: str, epochs: int) -> float:
        model, loss_fn, opt, _ = runs[name]
        t = time.process_time()
        for _ in range(epochs):
            for i in range(0, 56, 8):
                opt.zero_grad()
                loss_fn(model(x[i:i + 8]), y[i:i + 8]).backward()
                opt.step()
        return (time.process_time() - t) / (epochs * 7)

    names = list(runs)
    for name in names:
        block(name, 3)
    for rep in range(args.reps):
        k = rep % len(names)
        for name in names[k:] + names[:k]:
            times[name].append(block(name, args.epochs))
    bare = statistics.median(times["bare"])
    print(f"seed step floors: 2-D MLP, batch 8, {args.reps} interleaved repetitions of {args.epochs} x 7 steps, "
          "CPU time, one thread")
    print(f"{'variant':<34} {'us/step':>8} {'over bare':>10}")
    for name in names:
        t = statistics.median(times[name])
        print(f"{name:<34} {t * 1e6:8.1f} {(t - bare) * 1e6:10.1f}")


if __name__ == "__main__":
    main()
