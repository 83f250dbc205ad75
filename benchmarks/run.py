"""Run all monitorch-widget benchmarks.

    .venv/bin/python -m benchmarks                      # everything, threads=1 and default
    .venv/bin/python -m benchmarks --quick              # fewer repeats / sizes (~1-2 min)
    .venv/bin/python -m benchmarks --only mlp2d,cnn --threads 1
    .venv/bin/python benchmarks/run.py ...              # same thing

Workload keys for --only: mlp2d, deep, cnn, tick, transport. Not part of the unit tests.
See benchmarks/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

if __package__ in (None, ''):  # `python benchmarks/run.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = 'benchmarks'

import torch

from benchmarks import common
from benchmarks.common import fmt_ms, fmt_us, import_monitorch, import_ours, print_table, set_clock
from benchmarks.steps import bench_workload, paired_ratio, summarize
from benchmarks.workloads import all_workloads

ALL_KEYS = ('mlp2d', 'deep', 'cnn', 'tick', 'transport')
VARIANTS = ['bare', 'empty-hooks', 'read-pass', 'ours', 'monitorch']


def cpu_model() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown CPU'


def machine_line() -> str:
    return (f'{cpu_model()}, {os.cpu_count()} logical CPUs; Python {platform.python_version()}, '
            f'torch {torch.__version__}')


def run_steps(keys, threads_list, quick: bool, repeats: int | None) -> list[str]:
    """Training-step tables; returns the list of target verdict lines."""
    verdicts: list[str] = []
    wls = [w for w in all_workloads(quick) if w.group in keys]
    if not wls:
        return verdicts
    reps = repeats or (5 if quick else 11)
    warm = 1 if quick else 2
    for th in threads_list:
        torch.set_num_threads(th)
        print(f'\n## Training steps, torch threads = {th} '
              f'(median per-step {common.CLOCK_NAME} ms over {reps} interleaved blocks; tick every K steps, amortised)\n')
        headers = ['workload', 'K', 'variant', 'hooks', 'ms/step', 'x bare', 'train-only x', 'tick ms',
                   'us/hook-call', 'target']
        rows = []
        messages: list[str] = []
        for wl in wls:
            t0 = time.perf_counter()
            vs = bench_workload(wl, VARIANTS, min(reps, wl.max_repeats or reps), warm, messages)
            bare = next(v for v in vs if v.name == 'bare')
            n_sites = next((v.n_hooks for v in vs if v.name == 'empty-hooks'), 0)
            sb = summarize(bare)
            for v in vs:
                s = summarize(v)
                ratio = paired_ratio(v, bare)
                tr_ratio = paired_ratio(v, bare, 'train_times')
                per_hook = (s['train'] - sb['train']) / n_sites if n_sites and v is not bare else float('nan')
                target = ''
                if v.name == 'ours' and wl.target is not None:
                    ok = ratio <= wl.target
                    target = f'{"PASS" if ok else "MISS"} (<= {wl.target:.2f}x)'
                    verdicts.append(f'threads={th} {wl.name}: ours {ratio:.3f}x bare, target <= {wl.target:.2f}x '
                                    f'-> {"PASS" if ok else "MISS"}')
                rows.append([
                    wl.name, str(wl.steps_per_epoch), v.name,
                    str(n_sites) if v.name != 'bare' else '0',
                    fmt_ms(s['step']), f'{ratio:.3f}', f'{tr_ratio:.3f}',
                    fmt_ms(s['tick']), fmt_us(per_hook), target,
                ])
            print(f'\n{wl.name}: {wl.note} ({time.perf_counter() - t0:.0f}s wall)\n', flush=True)
            print_table(headers, rows)
            rows = []
        for m in dict.fromkeys(messages):
            print(f'note: {m}')
    return verdicts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog='python -m benchmarks', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--quick', action='store_true', help='fewer repeats and sizes')
    p.add_argument('--only', default=','.join(ALL_KEYS),
                   help=f'comma-separated subset of {",".join(ALL_KEYS)} (default: all)')
    p.add_argument('--threads', default='both', choices=['1', 'default', 'both'],
                   help='torch.set_num_threads(1), the default, or both (default: both)')
    p.add_argument('--repeats', type=int, default=None, help='interleaved blocks per variant')
    p.add_argument('--clock', default='cpu', choices=['cpu', 'wall'],
                   help='cpu: CPU time of this process (default; robust on a shared machine); wall: perf_counter')
    args = p.parse_args(argv)

    set_clock(args.clock)
    keys = [k.strip() for k in args.only.split(',') if k.strip()]
    bad = [k for k in keys if k not in ALL_KEYS]
    if bad:
        p.error(f'unknown --only keys {bad}; choose from {ALL_KEYS}')
    default_threads = torch.get_num_threads()
    threads_list = {'1': [1], 'default': [default_threads], 'both': [1, default_threads]}[args.threads]
    if default_threads == 1 and args.threads == 'both':
        threads_list = [1]

    print(f'# monitorch-widget benchmarks\n\nmachine: {machine_line()}; default torch threads = {default_threads}; '
          f'clock = {args.clock}; load average at start {os.getloadavg()[0]:.1f}')
    ours, why = import_ours()
    mt, why_mt = import_monitorch()
    print(f'ours: {"monitorch_widget" if ours else "UNAVAILABLE - " + str(why)}')
    if mt is not None:
        import importlib.metadata as md

        try:
            ver = md.version('monitorch')
        except md.PackageNotFoundError:
            ver = '?'
        print(f'monitorch: {ver}')
    else:
        print(f'monitorch: UNAVAILABLE - {why_mt}')

    verdicts = run_steps(keys, threads_list, args.quick, args.repeats)

    if 'tick' in keys or 'transport' in keys:
        from benchmarks.tick import run_tick_and_transport

        torch.set_num_threads(default_threads)
        verdicts += run_tick_and_transport('tick' in keys, 'transport' in keys, args.quick)

    print(f'\nload average at end {os.getloadavg()[0]:.1f}')
    if verdicts:
        print('\n## Targets\n')
        for v in verdicts:
            print(f'- {v}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
