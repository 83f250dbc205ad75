"""Lightning integration: ``InspectorCallback(inspector)`` records a ``Trainer`` run in the live widget.

Needs the ``lightning`` extra (``pip install "monitorch-widget[lightning]"``); the core never imports this
module.
"""

from __future__ import annotations

import os
from typing import Any

import torch

try:
    import lightning.pytorch as pl
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("monitorch_widget.integrations.lightning needs Lightning: pip install "
                      "'monitorch-widget[lightning]' (or pip install lightning)") from exc

from ..inspector import PyTorchInspector
from .common import LoggedValues, RunName, check_every_n_steps, check_inspector, check_run_name, run_name_of
from .optimizers import OptimizerHandOver

_OWNER = "InspectorCallback"


def _same(seen: Any, value: Any) -> bool:
    """Whether ``value`` is the logged value ``seen`` (read earlier from ``callback_metrics``) again.

    Each read of ``callback_metrics`` hands out a new detached tensor for a live entry, sharing the memory of
    what was logged; logging again makes a new tensor (Lightning clones a step's value; an epoch aggregate is
    computed anew). ``seen`` is kept referenced until the next read, so its memory cannot be reused by a new
    value: the same data pointer means the same logged value. (No device work: ``data_ptr`` is metadata.)"""
    if seen is value:
        return True
    if isinstance(seen, torch.Tensor) and isinstance(value, torch.Tensor) and seen.numel() and value.numel():
        return bool(seen.data_ptr() == value.data_ptr())
    return False


