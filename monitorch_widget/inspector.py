"""PyTorchInspector: attaches lenses to a model, ticks epochs, feeds the record and the visualizer.

Tick path (once per epoch): every lens folds its device buffers -> :func:`accum.to_host` copies all
streams to the host in one transfer per device -> lenses turn the summaries into monitorch-style calls ->
the record stores them as one row -> views (widget sync, print, a user's visualizer) follow.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

from .collect.faults import FaultLog, MonitorNotice, MonitorWarning
from .collect.optimizer_steps import STEPS, StepCounter
from .collect.progress import IntraEpochUpdates
from .collect.pushes import Pushes, check_number
from .collect.transfer import to_host
from .lens.base import AbstractLens, Call, LensContext
from .lens.coverage import coverage_notice
from .lens.loss_metrics import LossMetrics
from .record import Record
from .views.monitorch_adapter import WidgetVisualizer
from .views.print import PrintVisualizer
from .views.resolve import QuietVisualizer, resolve_visualizer


class InspectorState:
    """``counter``: the epoch the next tick records (starts at 1); ``attached``; ``is_active``."""

    def __init__(self, is_active_fn: int | Callable[[int], bool] = 1) -> None:
        if isinstance(is_active_fn, bool) or not (isinstance(is_active_fn, int) or callable(is_active_fn)):
            raise TypeError(f"is_active_fn= must be a positive int n (record every n-th epoch) or a function "
                            f"epoch -> bool, got {is_active_fn!r}")
        if isinstance(is_active_fn, int):
            if is_active_fn < 1:
                raise ValueError(f"is_active_fn={is_active_fn}: must be >= 1 (1 records every epoch)")
            n = is_active_fn
            self.is_active_fn: Callable[[int], bool] = lambda epoch: epoch % n == 0
        else:
            self.is_active_fn = is_active_fn
        self.counter = 1
        self.attached = False

    def tick(self, n_ticks: int = 1) -> int:
        self.counter += n_ticks
        return self.counter

    @property
    def is_active(self) -> bool:
        return bool(self.is_active_fn(self.counter))


def _check_lenses(lenses: Any) -> list[AbstractLens]:
    if isinstance(lenses, AbstractLens) or not isinstance(lenses, Iterable):
        raise TypeError("lenses= must be a list of lenses, e.g. [LossMetrics(loss_fn=loss_fn), OutputActivation()]")
    lenses = list(lenses)
    for i, lens in enumerate(lenses):
        if isinstance(lens, type) and issubclass(lens, AbstractLens):
            raise TypeError(f"lenses[{i}] is the class {lens.__name__}, not an instance; write {lens.__name__}()")
        if not isinstance(lens, AbstractLens):
            origin = type(lens).__module__
            hint = (" (a lens from the monitorch package: import it from monitorch_widget.lens instead)"
                    if origin.startswith("monitorch.") else "")
            raise TypeError(f"lenses[{i}] is a {type(lens).__name__}{hint}; accepted: lenses from "
                            "monitorch_widget.lens (LossMetrics, OutputActivation, ParameterGradientActivation, "
                            "OutputNorm)")
    for i, lens in enumerate(lenses):
        for j in range(i):
            if lenses[j] is lens:
                raise ValueError(f"lenses[{i}] is the same {type(lens).__name__} object as lenses[{j}]; "
                                 "a lens can be given once (create a second instance if you really want two)")
    return lenses


def _unwrap(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"attach() needs a torch.nn.Module, got {type(model).__name__}")
    if type(model).__name__ == "OptimizedModule" and hasattr(model, "_orig_mod"):
        raise TypeError("attach() got a torch.compile'd module: its compiled graph bypasses module hooks. Attach "
                        "the inspector to the uncompiled model (model, not torch.compile(model)) and train that "
                        "while monitoring")
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return model


def _traverse(module: nn.Module, depth: int, sep: str, prefix: str = "") -> Iterator[tuple[nn.Module, str, bool]]:
    """(module, name, is_leaf) in definition order; leaves are the modules at ``depth`` (or true leaves)."""
    children = list(module.named_children())
    if depth == 0 or not children:
        yield module, prefix, True
        return
    for name, child in children:
        yield from _traverse(child, depth - 1, sep, f"{prefix}{sep}{name}" if prefix else name)
    yield module, prefix, False


class PyTorchInspector:
    """Hooks a model for the given lenses and records one row per ``tick_epoch()``.

    Same constructor as ``monitorch.inspector.PyTorchInspector``. ``visualizer``: ``'widget'`` (default
    in a notebook), ``'print'`` (default elsewhere), ``'none'``, or any object with monitorch's visualizer
    interface. ``update_every``: refresh the record (and widget) every N training steps with a provisional
    estimate of the running epoch (int), or every N seconds (float); ``None`` (default) only at ticks.
    """

    def __init__(self, lenses: list[AbstractLens], *, visualizer: Any = None, module: nn.Module | None = None,
                 depth: int = -1, module_name_prefix: str = ".", train_loss_str: str = "train_loss",
                 non_train_loss_str: str = "val_loss", is_active_fn: int | Callable[[int], bool] = 1,
                 master_rank: int = 0, update_every: float | None = None) -> None:
        self.lenses = _check_lenses(lenses)
        if not isinstance(depth, int) or depth < -1:
            raise ValueError(f"depth={depth!r}: must be -1 (down to the leaves) or a non-negative int")
        if not isinstance(train_loss_str, str) or not isinstance(non_train_loss_str, str) or \
                train_loss_str == non_train_loss_str:
            raise ValueError("train_loss_str and non_train_loss_str must be two different strings")
        self.depth = depth
        self.module_name_prefix = module_name_prefix
        self.master_rank = master_rank
        self.state = InspectorState(is_active_fn)
        self._distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.is_main_process = not self._distributed or torch.distributed.get_rank() == master_rank
        if not self.is_main_process:
            visualizer = "none"  # every rank reduces and records; only the master rank draws
        self.history = Record()
        self.faults = FaultLog()
        self.faults.subscribe(self.history.problem)
        self._pushes = Pushes()
        self._ctx = LensContext(self.faults, self._pushes, train_loss_str, non_train_loss_str)
        self._train_loss_str = train_loss_str
        self._non_train_loss_str = non_train_loss_str
        self._model: nn.Module | None = None
        self._warned_metrics: set[str] = set()
        self._hidden: tuple[set[str], set[str], set[str]] = (set(), set(), set())
        self._widget_vis: WidgetVisualizer | None = None
        self.visualizer = resolve_visualizer(visualizer, self.history)
        if isinstance(self.visualizer, WidgetVisualizer):
            self._widget_vis = self.visualizer
        ours = (WidgetVisualizer, PrintVisualizer, QuietVisualizer)
        self._user_visualizer = None if isinstance(self.visualizer, ours) else self.visualizer
        for lens in self.lenses:
            lens.bind(self._ctx)
            for tag, attrs in lens.tags():
                self.history.register_tags(tag, attrs, lens=lens.lens_name)
            if self._user_visualizer is not None:
                lens.introduce_tags(self._user_visualizer)
        self._declared_metrics = {m for lens in self.lenses if isinstance(lens, LossMetrics) for m in lens.metrics}
        self._progress: IntraEpochUpdates | None = None
        self._steps = StepCounter()
        if update_every is not None:
            self._progress = IntraEpochUpdates(update_every, self.provisional_update, self.faults)
        self._epoch_started = time.time()
        if module is not None:
            self.attach(module)

    # --- the widget --------------------------------------------------------------------------------
    @property
    def widget(self) -> Any:
        """The live widget (one per inspector; display it any number of times)."""
        if self._widget_vis is None:
            self._widget_vis = WidgetVisualizer(self.history)
        widget = self._widget_vis.widget
        if widget.comm is None:  # closed by the user: a fresh one shows the whole record again
            self._widget_vis._widget = None
            widget = self._widget_vis.widget
        if not getattr(widget, "_mw_filters_bound", False):
            widget._mw_filters_bound = True
            widget.on_filters(self._apply_filters)
        return widget

    def _apply_filters(self, filters: dict[str, Any]) -> None:
        modules = set(filters.get("hidden_modules") or ())
        types = set(filters.get("hidden_types") or ())
        panels = set(filters.get("hidden_panels") or ())
        self._hidden = (modules, types, panels)
        self._apply_hidden()

    def _apply_hidden(self) -> None:
        modules, types, panels = self._hidden
        for lens in self.lenses:
            lens_tags = {t for t, _ in lens.tags()}
            if lens_tags and lens_tags <= panels:
                lens.set_hidden({s.name for s in lens.sites}, set())
            else:
                lens.set_hidden(modules, types)

    # --- attach / detach ---------------------------------------------------------------------------
    def attach(self, model: nn.Module, *, run_name: str | None = None) -> PyTorchInspector:
        """Hook ``model`` (a new run: epoch counter restarts at 1; earlier runs stay in the record).

        ``run_name`` labels the run in legends, the status line and saved histories (default
        ``"run <n>: <model class>"``); a non-string raises ``TypeError``.
        """
        if run_name is not None and not isinstance(run_name, str):
            raise TypeError(f"attach(run_name=...) must be a str or None, got {type(run_name).__name__}")
        model = _unwrap(model)
        if self.state.attached:
            self.detach()
        entries = list(_traverse(model, self.depth, self.module_name_prefix))
        leaves = [(m, n) for m, n, leaf in entries if leaf]
        inner = [(m, n) for m, n, leaf in entries if not leaf]
        try:
            for lens in self.lenses:
                for m, n in leaves:
                    lens.register_module(m, n, True)
                for m, n in inner:
                    lens.register_module(m, n, False)
                lens.after_attach(model)
        except BaseException:
            for lens in self.lenses:
                lens.detach()
            raise
        self._model = model
        self._steps = StepCounter()  # optimizer steps of this run (the charts' "step" x axis)
        STEPS.listen(self._steps)
        self.state.counter = 1
        self.state.attached = True
        self._pushes.reset()
        self.faults.clear()
        types = {n: type(m).__name__ for m, n, _ in entries}
        label = run_name if run_name else f"run {len(self.history.runs) + 1}: {type(model).__name__}"
        self.history.start_run(label, types)
        notice = coverage_notice(model, self.lenses)
        if notice is not None:
            self.faults.report("attach", notice, category=MonitorNotice)
        self._apply_hidden()
        self._set_active(self.state.is_active)
        self._epoch_started = time.time()
        if self._progress is not None:
            self._progress.attach(model)
        return self

    def detach(self) -> PyTorchInspector:
        """Remove every hook (loss-function hook included); the record keeps the run."""
        if self._progress is not None:
            self._progress.detach()
        for lens in self.lenses:
            lens.detach()
        STEPS.leave(self._steps)
        self._pushes.reset()
        if self.state.attached:
            self.history.end()
        self.state.attached = False
        self.state.counter = 1
        self._model = None
        return self

    def _set_active(self, active: bool) -> None:
        for lens in self.lenses:
            for site in lens.sites:
                site.set_active(active)

    @property
    def declared_metrics(self) -> frozenset[str]:
        """The metric names the ``LossMetrics`` lenses declare (``metrics=[...]``): what ``push_metric`` plots."""
        return frozenset(self._declared_metrics)

    # --- explicit values ---------------------------------------------------------------------------
    def push_metric(self, name: str, value: float, *, running: bool = True) -> None:
        if not isinstance(name, str):
            raise TypeError(f"push_metric(name=...) must be a str, got {type(name).__name__}")
        number = check_number(value, f"push_metric({name!r}, value)")
        if name not in self._declared_metrics and name not in (self._train_loss_str, self._non_train_loss_str) \
                and name not in self._warned_metrics:
            self._warned_metrics.add(name)
            declared = ", ".join(sorted(self._declared_metrics)) or "(none)"
            warnings.warn(f"push_metric({name!r}): no lens declared this metric, so it is not plotted; declared "
                          f"metrics: {declared}. Add it with LossMetrics(metrics=[...]) if it is not a typo.",
                          MonitorWarning, stacklevel=2)
        self._pushes.push(name, number)

    def push_loss(self, value: float, *, train: bool, running: bool = True) -> None:
        number = check_number(value, "push_loss(value)")
        self._pushes.push(self._train_loss_str if train else self._non_train_loss_str, number)

    # --- ticking -------------------------------------------------------------------------------------
    def _compute(self, final: bool = True) -> list[tuple[AbstractLens, list[Call]]]:
        for lens in self.lenses:
            lens.flush(final)
        streams = [s for lens in self.lenses for s in lens.streams()]
        slots = {k: v for lens in self.lenses for k, v in lens.slots().items()}
        home = next((s.device for s in streams if s.device is not None), None)
        streams += self._pushes.streams(self._push_names(), home)
        summaries = to_host(streams, slots)
        self._pushes.set_summaries(summaries)
        out = []
        for lens in self.lenses:
            try:
                out.append((lens, lens.compute(summaries)))
            except Exception as exc:  # noqa: BLE001 - one broken lens must not stop the others
                self.faults.report(lens.lens_name, f"computing the epoch failed with {type(exc).__name__}: {exc}")
        return out

    def _push_names(self) -> list[str]:
        names = [self._train_loss_str, self._non_train_loss_str, *sorted(self._declared_metrics)]
        if not self._distributed:
            # Single process: undeclared names too (harmless, and their values stay inspectable).
            names += sorted(set(self._pushes.values) - set(names))
        return names

    def tick_epoch(self, epoch: int | None = None) -> None:
        """End the epoch: aggregate what the hooks gathered, append one row to the record, redraw."""
        if not self.state.attached:
            raise RuntimeError("tick_epoch() needs an attached model: call inspector.attach(model) first"
                               + (" (the inspector was detached)" if self.history.runs else ""))
        if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int)):
            raise TypeError(f"tick_epoch(epoch=...) must be an int, got {epoch!r}")
        if self.state.is_active:
            number = self.state.counter if epoch is None else epoch
            results = self._compute()
            record = self.history
            record.open_row(number, step=self._steps.count)
            for lens, calls in results:
                lens.vizualize(record, number, calls)
                if self._user_visualizer is not None:
                    try:
                        lens.vizualize(self._user_visualizer, number, calls)
                    except Exception as exc:  # noqa: BLE001
                        self.faults.report("visualizer", f"{type(self._user_visualizer).__name__} failed with "
                                           f"{type(exc).__name__}: {exc}")
            record.close_row()
            if isinstance(self.visualizer, PrintVisualizer):
                self.visualizer.on_epoch()
        for lens in self.lenses:
            lens.reset_epoch()
        self._pushes.reset()
        if epoch is not None:
            self.state.counter = epoch + 1
        else:
            self.state.tick()
        self._set_active(self.state.is_active)
        self._epoch_started = time.time()
        if self._progress is not None:
            self._progress.reset()

    tick = tick_epoch

    def provisional_update(self) -> None:
        """Write the running estimate of the current epoch as a provisional row (one host copy)."""
        if not (self.state.attached and self.state.is_active):
            return
        results = self._compute(final=False)
        record = self.history
        record.open_row(self.state.counter, provisional=True, step=self._steps.count)
        for lens, calls in results:
            lens.vizualize(record, self.state.counter, calls)

    def iter(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """Yield from ``iterable``, ticking after each item (one item = one epoch)."""
        started = False
        for item in iterable:
            if started:
                self.tick()
            started = True
            yield item
        if started:
            self.tick()

    def range(self, *args: int) -> Iterator[int]:
        return self.iter(range(*args))

    def to_html(self, path: Any, *, title: str | None = None) -> Any:
        """Write the record as one self-contained, offline, interactive HTML file (no CDN, no kernel)."""
        return self.history.to_html(path, title=title)

    def save(self, path: Any) -> None:
        self.history.save(path)

    def __repr__(self) -> str:
        lenses = ", ".join(type(lens).__name__ for lens in self.lenses)
        return f"PyTorchInspector([{lenses}], attached={self.state.attached}, epoch={self.state.counter})"
