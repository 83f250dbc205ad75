"""Fault isolation: a failure inside a hook is reported once, visibly, and training goes on.

Every hook body runs under ``try``; on an exception the hook disables its own site (its series shows a
gap from then on) and calls :meth:`FaultLog.report`, which warns once per (lens, message) and forwards
the problem to the record, where the widget's status line shows it. Its kind goes with it: ``"warning"`` for a
:class:`MonitorWarning` (a problem), ``"notice"`` for a :class:`MonitorNotice` (information), so the views
count and show the two apart.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Sequence
from types import FrameType

import torch

# Frames in these packages are the monitor's, PyTorch's or a training framework's: never the line a user wrote.
_OWN = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,
        os.path.dirname(os.path.abspath(torch.__file__)) + os.sep)
_FRAMEWORKS = ("lightning", "pytorch_lightning", "transformers", "accelerate")


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning issued by this function's caller point at the user's line: the
    first frame outside this package, torch and the training frameworks (a hook's warning at the user's
    ``loss.backward()`` or ``model(x)``, a tick's at ``tick_epoch()``, a Lightning run's at ``trainer.fit``);
    2 (the caller's caller) when every frame is inside."""
    files = [getattr(sys.modules.get(name), "__file__", None) for name in _FRAMEWORKS]
    inner = _OWN + tuple(os.path.dirname(os.path.abspath(f)) + os.sep for f in files if isinstance(f, str))
    frame: FrameType | None = sys._getframe(2)  # the caller's caller: stacklevel 2
    level = 2
    while frame is not None and frame.f_code.co_filename.startswith(inner):
        frame, level = frame.f_back, level + 1
    return level if frame is not None else 2


def listed(items: Sequence[str], shown: int = 8, quote: bool = True) -> str:
    """The first ``shown`` of ``items`` for a message, quoted (an nn.Sequential's ``'3'`` reads as a name, not a
    count), then how many more: ``'a', 'b' and 3 more``."""
    head = [repr(i) if quote else str(i) for i in items[:shown]]
    return ", ".join(head) + (f" and {len(items) - shown} more" if len(items) > shown else "")


class MonitorWarning(UserWarning):
    """A problem the monitor noticed (a hook failure, non-finite values, a likely typo)."""


class MonitorNotice(UserWarning):
    """Something the user should know that is not a fault: what no lens watches, rates that carry no
    information. Shown once, like a :class:`MonitorWarning`, and listed in the widget's status line."""


def kind_of(category: type[UserWarning]) -> str:
    """A report's kind as the record and the wire carry it: ``"notice"`` for a :class:`MonitorNotice` (or a
    subclass), ``"warning"`` for anything else (a :class:`MonitorWarning`: a problem)."""
    return "notice" if issubclass(category, MonitorNotice) else "warning"


class FaultLog:
    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self._listeners: list[Callable[[str, str, int, str], None]] = []
        self._nonfinite_warned: set[str] = set()  # lenses that warned of NaN/Inf values in this run
        #: reports are recorded but not printed (a non-master rank computing the combined epoch: the master rank
        #: prints what every rank would say alike)
        self.quiet = False

    def subscribe(self, fn: Callable[[str, str, int, str], None]) -> None:
        """Call ``fn(lens, message, count, kind)`` at every report: ``count`` the reports of that (lens, message)
        so far, ``kind`` ``"warning"`` or ``"notice"`` (:func:`kind_of` the report's category)."""
        self._listeners.append(fn)

    def report(self, lens: str, message: str, *, warn: bool = True,
               category: type[UserWarning] = MonitorWarning, shown: str | None = None) -> None:
        """Count the problem ``(lens, message)`` and warn at its first report (``shown``: the warning's text there,
        when the first occurrence says more than the problem's fixed text)."""
        key = (lens, message)
        first = key not in self.counts
        self.counts[key] = self.counts.get(key, 0) + 1
        if first and warn and not self.quiet:
            warnings.warn(f"monitorch_widget [{lens}]: {shown or message}", category, stacklevel=user_stacklevel())
        kind = kind_of(category)
        for fn in self._listeners:
            fn(lens, message, self.counts[key], kind)

    def report_nonfinite(self, lens: str, layers: Sequence[tuple[str, int]], units: str, what: str) -> None:
        """NaN/Inf values of ``layers`` (name, how many ``units`` this tick) left out of ``what``: per layer one
        problem with a fixed text, counted once per tick (the health check ``nonfinite`` names the layer from it),
        and one :class:`MonitorWarning` per lens per run, at its first such tick, naming the layers. A diverged
        run has NaN in every layer at every tick: a warning per layer and tick (hundreds of lines) would bury
        the first one, which is the one that says where it started."""
        if not layers:
            return
        for name, _ in layers:
            self.report(lens, f"{name}: {units} with NaN/Inf values were left out of {what}", warn=False)
        if lens in self._nonfinite_warned or self.quiet:
            return
        self._nonfinite_warned.add(lens)
        named = listed([f"{name!r} ({n})" for name, n in layers], shown=3, quote=False)
        warnings.warn(f"monitorch_widget [{lens}]: {units} with NaN/Inf values were left out of {what} (per layer): "
                      f"{named}{' layers' if len(layers) > 3 else ''}. Later ticks count them in the run's problems "
                      f"(the widget's status line, inspector.history.runs[-1].problems) without warning again.",
                      MonitorWarning, stacklevel=user_stacklevel())

    def clear(self) -> None:
        self._nonfinite_warned.clear()
        self.counts.clear()