class InspectorCallback(pl.Callback):
    """A Lightning ``Callback`` that attaches ``inspector`` to the ``LightningModule`` and ticks it.

    ``Trainer(callbacks=[InspectorCallback(inspector)])``; works with ``pytorch_lightning.Trainer`` too.

    Each ``Trainer.fit`` / ``validate`` / ``test`` call is one new run of ``inspector.history`` (runs
    before it stay, as with ``attach``):

    - ``fit``: attached when training starts, *after* the sanity check (so sanity-check batches are never
      counted), detached when it ends (or on an exception). One row per training epoch, numbered
      ``current_epoch + 1``; with ``every_n_steps=N``, one row each time ``trainer.global_step`` passes a
      multiple of N (with several optimizers stepping per batch it moves by more than 1), numbered by it (a last
      row at the end for the remaining steps). A row is written once what belongs to it is in: an epoch's after
      the module's own ``on_train_epoch_end`` (values it logs there belong to it); a step row at the next batch
      or epoch start, after the validation Lightning runs after that step's batch (``val_check_interval``,
      the end of an epoch).
    - ``validate`` / ``test``: attached for that loop (whether it runs under ``torch.no_grad`` or
      ``torch.inference_mode``); one row, numbered 1, written when it ends.

    Logged values (``self.log``) are read from ``trainer.callback_metrics`` at three moments, each value once:

    - after every training batch: the values logged in that step (``on_step=True``, the default in
      ``training_step``): a row holds the mean of its steps' values with their ±std band, as a hand-written
      loop that pushes every batch's loss (not only the last step's value, which is all ``callback_metrics``
      keeps). A name logged with ``on_step=True, on_epoch=True`` is recorded from its steps (their plain mean;
      Lightning's own epoch value weights by batch size), not a second time from the epoch aggregate;
    - after every validation inside ``fit``: its epoch aggregates (``validation_step``'s default), so with
      ``val_check_interval`` < 1 (several validations per epoch) a row holds the mean of its validations;
    - when the row is written: the rest (``on_epoch=True`` only names, values logged in epoch-end hooks).

    A name is pushed only if it was logged again since it was last read (otherwise that row has a gap, e.g.
    ``val_loss`` in epochs without validation). The value logged as ``train_loss`` / ``val_loss`` (arguments; ``None``
    turns one off) becomes the inspector's training / validation loss; every other name is recorded only if
    the inspector's ``LossMetrics(metrics=[...])`` declares it — declare there, up front, also the names
    that first appear in a later epoch or only in ``test``. Any other logged name is warned about once
    (``MonitorWarning``); Lightning's ``<name>_step`` / ``<name>_epoch`` copies of a logged name are not.
    Values stay tensors on their device until the row's single host copy.

    ``run_name``: the label of each run (legends, status line, saved histories; ``inspector.history.runs[i]
    .label``): a str, or a callable ``run_name(trainer) -> str`` called with the Lightning ``Trainer`` when the
    run starts (e.g. ``lambda t: f"lr {t.lightning_module.hparams.lr}"``, or ``t.state.fn`` to tell fit /
    validate / test apart); ``None``: the inspector's default ``"run <n>: <model class>"``.

    Several processes (``strategy="ddp"``): supported when every rank runs the script and builds its own
    inspector *after* ``torch.distributed.init_process_group`` (torchrun; Lightning reuses the group). Every
    rank attaches and ticks at the same rows, so each row holds every rank's batches and the all-reduced
    gradient (README "Distributed"); only ``master_rank`` draws.

    ``ParameterUpdateGeometry(None)`` (the optimizer is made inside ``fit``): for each ``fit`` the callback gives it
    ``trainer.optimizers[0]`` (:class:`~monitorch_widget.integrations.optimizers.OptimizerHandOver`), so its update
    series fill in; a lens built with an optimizer keeps its own. With several optimizers (a GAN) one
    ``MonitorNotice`` names the parameters only the others train (no update series); to watch another one,
    assign it in the LightningModule's ``on_train_start``: ``lens.optimizer = self.trainer.optimizers[1]``.

    Raises ``TypeError`` / ``ValueError`` for a wrong ``inspector`` / ``every_n_steps`` / ``run_name``, and
    ``RuntimeError`` at ``setup`` when the Trainer runs several processes the callback cannot serve:
    ``strategy="ddp_notebook"`` (``ddp_fork``, ``ddp_spawn``) runs its ranks in child processes whose hooks
    this notebook's inspector never sees; an inspector built before the process group existed cannot tell
    the ranks apart (the message gives the torchrun recipe).
    """

    def __init__(self, inspector: PyTorchInspector, *, train_loss: str | None = "train_loss",
                 val_loss: str | None = "val_loss", every_n_steps: int | None = None,
                 run_name: RunName = None) -> None:
        super().__init__()
        self.inspector = check_inspector(inspector, _OWNER)
        self.run_name = check_run_name(run_name, _OWNER)
        self.every_n_steps = check_every_n_steps(every_n_steps, _OWNER)
        self.values = LoggedValues(inspector, train_loss=train_loss, val_loss=val_loss, owner=_OWNER)
        self._pid = os.getpid()
        self._attached = False
        self._seen: dict[str, Any] = {}  # callback_metrics entries as last read (to tell newly logged ones)
        self._step_names: set[str] = set()  # recorded names logged in training steps (read from the steps only)
        self._pending: int | None = None  # the row to write once its values are in (on_train_epoch_end, on_train_batch_end)
        self._last_step = 0  # global_step at the last step row's end (every_n_steps)
        self._logged = False  # a training step or epoch end of the row being gathered logged values
        self._optimizers = OptimizerHandOver(inspector, _OWNER)  # trainer.optimizers -> ParameterUpdateGeometry(None)

    # --- processes -----------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if os.getpid() != self._pid:
            raise RuntimeError(
                f"{_OWNER}: this rank runs in a child process (strategy={type(trainer.strategy).__name__}, "
                "e.g. strategy='ddp_notebook' / 'ddp_fork' / 'ddp_spawn'): the inspector and its widget live in "
                "the parent (notebook) process and would never see this process's hooks. Train with devices=1 "
                "(or strategy='auto' on one device) while monitoring.")
        if trainer.world_size > 1 and not self.inspector.rank_aware:
            raise RuntimeError(
                f"{_OWNER}: the Trainer runs {trainer.world_size} processes, but this rank's inspector was built "
                "before torch.distributed was initialised, so it cannot tell the ranks apart (every rank would "
                "draw). Launch with torchrun (every rank runs your script) and initialise the process group "
                "before building the inspector; Lightning reuses it:\n"
                "    torch.distributed.init_process_group('gloo')  # 'nccl' on GPUs; torchrun sets the rank env\n"
                "    inspector = PyTorchInspector([...])\n"
                "    Trainer(strategy='ddp', devices=N, callbacks=[InspectorCallback(inspector)]).fit(...)\n"
                "Or train with devices=1 while monitoring.")

    # --- fit ---------------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._optimizers.hand(trainer.optimizers)  # made by configure_optimizers, which fit ran before this hook
        self._start(trainer, pl_module)
        self._last_step = trainer.global_step

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is None and self._attached:
            # a step row going on past the epoch's end: read what was logged at epoch level (aggregates, the
            # module's on_train_epoch_end) now, so that no step takes an epoch aggregate for its own value
            self._push_fresh(trainer, step=False)
        self._flush_pending(trainer)
        # once, after the module's own on_train_start (which may assign ParameterUpdateGeometry another optimizer)
        self._optimizers.name_the_others("the LightningModule's on_train_start (it runs after the callbacks')")

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._flush_pending(trainer)  # a step row: the validation Lightning ran after its last batch is in

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._attached:
            # a step that logged (under any name): a row of such steps without a training loss means a wrong name
            self._logged = self._logged or any(not _same(self._seen.get(name), value)
                                               for name, value in trainer.callback_metrics.items())
            self._push_fresh(trainer, step=True)
        step, every = trainer.global_step, self.every_n_steps
        # a crossing, not step % N == 0: global_step moves by more than 1 per batch with several optimizers
        if every is not None and step // every > self._last_step // every:
            # written at the next batch / epoch start or at the end: Lightning validates after this hook
            self._pending, self._last_step = step, step

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._logged = True  # the epoch's on_epoch=True values are read at its row
        if self.every_n_steps is None:
            self._pending = trainer.current_epoch + 1  # written after the module's own on_train_epoch_end

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush_pending(trainer)
        if self.every_n_steps is not None and trainer.global_step != self._last_step:
            self._last_step = trainer.global_step
            self._row(trainer, trainer.global_step)  # the remaining steps
        self._stop()

    # --- validate / test (standalone calls; validation inside fit belongs to the fit run) -------------
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._standalone_start(trainer, pl_module, "validate")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._attached and not trainer.sanity_checking and self._stage(trainer) == "fit":
            self._push_fresh(trainer, step=False)  # one validation of several per epoch (val_check_interval < 1)
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
    def _stage(trainer: pl.Trainer) -> str:
        return str(getattr(trainer.state.fn, "value", trainer.state.fn))

    def _standalone(self, trainer: pl.Trainer, fn: str) -> bool:
        return not trainer.sanity_checking and self._stage(trainer) == fn

    def _start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.inspector.attach(pl_module, run_name=run_name_of(self.run_name, _OWNER, trainer))  # a new run (detaches an earlier model first)
        self._attached = True
        self._pending = None
        self._seen = dict(trainer.callback_metrics)
        self._step_names = set()
        self._logged = False

    def _stop(self) -> None:
        if self._attached:
            self._attached = False
            self.inspector.detach()
        self._optimizers.take_back()

    def _flush_pending(self, trainer: pl.Trainer) -> None:
        if self._pending is not None and self._attached:
            number, self._pending = self._pending, None
            self._row(trainer, number)

    def _push_fresh(self, trainer: pl.Trainer, step: bool) -> None:
        """Push the recorded names logged since they were last read: after a training ``step``, the values it
        logged (those names are read from steps only, from then on); after a validation, the others."""
        for name, value in trainer.callback_metrics.items():
            if _same(self._seen.get(name), value) or not self.values.records(name):
                continue
            self._seen[name] = value
            if step:
                self._step_names.add(name)
            elif name in self._step_names:
                continue
            self.values.push(name, value)

    def _row(self, trainer: pl.Trainer, number: int) -> None:
        """Push what was logged since it was last read, then write row ``number``."""
        current = dict(trainer.callback_metrics)
        # names recorded from their steps: their epoch aggregate, new now, is not a second observation
        fresh = [(name, value) for name, value in current.items()
                 if not _same(self._seen.get(name), value) and name not in self._step_names]
        self._seen = current

        def forked(name: str) -> bool:  # Lightning's <name>_step / <name>_epoch copies of a logged name
            base, _, suffix = name.rpartition("_")
            return suffix in ("step", "epoch") and base in current

        self.values.push_all(fresh, skip=forked)
        self.values.train_loss_due(self._logged)
        self._logged = False
        self.inspector.tick_epoch(number)
