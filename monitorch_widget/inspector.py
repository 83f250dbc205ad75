"""PyTorchInspector: attaches lenses to a model, ticks epochs, feeds the record and the visualizer.

Tick path (once per epoch): every lens hands its buffers' rows to its banks -> :func:`transfer.to_host` copies
them to the host in one transfer per device and folds them there -> lenses turn the summaries into monitorch-style calls ->
the record stores them as one row -> views (widget sync, print, a user's visualizer) follow.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

from . import attaching, attachments, ticking
from .collect.activity import ActivityGate, InspectorState
from .collect.compiled import in_graph
from .collect.faults import FaultLog, MonitorNotice
from .collect.gradient_reading import WAITING, recover_lost_reads
from .collect.model_growth import ModelGrowth
from .collect.optimizer_steps import StepCounter
from .collect.progress import IntraEpochUpdates
from .collect.pushes import Pushes, check_number, checked_metric
from .collect.rank_exchange import RankExchange, say_active_differs, world
from .interrupts import interrupts_held
from .lens.base import AbstractLens, LensContext
from .lens.custom import MonitorchStyleLens
from .lens.lens_list import check_lenses
from .lens.loss_metrics import LossMetrics
from .record import Record
from .record.health import Finding, HealthConfig, HealthMonitor
from .recording import RecordingSwitch
from .ticking import Results
from .views.live import LiveView
from .views.monitorch_adapter import WidgetVisualizer
from .views.resolve import reads_record, resolve_visualizer


class PyTorchInspector:
    """Hooks a model for the given lenses and records one row per ``tick_epoch()``.

    Same constructor as ``monitorch.inspector.PyTorchInspector``. ``visualizer``: ``'widget'`` (default
    in a notebook), ``'print'`` (default elsewhere), ``'none'``, monitorch's ``'matplotlib'``,
    ``'tensorboard'``, ``'dummy'`` (``monitorch_widget.visualizer``), or any object with monitorch's visualizer
    interface. ``is_active_fn``: an int n (record every n-th epoch) or a function of the epoch counter, asked
    once per forward and per backward pass of the model (``collect/activity.py``); a tick while it answers
    ``False`` only moves the counter. ``update_every``: refresh the record (and widget) every N training
    steps with a provisional estimate of the running epoch (int), or every N seconds (float); ``None``
    (default) only at ticks.
    ``health``: the health checks' thresholds (default ``HealthConfig()``; README "Health checks").
    ``distributed_timeout``: under ``torch.distributed``, the seconds a rank waits at ``tick_epoch()`` for
    the other ranks before raising ``DistributedTickError`` (README "Distributed training").

    ``inspector.history`` is the :class:`~monitorch_widget.record.Record`: ``history.series(panel, group, key)``
    gives one line's per-epoch values (numpy), ``history.runs`` every run; ``inspector.widget`` the live widget;
    ``inspector.findings`` the current run's health findings.
    """

    def __init__(self, lenses: list[AbstractLens], *, visualizer: Any = None, module: nn.Module | None = None,
                 depth: int = -1, module_name_prefix: str = ".", train_loss_str: str = "train_loss",
                 non_train_loss_str: str = "val_loss", is_active_fn: int | Callable[[int], bool] = 1,
                 master_rank: int = 0, update_every: float | None = None,
                 health: HealthConfig | None = None, distributed_timeout: float = 300.0) -> None:
        self.lenses = check_lenses(lenses)
        self._exchange = RankExchange(distributed_timeout, master_rank)
        if not isinstance(depth, int) or depth < -1:
            raise ValueError(f"depth={depth!r}: must be -1 (down to the leaves) or a non-negative int")
        if not isinstance(train_loss_str, str) or not isinstance(non_train_loss_str, str) or \
                train_loss_str == non_train_loss_str:
            raise ValueError("train_loss_str and non_train_loss_str must be two different strings")
        self.depth = depth
        self.module_name_prefix = module_name_prefix
        self.master_rank = master_rank
        self.state = InspectorState(is_active_fn)
        for lens in self.lenses:
            if isinstance(lens, MonitorchStyleLens):  # monitorch hands its lenses the inspector state
                lens.state = self.state
        self._distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.is_main_process = not self._distributed or torch.distributed.get_rank() == master_rank
        if not self.is_main_process:
            visualizer = "none"  # every rank reduces and records; only the master rank draws
        self.history = Record()
        self.history.health.loss_names = (train_loss_str, non_train_loss_str)
        if health is not None:
            self.history.health.configure(health)
        self.faults = FaultLog()
        self.faults.subscribe(self.history.problem)
        # is_active_fn is asked once per forward / backward pass of the attached model (collect/activity.py)
        self._gate = ActivityGate(lambda: self.state.is_active, self._set_active, self.faults)
        self._pushes = Pushes()
        self._ctx = LensContext(self.faults, self._pushes, train_loss_str, non_train_loss_str)
        self._train_loss_str = train_loss_str
        self._non_train_loss_str = non_train_loss_str
        self._model: nn.Module | None = None
        self._warned_metrics: set[str] = set()
        #: why another inspector detached this one (its model or lens objects were taken), for tick_epoch's error
        self.replaced_on: str | None = None
        self._recording = RecordingSwitch()
        self._pump_handle: Any = None
        # forward passes of the model since attach or the last tick: [training mode, eval mode with grad enabled,
        # eval mode without grad]; none at all: the epoch is untouched (a resume takes effect at once)
        self._passes = [0, 0, 0]
        self._said_epoch_order: Any = None  # the run told its tick_epoch(epoch=) numbers went back
        self._said_shared_criterion = False  # told its loss criterion is shared with another live inspector
        self._growth: ModelGrowth | None = None
        self._live = LiveView(self.history, None,
                              self._view_recording_request)
        self._ready = False  # the lenses are bound: a visualizer assigned later is introduced to their tags
        self.visualizer = visualizer
        taken = attachments.claim_lenses(self.lenses, self)  # before binding: the old owner detaches first
        if taken is not None:
            self.faults.report("attach", taken, category=MonitorNotice)
        for lens in self.lenses:
            lens.bind(self._ctx)
            for tag, attrs in [*lens.tags(), *lens.record_tags()]:
                self.history.register_tags(tag, attrs, lens=lens.lens_name)
            if self._user_visualizer is not None:
                lens.introduce_tags(self._user_visualizer)
        self._ready = True
        self._declared_metrics = {m for lens in self.lenses if isinstance(lens, LossMetrics) for m in lens.metrics}
        self._progress: IntraEpochUpdates | None = None
        self._steps = StepCounter()
        self._steps_at_tick = 0  # the run's optimizer steps at the last tick
        if update_every is not None:
            self._progress = IntraEpochUpdates(update_every, self.provisional_update, self.faults)
        self._epoch_started = time.time()
        if module is not None:
            self.attach(module)

    @property
    def visualizer(self) -> Any:
        """The visualizer the ticks go to. Can be replaced, as in monitorch ("can be hot-swapped"): a name or an
        object, as the constructor's ``visualizer=``; from the next tick on the new one receives the epochs (a
        visualizer of the user's gets monitorch's ``register_tags`` calls first, and ``start_run`` when the
        inspector is attached). The live widget (``inspector.widget``) stays live whichever is set."""
        return self._visualizer

    @visualizer.setter
    def visualizer(self, spec: Any) -> None:
        vis = resolve_visualizer(spec, self.history)
        self._visualizer = vis
        if isinstance(vis, WidgetVisualizer) and vis.record is self.history and self._live.visualizer is None:
            self._live.visualizer = vis  # our own widget visualizer: the live widget is its widget
        self._user_visualizer = None if reads_record(vis, self.history) else vis
        if not self._ready or self._user_visualizer is None:
            return
        for lens in self.lenses:
            lens.introduce_tags(vis)
        start_run = getattr(vis, "start_run", None)
        if callable(start_run) and self.state.attached and self.history.runs:
            start_run(self.history.runs[-1].label)

    @property
    def rank_aware(self) -> bool:
        """Whether a ``torch.distributed`` process group existed when this inspector was built (README
        "Distributed"): then only ``master_rank`` draws. One built before the group draws on every rank."""
        return self._distributed

    # --- the widget --------------------------------------------------------------------------------
    @property
    def widget(self) -> Any:
        """The live widget (one per inspector; display it any number of times)."""
        return self._live.widget()

    def _pump(self) -> None:
        """Every monitor call on the training thread: the live widget sends what waited and runs the views'
        queued requests (views/live.py). No thread of ours ever sends."""
        self._live.pump()

    def _pump_hook(self, _module: nn.Module, _args: Any) -> None:
        if not in_graph():  # on the compiled wrapper it never is; a model compiled after attach: skip
            if WAITING:  # a backward pass raised before its end-of-pass reads (collect/gradient_reading.py)
                recover_lost_reads()
            self._live.pump()
            self._ctx.passes[0] += 1  # the loss hook tells the model's losses from a copy's (collect/held_hooks.py)
            # counted after the pump: a view's resume queued before this pass is immediate
            # (grad on in eval mode: training in eval mode, or a slip)
            self._passes[0 if _module.training else 1 if torch.is_grad_enabled() else 2] += 1

    def flush(self) -> None:
        """Send every value the live widget holds back now (it otherwise waits for the next monitor call >= 50 ms
        later, ``detach()`` or the end of the cell). Call it on the thread that trains."""
        self._live.flush()

    # --- what is measured ------------------------------------------------------------------------------
    def stop_recording(self, *patterns: str) -> set[str]:
        """Stop measuring the modules ``patterns`` match (module names, ``fnmatch`` globs such as
        ``"encoder.*"``, or module type names such as ``"Dropout"``): their hooks are removed now, the epoch in
        progress and later ones are gaps marked "not recorded" in the record and the charts. Hiding a module
        in the widget, by contrast, only hides it. Returns the series groups newly stopped.

        Raises ``TypeError`` for a non-string pattern and ``ValueError`` when an attached model has no module
        that a pattern matches. Call it on the training thread (views' requests are queued there)."""
        return self._recording.stop_checked(patterns, self.lenses if self.state.attached else None, self.history,
                                            self.state.counter)

    def _view_recording_request(self, module: str, on: bool) -> None:
        """A view's stop / resume request (on the training thread): a bad one is reported, not raised."""
        try:
            (self.resume_recording if on else self.stop_recording)(module)
        except ValueError as exc:
            self.faults.report("recording", str(exc))

    def resume_recording(self, *patterns: str) -> None:
        """Measure again what :meth:`stop_recording` stopped: at once if no forward pass of the model ran since the
        last tick (``tick_epoch(); resume_recording(...)``), else from the next epoch on (the epoch in progress
        stays a gap, so every recorded epoch is a whole one)."""
        pats = RecordingSwitch.check(patterns, "resume_recording(pattern, ...)")
        unknown = [p for p in pats if p not in self._recording.stopped]
        if unknown:  # (trial r14a: a narrower pattern than the one stopped did nothing, without a word)
            raise ValueError(f"resume_recording: {', '.join(map(repr, unknown))} stopped nothing; stopped now: "
                             f"{self._recording.stopped or 'nothing'}. Resume a pattern as it was stopped (to keep "
                             "part of it stopped, resume it and stop that part again)")
        if self.state.attached and not any(self._passes):
            self._recording.resume_now(pats, self.lenses, self.history, self.state.counter)
        else:
            self._recording.resume(pats)

    # --- attach / detach ---------------------------------------------------------------------------
    def attach(self, module: nn.Module, *, run_name: str | None = None) -> PyTorchInspector:
        """Hook ``module`` (a new run: epoch counter restarts at 1; earlier runs stay in the record).

        ``module`` may be wrapped: ``torch.compile(model)``, DDP, DataParallel (see README "torch.compile").
        ``run_name`` labels the run in legends, the status line and saved histories (default
        ``"run <n>: <model class>"``); a non-string raises ``TypeError``.
        """
        attaching.attach(self, module, run_name)
        return self

    def detach(self) -> PyTorchInspector:
        """Remove every hook (loss-function hook included); the record keeps the run."""
        attaching.detach(self)
        return self

    def _set_active(self, active: bool) -> None:
        for lens in self.lenses:
            for site in lens.sites:
                site.set_active(active)

    @property
    def health(self) -> HealthMonitor:
        """The health checks: ``.configure(dead_rate=0.5)``, ``.findings()`` of every run, ``.skipped``."""
        return self.history.health

    @property
    def findings(self) -> list[Finding]:
        """Findings of the current run whose condition held at the last tick (``Finding.severity``, ``.layer``,
        ``.since``, ``.message``, ``.advice``), e.g. to stop early on a ``"critical"`` one. When the current run
        took no optimizer step (an evaluation only: Lightning's ``trainer.validate()`` / ``test()`` after
        ``fit``), those of the last run that trained: an evaluation has no training health of its own."""
        return self.history.health.current_findings(self.history.runs)

    @property
    def declared_metrics(self) -> frozenset[str]:
        """The metric names the ``LossMetrics`` lenses declare (``metrics=[...]``): what ``push_metric`` plots."""
        return frozenset(self._declared_metrics)

    # --- explicit values ---------------------------------------------------------------------------
    def push_metric(self, name: str, value: float, *, running: bool = True) -> None:
        """Record one value of metric ``name`` (declared with ``LossMetrics(metrics=[...])``) for this epoch:
        a float, int or one-element tensor (a tensor is read at the tick, not now: no host sync). The epoch shows
        the metric's aggregation over its pushed values. An undeclared name is kept but not plotted (one
        ``MonitorWarning``); ``TypeError`` for a name that is not a str or a value that is not a number.
        ``running`` is accepted as monitorch's and has no effect."""
        number = checked_metric(name, value, self._declared_metrics, (self._train_loss_str, self._non_train_loss_str),
                                self._warned_metrics)
        self._pushes.push(name, number)
        self._pump()

    def push_loss(self, value: float, *, train: bool, running: bool = True) -> None:
        """Record one loss value of this epoch, as a training loss (``train=True``) or a validation loss: for a
        loss that no ``LossMetrics(loss_fn=...)`` hook sees (a framework's, a hand-written one). A float, int or
        one-element tensor (read at the tick: no host sync)."""
        number = check_number(value, "push_loss(value)")
        self._pushes.push(self._train_loss_str if train else self._non_train_loss_str, number)
        self._pump()

    # --- ticking -------------------------------------------------------------------------------------
    def _compute(self, final: bool = True) -> Results:
        exchange = self._exchange if final and world() is not None else None
        return ticking.gather(self.lenses, self._pushes, self._push_names(), exchange, self.faults, final)

    def _push_names(self) -> list[str]:
        names = [self._train_loss_str, self._non_train_loss_str, *sorted(self._declared_metrics)]
        if not self._distributed:
            # Single process: undeclared names too (harmless, and their values stay inspectable).
            names += sorted(set(self._pushes.values) - set(names))
        return names

    def tick_epoch(self, epoch: int | None = None) -> None:
        """End the epoch: aggregate what the hooks gathered, append one row to the record, redraw."""
        if not self.state.attached:
            replaced = self.replaced_on
            raise RuntimeError("tick_epoch() needs an attached model: call inspector.attach(model) first"
                               + (f" ({replaced})" if replaced else
                                  " (the inspector was detached)" if self.history.runs else ""))
        if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int)):
            raise TypeError(f"tick_epoch(epoch=...) must be an int, got {epoch!r}")
        self._pump()  # queued view requests (stop/resume recording) act before the epoch is computed
        grown = self._growth.take_notice() if self._growth is not None else None
        if grown is not None:
            self.faults.report("model", grown, category=MonitorNotice)
        active = self.state.is_active
        if world() is not None:  # every rank meets at every tick and follows the master's is_active_fn answer
            active, others = self._exchange.arrive(active)
            if others:
                self.faults.report("distributed", say_active_differs(others, active, self.state.counter),
                                   category=MonitorNotice)
        self._gate.ticked(active)
        if not active:
            # monitorch: an inactive tick only moves the counter; what the hooks gathered while active (and
            # the pushed values) wait for the next active tick
            self._next_epoch(epoch)
            return
        number = self.state.counter if epoch is None else epoch
        if epoch is not None:
            ticking.say_epoch_not_after(self, epoch)
        with interrupts_held():  # a Ctrl-C during the tick acts when it ends: the record holds whole epochs
            results = self._compute()
            try:  # an exception in a user's visualizer: the epoch still ends (else the next tick merged two epochs)
                ticking.write(self.history, results, number, self._steps.count, self._user_visualizer,
                              self.visualizer, self.faults)
            finally:
                ticking.end_epoch(self, epoch)

    tick = tick_epoch

    def _next_epoch(self, epoch: int | None) -> None:
        if epoch is not None:
            self.state.counter = epoch + 1
        else:
            self.state.tick()
        self._gate.refresh()

    def provisional_update(self) -> None:
        """Write the running estimate of the current epoch as a provisional row (one host copy). Under
        ``torch.distributed`` it shows this rank's own batches: ranks refresh at different moments."""
        with interrupts_held():
            ticking.provisional(self)

    def iter(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """Yield from ``iterable``, ticking after each item (one item = one epoch). A ``break`` leaves the epoch it
        broke out of unticked (as monitorch: the tick runs when the loop asks for the next item): call
        :meth:`tick_epoch` after the loop to write it."""
        return ticking.ticked(self, iterable)

    def range(self, *args: int, **kwargs: int) -> Iterator[int]:
        """``self.iter(range(*args))``: ``for epoch in inspector.range(10):`` ticks after each epoch's body."""
        return self.iter(range(*args, **kwargs))

    def to_html(self, path: Any, *, title: str | None = None) -> Any:
        """Write the record as one self-contained, offline, interactive HTML file (no CDN, no kernel)."""
        return self.history.to_html(path, title=title)

    def save(self, path: Any) -> None:
        """Write the record (every run's final rows and findings) as one JSON file; ``monitorch_widget.load(path)``
        reads it back. An epoch in progress is not written (its row is not final yet)."""
        self.history.save(path)

    def __repr__(self) -> str:
        lenses = ", ".join(type(lens).__name__ for lens in self.lenses)
        return f"PyTorchInspector([{lenses}], attached={self.state.attached}, epoch={self.state.counter})"
