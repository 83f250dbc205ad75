"""Hugging Face integration: ``InspectorCallback(inspector)`` records a ``transformers.Trainer`` run.

Needs the ``huggingface`` extra (``pip install "monitorch-widget[huggingface]"``); the core never imports
this module.
"""

from __future__ import annotations

import math
import os
from typing import Any

try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("monitorch_widget.integrations.huggingface needs transformers: pip install "
                      "'monitorch-widget[huggingface]' (or pip install transformers accelerate)") from exc

from ..collect.faults import MonitorNotice
from ..inspector import PyTorchInspector
from .common import LoggedValues, RunName, check_every_n_steps, check_inspector, check_run_name, run_name_of
from .loss_scale import loss_times_accumulation
from .optimizers import OptimizerHandOver

__all__ = ["InspectorCallback", "loss_times_accumulation"]

_OWNER = "InspectorCallback"
# The Trainer's own bookkeeping in its log dicts: recorded only when declared, never warned about.
_BOOKKEEPING = {"epoch", "step", "learning_rate", "grad_norm", "total_flos", "num_input_tokens_seen"}
_BOOKKEEPING_SUFFIXES = ("_runtime", "_samples_per_second", "_steps_per_second", "_mem_cpu_alloc_delta",
                         "_mem_cpu_peaked_delta", "_mem_gpu_alloc_delta", "_mem_gpu_peaked_delta")


def _bookkeeping(name: str) -> bool:
    return name in _BOOKKEEPING or name.endswith(_BOOKKEEPING_SUFFIXES)


