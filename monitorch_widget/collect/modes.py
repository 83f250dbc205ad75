"""Grad and inference modes for the monitor's own tensor work.

Hooks run inside whatever context the user trains or evaluates in: ``torch.no_grad()``,
``torch.inference_mode()``, ``create_graph=True`` backward passes, anomaly detection. The monitor's own
buffers must stay ordinary tensors (an inference tensor cannot be updated in place outside inference mode,
so a buffer first created during an evaluation would break the next training batch) and its arithmetic must
never record autograd history (``out=`` ops refuse inputs that require grad). Every allocation and fold in
``collect/`` therefore runs under :func:`monitor_mode`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])


def monitor_mode(fn: F) -> F:
    """Run ``fn`` with grad off and outside inference mode (normal, non-inference tensors)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # Already there (a fold inside a tick inside a fold): entering the two modes again costs more than
        # most folds of a small model, so check first.
        if not torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            return fn(*args, **kwargs)
        # This order: inference_mode(False) restores grad mode on entry, so no_grad must come second.
        with torch.inference_mode(False), torch.no_grad():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
