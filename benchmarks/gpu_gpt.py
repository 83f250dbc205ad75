"""The GPT client (issue 12) on a GPU, eager and ``torch.compile``'d: host syncs per step, recompiles, ours vs bare.

Called by ``benchmarks/gpu.py``. Each mode (eager, compiled) builds two copies of one model, ``bare`` and
``ours`` (the client's lenses: ``LossMetrics``, ``ParameterGradientActivation(parameters=['weight'])``,
``ParameterUpdateGeometry(optimizer, parameters=['weight'])``, ``is_active_fn=lambda _: model.training``), then:

1. one warm-up block each (compiles the training and evaluation graphs, and our compiled gradient count,
   which reads gradients of 2**18 elements or more: the default size has 1-2 M-element weights);
2. ``--sync-steps``-style check: ``every`` training steps under ``torch.cuda.set_sync_debug_mode('error')``,
   the tick after it with the mode reset (one device->host copy per tick is by design); dynamo's recompile
   counter is read across the checked and timed blocks;
3. ``reps`` interleaved timed blocks (``cycles`` x (``every`` steps + 2 evaluation batches + tick)), wall
   clock bracketed by ``torch.cuda.synchronize()``; the ratio is the median of per-repetition ratios.
"""

from __future__ import annotations

import statistics
import sys
import time
import traceback

import torch

from .common import bootstrap, silenced
from .gpt import GPT, LENS_SETS, Variant, batches


def _clock(device: torch.device):
    if device.type != 'cuda':
        return time.perf_counter

    def clock() -> float:
        torch.cuda.synchronize(device)
        return time.perf_counter()

    return clock


def _train_only(v: Variant, train: list) -> None:
    v.model.train()
    for x, y in train:
        v.run(x, y).backward()
        v.opt.step()
        v.opt.zero_grad(set_to_none=True)


def _recompiles() -> int:
    from torch._dynamo.utils import counters

    return sum(counters['recompiles'].values())


def gpt_section(device: torch.device, reps: int, *, size: dict, every: int = 10, cycles: int = 2,
                modes: tuple[bool, ...] = (False, True)) -> tuple[list[list[str]], list[list[str]], int]:
    """Return (sync rows, timing rows, exit code: 0 ok, 1 ours synchronised, 2 bare synchronised)."""
    torch.manual_seed(0)
    base = GPT(vocab=size['vocab'], dim=size['dim'], heads=size['heads'], layers=size['layers'])
    n_params = sum(p.numel() for p in base.parameters())
    on = lambda bs: [(x.to(device), y.to(device)) for x, y in bs]  # noqa: E731
    train = on(batches(cycles * every, batch=size['batch'], seq=size['seq'], vocab=size['vocab'], seed=1))
    val = on(batches(2, batch=size['batch'], seq=size['seq'], vocab=size['vocab'], seed=2))
    clock = _clock(device)
    cuda = device.type == 'cuda'
    sync_rows: list[list[str]] = []
    rows: list[list[str]] = []
    code = 0
    label = (f"GPT {n_params / 1e6:.1f} M params, batch {size['batch']}x{size['seq']}, tick every {every} steps")
    for compiled in modes:
        mode = 'compiled' if compiled else 'eager'
        t0 = time.perf_counter()
        with silenced():
            vs = [Variant('bare', base, compiled, None, (), device),
                  Variant('ours', base, compiled, 'monitorch_widget', LENS_SETS['ours'], device)]
            for v in vs:
                v.block(train, val, cycles, every, clock)  # warm-up and compilation
                v.times.clear()
        warm_s = time.perf_counter() - t0
        before = _recompiles()
        for v in vs:
            err = None
            if cuda:
                torch.cuda.synchronize(device)
                torch.cuda.set_sync_debug_mode('error')
            try:
                _train_only(v, train[:every])
            except RuntimeError as e:
                err = e
            finally:
                if cuda:
                    torch.cuda.set_sync_debug_mode('default')
            if v.inspector is not None:
                v.inspector.tick()
            if err is None:
                sync_rows.append([f'GPT {mode}', v.name, str(every), 'none', 'PASS'])
            else:
                sync_rows.append([f'GPT {mode}', v.name, str(every), str(err).strip().splitlines()[0][:90], 'FAIL'])
                print(f'--- GPT {mode} {v.name}: host sync inside a training step ---', file=sys.stderr)
                traceback.print_exception(err, file=sys.stderr)
                code = code or (2 if v.name == 'bare' else 1)
        with silenced():
            for r in range(reps):
                for v in (vs if r % 2 == 0 else vs[::-1]):
                    v.block(train, val, cycles, every, clock)
        recompiles = _recompiles() - before
        bare = vs[0].times
        for v in vs:
            ratios = [t / b for t, b in zip(v.times, bare)]
            lo, hi = bootstrap(ratios, statistics.median)
            rows.append([label, mode, v.name, f'{statistics.median(v.times) * 1e3:.3f}',
                         f'{statistics.median(ratios):.3f}', f'{lo:.3f}-{hi:.3f}',
                         str(recompiles) if compiled else '-', f'{warm_s:.0f}'])
        for v in vs:
            if v.inspector is not None:
                v.inspector.detach()
    return sync_rows, rows, code
