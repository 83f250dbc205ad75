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

from ..inspector import PyTorchInspector
from .common import LoggedValues, check_every_n_steps, check_inspector

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

    Gradients: the Trainer's backward passes go through the inspector's hooks as in a hand-written loop,
    so with ``gradient_accumulation_steps=k`` the gradient lens sees exactly what a loop doing ``k``
    micro-batch backward passes (loss divided by ``k``) per ``optimizer.step()`` sees.

    Raises ``TypeError`` / ``ValueError`` for a wrong ``inspector`` / ``every_n_steps``, and
    ``RuntimeError`` at ``on_train_begin`` when the Trainer runs several processes (``world_size > 1``).
    """

    def __init__(self, inspector: PyTorchInspector, *, train_loss: str | None = "loss",
                 val_loss: str | None = "eval_loss", every_n_steps: int | None = None) -> None:
        self.inspector = check_inspector(inspector, _OWNER)
        self.every_n_steps = check_every_n_steps(every_n_steps, _OWNER)
        self.values = LoggedValues(inspector, train_loss=train_loss, val_loss=val_loss, owner=_OWNER,
                                   quiet=_bookkeeping)
        self._pid = os.getpid()
        self._attached = False
        self._pending: int | None = None
        self._last_step = 0

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        if os.getpid() != self._pid or args.world_size > 1:
            raise RuntimeError(f"{_OWNER}: the Trainer runs {args.world_size} process(es) and this is not the "
                               "process that built the inspector; the callback supports one process (one device).")
        model = kwargs.get("model")
        if model is None:
            raise RuntimeError(f"{_OWNER}: the Trainer passed no model to on_train_begin")
        self.inspector.attach(model)  # a new run (detaches an earlier model first)
        self._attached = True
        self._pending = None
        self._last_step = state.global_step

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                      **kwargs: Any) -> None:
        self._flush_pending()

    def on_epoch_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        self._flush_pending()

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

    def _flush_pending(self) -> None:
        if self._pending is not None and self._attached:
            number, self._pending = self._pending, None
            self._last_step = number if self.every_n_steps is not None else self._last_step
            self.inspector.tick_epoch(number)
