"""Lightning integration: ``InspectorCallback(inspector)`` records a ``Trainer`` run in the live widget.

Needs the ``lightning`` extra (``pip install "monitorch-widget[lightning]"``); the core never imports this
module.
"""

from __future__ import annotations

import os
from typing import Any

try:
    import lightning.pytorch as pl
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("monitorch_widget.integrations.lightning needs Lightning: pip install "
                      "'monitorch-widget[lightning]' (or pip install lightning)") from exc

from ..inspector import PyTorchInspector
from .common import LoggedValues, check_every_n_steps, check_inspector

_OWNER = "InspectorCallback"


class InspectorCallback(pl.Callback):
    """A Lightning ``Callback`` that attaches ``inspector`` to the ``LightningModule`` and ticks it.

    ``Trainer(callbacks=[InspectorCallback(inspector)])``; works with ``pytorch_lightning.Trainer`` too.

    Each ``Trainer.fit`` / ``validate`` / ``test`` call is one new run of ``inspector.history`` (runs
    before it stay, as with ``attach``):

    - ``fit``: attached when training starts, *after* the sanity check (so sanity-check batches are never
      counted), detached when it ends (or on an exception). One row per training epoch, numbered
      ``current_epoch + 1``; with ``every_n_steps=N``, one row every N optimizer steps, numbered
      ``trainer.global_step`` (a last row at the end for the remaining steps). The row of an epoch is
      written once the module's own ``on_train_epoch_end`` has run (values it logs there belong to it).
    - ``validate`` / ``test``: attached for that loop (whether it runs under ``torch.no_grad`` or
      ``torch.inference_mode``); one row, numbered 1, written when it ends.

    Logged values (``self.log``) come from ``trainer.callback_metrics`` when a row is written: Lightning's
    epoch aggregate for ``on_epoch=True`` names, the last step's value for ``on_step`` ones. A name is pushed
    only if it was logged again since the previous row (otherwise that row has a gap, e.g. ``val_loss`` in
    epochs without validation). The value logged as ``train_loss`` / ``val_loss`` (arguments; ``None``
    turns one off) becomes the inspector's training / validation loss; every other name is recorded only if
    the inspector's ``LossMetrics(metrics=[...])`` declares it — declare there, up front, also the names
    that first appear in a later epoch or only in ``test``. Any other logged name is warned about once
    (``MonitorWarning``); Lightning's ``<name>_step`` / ``<name>_epoch`` copies of a logged name are not.
    Values stay tensors on their device until the row's single host copy.

    Raises ``TypeError`` / ``ValueError`` for a wrong ``inspector`` / ``every_n_steps``, and
    ``RuntimeError`` at ``setup`` when the Trainer runs several processes: ``strategy="ddp_notebook"``
    (``ddp_fork``, ``ddp_spawn``) runs its ranks in child processes whose hooks this notebook's
    inspector never sees.
    """

    def __init__(self, inspector: PyTorchInspector, *, train_loss: str | None = "train_loss",
                 val_loss: str | None = "val_loss", every_n_steps: int | None = None) -> None:
        super().__init__()
        self.inspector = check_inspector(inspector, _OWNER)
        self.every_n_steps = check_every_n_steps(every_n_steps, _OWNER)
        self.values = LoggedValues(inspector, train_loss=train_loss, val_loss=val_loss, owner=_OWNER)
        self._pid = os.getpid()
        self._attached = False
        self._seen: dict[str, Any] = {}  # callback_metrics entries as of the last row (to tell new ones)
        self._pending: int | None = None  # epoch row waiting for the module's on_train_epoch_end
        self._last_step = 0

    # --- processes -----------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if os.getpid() != self._pid:
            raise RuntimeError(
                f"{_OWNER}: this rank runs in a child process (strategy={type(trainer.strategy).__name__}, "
                "e.g. strategy='ddp_notebook' / 'ddp_fork' / 'ddp_spawn'): the inspector and its widget live in "
                "the parent (notebook) process and would never see this process's hooks. Train with devices=1 "
                "(or strategy='auto' on one device) while monitoring.")
        if trainer.world_size > 1:
            raise RuntimeError(
                f"{_OWNER}: the Trainer runs {trainer.world_size} processes; the callback supports one process "
                "(devices=1). For multi-process training drive the inspector from your own loop under "
                "torch.distributed (it reduces across ranks).")

    # --- fit ---------------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start(trainer, pl_module)
        self._last_step = trainer.global_step

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush_pending(trainer)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if self.every_n_steps is not None and step != self._last_step and step % self.every_n_steps == 0:
            self._row(trainer, step)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_steps is None:
            self._pending = trainer.current_epoch + 1  # written after the module's own on_train_epoch_end

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush_pending(trainer)
        if self.every_n_steps is not None and trainer.global_step != self._last_step:
            self._row(trainer, trainer.global_step)
        self._stop()

    # --- validate / test (standalone calls; validation inside fit belongs to the fit run) -------------
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._standalone_start(trainer, pl_module, "validate")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._standalone_end(trainer, "validate")

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._standalone_start(trainer, pl_module, "test")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._standalone_end(trainer, "test")

    def _standalone_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, call: str) -> None:
        if self._standalone(trainer, call):
            self._start(trainer, pl_module)

    def _standalone_end(self, trainer: pl.Trainer, call: str) -> None:
        """A standalone validate / test call is one run of one row."""
        if self._standalone(trainer, call) and self._attached:
            self._row(trainer, 1)
            self._stop()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._pending = None
        self._stop()  # rows already written stay; the interrupted epoch is not written

    # --- helpers -----------------------------------------------------------------------------------
    @staticmethod
    def _standalone(trainer: pl.Trainer, fn: str) -> bool:
        return not trainer.sanity_checking and str(getattr(trainer.state.fn, "value", trainer.state.fn)) == fn

    def _start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.inspector.attach(pl_module)  # a new run (detaches an earlier model first)
        self._attached = True
        self._pending = None
        self._seen = dict(trainer.callback_metrics)

    def _stop(self) -> None:
        if self._attached:
            self._attached = False
            self.inspector.detach()

    def _flush_pending(self, trainer: pl.Trainer) -> None:
        if self._pending is not None and self._attached:
            number, self._pending = self._pending, None
            self._row(trainer, number)

    def _row(self, trainer: pl.Trainer, number: int) -> None:
        """Push what was logged since the last row, then write row ``number``."""
        # One read: the property rebuilds live entries on each access (new tensor objects), and stores
        # what it returns, so entries not logged again keep their identity until the next row.
        current = dict(trainer.callback_metrics)
        fresh = [(name, value) for name, value in current.items() if self._seen.get(name) is not value]
        self._seen = current

        def forked(name: str) -> bool:  # Lightning's <name>_step / <name>_epoch copies of a logged name
            base, _, suffix = name.rpartition("_")
            return suffix in ("step", "epoch") and base in current

        self.values.push_all(fresh, skip=forked)
        self._last_step = trainer.global_step
        self.inspector.tick_epoch(number)
