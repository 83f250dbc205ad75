"""GPU check: zero host syncs per monitored batch, and ours vs bare on CUDA.

    .venv/bin/python -m benchmarks.gpu            # needs a CUDA device; ~4 min on an H200
    .venv/bin/python benchmarks/gpu.py --allow-cpu # smoke-test the script on CPU (sync check is a no-op)

1. Sync check: the seed CNN (batch 256) trains one monitored epoch of ``--sync-steps`` batches (more
   than a row buffer holds, so buffer folds happen inside the epoch) under
   ``torch.cuda.set_sync_debug_mode('error')``: any host synchronisation (``.item()``, a blocking copy,
   ``nonzero`` ...) raises. Loops: bare (checked first, so a failure is attributed correctly); the seed's
   lenses; all eight of monitorch's lenses; the seed's lenses with two backward passes per optimizer step
   (gradient accumulation). The tick at the epoch end runs with the mode reset (one device->host copy per
   tick is by design).
2. Kernel launches and copies per step of the seed CNN, bare vs ours, and the ops ours adds
   (``benchmarks/gpu_kernels.py``): a small model's GPU step is bound by the host's launches.
3. Timing, seed CNN: bare / empty hooks / ours / monitorch, A/B interleaved blocks of K steps + tick,
   medians and bootstrap intervals, ratios vs bare. Target: CNN ours <= 1.03x bare. Then
   (``benchmarks/gpu_grouping.py``) ours with gradients concatenated up to 2^10 (the default), 2^17 and
   2^22 elements, on the CNN and the eager GPT.
4. The GPT client (``benchmarks/gpu_gpt.py``), eager and ``torch.compile``'d: host syncs per training
   step, recompiles after warm-up, ms per step ours vs bare.
5. mlp2d / deep-50 timing rows (informational), while ``--budget-s`` is not spent.

Exit status: 0 ok (targets are reported, not enforced), 1 a monitored batch synchronised, 2 the bare
loop itself synchronised (harness problem). Without a CUDA device (and without --allow-cpu) it prints
a message and exits 0.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

if __package__ in (None, ''):  # `python benchmarks/gpu.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = 'benchmarks'

import torch
from torch import nn

from benchmarks.common import (
    NoopVisualizer,
    bootstrap,
    fmt_ms,
    fmt_us,
    import_ours,
    median,
    print_table,
    seed_lenses,
    set_clock,
)
from benchmarks.gpu_gpt import gpt_section
from benchmarks.gpu_grouping import grouping
from benchmarks.gpu_kernels import kernel_counts
from benchmarks.steps import bench_workload, paired_ratio, summarize
from benchmarks.workloads import CNN, Workload, all_workloads

GPU_TARGET = 1.03
# The GPT client at a size where the compiled gradient count runs (weights of 2**18 elements and more)
GPT_SIZE = {'vocab': 4096, 'dim': 512, 'heads': 8, 'layers': 4, 'batch': 16, 'seq': 256}
GPT_SMOKE = {'vocab': 64, 'dim': 32, 'heads': 4, 'layers': 2, 'batch': 4, 'seq': 16}


def _epoch(model, opt, loss_fn, data, n, micro: int = 1):
    """``n`` optimizer steps; with ``micro`` > 1, each step accumulates that many backward passes (batch split)."""
    nb = len(data)
    for i in range(n):
        x, y = data[i % nb]
        opt.zero_grad()
        for xs, ys in zip(x.chunk(micro), y.chunk(micro)):
            (loss_fn(model(xs), ys) / micro).backward()
        opt.step()


def sync_check(device: torch.device, steps: int) -> int:
    """Return 0 if no monitored batch synchronises, 1 if ours does, 2 if the bare loop does."""
    wl = Workload('cnn', 'cnn', CNN, (256, 1, 28, 28), 10, steps_per_epoch=steps, target=None)
    torch.manual_seed(0)
    base = wl.build().to(device)
    data = wl.make_data(device)
    cls, lens_mod = import_ours()
    if cls is None:
        print(f'sync check: ours not importable ({lens_mod})')
        return 1
    results = []
    code = 0
    for name in ('bare', 'ours', 'ours, all 8 lenses', 'ours, 2 backward passes per step'):
        model = copy.deepcopy(base)
        opt = torch.optim.Adam(model.parameters())
        loss_fn = nn.CrossEntropyLoss()
        insp = None
        micro = 2 if 'backward passes' in name else 1
        if name != 'bare':
            lenses = seed_lenses(lens_mod, loss_fn)
            if 'all 8' in name:  # monitorch's other five: output norms, gradient/update copies, dots, norms
                lenses += [lens_mod.OutputNorm(), lens_mod.OutputGradientGeometry(),
                           lens_mod.ParameterGradientGeometry(), lens_mod.ParameterNorm(),
                           lens_mod.ParameterUpdateGeometry(opt)]
            insp = cls(lenses, visualizer=NoopVisualizer(), module=model)
        # warm-up epoch (allocations, cuDNN autotune), outside the check
        _epoch(model, opt, loss_fn, data, 3, micro)
        if insp is not None:
            insp.tick_epoch()
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        err = None
        cuda = device.type == 'cuda'
        if cuda:
            torch.cuda.set_sync_debug_mode('error')
        try:
            _epoch(model, opt, loss_fn, data, steps, micro)
        except RuntimeError as e:
            err = e
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode('default')
        if insp is not None:
            insp.tick_epoch()  # the tick may copy to the host: allowed
            insp.detach()
        if err is None:
            results.append([name, str(steps), 'none', 'PASS'])
        else:
            msg = str(err).strip().splitlines()[0][:90]
            results.append([name, str(steps), msg, 'FAIL'])
            code = code or (2 if name == 'bare' else 1)
            import traceback

            print(f'--- {name}: host sync inside a training batch ---', file=sys.stderr)
            traceback.print_exception(err, file=sys.stderr)
            if name == 'bare':
                break
    print(f'\n## Host syncs per training batch (set_sync_debug_mode("error"), device={device})\n')
    print_table(['loop', 'batches', 'sync raised', 'result'], results)
    return code


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog='python -m benchmarks.gpu', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--allow-cpu', action='store_true', help='run on CPU when no CUDA device (smoke test)')
    p.add_argument('--sync-steps', type=int, default=160, help='batches in the sync-checked epoch')
    p.add_argument('--repeats', type=int, default=15, help='interleaved blocks per variant')
    p.add_argument('--only-cnn', action='store_true', help='skip the informational mlp2d / deep-50 rows')
    p.add_argument('--no-gpt', action='store_true', help='skip the GPT client (eager and compiled)')
    p.add_argument('--no-grouping', action='store_true', help='skip the SMALL (gradient grouping) comparison')
    p.add_argument('--no-compile', action='store_true', help='GPT client eager only')
    p.add_argument('--budget-s', type=float, default=240, help='skip mlp2d / deep-50 once this much time is spent')
    args = p.parse_args(argv)

    if torch.cuda.is_available():
        device = torch.device('cuda')
        torch.backends.cudnn.benchmark = True
        print(f'# monitorch-widget GPU check\n\ndevice: {torch.cuda.get_device_name(device)}, torch {torch.__version__}')
    elif args.allow_cpu:
        device = torch.device('cpu')
        print('# monitorch-widget GPU check (CPU smoke test: the sync check is a no-op)\n')
        args.sync_steps = min(args.sync_steps, 8)
        args.repeats = min(args.repeats, 2)
    else:
        print('no CUDA device: nothing to do (use --allow-cpu for a smoke test)')
        return 0

    set_clock('wall')  # CPU time would not see the GPU; blocks are bracketed by cuda.synchronize()
    t_start = time.perf_counter()
    code = sync_check(device, args.sync_steps)
    elapsed = lambda: time.perf_counter() - t_start  # noqa: E731

    messages: list[str] = []
    krows, added = kernel_counts(device)
    print('\n## Seed CNN: kernels and copies per training step (torch.profiler, 5 steps)\n')
    print_table(['loop', 'kernels', 'launch calls', 'memcpy calls', 'profiled host us'], krows)
    print('\naten ops ours adds per step: ' + ', '.join(added))
    timing(device, ['cnn'], args.repeats, messages)
    if not args.no_grouping:
        k = 50 if device.type == 'cuda' else 2
        size = GPT_SIZE if device.type == 'cuda' else GPT_SMOKE
        print(f'\n## Gradients concatenated up to SMALL elements (benchmarks/gpu_grouping.py; blocks of {k} steps '
              f'+ tick, {args.repeats} interleaved repetitions)\n')
        print_table(['workload', 'variant', 'ms/step', 'x bare', '95% interval'],
                    grouping(device, args.repeats, k, size))
    if not args.no_gpt:
        size = GPT_SIZE if device.type == 'cuda' else GPT_SMOKE
        sync_rows, rows, gpt_code = gpt_section(device, args.repeats, size=size,
                                                modes=(False,) if args.no_compile else (False, True))
        code = code or gpt_code
        print('\n## GPT client: host syncs per training step (set_sync_debug_mode("error"))\n')
        print_table(['model', 'loop', 'steps', 'sync raised', 'result'], sync_rows)
        print(f'\n## GPT client: ms per optimizer step, {args.repeats} interleaved repetitions, wall clock\n')
        print_table(['model', 'mode', 'variant', 'ms/step', 'x bare', '95% interval', 'recompiles', 'warm-up s'],
                    rows)
    if not args.only_cnn:
        if elapsed() < args.budget_s:
            timing(device, ['mlp2d', 'deep-50'], args.repeats, messages)
        else:
            print(f'\n(mlp2d / deep-50 skipped: {elapsed():.0f} s spent, budget {args.budget_s} s)')
    for m in dict.fromkeys(messages):
        print(f'note: {m}')
    print(f'\ntotal {elapsed():.0f}s; exit status {code}')
    return code


def timing(device: torch.device, names: list[str], repeats: int, messages: list[str]) -> None:
    """Print the per-step table of bare / empty hooks / ours / monitorch for the workloads ``names``."""
    rows = []
    for wl in [w for w in all_workloads(quick=True) if w.name in names]:
        # GPU steps are ~100x faster than CPU ones: longer blocks so that a block still takes tens of ms
        wl.steps_per_epoch = {'cnn': 50, 'mlp2d': 200, 'deep-50': 50}[wl.name] if device.type == 'cuda' else 2
        vs = bench_workload(wl, ['bare', 'empty-hooks', 'ours', 'monitorch'], repeats, 2, messages, device=device)
        bare = next(v for v in vs if v.name == 'bare')
        n_sites = next((v.n_hooks for v in vs if v.name == 'empty-hooks'), 0)
        sb = summarize(bare)
        for v in vs:
            s = summarize(v)
            ratios = [a / b for a, b in zip(v.step_times, bare.step_times)]
            lo, hi = bootstrap(ratios, median)
            per_hook = (s['train'] - sb['train']) / n_sites if n_sites and v is not bare else float('nan')
            target = ''
            if v.name == 'ours' and wl.name == 'cnn':
                target = f'{"PASS" if hi <= GPU_TARGET else "MISS"} (<= {GPU_TARGET:.2f}x by the upper end)'
            rows.append([wl.name, str(wl.steps_per_epoch), v.name, fmt_ms(s['step']), f'{median(ratios):.3f}',
                         f'{lo:.3f}-{hi:.3f}', f'{paired_ratio(v, bare, "train_times"):.3f}', fmt_ms(s['tick']),
                         fmt_us(per_hook), target])
    print(f'\n## Training steps on {device} (median per-step ms over {repeats} interleaved blocks; '
          f'tick every K steps, amortised)\n')
    print_table(['workload', 'K', 'variant', 'ms/step', 'x bare', '95% interval', 'train-only x', 'tick ms',
                 'us/hook-call', 'target'], rows)


if __name__ == '__main__':
    sys.exit(main())
