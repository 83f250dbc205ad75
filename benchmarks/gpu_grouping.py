"""Which gradients to concatenate on a GPU: the seed CNN and the GPT client with different ``SMALL``.

``collect/gradient_layout.py`` concatenates gradients of up to ``SMALL`` elements and counts them with two
``index_add_`` (about 6 device ops for the whole group); larger gradients cost 4 ops each. ``SMALL`` was set on
one CPU thread, where ``index_add_`` costs per element (2^10). On a GPU an op costs the host its launch whatever
its size, so a larger ``SMALL`` may pay there. This times bare vs ours at several values, interleaved, each
value set before its inspector is built (a layout reads ``SMALL`` when it is made).
"""

from __future__ import annotations

import copy
import statistics
import time

import torch
from torch import nn

from .common import NoopVisualizer, bootstrap, import_ours, seed_lenses
from .gpt import GPT, batches
from .workloads import CNN

VALUES = (1 << 10, 1 << 17, 1 << 22)


def _cnn(device: torch.device):
    torch.manual_seed(0)
    base = CNN().to(device)
    x = torch.randn(256, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (256,), device=device)

    def make(small: int | None):
        model = copy.deepcopy(base)
        opt = torch.optim.Adam(model.parameters())
        loss_fn = nn.CrossEntropyLoss()
        insp = None
        if small is not None:
            cls, lens = import_ours()
            insp = cls(seed_lenses(lens, loss_fn), visualizer=NoopVisualizer(), module=model)

        def step() -> None:
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()

        return step, insp

    return make


def _gpt(device: torch.device, size: dict):
    torch.manual_seed(0)
    base = GPT(vocab=size['vocab'], dim=size['dim'], heads=size['heads'], layers=size['layers'])
    (x, y), = [(a.to(device), b.to(device)) for a, b in batches(1, batch=size['batch'], seq=size['seq'],
                                                                vocab=size['vocab'], seed=1)]

    def make(small: int | None):
        model = copy.deepcopy(base).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
        insp = None
        if small is not None:
            cls, lens = import_ours()
            insp = cls([lens.LossMetrics(loss_fn=model), lens.ParameterGradientActivation(parameters=['weight'])],
                       visualizer=NoopVisualizer(), module=model)

        def step() -> None:
            model(x, y).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step, insp

    return make


def grouping(device: torch.device, reps: int, k: int, gpt_size: dict) -> list[list[str]]:
    """Rows: workload, variant, ms/step, x bare [95%], ops the gradient reading launches per step."""
    from monitorch_widget.collect import gradient_layout

    default = gradient_layout.SMALL
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    rows = []
    for wl, make in (('seed CNN', _cnn(device)), ('GPT eager', _gpt(device, gpt_size))):
        variants = {}
        try:
            for small in (None, *VALUES):
                if small is not None:
                    gradient_layout.SMALL = small
                variants['bare' if small is None else f'ours, SMALL=2^{small.bit_length() - 1}'] = make(small)
                gradient_layout.SMALL = default
                step, insp = variants[list(variants)[-1]]
                for _ in range(3):
                    step()
                if insp is not None:
                    insp.tick_epoch()
            times: dict[str, list[float]] = {n: [] for n in variants}
            names = list(variants)
            for r in range(reps):
                for n in names[r % len(names):] + names[:r % len(names)]:
                    step, insp = variants[n]
                    sync()
                    t0 = time.perf_counter()
                    for _ in range(k):
                        step()
                    if insp is not None:
                        insp.tick_epoch()
                    sync()
                    times[n].append((time.perf_counter() - t0) / k)
        finally:
            gradient_layout.SMALL = default
            for _, insp in variants.values():
                if insp is not None:
                    insp.detach()
        for n in names:
            ratios = [a / b for a, b in zip(times[n], times['bare'])]
            lo, hi = bootstrap(ratios, statistics.median)
            rows.append([wl, n, f'{statistics.median(times[n]) * 1e3:.3f}', f'{statistics.median(ratios):.3f}',
                         f'{lo:.3f}-{hi:.3f}'])
    return rows
