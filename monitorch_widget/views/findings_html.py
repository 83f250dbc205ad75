"""The health findings as an HTML section, for the static picture and the HTML export (README, "Health checks").

Plain escaped HTML with inline styles (no script, no external CSS): it must render on GitHub, nbviewer and in
the export page under its Content-Security-Policy.
"""

from __future__ import annotations

from html import escape
from typing import Any

_COLORS = {"critical": "#c62828", "warning": "#b26a00", "info": "#1565c0"}
_RANK = {"critical": 0, "warning": 1, "info": 2}
#: Findings listed at most: the static picture must stay small whatever the model (the rest is counted).
SHOWN = 12


def findings_section(record: Any, hidden_runs: Any = ()) -> str:
    """``<section class="mw-findings">`` listing the runs' findings (active and severe first, at most
    :data:`SHOWN`, the rest counted) but those of ``hidden_runs`` (run ids the widget's filters hide, as its own
    list does), or ``""`` when none (or when ``record`` cannot be read: the section must never break the picture
    it is part of)."""
    try:
        hidden = set(hidden_runs)
        findings = [f for f in record.health.findings() if f.run not in hidden]
        labels = {run.id: run.label for run in record.runs}
    except Exception:  # noqa: BLE001
        return ""
    if not findings:
        return ""
    items = []
    ordered = sorted(findings, key=lambda f: (not f.active, _RANK.get(f.severity, 3), -f.run, f.since))
    for f in ordered[:SHOWN]:
        color = _COLORS.get(f.severity, "#555")
        where = f"<b>layer '{escape(f.layer)}'</b> · " if f.layer else ""
        run = escape(labels.get(f.run, f"run {f.run}"))
        items.append(
            f'<li class="mw-finding" data-id="{escape(f.id)}" style="margin:2px 0;{"" if f.active else "opacity:.6"}">'
            f'<span style="color:{color};font-weight:600">{escape(f.severity)}</span> '
            f'{where}{escape(f.check)} <span style="color:#888">({run}, {f.span()})</span>: {escape(f.message)} '
            f'<i>Try: {escape(f.advice)}</i></li>')
    rest = ordered[SHOWN:]
    more = (f'<div style="color:#888">… and {len(rest)} more ({sum(f.active for f in rest)} active): '
            "<code>inspector.findings</code> lists them all</div>" if rest else "")
    return ('<section class="mw-findings" style="font:12px sans-serif;margin:6px 0">'
            '<div style="font-weight:600">Health findings</div>'
            f'<ul style="margin:2px 0;padding-left:18px">{"".join(items)}</ul>{more}</section>')
