"""GPU check: zero host syncs per monitored batch, and ours vs bare on CUDA.

    .venv/bin/python -m benchmarks.gpu            # needs a CUDA device; < 4 min on an H100
    .venv/bin/python benchmarks/gpu.py --allow-cpu # smoke-test the script on CPU (sync check is a no-op)

1. Sync check: the seed CNN (batch 256) trains one monitored epoch of ``--sync-steps`` batches (more
   than a row buffer holds, so buffer folds happen inside the epoch), with the seed's lenses and with the
   four geometry lenses, under
   ``torch.cuda.set_sync_debug_mode('error')``: any host synchronisation (``.item()``, a blocking copy,
   ``nonzero`` ...) raises. The bare loop is checked first (so a failure is attributed correctly); the
   tick at the epoch end runs with the mode reset (one device->host copy per tick is by design).
2. Timing: bare / empty hooks / ours / monitorch, A/B interleaved blocks of K steps + tick, medians,
   ratios vs bare. Target: CNN ours <= 1.03x bare.

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
    fmt_ms,
    fmt_us,
    import_ours,
    print_table,
    seed_lenses,
    set_clock,
)
from benchmarks.steps import bench_workload, paired_ratio, summarize
from benchmarks.workloads import CNN, Workload, all_workloads

GPU_TARGET = 1.03


def _epoch(model, opt, loss_fn, data, n):
    nb = len(data)
    for i in range(n):
        x, y = data[i % nb]
        opt.zero_grad()
        loss_fn(model(x), y).backward()
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
    for name in ('bare', 'ours', 'ours+geometry'):
        model = copy.deepcopy(base)
        opt = torch.optim.Adam(model.parameters())
        loss_fn = nn.CrossEntropyLoss()
        insp = None
        if name == 'ours':
            insp = cls(seed_lenses(lens_mod, loss_fn), visualizer=NoopVisualizer(), module=model)
        elif name == 'ours+geometry':  # the four geometry lenses: gradient/update copies, dots, norms
            lenses = [lens_mod.OutputGradientGeometry(), lens_mod.ParameterGradientGeometry(),
                      lens_mod.ParameterNorm(), lens_mod.ParameterUpdateGeometry(opt)]
            insp = cls(lenses, visualizer=NoopVisualizer(), module=model)
        # warm-up epoch (allocations, cuDNN autotune), outside the check
        _epoch(model, opt, loss_fn, data, 3)
        if insp is not None:
            insp.tick_epoch()
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        err = None
        cuda = device.type == 'cuda'
        if cuda:
            torch.cuda.set_sync_debug_mode('error')
        try:
            _epoch(model, opt, loss_fn, data, steps)
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

    wls = [w for w in all_workloads(quick=True) if w.name in ('cnn',) or (not args.only_cnn and w.name in ('mlp2d', 'deep-50'))]
    rows, messages = [], []
    for wl in wls:
        if device.type == 'cuda':
            # GPU steps are ~100x faster: longer blocks so a block still takes tens of ms
            wl.steps_per_epoch = {'cnn': 50, 'mlp2d': 200, 'deep-50': 50}[wl.name]
        else:
            wl.steps_per_epoch = 2
        vs = bench_workload(wl, ['bare', 'empty-hooks', 'ours', 'monitorch'], args.repeats, 2, messages, device=device)
        bare = next(v for v in vs if v.name == 'bare')
        n_sites = next((v.n_hooks for v in vs if v.name == 'empty-hooks'), 0)
        sb = summarize(bare)
        for v in vs:
            s = summarize(v)
            r = paired_ratio(v, bare)
            per_hook = (s['train'] - sb['train']) / n_sites if n_sites and v is not bare else float('nan')
            target = ''
            if v.name == 'ours' and wl.name == 'cnn':
                target = f'{"PASS" if r <= GPU_TARGET else "MISS"} (<= {GPU_TARGET:.2f}x)'
            rows.append([wl.name, str(wl.steps_per_epoch), v.name, fmt_ms(s['step']), f'{r:.3f}',
                         f'{paired_ratio(v, bare, "train_times"):.3f}', fmt_ms(s['tick']), fmt_us(per_hook), target])
    print(f'\n## Training steps on {device} (median per-step ms over {args.repeats} interleaved blocks; '
          f'tick every K steps, amortised)\n')
    print_table(['workload', 'K', 'variant', 'ms/step', 'x bare', 'train-only x', 'tick ms', 'us/hook-call',
                 'target'], rows)
    for m in dict.fromkeys(messages):
        print(f'note: {m}')
    print(f'\ntotal {time.perf_counter() - t_start:.0f}s; exit status {code}')
    return code


if __name__ == '__main__':
    sys.exit(main())
