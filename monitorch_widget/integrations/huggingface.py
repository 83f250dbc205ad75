"""Hugging Face integration: ``InspectorCallback(inspector)`` records a ``transformers.Trainer`` run.

Needs the ``huggingface`` extra (``pip install "monitorch-widget[huggingface]"``); the core never imports
this module.
"""

from __future__ import annotations

import inspect
import math
import os
import re
from typing import Any

from torch import nn

try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("monitorch_widget.integrations.huggingface needs transformers: pip install "
                      "'monitorch-widget[huggingface]' (or pip install transformers accelerate)") from exc

from ..collect.faults import MonitorNotice
from ..inspector import PyTorchInspector
from .common import (
    LoggedValues,
    OptimizerHandOver,
    RunName,
    check_every_n_steps,
    check_inspector,
    check_run_name,
    run_name_of,
)

_OWNER = "InspectorCallback"
# The Trainer's own bookkeeping in its log dicts: recorded only when declared, never warned about.
_BOOKKEEPING = {"epoch", "step", "learning_rate", "grad_norm", "total_flos", "num_input_tokens_seen"}
_BOOKKEEPING_SUFFIXES = ("_runtime", "_samples_per_second", "_steps_per_second", "_mem_cpu_alloc_delta",
                         "_mem_cpu_peaked_delta", "_mem_gpu_alloc_delta", "_mem_gpu_peaked_delta")


def _bookkeeping(name: str) -> bool:
    return name in _BOOKKEEPING or name.endswith(_BOOKKEEPING_SUFFIXES)


# `self.loss_function(..., **kwargs)`: transformers' loss functions take num_items_in_batch through **kwargs (one
# level of nested parentheses inside the call, e.g. logits.view(-1, n), is allowed)
_PASSES_LOSS_KWARGS = re.compile(r"loss_function\((?:[^()]|\([^()]*\))*\*\*kwargs")


def loss_times_accumulation(model: nn.Module) -> bool:
    """Whether the Trainer logs (and back-propagates) ``gradient_accumulation_steps`` x the mean loss for
    ``model`` (huggingface/transformers#37766), as transformers 5.x decides it.

    ``Trainer.training_step`` divides the micro-batch loss by the accumulation steps unless it counts the loss
    as already normalised by ``num_items_in_batch``: when the model "accepts loss kwargs" (its
    ``accepts_loss_kwargs`` attribute, else a ``**kwargs`` in its ``forward``; ``Trainer.__init__``). A model
    whose ``forward`` takes ``**kwargs`` but computes a plain per-batch mean (``BertForSequenceClassification``
    and most ``*ForSequenceClassification`` heads: ``CrossEntropyLoss()`` on the logits) never uses it, so
    each micro-batch's full mean is summed. Told apart here by the source of ``forward``: a loss normalised by
    the Trainer's count is handed to ``self.loss_function(..., **kwargs)`` or named ``num_items_in_batch`` (a
    ``self.loss_function(labels, logits, config)`` without them is a plain mean too). False when the
    source cannot be read (no notice rather than a wrong one). A ``compute_loss_func`` given to the Trainer
    is not visible to a callback."""
    base = getattr(model, "get_base_model", None)  # a PEFT model: the Trainer inspects the base model
    if callable(base):
        model = base()
    accepts = getattr(model, "accepts_loss_kwargs", None)
    if accepts is None:
        try:
            params = inspect.signature(model.forward).parameters.values()
        except (TypeError, ValueError):
            return False
        accepts = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params)
    if not accepts:
        return False
    try:
        source = inspect.getsource(type(model).forward)
    except (OSError, TypeError):
        return False
    return "num_items_in_batch" not in source and _PASSES_LOSS_KWARGS.search(source) is None


class InspectorCallback(TrainerCallback):
    """A ``transformers.TrainerCallback`` that attaches ``inspector`` to the Trainer's model and ticks it.

    ``Trainer(..., callbacks=[InspectorCallback(inspector)])``. Each ``trainer.train()`` is one new run of
    ``inspector.history``: attached at ``on_train_begin`` (to the ``model`` the Trainer passes, unwrapped),
    detached at ``on_train_end``. One row per epoch, numbered 1, 2, ...; with ``every_n_steps=N``, one row
    every N optimizer steps, numbered ``state.global_step`` (plus a last row for the remaining steps). A
    row is written once what the Trainer logs and evaluates for it has arrived (the Trainer logs and
    evaluates *after* ``on_epoch_end`` / ``on_step_end``), i.e. at the next step / epoch start or at the
    end of training.

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
        self._pending: int | None = None
        self._last_step = 0
        self._before_training = False  # between on_train_begin and the first epoch: eval_on_start's evaluation
        self._optimizers = OptimizerHandOver(inspector)  # the Trainer's optimizer -> ParameterUpdateGeometry(None)

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
        self._pending = None
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

        self._say_sparse_logging(args, state)

    def _say_sparse_logging(self, args: TrainingArguments, state: TrainerState) -> None:
        """The Trainer logs 'loss' every logging_steps optimizer steps (500 by default): with fewer steps per row,
        rows have no training loss and the loss-based health checks never run. Said once, at the start."""
        if str(getattr(args.logging_strategy, "value", args.logging_strategy)) != "steps":
            return
        epochs = max(int(getattr(state, "num_train_epochs", 0) or 0), 1)
        per_row = self.every_n_steps or (state.max_steps // epochs if state.max_steps else 0)
        every = args.logging_steps
        if isinstance(every, float) and every < 1:  # a ratio of the total steps
            every = max(int(every * state.max_steps), 1)
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
        if self.every_n_steps is not None and state.global_step % self.every_n_steps == 0:
            self._pending = state.global_step

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        if self.every_n_steps is None:
            self._pending = max(1, math.ceil((state.epoch or 0.0) - 1e-6))

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if not self._attached or not logs or "train_runtime" in logs:
            return  # outside train(), or the end-of-training summary
        if self._before_training:  # eval_on_start: a baseline row before training, not part of epoch 1
            self._pending = state.global_step if self.every_n_steps is not None else math.floor(state.epoch or 0.0)
        self.values.push_all(logs.items())

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        if not self._attached:
            return
        if self.every_n_steps is not None and self._pending is None and state.global_step != self._last_step:
            self._pending = state.global_step
        self._flush_pending()
        self._attached = False
        self.inspector.detach()
        self._optimizers.take_back()

    def _flush_pending(self) -> None:
        if self._pending is not None and self._attached:
            number, self._pending = self._pending, None
            self._last_step = number if self.every_n_steps is not None else self._last_step
            self.inspector.tick_epoch(number)
