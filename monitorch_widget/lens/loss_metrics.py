"""LossMetrics: train/validation loss (mean with a ±std band by default) and pushed metrics."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..collect.compiled import in_graph
from ..collect.faults import FaultLog, MonitorNotice
from ..collect.held_hooks import COPY_PASSES, NotCopied
from ..collect.hooks import ScalarSite, Site
from ..collect.summary import RANGE_NAMES, Summary, as_method_list
from .base import AbstractLens, Call, TagAttributes, TagType


class _LossHook(NotCopied):
    """Forward hook on the loss module: the batch's loss goes to the train or the validation site.

    The loss module is usually shared with copies of the model (``copy.deepcopy(model)``: a best-checkpoint or EMA
    copy evaluated with the same criterion), and a loss hook cannot tell whose output it scores: every call counts,
    as in monitorch. A call after a copy's forward pass with no pass of the watched model since the last call is
    likely the copy's: said once (a notice with the remedy: give the copy its own criterion), still counted --
    dropping it would also drop real losses computed in that order (a student's loss scored after an EMA
    teacher's pass; a model whose root pre-hook does not run: parts called directly, compiled after attach).
    """

    def __init__(self, loss_fn: nn.Module, train: ScalarSite, val: ScalarSite, from_grad: bool,
                 faults: FaultLog, lens: str, passes: list[int]) -> None:
        self.train = train
        self.val = val
        self.from_grad = from_grad
        self.faults = faults
        self.lens = lens
        self.off = False
        self.averaged_warned = False
        self.said_detached = False
        self.passes = passes  # the watched model's forward passes (LensContext.passes)
        self.passes_seen = passes[0]
        self.copies_seen = COPY_PASSES[0]
        self.handle = loss_fn.register_forward_hook(self)

    def _after_a_copy(self) -> None:
        """No pass of the watched model since the last call, and a copy ran: say once what is likely happening."""
        self.copies_seen = COPY_PASSES[0]
        self.faults.report(self.lens, "loss_fn was called after a forward pass of a copy of the watched model "
                           "(copy.deepcopy: a best-checkpoint or EMA copy) with no pass of the watched model in "
                           "between: if that loss scores the copy's output, it is counted in this Loss panel with "
                           "the watched model's. Give the copy its own criterion (copy.deepcopy(loss_fn), or a "
                           "function of torch.nn.functional), or attach an inspector to the copy", category=MonitorNotice)

    def _say_detached(self) -> None:
        self.said_detached = True
        self.faults.report(self.lens, "loss_fn was called with grad enabled on outputs that do not require grad (a "
                           "validation pass under torch.no_grad() scored after the block): no backward can use "
                           "such a loss, so it is counted as validation, not training. Compute it inside the "
                           "no_grad block to make that explicit", category=MonitorNotice)

    def __call__(self, module: nn.Module, args: Any, out: Any) -> None:
        if in_graph():  # loss_fn traced into a graph compiled after attach: said at the tick
            self.train.in_graph = True
            return
        if self.off or not self.train.active:  # broken, or is_active_fn said no (both sites share the flag)
            return
        passes = self.passes[0]
        if passes != self.passes_seen:  # the usual call: the watched model ran since the last one
            self.passes_seen, self.copies_seen = passes, COPY_PASSES[0]
        elif COPY_PASSES[0] != self.copies_seen:
            self._after_a_copy()
        try:
            training = torch.is_grad_enabled() if self.from_grad else module.training
            if training and self.from_grad and not out.requires_grad:
                # grad enabled, but a loss no backward can use: its inputs came from a no_grad pass (the logits of
                # a validation pass scored after the no_grad block); monitorch counts it as training
                training = False
                if not self.said_detached:
                    self._say_detached()
            y = out.detach() if out.requires_grad else out
            if y.numel() != 1:
                if not self.averaged_warned:
                    self.averaged_warned = True
                    self.faults.report(self.lens, f"loss_fn returned {y.numel()} values (reduction='none'?); "
                                       "their mean is recorded per batch")
                y = y.float().mean()
            site = self.train if training else self.val
            # the row is [1]: copy_ broadcasts a 0-d or [1] value (the usual loss) without a reshape
            site.slot(y.device).copy_(y if y.dim() <= 1 else y.reshape(1))
        except Exception as exc:  # noqa: BLE001
            self.off = True
            self.faults.report(self.lens, f"loss hook failed with {type(exc).__name__}: {exc}; loss is no longer "
                               "recorded, training goes on")

    def remove(self) -> None:
        self.handle.remove()


class LossMetrics(AbstractLens):
    """Loss and metrics per epoch. Same arguments as ``monitorch.lens.LossMetrics``.

    With ``loss_fn`` the loss of every batch is read from the loss module's output on its device (no
    host sync); without it, values come from ``inspector.push_loss``. A forward pass under grad counts as
    training (``evaluation_from_grad=True``), otherwise as validation. Metrics come from
    ``inspector.push_metric``. Non-finite losses are left out of the statistics and reported.
    """

    def __init__(self, *, metrics: Iterable[str] | None = None, evaluation_from_grad: bool = True,
                 separate_loss_and_metrics: bool = True, loss_fn: nn.Module | None = None,
                 loss_fn_inplace: bool = True, loss_line: str | Iterable[str] = "mean",
                 loss_range: str | Iterable[str] | None = "std", metrics_line: str | Iterable[str] = "mean",
                 metrics_range: str | Iterable[str] | None = None) -> None:
        super().__init__()
        if metrics is None:
            metrics = ()
        if isinstance(metrics, str):
            metrics = (metrics,)
        self._metrics = list(metrics)
        for m in self._metrics:
            if not isinstance(m, str):
                raise TypeError(f"metrics= must be a list of metric names (str), got an entry {m!r}")
        if loss_fn is not None and not isinstance(loss_fn, nn.Module):
            raise TypeError(f"loss_fn= must be a torch.nn.Module such as nn.CrossEntropyLoss(), got "
                            f"{type(loss_fn).__name__}; for a functional loss use inspector.push_loss(loss, train=...)")
        self._loss_fn = loss_fn
        self._from_grad = bool(evaluation_from_grad)
        self._separate = bool(separate_loss_and_metrics)
        self._loss_line = as_method_list(loss_line, argument="loss_line", ranges=False)
        self._loss_range = as_method_list(loss_range, argument="loss_range", ranges=True)
        self._metrics_line = as_method_list(metrics_line, argument="metrics_line", ranges=False)
        self._metrics_range = as_method_list(metrics_range, argument="metrics_range", ranges=True)
        if not self._loss_line:
            raise ValueError("loss_line= must name at least one aggregation, e.g. 'mean'")
        self._train_site: ScalarSite | None = None
        self._val_site: ScalarSite | None = None
        self._register: _LossHook | None = None
        # Per-batch losses are one float each: always kept, so every aggregation is available
        # (``loss_fn_inplace`` is accepted for compatibility).
        self._keep = True
        self._last: dict[tuple[bool, str], float] = {}
        self._steps_before = 0  # the run's optimizer steps at the previous compute
        self._stepped = False
        self._had_train_loss = False  # a row of this run had a training loss (its chart is not empty)
        #: whether the row being ticked is owed a pushed training loss when the optimizer stepped in it: a
        #: hand-written loop pushes one at every step (True). A framework callback sets it before each tick: False
        #: for a row in which the framework logged nothing (a logging interval longer than the row), where a
        #: missing loss is no wiring fault
        self.train_loss_due = True

    @property
    def metrics(self) -> list[str]:
        return list(self._metrics)

    def tags(self) -> list[tuple[str, TagAttributes]]:
        attrs = TagAttributes(False, True, True, TagType.NUMERICAL)
        if not self._separate:
            return [("Loss & Metrics", attrs)]
        return [("Loss", attrs)] + ([("Metrics", attrs)] if self._metrics else [])

    def register_module(self, module: nn.Module, name: str, leaf: bool) -> None:
        if self._loss_fn is None or self._register is not None:
            return
        faults = self.ctx.faults
        # loss_fn=model for a compiled model: hook the wrapper, whose hooks run outside the graph
        loss_fn = self.ctx.graphs.eager(self._loss_fn)
        if self.refuse_traced(loss_fn, f"loss_fn ({type(loss_fn).__name__}; record its value with "
                                       "inspector.push_loss(loss.detach(), train=...) instead)"):
            return
        self._train_site = ScalarSite("train loss", self.lens_name, faults, self._keep)
        self._val_site = ScalarSite("val loss", self.lens_name, faults, self._keep)
        self._register = _LossHook(loss_fn, self._train_site, self._val_site, self._from_grad, faults,
                                   self.lens_name, self.ctx.passes)
        self._sites = [self._train_site, self._val_site]

    def detach(self) -> None:
        if self._register is not None:
            self._register.remove()
            self._register = None
        super().detach()
        self._train_site = self._val_site = None
        self._steps_before, self._had_train_loss, self.train_loss_due = 0, False, True  # the next run's own

    def set_hidden(self, modules: set[str], types: set[str]) -> None:
        pass  # the loss is not a module of the model

    def flush(self, final: bool = True) -> None:
        for site in self._sites:
            site.flush()

    def _loss_summary(self, site: Site | None, summaries: dict[int, list[Summary]], train: bool) -> Summary | None:
        if self._loss_fn is not None and site is not None:
            s = summaries[id(site.stream)][0]
            return s if s.count or s.nonfinite else None
        name = self.ctx.train_loss_str if train else self.ctx.non_train_loss_str
        return self.ctx.pushes.summary(name)

    def _say_no_training_loss(self) -> None:
        """The optimizer stepped this epoch, no training loss arrived, none arrived in an earlier row of the run
        (the chart is empty so far) and one was due (:attr:`train_loss_due`): the loss is wired wrong (said
        once). A row without a loss after rows with one (the last, partial row of a framework logging every k
        steps) says nothing."""
        if not self._stepped or self._had_train_loss or (self._loss_fn is None and not self.train_loss_due):
            return  # (a hooked loss_fn sees every step's loss, whatever a framework logs)
        if self._loss_fn is not None:
            why = (f"LossMetrics(loss_fn={type(self._loss_fn).__name__}) was never called with grad enabled while "
                   "the optimizer stepped: the training loop computes its loss with another callable "
                   "(F.cross_entropy, a new loss module per step, model(x, y)). Compute the training loss with that "
                   "loss_fn object, or push it each step: inspector.push_loss(loss.detach(), train=True)")
        elif self.ctx.loss_source is not None:
            why = (f"{self.ctx.loss_source} received no value under that name while the optimizer stepped: pass the "
                   "name the training step logs its loss under (self.log(name, loss) in Lightning; 'loss' in the HF "
                   "Trainer's logs)")
        else:
            why = ("no training loss was pushed while the optimizer stepped: give LossMetrics(loss_fn=criterion) "
                   "the loss module the loop calls, or push it each step: inspector.push_loss(loss.detach(), "
                   "train=True)")
        self.ctx.faults.report(self.lens_name, f"the training loss chart stays empty: {why}", category=MonitorNotice)

    def compute(self, summaries: dict[int, list[Summary]]) -> list[Call]:
        ctx = self.ctx
        now = ctx.steps.count if ctx.steps is not None else 0
        if now < self._steps_before:
            self._steps_before = 0  # a new run: its own step count
        self._stepped, self._steps_before = now > self._steps_before, now  # optimizer steps in this epoch
        loss_tag = "Loss" if self._separate else "Loss & Metrics"
        metrics_tag = "Metrics" if self._separate else "Loss & Metrics"
        values: dict[str, float] = {}
        ranges: dict[tuple[str, str], tuple[float, float]] = {}
        self._last = {}
        for train, label in ((True, ctx.train_loss_str), (False, ctx.non_train_loss_str)):
            s = self._loss_summary(self._train_site if train else self._val_site, summaries, train)
            if train and s is not None:
                self._had_train_loss = True
            if s is None:
                if train:
                    for m in self._loss_line:
                        values[f"{label} {m}"] = float("nan")
                    self._say_no_training_loss()
                continue
            if s.nonfinite:
                # one text per loss: warned once per run, then counted once per tick with such values (a text
                # with the count in it would warn again at every tick of a diverged run)
                ctx.faults.report(self.lens_name, f"non-finite {label} values were left out of the epoch's "
                                  "statistics (NaN/Inf loss)",
                                  shown=f"{s.nonfinite} non-finite {label} value(s) in an epoch were left out of the "
                                  "statistics (NaN/Inf loss); later ticks count them in the run's problems without "
                                  "warning again")
            for m in self._loss_line:
                values[f"{label} {m}"] = v = s.point(m)
                self._last[(train, m)] = v
            for r in self._loss_range:
                lo, hi = RANGE_NAMES[r]
                ranges[(f"{label} {lo}", f"{label} {hi}")] = s.range(r)
        calls = [Call("numerical", loss_tag, OrderedDict([(loss_tag, values)]), OrderedDict([(loss_tag, ranges)]))]
        if self._metrics:
            mvalues: dict[str, float] = {}
            mranges: dict[tuple[str, str], tuple[float, float]] = {}
            for metric in self._metrics:
                s = ctx.pushes.summary(metric)
                if s is None:
                    continue
                for m in self._metrics_line:
                    mvalues[f"{metric} {m}"] = s.point(m)
                for r in self._metrics_range:
                    lo, hi = RANGE_NAMES[r]
                    mranges[(f"{metric} {lo}", f"{metric} {hi}")] = s.range(r)
            calls.append(Call("numerical", metrics_tag, OrderedDict([(metrics_tag, mvalues)]),
                              OrderedDict([(metrics_tag, mranges)])))
        return calls

    def loss(self, *, train: bool, method: str | None = None) -> float:
        """The loss of the last ticked epoch (for early stopping), aggregated with ``method``
        (default: the first of ``loss_line``)."""
        method = method or self._loss_line[0]
        if method not in self._loss_line:
            raise ValueError(f"method={method!r} was not computed; LossMetrics(loss_line=...) has "
                             f"{', '.join(self._loss_line)}")
        key = (bool(train), method)
        if key not in self._last:
            which = "training" if train else "validation"
            hint = ("validation passes are recognised by running them under torch.no_grad()"
                    if not train and self._loss_fn is not None else
                    "call inspector.push_loss(value, train=...) or give LossMetrics(loss_fn=...)")
            raise LookupError(f"no {which} loss was recorded in the last ticked epoch; {hint}")
        return self._last[key]
