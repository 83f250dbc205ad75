"""The two halves of a tick of :class:`~monitorch_widget.inspector.PyTorchInspector`.

:func:`gather` (the collect side): every lens hands its buffers' rows to its banks,
:func:`~monitorch_widget.collect.transfer.to_host` copies them to the host in one transfer per device and folds
them there, and each lens turns its summaries into monitorch-style calls. :func:`write` (the record side): the
calls become one record row and reach a user's visualizer (monitorch's calls, in monitorch's order), then the
visualizer's ``on_tick`` runs. A lens or a visualizer that raises is reported once; the others go on.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from . import attachments
from .collect.faults import FaultLog, MonitorNotice
from .collect.hooks import TICKS
from .collect.modes import monitor_mode
from .collect.pushes import Pushes
from .collect.rank_exchange import RankExchange
from .collect.transfer import to_host
from .lens.base import AbstractLens, Call
from .lens.silent import say_eval_counted_as_training, say_eval_training
from .record import Record

if TYPE_CHECKING:
    from .inspector import PyTorchInspector

Results = list[tuple[AbstractLens, list[Call]]]


@monitor_mode  # once for the whole tick, not per fold
def gather(lenses: list[AbstractLens], pushes: Pushes, push_names: list[str], exchange: RankExchange | None,
           faults: FaultLog, final: bool = True) -> Results:
    """The epoch's calls per lens. ``final=False``: a provisional estimate (buffers keep their rows);
    ``exchange``: under ``torch.distributed``, where the ranks' host copies meet (None: this rank alone)."""
    for lens in lenses:
        lens.flush(final)
    streams = [s for lens in lenses for s in lens.streams()]
    slots = {k: v for lens in lenses for k, v in lens.slots().items()}
    streams += pushes.streams(push_names)
    summaries = to_host(streams, slots, exchange, lambda problem: faults.report("distributed", problem))
    pushes.set_summaries(summaries)
    out = []
    # every rank computes the same combined epoch: what it finds is said once, by the master rank
    quiet = exchange is not None and not exchange.is_master()
    try:
        for lens in lenses:
            faults.quiet = quiet
            try:
                out.append((lens, lens.compute(summaries)))
            except Exception as exc:  # noqa: BLE001 - one broken lens must not stop the others
                faults.quiet = False  # this rank's own failure (an OOM here): printed where it happened
                faults.report(lens.lens_name, f"computing the epoch failed with {type(exc).__name__}: {exc}")
    finally:
        faults.quiet = False
    return out


def write(record: Record, results: Results, epoch: int, step: float, user_visualizer: Any, visualizer: Any,
          faults: FaultLog) -> None:
    """One record row for ``epoch`` (``step``: optimizer steps so far, the "step" x axis), the same calls to
    ``user_visualizer`` (None: the visualizer reads the record), then ``visualizer.on_tick()`` if it has one."""
    record.open_row(epoch, step=step)
    try:  # the row closes whatever happens (a KeyboardInterrupt in the user's visualizer): a later tick opens its own
        # the lenses' calls into the record at once (one write, one cells event: Record.plot_calls); a lens with
        # its own vizualize gets the record itself, in turn
        batch: list[Call] = []
        for lens, calls in results:
            if type(lens).vizualize is AbstractLens.vizualize:
                batch += calls
                continue
            if batch:
                record.plot_calls(epoch, batch)
                batch = []
            lens.vizualize(record, epoch, calls)
        if batch:
            record.plot_calls(epoch, batch)
        if user_visualizer is not None:
            for lens, calls in results:
                try:
                    lens.vizualize(user_visualizer, epoch, calls)
                except Exception as exc:  # noqa: BLE001
                    faults.report("visualizer", f"{type(user_visualizer).__name__} failed with "
                                  f"{type(exc).__name__}: {exc}")
    finally:
        record.close_row()
    on_tick = getattr(visualizer, "on_tick", None) if user_visualizer is None else None
    if on_tick is not None:
        try:
            on_tick()
        except Exception as exc:  # noqa: BLE001
            faults.report("visualizer", f"{type(visualizer).__name__} failed with {type(exc).__name__}: {exc}")


def end_epoch(ins: PyTorchInspector, epoch: int | None) -> None:
    """After a tick's row (or a tick interrupted while writing it): the epoch's notices, every lens and push reset,
    the counter moved on -- so the next tick never merges two epochs."""
    if not ins._said_shared_criterion:
        shared = attachments.shared_criteria(ins)
        if shared is not None:
            ins._said_shared_criterion = True
            ins.faults.report("LossMetrics", shared, category=MonitorNotice)
    say_eval_training(ins.lenses, ins.faults, ins._passes, ins._steps.count - ins._steps_at_tick)
    say_eval_counted_as_training(ins.lenses, ins.faults, ins._passes)
    ins._passes, ins._steps_at_tick = [0, 0, 0], ins._steps.count
    for lens in ins.lenses:
        lens.reset_epoch()
    TICKS[0] += 1  # every site's uncounted calls start again from 0 (collect/hooks.py: stamped, not reset)
    ins._pushes.reset()
    ins._recording.after_tick(ins.lenses, ins.history, ins.state.counter if epoch is None else epoch)
    ins._next_epoch(epoch)
    ins._epoch_started = time.time()
    if ins._progress is not None:
        ins._progress.reset()


def say_epoch_not_after(ins: PyTorchInspector, epoch: int) -> None:
    """Once per run: ``tick_epoch(epoch=e)`` with an ``e`` at or before a final row of the run (a training loop run
    again in the same run, trial r15b): its line on the charts would turn back and overlay the first pass."""
    run = ins.history.current
    if run is None or ins._said_epoch_order is run:
        return
    final = run.epochs[:run.final_rows]
    if final and epoch <= final[-1]:
        ins._said_epoch_order = run
        ins.faults.report("tick_epoch", f"tick_epoch(epoch={epoch}) after epoch {final[-1]:g} of the same run: the "
                          "run's charts go back along the epoch axis and overlay what is there. If training started "
                          "again, begin a new run with inspector.detach(); inspector.attach(model) (or build a new "
                          "inspector); if the numbers are meant, tick in increasing order", category=MonitorNotice)


def provisional(ins: PyTorchInspector) -> None:
    """The running estimate of the current epoch as a provisional row (one host copy; :meth:`PyTorchInspector.
    provisional_update`)."""
    if not (ins.state.attached and ins.state.is_active):
        return
    results = ins._compute(final=False)
    record = ins.history
    record.open_row(ins.state.counter, provisional=True, step=ins._steps.count)
    for lens, calls in results:
        lens.vizualize(record, ins.state.counter, calls)
    ins._pump()


def ticked(ins: PyTorchInspector, iterable: Iterable[Any]) -> Iterator[Any]:
    """:meth:`PyTorchInspector.iter`: ``iterable``'s items, a tick after each (before the next is asked for, and
    after the last); the last tick sends what the live widget holds back (no end-of-cell event may follow)."""
    started = False
    for item in iterable:
        if started:
            ins.tick()
        started = True
        yield item
    if started:
        ins.tick()
        ins._live.finish()