class InspectorCallback(TrainerCallback):
    """A ``transformers.TrainerCallback`` that attaches ``inspector`` to the Trainer's model and ticks it.

    ``Trainer(..., callbacks=[InspectorCallback(inspector)])``. Each ``trainer.train()`` is one new run of
    ``inspector.history``: attached at ``on_train_begin`` (to the ``model`` the Trainer passes, unwrapped),
    detached at ``on_train_end``. One row per epoch, numbered 1, 2, ...; with ``every_n_steps=N``, one row
    every N optimizer steps, numbered ``state.global_step`` (plus a last row for the remaining steps). A
    row is written once what the Trainer logs and evaluates for it has arrived (the Trainer logs, evaluates and
    saves *after* ``on_epoch_end`` / ``on_step_end``; a step that ends an epoch belongs with the epoch's): at
    its evaluation or checkpoint save, else at the next step / epoch start; the last row when the training loop
    is over, before the Trainer reloads the best checkpoint (``load_best_model_at_end=True``: transformers 5
    logs its summary first), so what the row reads from the weights at the tick (``ParameterNorm``) is the
    trained model's, not the reloaded one's.

    Values come from ``on_log`` (the Trainer's log dicts, plain floats): every value logged within a row is
    pushed, so with ``logging_steps`` smaller than an epoch a row holds the mean (± std band) of the logged
    values. The key given as ``train_loss`` (default ``"loss"``: the Trainer's training loss, averaged over
    the optimizer steps since the previous log) and as ``val_loss`` (default ``"eval_loss"``) become the
    inspector's training / validation loss; every other key is recorded only if the inspector's
    ``LossMetrics(metrics=[...])`` declares it (e.g. ``"eval_accuracy"`` from ``compute_metrics``,
    ``"grad_norm"``, ``"learning_rate"``). Undeclared keys are warned about once (``MonitorWarning``), except
    the Trainer's bookkeeping (``epoch``, ``learning_rate``, ``grad_norm``, ``*_runtime``,
    ``*_per_second``, ...). The end-of-training summary log (``train_runtime``, whole-run ``train_loss``)
    is not recorded. Evaluations outside ``train()`` (``trainer.evaluate()``) are not recorded.

    ``eval_on_start=True``: the evaluation of the untrained model, before the first step, is its own row,
    numbered 0 (``state.global_step`` with ``every_n_steps``): a baseline holding the validation values only
    (no training loss, no activation statistics: evaluation passes are not training batches). Epoch 1's row
    holds epoch 1's evaluation alone.

    Loss scale: with ``gradient_accumulation_steps=k > 1`` and a model whose ``forward`` takes ``**kwargs`` but
    ignores ``num_items_in_batch`` (e.g. ``BertForSequenceClassification``), the Trainer logs ``loss`` as k x
    the mean loss (huggingface/transformers#37766): one ``MonitorNotice`` at ``on_train_begin`` says so and
    how to fix it (``model.accepts_loss_kwargs = False`` before building the Trainer), see
    :func:`loss_times_accumulation`. The recorded value is the Trainer's, unchanged.

    Gradients: the Trainer's backward passes go through the inspector's hooks as in a hand-written loop,
    so with ``gradient_accumulation_steps=k`` the gradient lens sees exactly what a loop doing ``k``
    micro-batch backward passes (loss divided by ``k``) per ``optimizer.step()`` sees.

    ``run_name``: the label of each run (legends, status line, saved histories; ``inspector.history.runs[i]
    .label``): a str, or a callable ``run_name(args, state) -> str`` called at ``on_train_begin`` with the
    Trainer's ``TrainingArguments`` and ``TrainerState`` (e.g. ``lambda args, state: f"lr {args.learning_rate}"``);
    ``None``: the inspector's default ``"run <n>: <model class>"``.

    ``ParameterUpdateGeometry(None)`` (the optimizer is made inside ``train``): for each ``train()`` the callback
    gives it the Trainer's optimizer (the ``optimizer`` of the callback events, unwrapped from accelerate's
    ``AcceleratedOptimizer``), so its update series fill in; a lens built with an optimizer keeps its own.

    Raises ``TypeError`` / ``ValueError`` for a wrong ``inspector`` / ``every_n_steps`` / ``run_name``, and
    ``RuntimeError`` at ``on_train_begin`` when the Trainer runs several processes (``world_size > 1``).
    """

    def __init__(self, inspector: PyTorchInspector, *, train_loss: str | None = "loss",
                 val_loss: str | None = "eval_loss", every_n_steps: int | None = None,
                 run_name: RunName = None) -> None:
        self.inspector = check_inspector(inspector, _OWNER)
        self.run_name = check_run_name(run_name, _OWNER)
        self.every_n_steps = check_every_n_steps(every_n_steps, _OWNER)
        self.values = LoggedValues(inspector, train_loss=train_loss, val_loss=val_loss, owner=_OWNER,
                                   quiet=_bookkeeping)
        self._pid = os.getpid()
        self._attached = False
        self._pending: int | None = None  # the row waiting for what the Trainer logs and evaluates for it
        self._armed = False  # ... and its boundary hooks have run: its evaluation (or save) completes it
        self._logged = False  # the Trainer logged training values in the row being gathered
        self._last_step = 0  # state.global_step at the last step row's end (every_n_steps)
        self._before_training = False  # between on_train_begin and the first epoch: eval_on_start's evaluation
        self._optimizers = OptimizerHandOver(inspector, _OWNER)  # the Trainer's optimizer -> ParameterUpdateGeometry(None)

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        if os.getpid() != self._pid or args.world_size > 1:
            raise RuntimeError(
                f"{_OWNER}: the Trainer runs {args.world_size} process(es) and this is not the process that built "
                "the inspector; the Hugging Face callback supports one process (one device). For several: drive "
                "the inspector from your own loop under torch.distributed (every rank attaches and calls "
                "tick_epoch(); README \"Distributed\"), or use the Lightning callback under torchrun.")
        model = kwargs.get("model")
        if model is None:
            raise RuntimeError(f"{_OWNER}: the Trainer passed no model to on_train_begin")
        # the optimizer exists by now (an accelerate AcceleratedOptimizer around it): handed before the hooks go on
        self._optimizers.hand([kwargs.get("optimizer")])
        self.inspector.attach(model, run_name=run_name_of(self.run_name, _OWNER, args, state))  # a new run (detaches an earlier model first)
        self._attached = True
        self._pending, self._armed, self._logged = None, False, False
        self._last_step = state.global_step
        self._before_training = True
        steps = args.gradient_accumulation_steps
        if steps > 1 and loss_times_accumulation(model):
            self.inspector.faults.report("huggingface", (
                f"the Trainer logs 'loss' as gradient_accumulation_steps={steps} x the mean training loss, and "
                f"back-propagates it so: {type(model).__name__}.forward takes **kwargs, so the Trainer passes it "
                "num_items_in_batch and does not divide by the accumulation steps, but its loss ignores it "
                "(huggingface/transformers#37766). The Loss panel shows the training loss at "
                f"{steps}x the validation loss's scale. Fix: set model.accepts_loss_kwargs = False before building "
                "the Trainer (it then divides the loss), unless a compute_loss_func normalises it."),
                category=MonitorNotice)

        self._say_sparse_logging(args, state, kwargs.get("train_dataloader"))

    def _say_sparse_logging(self, args: TrainingArguments, state: TrainerState, dataloader: Any) -> None:
        """The Trainer logs 'loss' every logging_steps optimizer steps (500 by default): with fewer steps per row,
        rows have no training loss and the loss-based health checks never run. Said once, at the start."""
        if str(getattr(args.logging_strategy, "value", args.logging_strategy)) != "steps":
            return
        per_row = self.every_n_steps or _steps_per_epoch(args, state, dataloader)
        if state.max_steps and state.max_steps > 0:
            per_row = min(per_row, state.max_steps)  # a run shorter than a row: its one row
        every = args.logging_steps
        if isinstance(every, float) and every < 1:  # a ratio of the total steps (TrainerState.compute_steps)
            every = max(math.ceil(every * state.max_steps), 1)
        if per_row and every > per_row:
            self.inspector.faults.report("huggingface", (
                f"the Trainer logs the training loss every logging_steps={every:g} optimizer steps, and a row here "
                f"holds {per_row}: most rows get no training loss (and the loss-based health checks skip them). Set "
                f"TrainingArguments(logging_steps={max(per_row // 4, 1)}) or logging_strategy='epoch'"),
                category=MonitorNotice)

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                      **kwargs: Any) -> None:
        self._flush_pending()
        self._before_training = False

    def on_epoch_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        self._flush_pending()
        self._before_training = False

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        every = self.every_n_steps
        # a crossing of a multiple of N (as the Lightning callback's: a step count may jump)
        if every is not None and state.global_step // every > self._last_step // every:
            self._pending = self._last_step = state.global_step
            # complete at its evaluation, unless the step ends the epoch: then the epoch's logs and evaluation,
            # which come after on_epoch_end, are the row's too
            self._armed = not _ends_epoch(state, control)

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        if self.every_n_steps is None:
            self._pending = max(1, math.ceil((state.epoch or 0.0) - 1e-6))
        elif self._pending is None and _last_epoch(state, control) and state.global_step != self._last_step:
            self._pending = self._last_step = state.global_step  # the remaining steps
        self._armed = self._pending is not None

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if not self._attached or not logs:
            return  # outside train()
        if "train_runtime" in logs:  # the end-of-training summary (not recorded): the training loop is over
            self._finish(state)  # transformers 5 logs it before reloading the best checkpoint
            return
        if self._before_training:  # eval_on_start: a baseline row before training, not part of epoch 1
            self._pending = state.global_step if self.every_n_steps is not None else math.floor(state.epoch or 0.0)
            self._armed = True
        if {"loss", "learning_rate", self.values.train_loss} & logs.keys():  # the Trainer's training log
            self._logged = True
        self.values.push_all(logs.items())

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        if self._armed:
            self._flush_pending()  # its evaluation was the last thing logged for it

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                **kwargs: Any) -> None:
        if self._armed:
            self._flush_pending()  # saved after its logs and evaluation

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        if not self._attached:
            return
        self._finish(state)
        self._attached = False
        self.inspector.detach()
        self._optimizers.take_back()

    def _finish(self, state: TrainerState) -> None:
        """The training loop is over: the last row is written now (with every_n_steps, the remaining steps)."""
        if self.every_n_steps is not None and self._pending is None and state.global_step != self._last_step:
            self._pending = self._last_step = state.global_step
        self._flush_pending()

    def _flush_pending(self) -> None:
        if self._pending is not None and self._attached:
            number, self._pending, self._armed = self._pending, None, False
            self.values.train_loss_due(self._logged)
            self._logged = False
            self.inspector.tick_epoch(number)


def _steps_per_epoch(args: TrainingArguments, state: TrainerState, dataloader: Any) -> int:
    """Optimizer steps in an epoch, as the Trainer counts them: ceil(batches / gradient_accumulation_steps); a
    dataloader without a length runs ``max_steps`` in one epoch. (Not ``max_steps // num_train_epochs``: a
    ``max_steps`` ending inside an epoch makes the last epoch shorter.)"""
    try:
        batches = len(dataloader)
    except TypeError:
        return int(state.max_steps or 0)
    return max(math.ceil(batches / max(args.gradient_accumulation_steps, 1)), 1)


def _ends_epoch(state: TrainerState, control: TrainerControl) -> bool:
    """Whether ``on_epoch_end`` follows this step before the next one: the epoch's last batch (``state.epoch``
    is whole then) or the Trainer stops."""
    epoch = float(state.epoch or 0.0)
    return bool(control.should_epoch_stop or control.should_training_stop) or abs(epoch - round(epoch)) < 1e-9


def _last_epoch(state: TrainerState, control: TrainerControl) -> bool:
    """At ``on_epoch_end``: the training loop ends after this epoch."""
    return bool(control.should_training_stop) or bool(state.max_steps and state.global_step >= state.max_steps)
