"""Shared helpers: silencing, no-op visualizer, optional imports, statistics, table printing."""

from __future__ import annotations

import contextlib
import io
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

# The clock every benchmark reads. 'cpu' = CPU time of this process (all its threads): robust on a
# shared machine, where wall time mostly measures the neighbours; 'wall' = time.perf_counter.
_CLOCKS = {'cpu': time.process_time, 'wall': time.perf_counter}
CLOCK_NAME = 'cpu'


def set_clock(name: str) -> None:
    global CLOCK_NAME
    CLOCK_NAME = name


def now() -> float:
    return _CLOCKS[CLOCK_NAME]()


class NoopVisualizer:
    """A visualizer with monitorch's ``AbstractVisualizer`` interface that draws nothing.

    Used for "ours" in the training-step benchmarks so that only the collection + tick pipeline
    is timed, not a particular front-end.
    """

    def register_tags(self, main_tag: str, tag_attr: Any) -> None:
        pass

    def plot_numerical_values(self, epoch, main_tag, values_dict, ranges_dict=None) -> None:
        pass

    def plot_probabilities(self, epoch, main_tag, values_dict) -> None:
        pass

    def plot_relations(self, epoch, main_tag, values_dict) -> None:
        pass


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Silence Python-level stdout (monitorch's 'print' visualizer writes there)."""
    with open(os.devnull, 'w') as devnull, contextlib.redirect_stdout(devnull):
        yield


def import_ours():
    """Return (PyTorchInspector, lens module) of monitorch_widget, or (None, reason)."""
    try:
        import monitorch_widget
        from monitorch_widget import lens as lens_mod

        insp = getattr(monitorch_widget, 'PyTorchInspector', None)
        if insp is None:
            from monitorch_widget.inspector import PyTorchInspector as insp  # type: ignore[no-redef]
        for n in ('LossMetrics', 'OutputActivation', 'ParameterGradientActivation'):
            getattr(lens_mod, n)
        return insp, lens_mod
    except Exception as e:  # noqa: BLE001 - the core is written concurrently; report why and skip
        return None, f'{type(e).__name__}: {e}'


def import_monitorch():
    """Return (PyTorchInspector, lens module) of monitorch 0.1.0.7, or (None, reason)."""
    try:
        with silenced():
            from monitorch import lens as lens_mod
            from monitorch.inspector import PyTorchInspector as insp
        return insp, lens_mod
    except Exception as e:  # noqa: BLE001
        return None, f'{type(e).__name__}: {e} (pip install monitorch==0.1.0.7)'


def seed_lenses(lens_mod, loss_fn, metrics=None):
    """The seed tutorial's lens set. (monitorch's LossMetrics hooks ``loss_fn`` when constructed: build it once.)"""
    return [
        lens_mod.LossMetrics(loss_fn=loss_fn, **({"metrics": metrics} if metrics else {})),
        lens_mod.OutputActivation(),
        lens_mod.ParameterGradientActivation(),
    ]


def median(xs):
    return statistics.median(xs) if xs else float('nan')


def fmt_ms(s: float) -> str:
    if math.isnan(s):
        return '-'
    ms = s * 1e3
    if ms >= 100:
        return f'{ms:.0f}'
    if ms >= 10:
        return f'{ms:.1f}'
    if ms >= 1:
        return f'{ms:.2f}'
    return f'{ms:.3f}'


def fmt_us(s: float) -> str:
    if math.isnan(s):
        return '-'
    return f'{s * 1e6:.1f}'


def print_table(headers: list[str], rows: list[list[str]], file=None) -> str:
    file = file or sys.stdout
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    buf = io.StringIO()
    line = '| ' + ' | '.join(h.ljust(w) for h, w in zip(headers, widths)) + ' |'
    buf.write(line + '\n')
    buf.write('|' + '|'.join('-' * (w + 2) for w in widths) + '|\n')
    for r in rows:
        buf.write('| ' + ' | '.join(c.ljust(w) for c, w in zip(r, widths)) + ' |\n')
    text = buf.getvalue()
    print(text, file=file, end='', flush=True)
    return text


def bootstrap(samples: Sequence[Any], stat: Callable[[Sequence[Any]], float] = statistics.median, n: int = 2000,
              seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of ``stat`` (default: the median) over ``samples`` resampled with replacement; the
    one every benchmark reports (a target is met when the upper end is at or below it)."""
    rng = random.Random(seed)
    values = sorted(stat(rng.choices(samples, k=len(samples))) for _ in range(n))
    return values[int(0.025 * n)], values[int(0.975 * n) - 1]


def train_epoch(model, opt, loss_fn, data, val=None) -> float:
    """One epoch of the A/B benchmarks: a step per batch of ``data``, then, with ``val`` = (x, y), a validation
    pass under ``model.eval()`` + ``no_grad``; returns its accuracy (0.5 without ``val``)."""
    model.train()
    for x, y in data:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    if val is None:
        return 0.5
    model.eval()
    with torch.no_grad():
        out = model(val[0])
        loss_fn(out, val[1])
        return (out.argmax(1) == val[1]).float().mean().item()

