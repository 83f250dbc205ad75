"""Attaching an inspector to a model and detaching it: the hooks, the run, the reports (``PyTorchInspector.attach``
and ``detach`` delegate here).

``attach`` registers every lens's hooks, then the inspector's own: a forward pre-hook on the model's outer call
(the pump: held widget values go out, queued view requests run, passes are counted), the optimizer-step counter,
the growth watch (modules added later are named), the activity gate and the in-epoch progress. Hooks a lens
placed before a failure are removed before the error propagates. ``detach`` removes all of them; the record
keeps the run.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from torch import nn

from . import attachments
from .collect.compiled import CompiledGraphs
from .collect.faults import MonitorNotice
from .collect.held_hooks import RootHook
from .collect.model_growth import ModelGrowth
from .collect.model_tree import alias_notice, attached_graphs, traverse
from .collect.optimizer_steps import STEPS, StepCounter
from .lens.coverage import attach_reports

if TYPE_CHECKING:
    from .inspector import PyTorchInspector


def attach(ins: PyTorchInspector, module: nn.Module, run_name: str | None) -> None:
    """:meth:`PyTorchInspector.attach`."""
    if run_name is not None and not isinstance(run_name, str):
        raise TypeError(f"attach(run_name=...) must be a str or None, got {type(run_name).__name__}")
    graphs = attached_graphs(module)
    model = graphs.model
    if ins.state.attached:
        ins.detach()
    ins._ctx.graphs = graphs
    replaced = attachments.claim(model, ins)
    taken = attachments.claim_lenses(ins.lenses, ins)  # taking its lenses back from another inspector
    for lens in ins.lenses:
        lens.bind(ins._ctx)
    aliases: dict[int, tuple[str, list[str]]] = {}
    entries = list(traverse(model, ins.depth, ins.module_name_prefix, aliases=aliases))
    leaves = [(m, n) for m, n, leaf in entries if leaf]
    inner = [(m, n) for m, n, leaf in entries if not leaf]
    try:
        for lens in ins.lenses:
            for m, n in leaves:
                lens.register_module(m, n, True)
            for m, n in inner:
                lens.register_module(m, n, False)
            lens.after_attach(model)
    except BaseException:
        for lens in ins.lenses:
            lens.detach()
        raise
    ins._model = model
    # every forward pass of the model is a monitor call: held values go out, queued view requests run
    # (a pre-hook: a request that changes hooks never lands in the middle of a pass)
    ins._pump_handle = graphs.call_root.register_forward_pre_hook(RootHook(ins._pump_hook))
    ins._growth = ModelGrowth(model)  # modules / parameters added from now on are named at the next tick
    ins._steps = StepCounter(model)  # optimizer steps of this run (the charts' "step" x axis)
    ins._steps_at_tick = 0
    STEPS.listen(ins._steps)
    ins._ctx.steps = ins._steps
    ins.state.counter = 1
    ins.state.attached = True
    ins.replaced_on = None
    ins._pushes.reset()
    ins.faults.clear()
    types = {n: type(m).__name__ for m, n, _ in entries}
    runs = ins.history.runs
    number = len(runs) + (0 if runs and runs[-1].empty else 1)  # an empty current run is replaced (start_run)
    label = run_name if run_name else f"run {number}: {type(model).__name__}"
    ins.history.start_run(label, types)
    start_run = getattr(ins._user_visualizer, "start_run", None)
    if callable(start_run):  # a visualizer with runs of its own (TensorBoard: one folder per run)
        start_run(label)
    for source, message, category in attach_reports(model, ins.lenses, ins.module_name_prefix):
        ins.faults.report(source, message, category=category)
    shared = alias_notice(aliases)
    if shared is not None:
        ins.faults.report("attach", shared, category=MonitorNotice)
    attachments.claim_criteria(ins)
    for notice in (replaced, taken):
        if notice is not None:
            ins.faults.report("attach", notice, category=MonitorNotice)
    ins._recording.new_run(ins.lenses, ins.history)
    ins._passes = [0, 0, 0]  # the new run's epoch is untouched
    ins._gate.attach(graphs.call_root, ins.state.per_pass)  # outside the graph of a compiled model
    ins._epoch_started = time.time()
    if ins._progress is not None:
        ins._progress.attach(graphs.call_root)  # outside the graph of a compiled model


def detach(ins: PyTorchInspector) -> None:
    """:meth:`PyTorchInspector.detach`."""
    if ins._progress is not None:
        ins._progress.detach()
    ins._gate.detach()
    for lens in ins.lenses:
        lens.detach()
    ins._ctx.graphs = CompiledGraphs(nn.Module())  # holds no reference to the model
    STEPS.leave(ins._steps)
    ins._pushes.reset()
    if ins.state.attached:
        ins.history.end()
        # monitorch's detach: a visualizer of the user's own (one that receives the calls) clears its figure
        reset_fig = getattr(ins._user_visualizer, "reset_fig", None)
        if callable(reset_fig):
            try:
                reset_fig()
            except Exception as exc:  # noqa: BLE001 - a visualizer must never break detach
                ins.faults.report("visualizer", f"reset_fig() raised {type(exc).__name__}: {exc}")
    attachments.release(ins._model, ins)
    if ins._pump_handle is not None:
        ins._pump_handle.remove()
        ins._pump_handle = None
    if ins._growth is not None:
        ins._growth.remove()
        ins._growth = None
    ins.state.attached = False
    ins.state.counter = 1
    ins._model = None
    ins._live.finish()
