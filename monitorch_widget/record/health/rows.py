"""Read access for the checks: one run of the record up to the row being checked (never later rows).

Panel tags and value keys are monitorch 0.1.0.7's (``monitorch/lens/*.py``): ``Output Activations`` with
``activation_rate`` / ``death_rate`` per module; ``Weight Gradient Activation``; ``Loss`` / ``Loss & Metrics``
with ``<train_loss_str> <method>``; ``Weight Gradient Norm``, ``Weight Norm`` and ``Weight Update Norm`` per
module with the line aggregation as key (``mean`` by default).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..run import Run

OUTPUT_ACTIVATIONS = "Output Activations"
GRADIENT_ACTIVATION = "Weight Gradient Activation"
GRADIENT_NORM = "Weight Gradient Norm"
#: ParameterGradientGeometry's cosine of consecutive observations (steps), averaged over the epoch: key mean
GRADIENT_CORRELATION = "Weight Gradient Correlation"
WEIGHT_NORM = "Weight Norm"
UPDATE_NORM = "Weight Update Norm"
#: the per-step update-to-weight ratio of ParameterUpdateGeometry (``collect/update_ratio.py``): keys mean, max
UPDATE_RATIO = "Weight Update Ratio"
LOSS_PANELS = ("Loss & Metrics", "Loss")
METRIC_PANELS = ("Loss & Metrics", "Metrics")

# Activations whose death rate means "units silent for a whole batch" (lens/kinds.py's sparse set by class
# name, minus the softmax family, whose rate is checked separately, and dropout, which is no layer of its own).
DEAD_CHECKED_TYPES = frozenset({"ReLU", "ReLU6", "Threshold", "Hardshrink", "Softshrink", "Hardswish", "Hardsigmoid",
                                "Sigmoid"})
_NOT_RELU = ("Leaky", "PReLU", "RReLU", "CELU", "SELU", "GELU")
SOFTMAX_TYPES = frozenset({"Softmax", "Softmax2d"})


class Skipped(Exception):
    """A check cannot run on this record; the message names the lens (or metric) that would enable it.

    ``lasting`` (the default): the reason depends only on the run's panels and columns, the config and the loss
    names, so the monitor does not run the check again until one of them changes. ``lasting=False``: it depends
    on this row's values (a lens that measured nothing in this epoch), so the check runs again at the next row."""

    def __init__(self, message: str, *, lasting: bool = True) -> None:
        super().__init__(message)
        self.lasting = lasting


