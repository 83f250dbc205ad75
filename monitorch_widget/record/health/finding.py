"""What a health check says: :class:`Finding` (the wire contract of ``js/protocol.ts``) and :class:`Condition`.

A check looks at one final row and returns the conditions that hold there; the monitor (``monitor.py``) turns
conditions held for long enough into findings, keeps each finding's id while its condition holds, and sets
``until`` once it no longer does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

SEVERITIES = ("critical", "warning", "info")


@dataclass
class Finding:
    """One health-check result (``js/protocol.ts`` ``Finding``).

    ``id``: ``"<run>:<check>:<layer or ->"``, stable while the condition holds; ``layer``: the module or
    parameter's series name, or None for the whole run; ``tag``: the panel it is about (the chart to link to);
    ``since`` / ``until``: epochs (``until`` None while the condition holds); ``value``: the measured quantity
    (a rate, ratio or loss; None when there is none); ``message``: what is wrong; ``advice``: what to try.
    """

    id: str
    run: int
    check: str
    severity: str
    layer: str | None
    tag: str | None
    since: float
    until: float | None
    value: float | None
    message: str
    advice: str
    _wire: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def active(self) -> bool:
        """Whether the condition still held at the last recorded epoch."""
        return self.until is None

    def of_run(self, run: int) -> Finding:
        """This finding as run ``run``'s (a run imported or loaded under another id): id ``"<run>:<check>:<layer>"``
        (an earlier episode's ``#<since>`` kept)."""
        return replace(self, id=f"{run}:{self.id.split(':', 1)[1]}", run=run)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (non-finite ``value`` -> None), a new one at each call.

        Built once per finding: the monitor replaces a finding whose condition changed and only ever sets
        ``until`` on one it keeps (which rebuilds it); a finding is read-only for everyone else."""
        wire = self._wire
        if wire is None or wire["until"] != self.until:
            # plain Python numbers (a check may hand over numpy scalars): the wire sends these dicts as they are
            value = float(self.value) if self.value is not None and math.isfinite(self.value) else None
            wire = self._wire = {
                "id": self.id, "run": int(self.run), "check": self.check, "severity": self.severity,
                "layer": self.layer, "tag": self.tag, "since": float(self.since),
                "until": None if self.until is None else float(self.until), "value": value,
                "message": self.message, "advice": self.advice}
        return dict(wire)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        """Inverse of :meth:`to_dict`; raises ``KeyError`` / ``TypeError`` / ``ValueError`` on a malformed dict."""
        severity = str(d["severity"])
        if severity not in SEVERITIES:
            raise ValueError(f"finding severity {severity!r} is not one of {', '.join(SEVERITIES)}")
        value = d.get("value")
        until = d.get("until")
        return cls(id=str(d["id"]), run=int(d["run"]), check=str(d["check"]), severity=severity,
                   layer=None if d.get("layer") is None else str(d["layer"]),
                   tag=None if d.get("tag") is None else str(d["tag"]), since=float(d["since"]),
                   until=None if until is None else float(until), value=None if value is None else float(value),
                   message=str(d["message"]), advice=str(d["advice"]))

    def line(self) -> str:
        """One line for text views: ``[warning] layer 'relu2' dead_layer (since epoch 3): ... Try: ...``."""
        where = f"{named(self.layer)} " if self.layer else ""
        return f"[{self.severity}] {where}{self.check} ({self.span()}): {self.message} Try: {self.advice}"

    def span(self) -> str:
        """When it held, as every text view says it: ``since epoch 3`` or ``since epoch 3, resolved at epoch 5``."""
        since = f"since epoch {_epoch(self.since)}"
        return since if self.until is None else f"{since}, resolved at epoch {_epoch(self.until)}"


@dataclass
class Condition:
    """What one check sees in one row. ``need``: consecutive epochs it must hold before it becomes a finding;
    ``since``: when the check itself knows the epoch the problem began (else the streak's first epoch);
    ``kind``: for a check that sees opposite problems on one layer (``update_ratio``: steps far too large, or
    too small / none), which one: a change of kind ends one finding and starts another (its own id ``...:<kind>``),
    so an episode of one is never rewritten into the other."""

    check: str
    severity: str
    layer: str | None
    tag: str | None
    value: float | None
    message: str
    advice: str
    need: int = 1
    since: float | None = None
    kind: str | None = None


def _epoch(e: float) -> str:
    return str(int(e)) if float(e).is_integer() else f"{e:g}"


def named(layer: str | None) -> str:
    """A layer as findings name it: ``layer '3'`` (an nn.Sequential's bare index reads like a number)."""
    return f"layer '{layer}'"


def names(layers: list[str], limit: int = 3) -> str:
    """``layer '3'``, ``layers '1', '3'`` (the first ``limit``, then how many more)."""
    quoted = [f"'{g}'" for g in layers[:limit]]
    more = f" and {len(layers) - limit} more" if len(layers) > limit else ""
    return f"layer{'s' if len(layers) > 1 else ''} {', '.join(quoted)}{more}"


def pct(v: float) -> str:
    """0.4213 -> '42%'."""
    return f"{100 * v:.0f}%"


def sci(v: float) -> str:
    """A ratio or norm for a message: 3 significant digits, scientific when small or large."""
    if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e4):
        return f"{v:.2e}"
    return f"{v:.3g}"


def loss_change(before: float, after: float) -> str:
    """How a loss changed from ``before`` to ``after`` (finite, ``before`` non-zero), for a message: "improved by
    only 0.4%", "got worse by 2.4% (2.1 -> 2.15)", "got 704x worse (0.0138 -> 9.72)" once it more than doubled (a
    loss that rose did not improve "by -2.4%" nor "by -70354.5%": trial r15), "did not change"."""
    improvement = (before - after) / abs(before)
    if improvement > 0:
        return f"improved by only {improvement:.1%}"
    if improvement == 0:
        return "did not change"
    values = f"({sci(before)} -> {sci(after)})"
    if before > 0 and after >= 2 * before:
        return f"got {after / before:.3g}x worse {values}"
    return f"got worse by {-improvement:.1%} {values}"
