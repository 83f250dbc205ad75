"""What both framework callbacks share: checking their arguments and routing logged values to the inspector.

A framework logs values under its own names (Lightning: the names given to ``self.log``; Hugging Face: the
keys of the Trainer's log dicts). :class:`LoggedValues` decides, per name, where the value goes:

- the name given as ``train_loss`` -> ``inspector.push_loss(value, train=True)``;
- the name given as ``val_loss``   -> ``inspector.push_loss(value, train=False)``;
- a name declared by one of the inspector's ``LossMetrics(metrics=[...])`` lenses -> ``push_metric``;
- any other name is not recorded; the first time it is seen, one :class:`MonitorWarning` names it (the
  framework's own bookkeeping names, given as ``quiet``, are skipped silently). When nothing was logged
  under a loss name and an unrecorded name looks like that loss (``"train/loss"``, ``"val/loss"``), the
  warning gives the callback arguments that record it as the loss, not as a metric.

:func:`check_run_name` / :func:`run_name_of` check and resolve the callbacks' ``run_name=`` argument.
:mod:`.optimizers` gives the Trainer's optimizer, which exists only inside ``fit`` / ``train``, to the inspector's
``ParameterUpdateGeometry(None)`` lenses for the run.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from ..collect.faults import MonitorNotice, MonitorWarning, user_stacklevel
from ..inspector import PyTorchInspector
from ..lens.loss_metrics import LossMetrics


def check_inspector(inspector: Any, owner: str) -> PyTorchInspector:
    if not isinstance(inspector, PyTorchInspector):
        raise TypeError(f"{owner}(inspector) needs a monitorch_widget.PyTorchInspector, got "
                        f"{type(inspector).__name__}; build one first, e.g. PyTorchInspector([LossMetrics(), "
                        "OutputActivation(), ParameterGradientActivation()])")
    return inspector


def check_every_n_steps(every_n_steps: Any, owner: str) -> int | None:
    if every_n_steps is None:
        return None
    if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1:
        raise ValueError(f"{owner}(every_n_steps={every_n_steps!r}): must be None (one row per epoch) or a "
                         "positive int (one row every N optimizer steps)")
    return every_n_steps


RunName = str | Callable[..., str] | None


def check_run_name(run_name: Any, owner: str) -> RunName:
    """``run_name``: a str, a callable returning one (called when the run starts), or None (the inspector's
    default label). Raises ``TypeError`` naming the argument otherwise."""
    if run_name is None or isinstance(run_name, str) or callable(run_name):
        return run_name  # type: ignore[no-any-return]
    raise TypeError(f"{owner}(run_name={run_name!r}): must be a str, a callable returning a str, or None; "
                    f"got {type(run_name).__name__}")


def run_name_of(run_name: RunName, owner: str, *args: Any) -> str | None:
    """The label of the run starting now: ``run_name`` itself, or ``run_name(*args)`` (must return a str)."""
    if run_name is None or isinstance(run_name, str):
        return run_name
    label = run_name(*args)
    if not isinstance(label, str):
        raise TypeError(f"{owner}(run_name={getattr(run_name, '__name__', run_name)!r}): the callable must return "
                        f"a str (the run's label), it returned {type(label).__name__} {label!r}")
    return label


# Words of a logged name that mark a loss as the training / validation one ("train/loss", "val_loss_epoch").
_TRAIN_WORDS = {"train", "training", "tr"}
_VAL_WORDS = {"val", "valid", "validation", "eval", "evaluation", "dev"}
_OTHER_WORDS = {"test", "testing", "predict"}


def _words(name: str) -> set[str]:
    return set(re.split(r"[^a-z0-9]+", name.lower())) - {""}


def loss_candidates(names: Iterable[str], train: bool, val: bool) -> dict[str, str]:
    """Among unrecorded ``names`` containing "loss", the likely training (``train``: still missing) and
    validation (``val``: still missing) loss: ``{"train_loss": name, "val_loss": name}`` (only those found).
    A loss name saying neither (plain ``"loss"``) counts as the training loss; test losses count as neither;
    of several candidates the shortest (the total, not a component such as ``"train/loss_kl"``) wins."""
    found: dict[str, list[str]] = {"train_loss": [], "val_loss": []}
    for name in names:
        if "loss" not in name.lower():
            continue
        words = _words(name)
        if words & _OTHER_WORDS:
            continue
        slot = "val_loss" if words & _VAL_WORDS else "train_loss"
        found[slot].append(name)
    wanted = {"train_loss": train, "val_loss": val}
    return {slot: min(names_, key=lambda n: (len(n), n)) for slot, names_ in found.items()
            if names_ and wanted[slot]}


class LoggedValues:
    """Routes logged values (Python numbers or 1-element tensors, kept on their device) to ``inspector``.

    ``train_loss`` / ``val_loss``: the logged names recorded as the inspector's training / validation loss
    (``None``: not recorded). ``quiet(name) -> bool``: names never warned about. Raises ``ValueError`` if the
    two loss names are equal or not strings.
    """

    def __init__(self, inspector: PyTorchInspector, *, train_loss: str | None, val_loss: str | None,
                 owner: str, quiet: Callable[[str], bool] = lambda name: False) -> None:
        for arg, value in (("train_loss", train_loss), ("val_loss", val_loss)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{owner}({arg}={value!r}): must be the logged name (str) or None")
        if train_loss is not None and train_loss == val_loss:
            raise ValueError(f"{owner}: train_loss and val_loss are both {train_loss!r}; they must differ")
        self.inspector = inspector
        self.train_loss = train_loss
        self.val_loss = val_loss
        self.owner = owner
        self.quiet = quiet
        self._warned: set[str] = set()
        self.pushed_losses: set[str] = set()  # "train_loss" / "val_loss": a value arrived under that name
        if train_loss is not None:  # the "no training loss" notice names this callback, not the loop's wiring
            inspector._ctx.loss_source = f"{owner}(train_loss={train_loss!r})"

    @property
    def metrics(self) -> list[str]:
        """The metric names the inspector's ``LossMetrics`` lenses declare."""
        return sorted(self.inspector.declared_metrics)

    def records(self, name: str) -> bool:
        return name in (self.train_loss, self.val_loss) or name in self.metrics

    def push(self, name: str, value: Any) -> bool:
        """Push one value if ``name`` is recorded; returns whether it was."""
        if name == self.train_loss or name == self.val_loss:
            train = name == self.train_loss
            if not self.pushed_losses and self._reads_criterion():
                self._say_criterion(name)
            self.inspector.push_loss(value, train=train)
            self.pushed_losses.add("train_loss" if train else "val_loss")
        elif name in self.metrics:
            self.inspector.push_metric(name, value)
        else:
            return False
        return True

    def _reads_criterion(self) -> bool:
        return any(isinstance(lens, LossMetrics) and lens._loss_fn is not None for lens in self.inspector.lenses)

    def _say_criterion(self, name: str) -> None:
        """Once (at the first logged loss): the lens reads the loss from its criterion's calls, which the logged
        losses do not change (trial r15c: Lightning's batch-size-weighted validation mean was silently not used)."""
        self.inspector.faults.report(self.owner, (
            f"the inspector's LossMetrics reads the loss from its loss_fn's calls, so the logged {name!r} (and the "
            "other logged loss) is not what the Loss panel shows: it shows the mean over the criterion's calls, "
            "each batch counting once (a framework's logged epoch mean may weight batches by their size). To show "
            "the logged losses instead, build the lens without loss_fn: LossMetrics()"), category=MonitorNotice)

    def train_loss_due(self, due: bool) -> None:
        """Before a row is written: whether the framework logged training values in it (``due``). A row without
        a training loss is then a wrong name (the ``LossMetrics`` notice says so); one in which it logged nothing
        (a logging interval longer than the row: Hugging Face's ``logging_steps``; Lightning's ``on_epoch=True``
        loss in a row of ``every_n_steps`` inside an epoch) is not."""
        for lens in self.inspector.lenses:
            if isinstance(lens, LossMetrics):
                lens.train_loss_due = due

    def push_all(self, logged: Iterable[tuple[str, Any]], skip: Callable[[str], bool] = lambda name: False) -> None:
        """Push every recorded name; warn once about the others (``skip``: not warned about here)."""
        unrecorded = []
        for name, value in logged:
            if not self.push(name, value) and not self.quiet(name) and not skip(name):
                unrecorded.append(name)
        self.warn_unrecorded(unrecorded)

    def warn_unrecorded(self, names: Iterable[str]) -> None:
        new = sorted(set(names) - self._warned)
        if not new:
            return
        self._warned.update(new)
        losses = ", ".join(f"{arg}={v!r}" for arg, v in (("train_loss", self.train_loss),
                                                          ("val_loss", self.val_loss)) if v is not None)
        message = f"{self.owner}: logged but not recorded: {', '.join(new)}. "
        # a loss logged under another name (self.log("train/loss")): the fix is the callback's loss arguments,
        # not a metric (a metric is drawn in the Metrics panel and no loss-based health check runs on it)
        found = loss_candidates(new, train=self.train_loss is not None and "train_loss" not in self.pushed_losses,
                                val=self.val_loss is not None and "val_loss" not in self.pushed_losses)
        if found:
            args = ", ".join(f"{slot}={found[slot]!r}" for slot in ("train_loss", "val_loss") if slot in found)
            one = len(found) == 1
            message += (f"Nothing was logged under the loss name{'' if one else 's'} "
                        f"({', '.join(f'{slot}={getattr(self, slot)!r}' for slot in found)}), and "
                        f"{' and '.join(repr(found[s]) for s in ('train_loss', 'val_loss') if s in found)} "
                        f"look{'s like your loss' if one else ' like your losses'}: to record "
                        f"{'it' if one else 'them'} as the inspector's loss (the Loss panel and the loss-based "
                        f"health checks) pass {self.owner}(inspector, {args}). ")
            new = [name for name in new if name not in found.values()]
            if not new:
                warnings.warn(message.rstrip(), MonitorWarning, stacklevel=user_stacklevel())
                return
            message += f"For the others ({', '.join(new)}): "
        declared = ", ".join(self.metrics) or "(none)"
        message += (f"Recorded are the losses ({losses or 'none'}) and the metrics declared by the inspector's "
                    f"LossMetrics lens: {declared}. To plot them, build the inspector with LossMetrics(metrics=[...]) "
                    "listing them (names that first appear in a later epoch must be listed there too).")
        warnings.warn(message, MonitorWarning, stacklevel=user_stacklevel())
