"""Fault isolation: a failure inside a hook is reported once, visibly, and training goes on.

Every hook body runs under ``try``; on an exception the hook disables its own site (its series shows a
gap from then on) and calls :meth:`FaultLog.report`, which warns once per (lens, message) and forwards
the problem to the record, where the widget's status line shows it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable


class MonitorWarning(UserWarning):
    """A problem the monitor noticed (a hook failure, non-finite values, a likely typo)."""


class MonitorNotice(UserWarning):
    """Something the user should know that is not a fault: what no lens watches, rates that carry no
    information. Shown once, like a :class:`MonitorWarning`, and listed in the widget's status line."""


class FaultLog:
    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self._listeners: list[Callable[[str, str, int], None]] = []

    def subscribe(self, fn: Callable[[str, str, int], None]) -> None:
        self._listeners.append(fn)

    def report(self, lens: str, message: str, *, warn: bool = True,
               category: type[UserWarning] = MonitorWarning) -> None:
        key = (lens, message)
        first = key not in self.counts
        self.counts[key] = self.counts.get(key, 0) + 1
        if first and warn:
            warnings.warn(f"monitorch_widget [{lens}]: {message}", category, stacklevel=3)
        for fn in self._listeners:
            fn(lens, message, self.counts[key])

    def clear(self) -> None:
        self.counts.clear()
