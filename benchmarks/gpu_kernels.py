"""Kernel launches per training step, bare vs ours (``torch.profiler``), for ``benchmarks/gpu.py``.

A small model's GPU step is bound by the host launching kernels, not by the GPU: each eager op costs the host
its dispatch and launch whatever the tensor's size. This counts, over ``steps`` profiled steps of the seed CNN,
the kernels launched and the device-to-host / host-to-device copies per step, and lists the aten ops the
monitored step adds (calls per step), so the GPU overhead can be read as launches x host cost per launch.
"""

from __future__ import annotations

import copy
from collections import Counter

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from .common import NoopVisualizer, import_ours, seed_lenses
from .workloads import CNN

LAUNCH = ('cudaLaunchKernel', 'cudaLaunchKernelExC', 'cuLaunchKernel', 'cuLaunchKernelEx')
COPY = ('cudaMemcpyAsync', 'cudaMemcpy')


def _profile(model, opt, loss_fn, x, y, steps: int, cuda: bool) -> tuple[Counter, float, float]:
    def step() -> None:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    if cuda:
        torch.cuda.synchronize()
    with profile(activities=acts) as prof:
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize()
    calls: Counter = Counter()
    for e in prof.key_averages():
        calls[e.key] += e.count
    host = sum(e.self_cpu_time_total for e in prof.key_averages()) / steps
    kernels = sum(e.count for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA) / steps
    return calls, host, kernels


def _profile_tick(insp, cuda: bool) -> tuple[Counter, float, float]:
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    if cuda:
        torch.cuda.synchronize()
    with profile(activities=acts) as prof:
        insp.tick_epoch()
        if cuda:
            torch.cuda.synchronize()
    calls: Counter = Counter()
    for e in prof.key_averages():
        calls[e.key] += e.count
    host = sum(e.self_cpu_time_total for e in prof.key_averages())
    kernels = sum(e.count for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA)
    return calls, host, kernels


def kernel_counts(device: torch.device, steps: int = 5) -> tuple[list[list[str]], list[str]]:
    """Return (table rows: variant, kernels/step, launch calls/step, copies/step, profiled host us/step;
    lines 'op: +calls per step' for the ops ours adds)."""
    cuda = device.type == 'cuda'
    cls, lens_mod = import_ours()
    torch.manual_seed(0)
    base = CNN().to(device)
    x = torch.randn(256, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (256,), device=device)
    rows: list[list[str]] = []
    per: dict[str, Counter] = {}
    added: list[str] = []
    for name in ('bare', 'ours'):
        model = copy.deepcopy(base)
        opt = torch.optim.Adam(model.parameters())
        loss_fn = nn.CrossEntropyLoss()
        insp = cls(seed_lenses(lens_mod, loss_fn), visualizer=NoopVisualizer(), module=model) if name == 'ours' else None
        for _ in range(4):  # warm-up: allocations, cuDNN autotune, our layouts
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
        if insp is not None:
            insp.tick_epoch()
        calls, host, kernels = _profile(model, opt, loss_fn, x, y, steps, cuda)
        per[name] = calls
        rows.append([f'{name}: one training step', f'{kernels:.0f}', f'{sum(calls[k] for k in LAUNCH) / steps:.0f}',
                     f'{sum(calls[k] for k in COPY) / steps:.0f}', f'{host:.0f}'])
        if insp is not None:
            calls, host, kernels = _profile_tick(insp, cuda)
            rows.append(['ours: one tick (after 5 steps)', f'{kernels:.0f}', f'{sum(calls[k] for k in LAUNCH):.0f}',
                         f'{sum(calls[k] for k in COPY):.0f}', f'{host:.0f}'])
            added.append('tick: ' + ', '.join(f'{k}: {c}' for k, c in calls.most_common()
                                              if k.startswith('aten::') and c >= 2)[:600])
            insp.detach()
    for k in sorted(per['ours'], key=lambda k: per['bare'][k] - per['ours'][k]):
        d = (per['ours'][k] - per['bare'][k]) / steps
        if k.startswith('aten::') and d >= 0.5:
            added.append(f'{k}: +{d:.0f}')
    return rows, added
