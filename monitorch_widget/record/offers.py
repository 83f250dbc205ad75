"""What the views offer on a record (``to_html``, ``to_bqplot``, display as a widget), registered by
``monitorch_widget.views`` at package import: the record room never imports a view."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_OFFERS: dict[str, Callable[..., Any]] = {}


def offer(name: str, fn: Callable[..., Any]) -> None:
    """Register a view's convenience on :class:`Record` (``"to_html"``, ``"to_bqplot"``, ``"display"``)."""
    _OFFERS[name] = fn


def offered(name: str) -> Callable[..., Any]:
    fn = _OFFERS.get(name)
    if fn is None:
        raise RuntimeError(f"Record.{name}: no view offers this; import monitorch_widget (its views register "
                           "themselves on import)")
    return fn