class RowView:
    """Run ``run`` as it stood when row ``row`` became final."""

    def __init__(self, run: Run, row: int, loss_names: tuple[str, str],
                 new_problems: list[tuple[str, str]] | None = None,
                 cache: dict[tuple[str, str | None], tuple[int, Any]] | None = None,
                 scans: dict[Any, Any] | None = None) -> None:
        self.run = run
        # column lookups per (panel, key), valid while the run has the same number of columns (they only grow)
        self._cache = cache if cache is not None else {}
        # running folds over final rows (scans.py), kept across the run's rows
        self._scans = scans if scans is not None else {}
        self._values: list[float] | None = None
        self._once: dict[Any, Any] = {}
        self.data = run.data  # [rows, columns] float64 (a view: do not write)
        # (lens, message) of problems (not notices: information names no fault) reported since the previous row
        self.new_problems = new_problems or []
        self.row = row
        self.epoch = float(run.epochs[row])
        self.train_name, self.val_name = loss_names

    # --- columns ---------------------------------------------------------------------------------
    def has(self, panel: str) -> bool:
        return self.run.has_panel(panel)

    def col(self, panel: str, group: str, key: str) -> int | None:
        return self.run.column(panel, group, key, "line")

    def now(self, idx: int) -> float:
        return self.values()[idx]

    def values(self) -> list[float]:
        """This row's values as Python floats (read once per row and shared by the checks: cheaper than numpy
        calls on a few values; the same float64 numbers)."""
        if self._values is None:
            self._values = self.data[self.row].tolist()
        return self._values

    def once(self, key: Any, compute: Callable[..., Any], *args: Any) -> Any:
        """``compute(*args)``, computed once for this row and shared by the checks that ask for ``key``."""
        found = self._once.get(key)
        if found is None:
            found = self._once[key] = compute(*args)
        return found

    def scan(self, key: Any, make: Callable[[], Any]) -> Any:
        """The running fold stored under ``key`` (built by ``make()`` on first use), kept across rows."""
        found = self._scans.get(key)
        if found is None:
            found = self._scans[key] = make()
        return found

    def upto(self, idx: int) -> np.ndarray:
        """Values of column ``idx`` from the first row to this one (a view: do not write)."""
        return self.data[: self.row + 1, idx]

    def epoch_of(self, row: int) -> float:
        return float(self.run.epochs[row])

    def memo(self, name: tuple[str, str | None], compute: Callable[[], Any]) -> Any:
        """``compute()``, remembered across rows while the run has the same columns."""
        n = len(self.run.columns)
        hit = self._cache.get(name)
        if hit is not None and hit[0] == n:
            return hit[1]
        value = compute()
        self._cache[name] = (n, value)
        return value

    def _cached(self, panel: str, key: str | None) -> Any:
        return self.memo((panel, key), lambda: self._lookup(panel, key))

    def _lookup(self, panel: str, key: str | None) -> Any:
        if key is None:
            first: dict[str, int] = {}
            for c in self.run.columns:
                if c.panel == panel and c.role == "line" and c.group not in first:
                    first[c.group] = c.index
            value: Any = first
        else:
            value = [(c.group, c.index, c.module_type) for c in self.run.columns
                     if c.panel == panel and c.key == key and c.role == "line"]
        return value

    def layers(self, panel: str, key: str) -> list[tuple[str, int, str | None]]:
        """(group, column, module type) of every line ``key`` of ``panel``, in first-seen order."""
        return self._cached(panel, key)  # type: ignore[no-any-return]

    def first_line(self, panel: str) -> dict[str, int]:
        """group -> column of each group's first line key (the lens' first line aggregation, e.g. ``mean``)."""
        return self._cached(panel, None)  # type: ignore[no-any-return]

    def row_values(self, cols: list[int]) -> np.ndarray:
        """This row's values of ``cols`` (a copy)."""
        return self.data[self.row, cols] if cols else np.zeros(0)

    def panel_lens(self, panel: str) -> str | None:
        return self.run.panel(panel).lens if self.run.has_panel(panel) else None

    # --- losses and metrics ------------------------------------------------------------------------
    def loss_col(self, name: str) -> int | None:
        return self.memo(("loss", name), lambda: self._find_loss(name))  # type: ignore[no-any-return]

    def _find_loss(self, name: str) -> int | None:
        for panel in LOSS_PANELS:
            for c in self.run.columns:
                if c.panel == panel and c.group == panel and c.role == "line" and c.key.startswith(name + " "):
                    return c.index
        return None

    def train_loss(self) -> int:
        idx = self.loss_col(self.train_name)
        if idx is None:
            raise Skipped(f"needs a training loss: LossMetrics(loss_fn=...) or push_loss(..., train=True) "
                          f"(no '{self.train_name} ...' line in the Loss panel)")
        return idx

    def val_loss(self) -> int:
        idx = self.loss_col(self.val_name)
        if idx is None:
            raise Skipped(f"needs a validation loss: LossMetrics(loss_fn=...) with a no_grad validation pass, or "
                          f"push_loss(..., train=False) (no '{self.val_name} ...' line)")
        return idx

    def accuracy(self, name: str | None) -> int:
        for panel in METRIC_PANELS:
            for c in self.run.columns:
                if c.panel != panel or c.role != "line" or c.group != panel:
                    continue
                key = c.key.lower()
                if (name is not None and (c.key == name or c.key.startswith(name + " "))) or \
                        (name is None and "val" in key and "acc" in key):
                    return c.index
        wanted = f"metric {name!r}" if name else "a validation accuracy metric"
        raise Skipped(f"needs {wanted}: LossMetrics(metrics=['val_accuracy']) and push_metric('val_accuracy', ...)"
                      " (or HealthConfig(accuracy_metric=...))")


def rates_by_construction(group: str, module_type: str | None) -> bool:
    """Whether a layer's activation and death rates are set by what the module is rather than by training, so it
    never ranks as a worst layer nor counts as dead: a dropout module's output rates are its input's scaled by
    (1 - p); an embedding's gradient rows are all zero for the tokens a batch lacks (its death rate is
    1 - the share of the vocabulary in the batch: 0.85 for 16 x 20 tokens of a 2000-word vocabulary). By module
    type; without one (a run fed by monitorch's own inspector) by the layer's name."""
    if module_type:
        return "Dropout" in module_type or "Embedding" in module_type
    name = group.lower()
    return "dropout" in name or "embed" in name


def dead_checked(group: str, module_type: str | None) -> bool:
    """Whether ``group``'s death rate is checked: sparse / saturating activations; an unknown type (a run fed by
    monitorch's own inspector) unless its name says softmax or dropout."""
    if module_type is None:
        name = group.lower()
        return "softmax" not in name and "dropout" not in name
    if module_type in DEAD_CHECKED_TYPES:
        return True
    return "ReLU" in module_type and not any(k in module_type for k in _NOT_RELU)


def is_softmax(group: str, module_type: str | None) -> bool:
    if module_type is None:
        return "softmax" in group.lower() and "log" not in group.lower()
    return module_type in SOFTMAX_TYPES


def finite(v: float) -> bool:
    return math.isfinite(v)
