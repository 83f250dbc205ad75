"""The Trainer's optimizers for the inspector's ``ParameterUpdateGeometry(None)`` lenses (both callbacks).

A framework builds the optimizer inside ``fit`` / ``train``, so a user can only write
``ParameterUpdateGeometry(None)``: :class:`OptimizerHandOver` gives it the Trainer's optimizer for the run. One lens
watches one optimizer and an inspector holds one lens of the type, so with several optimizers (a GAN's, in
Lightning) the first is watched, and the callback says so with the assignment that watches another one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from ..collect.faults import MonitorNotice, listed
from ..collect.parameter_sets import ParameterSite
from ..inspector import PyTorchInspector
from ..lens.parameter_update_geometry import ParameterUpdateGeometry
from ..lens.update_notices import StepNotices, unwrap


class OptimizerHandOver:
    """:meth:`hand` gives the Trainer's optimizer to every ``ParameterUpdateGeometry(None)`` lens of the inspector
    (and to those it handed one before: a second ``fit`` builds a new optimizer) before the run attaches;
    :meth:`take_back` sets them to None again after it detaches. A wrapper that never ran ``Optimizer.__init__``
    (accelerate's ``AcceleratedOptimizer``) is unwrapped to the optimizer it drives. A lens built with an optimizer
    keeps its own.

    With several optimizers the first is handed; :meth:`name_the_others`, called before the run's first row, says
    which watched parameters only the others train (their update series stay empty) and how to watch another one:
    assign it to the lens after the hand-over (``lens.optimizer = trainer.optimizers[1]`` in the
    LightningModule's ``on_train_start``), since a second ``ParameterUpdateGeometry`` in the inspector is refused
    and the optimizer does not exist before ``fit``. The lens's own notice about parameters its optimizer does not
    hold then names only those no optimizer of the Trainer holds."""

    def __init__(self, inspector: PyTorchInspector, owner: str) -> None:
        self.inspector = inspector
        self.owner = owner
        self._handed: list[ParameterUpdateGeometry] = []
        self._optimizers: list[torch.optim.Optimizer] = []
        self._named = False  # name_the_others spoke for this run

    def hand(self, optimizers: Iterable[Any]) -> None:
        self._optimizers = [o for o in (unwrap(x) for x in optimizers) if o is not None]
        self._named = False
        if not self._optimizers:
            return
        first = self._optimizers[0]
        for lens in self.inspector.lenses:
            if isinstance(lens, ParameterUpdateGeometry) and (lens.optimizer is None or
                                                               any(lens is h for h in self._handed)):
                lens.optimizer = first
                if not any(lens is h for h in self._handed):
                    self._handed.append(lens)

    def name_the_others(self, where: str) -> None:
        """Several optimizers: say, once per run, what each handed lens watches and which watched parameters only
        the others train (``where``: the hook in which the user can assign another one). Call after the run
        attached (attach clears the run's notices) and after the user's hooks could assign one, before the
        first row."""
        if self._named or len(self._optimizers) < 2:
            return
        self._named = True
        holders: dict[int, list[int]] = {}  # id(parameter) -> the Trainer's optimizers holding it
        for i, opt in enumerate(self._optimizers):
            for group in opt.param_groups:
                for p in group["params"]:
                    holders.setdefault(id(p), []).append(i)
        for lens in self._handed:
            watched = next((i for i, o in enumerate(self._optimizers) if o is lens.optimizer), None)
            others: dict[int, list[str]] = {}
            said = StepNotices(lens.lens_name, self.inspector.faults)
            for site in lens.sites:
                if not isinstance(site, ParameterSite) or id(site.param) not in holders:
                    continue  # no optimizer of the Trainer holds it: the lens's own notice names it
                # named as the lens names it (update_notices.StepNotices.not_held), and marked said there: its
                # advice, a second ParameterUpdateGeometry, cannot be followed under a callback
                name = f"{site.module_name}.{site.param_name}" if site.module_name else site.param_name
                said.named.add(name)
                held = holders[id(site.param)]
                if watched not in held and not site.hidden and site.param.requires_grad:
                    others.setdefault(held[0], []).append(name)
            lens._said = said  # created by the lens at its first tick otherwise (detach resets it)
            if watched is None or not others:
                continue
            opts = self._optimizers
            trained = "; ".join(f"trainer.optimizers[{i}] ({type(opts[i]).__name__}): {listed(names)}"
                                for i, names in sorted(others.items()))
            self.inspector.faults.report(lens.lens_name, (
                f"the Trainer has {len(opts)} optimizers and this lens watches one, trainer.optimizers[{watched}] "
                f"({type(opts[watched]).__name__}){f', which {self.owner} hands it' if watched == 0 else ''}. The "
                f"parameters only the others train get no update series: {trained}. To watch another optimizer, "
                f"assign it after the hand-over, in {where}: lens.optimizer = self.trainer.optimizers[{min(others)}] "
                "(lens: this ParameterUpdateGeometry; an inspector holds one)"), category=MonitorNotice)

    def take_back(self) -> None:
        for lens in self._handed:
            lens.optimizer = None
        self._handed = []
        self._optimizers = []
