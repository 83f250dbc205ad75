"""What both framework callbacks share: checking their arguments and routing logged values to the inspector.

A framework logs values under its own names (Lightning: the names given to ``self.log``; Hugging Face: the
keys of the Trainer's log dicts). :class:`LoggedValues` decides, per name, where the value goes:

- the name given as ``train_loss`` -> ``inspector.push_loss(value, train=True)``;
- the name given as ``val_loss``   -> ``inspector.push_loss(value, train=False)``;
- a name declared by one of the inspector's ``LossMetrics(metrics=[...])`` lenses -> ``push_metric``;
- any other name is not recorded; the first time it is seen, one :class:`MonitorWarning` names it (the
  framework's own bookkeeping names, given as ``quiet``, are skipped silently).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

from ..collect.faults import MonitorWarning, user_stacklevel
from ..inspector import PyTorchInspector


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

    @property
    def metrics(self) -> list[str]:
        """The metric names the inspector's ``LossMetrics`` lenses declare."""
        return sorted(self.inspector.declared_metrics)

    def records(self, name: str) -> bool:
        return name in (self.train_loss, self.val_loss) or name in self.metrics

    def push(self, name: str, value: Any) -> bool:
        """Push one value if ``name`` is recorded; returns whether it was."""
        if name == self.train_loss:
            self.inspector.push_loss(value, train=True)
        elif name == self.val_loss:
            self.inspector.push_loss(value, train=False)
        elif name in self.metrics:
            self.inspector.push_metric(name, value)
        else:
            return False
        return True

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
        declared = ", ".join(self.metrics) or "(none)"
        losses = ", ".join(f"{arg}={v!r}" for arg, v in (("train_loss", self.train_loss),
                                                          ("val_loss", self.val_loss)) if v is not None)
        warnings.warn(f"{self.owner}: logged but not recorded: {', '.join(new)}. Recorded are the losses "
                      f"({losses or 'none'}) and the metrics declared by the inspector's LossMetrics lens: "
                      f"{declared}. To plot them, build the inspector with LossMetrics(metrics=[...]) listing "
                      "them (names that first appear in a later epoch must be listed there too).",
                      MonitorWarning, stacklevel=user_stacklevel())
