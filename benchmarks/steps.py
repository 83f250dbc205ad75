"""Training-step overhead: bare loop vs floors vs ours vs monitorch, A/B interleaved in one process.

Each variant owns a deep copy of the same initial model, its own optimizer and its own loss module
(monitorch hooks the loss module and never unhooks it). One *block* = K training steps followed by
``tick_epoch()`` (variants without an inspector do nothing at the block end), i.e. one "epoch" of K
steps. After a warm-up the variants run their blocks in rotated order, repeatedly; per variant we keep
the per-step time of every block (tick amortised over the K steps) and, separately, the tick time.
Ratios are paired: for each repetition ``variant / bare`` of the same repetition, median over
repetitions.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .common import NoopVisualizer, import_monitorch, import_ours, median, now, seed_lenses, silenced
from .workloads import Workload, hooked_sites


@dataclass
class Variant:
    name: str
    model: nn.Module
    opt: torch.optim.Optimizer
    loss_fn: nn.Module
    tick: Callable[[], None] | None = None
    close: Callable[[], None] | None = None
    step_times: list[float] = field(default_factory=list)  # per-step, tick amortised
    train_times: list[float] = field(default_factory=list)  # per-step, steps only
    tick_times: list[float] = field(default_factory=list)  # per tick
    n_hooks: int = 0


def _train(model, opt, loss_fn, data, n: int) -> None:
    nb = len(data)
    for i in range(n):
        x, y = data[i % nb]
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()


def _new(name: str, base: nn.Module, make_opt) -> Variant:
    import copy

    model = copy.deepcopy(base)
    model.train()
    return Variant(name, model, make_opt(model), nn.CrossEntropyLoss())


def _floor_variant(name: str, base: nn.Module, make_opt, read: bool) -> Variant:
    """Hooks at exactly the sites the seed lens set hooks, doing nothing (read=False) or one read
    pass (a sum) over each hooked tensor (read=True)."""
    v = _new(name, base, make_opt)
    handles = []
    out_modules, params = hooked_sites(v.model)
    if read:

        def fwd(mod, inp, out):
            out.detach().sum()

        def grad(p):
            p.grad.sum()

    else:

        def fwd(mod, inp, out):
            return None

        def grad(p):
            return None

    for m in out_modules:
        handles.append(m.register_forward_hook(fwd))
    for p in params:
        handles.append(p.register_post_accumulate_grad_hook(grad))
    handles.append(v.loss_fn.register_forward_hook(fwd))
    v.n_hooks = len(handles)
    v.close = lambda: [h.remove() for h in handles]
    return v


def _inspector_variant(name: str, base: nn.Module, make_opt, insp_cls, lens_mod, visualizer, quiet: bool) -> Variant:
    v = _new(name, base, make_opt)
    if quiet:
        with silenced():
            insp = insp_cls(seed_lenses(lens_mod, v.loss_fn), visualizer=visualizer)
            insp.attach(v.model)

        def tick():
            with silenced():
                insp.tick_epoch()
    else:
        insp = insp_cls(seed_lenses(lens_mod, v.loss_fn), visualizer=visualizer)
        insp.attach(v.model)
        tick = insp.tick_epoch
    v.tick = tick
    v.inspector = insp  # type: ignore[attr-defined]

    def close():
        try:
            with silenced():
                insp.detach()
        except Exception:  # noqa: BLE001, S110 - best-effort cleanup
            pass

    v.close = close
    return v


def build_variants(wl: Workload, base: nn.Module, variants: list[str], messages: list[str],
                   ours_visualizer=None) -> list[Variant]:
    def make_opt(model):
        return torch.optim.Adam(model.parameters())

    out: list[Variant] = []
    for name in variants:
        if name == 'bare':
            out.append(_new('bare', base, make_opt))
        elif name == 'empty-hooks':
            out.append(_floor_variant(name, base, make_opt, read=False))
        elif name == 'read-pass':
            out.append(_floor_variant(name, base, make_opt, read=True))
        elif name == 'ours':
            cls, lens_mod = import_ours()
            if cls is None:
                messages.append(f'ours skipped: monitorch_widget not importable ({lens_mod})')
                continue
            try:
                out.append(_inspector_variant('ours', base, make_opt, cls, lens_mod,
                                                ours_visualizer or NoopVisualizer(), quiet=False))
            except Exception as e:  # noqa: BLE001
                messages.append(f'ours skipped on {wl.name}: {type(e).__name__}: {e}')
        elif name == 'monitorch':
            cls, lens_mod = import_monitorch()
            if cls is None:
                messages.append(f'monitorch skipped: {lens_mod}')
                continue
            out.append(_inspector_variant('monitorch', base, make_opt, cls, lens_mod, 'print', quiet=True))
        else:
            raise ValueError(name)
    return out


def run_block(v: Variant, data, k: int, record: bool, cuda: bool = False) -> None:
    gc.collect()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    sync()
    t0 = now()
    _train(v.model, v.opt, v.loss_fn, data, k)
    sync()
    t1 = now()
    if v.tick is not None:
        v.tick()
    sync()
    t2 = now()
    if record:
        v.train_times.append((t1 - t0) / k)
        v.step_times.append((t2 - t0) / k)
        if v.tick is not None:
            v.tick_times.append(t2 - t1)


def bench_workload(wl: Workload, variants: list[str], repeats: int, warmup: int, messages: list[str],
                   device: torch.device | None = None) -> list[Variant]:
    device = device or torch.device('cpu')
    cuda = device.type == 'cuda'
    torch.manual_seed(0)
    base = wl.build().to(device)
    data = wl.make_data(device)
    vs = build_variants(wl, base, variants, messages)
    k = wl.steps_per_epoch
    try:
        for _ in range(warmup):
            for v in vs:
                run_block(v, data, k, record=False, cuda=cuda)
        for r in range(repeats):
            order = vs[r % len(vs):] + vs[: r % len(vs)]
            for v in order:
                run_block(v, data, k, record=True, cuda=cuda)
    finally:
        for v in vs:
            if v.close is not None:
                v.close()
    return vs


def paired_ratio(v: Variant, bare: Variant, attr: str = 'step_times') -> float:
    a, b = getattr(v, attr), getattr(bare, attr)
    return median([x / y for x, y in zip(a, b)])


def summarize(v: Variant) -> dict:
    return {
        'step': median(v.step_times),
        'train': median(v.train_times),
        'tick': median(v.tick_times),
    }
