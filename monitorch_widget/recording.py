"""Stopping and resuming the measurement of modules: the one control that changes what is recorded.

Hiding a module in the widget is view-only (the ``filters`` trait); every layer stays recorded and the
warning panels keep covering every layer. :class:`RecordingSwitch` is the separate, explicit control
(``inspector.stop_recording(pattern)`` / ``resume_recording(pattern)``, or a view's ``recording`` request).
It always runs on the training thread (front-end requests are queued there by ``views/sync.py``).

Epoch semantics, so that every epoch is either fully measured or marked: a stop takes effect at once (the
epoch in progress becomes a gap); a resume takes effect at the next tick (the epoch in progress stays a gap), or
at once when no forward pass of the epoch ran yet (``tick_epoch(); resume_recording(...)``).
Every gap made this way is carried in the record as a span ``[first epoch, last epoch]`` (``None``: still
stopped) per series group (``Record.mark_unrecorded``), which the charts draw as "not recorded".
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .lens.base import AbstractLens
    from .record import Record


class RecordingSwitch:
    """Which patterns are stopped, and the not-recorded spans they opened in the current run."""

    def __init__(self) -> None:
        self.stopped: list[str] = []
        self._resuming: list[str] = []
        self._open: dict[str, float] = {}  # group -> first unrecorded epoch of its open span

    @staticmethod
    def check(patterns: Iterable[object], call: str) -> list[str]:
        out = list(patterns)
        if not out or not all(isinstance(p, str) and p for p in out):
            raise TypeError(f"{call} needs module names, globs or module type names as strings, e.g. "
                            f"{call.split('(')[0]}('fc1', 'encoder.*', 'Dropout'); got {out!r}")
        return [str(p) for p in out]

    @staticmethod
    def groups(lenses: list[AbstractLens], patterns: list[str]) -> set[str]:
        """Names of the sites (series groups) that ``patterns`` match: a module name glob or a type name."""
        names: set[str] = set()
        for lens in lenses:
            for site in lens.sites:
                mtype = getattr(site, "module_type", None)
                if any(fnmatch.fnmatchcase(site.name, p) or mtype == p for p in patterns):
                    names.add(site.name)
        return names

    def stop_checked(self, patterns: Iterable[object], lenses: list[AbstractLens] | None, record: Record,
                     epoch: float) -> set[str]:
        """:meth:`stop` for the public ``stop_recording(*patterns)``: ``TypeError`` for a non-string pattern, and
        with ``lenses`` (an attached model's) ``ValueError`` for a pattern no watched module matches."""
        pats = self.check(patterns, "stop_recording(pattern, ...)")
        if lenses is None:
            self.stop(pats, [], record, epoch)
            return set()
        unmatched = [p for p in pats if not self.groups(lenses, [p])]
        if unmatched:
            known = sorted({s.name for lens in lenses for s in lens.sites})
            raise ValueError(f"stop_recording: {unmatched} match no watched module; watched: {known[:12]}"
                             f"{' ...' if len(known) > 12 else ''}")
        return self.stop(pats, lenses, record, epoch)

    def stop(self, patterns: list[str], lenses: list[AbstractLens], record: Record, epoch: float) -> set[str]:
        """Stop measuring what ``patterns`` match now; returns the groups newly stopped."""
        for p in patterns:
            if p in self._resuming:
                self._resuming.remove(p)
            if p not in self.stopped:
                self.stopped.append(p)
        return self.apply(lenses, record, epoch)

    def resume(self, patterns: list[str]) -> None:
        """Resume at the next tick (see the module docstring)."""
        for p in patterns:
            if p in self.stopped and p not in self._resuming:
                self._resuming.append(p)

    def resume_now(self, patterns: list[str], lenses: list[AbstractLens], record: Record, epoch: float) -> None:
        """Resume at once: nothing of epoch ``epoch`` ran yet, so it can be a whole measured epoch."""
        self._resuming = [p for p in self._resuming if p not in patterns]
        self.stopped = [p for p in self.stopped if p not in patterns]
        self.apply(lenses, record, epoch)

    def after_tick(self, lenses: list[AbstractLens], record: Record, epoch: float) -> None:
        """The tick that closed ``epoch``: pending resumes take effect from the next epoch on."""
        if not self._resuming:
            return
        self.stopped = [p for p in self.stopped if p not in self._resuming]
        self._resuming = []
        self.apply(lenses, record, epoch + 1)

    def apply(self, lenses: list[AbstractLens], record: Record, epoch: float) -> set[str]:
        """Hooks on/off for the current patterns; opens spans at ``epoch`` for newly stopped groups and closes
        at ``epoch - 1`` those of groups measured again. Returns the groups newly stopped."""
        stopped = self.groups(lenses, self.stopped)
        for lens in lenses:
            lens.set_hidden(stopped, set())
        new = stopped - set(self._open)
        for group in sorted(new):
            self._open[group] = epoch
            record.mark_unrecorded(group, epoch, None)
        for group in sorted(set(self._open) - stopped):
            record.mark_unrecorded(group, self._open.pop(group), epoch - 1)
        return new

    def new_run(self, lenses: list[AbstractLens], record: Record) -> None:
        """After attach: spans belong to runs; what is stopped stays stopped in the new run from epoch 1."""
        self._open.clear()
        self.stopped = [p for p in self.stopped if p not in self._resuming]
        self._resuming = []
        self.apply(lenses, record, 1)
