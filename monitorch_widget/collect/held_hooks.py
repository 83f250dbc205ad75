"""Hooks that the user's model holds: a copy or a pickle of the model takes none of them.

torch keeps a module's hooks in the module (``_forward_hooks``, ``_forward_pre_hooks``), so
``copy.deepcopy(model)`` (the usual best-checkpoint copy), ``torch.save(model)`` and ``pickle.dumps(model)``
reach every hook and, through it, the whole monitor: the record, the live widget
(ipywidgets refuses to be copied: ``NotImplementedError``), closures (which cannot be pickled). A deep copy that
did succeed would feed the copy's batches into a copy of the monitor, or into the original's buffers. (An
optimizer's copy or pickle keeps no step hooks: ``Optimizer.__getstate__`` leaves them out.)

torch drops a parameter's backward hooks when it pickles it; ours go the same way: every hook object we hand to a
module copies and pickles as :func:`ignore`, a module-level function that does nothing. The copy or the
loaded model trains unwatched (attach an inspector to it to watch it), with one no-op hook per hooked module,
and the original's monitor keeps its own counts. One exception: the copy of the inspector's root pre-hook
(:class:`RootHook`) counts the copy's forward passes in :data:`COPY_PASSES`, because one module is usually
shared with the copy rather than copied -- the loss criterion ``LossMetrics(loss_fn=...)`` hooks: a loss computed
after a copy's forward pass, with no pass of the watched model in between, is the copy's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def ignore(*args: Any, **kwargs: Any) -> None:
    """What a copied or unpickled hook of ours does: nothing (returns None, so the output is unchanged)."""
    return None


def _ignored() -> Callable[..., None]:
    return ignore


class NotCopied:
    """Base of a hook object registered on the user's model: ``copy``, ``deepcopy`` and ``pickle`` make
    :func:`ignore` of it (``__reduce__``; ``copy`` uses it too)."""

    __slots__ = ()

    def __reduce__(self) -> tuple[Callable[[], Callable[..., None]], tuple[()]]:
        return (_ignored, ())


#: forward passes of copies of watched models (their copied :class:`RootHook` counts them), in this process
COPY_PASSES = [0]


def _count_copy_pass(*args: Any, **kwargs: Any) -> None:
    """What a copied or unpickled :class:`RootHook` does: count the copy's forward pass (output unchanged)."""
    COPY_PASSES[0] += 1


def _copy_counter() -> Callable[..., None]:
    return _count_copy_pass


class HeldHook(NotCopied):
    """A bound method or closure wrapped for registration as a hook: calls pass through (one Python call more,
    on hooks that run at most once per forward pass), copies and pickles are :func:`ignore`."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


class RootHook(HeldHook):
    """The inspector's forward pre-hook on the attached model: a copy or a pickle of it counts the copy's forward
    passes (:func:`_count_copy_pass`) instead of doing nothing."""

    __slots__ = ()

    def __reduce__(self) -> tuple[Callable[[], Callable[..., None]], tuple[()]]:
        return (_copy_counter, ())
