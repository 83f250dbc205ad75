"""torch.compile'd models: which modules run inside a dynamo graph, and the user's names for them.

Facts this module is built on (torch 2.13, pinned by ``tests/test_compile.py``):

* ``torch.compile(model)`` returns an ``OptimizedModule`` wrapper whose own hooks run eagerly around the
  compiled call; ``model.compile()`` compiles ``model``'s ``_call_impl`` in place, its own hooks included.
* A forward hook on a module inside the graph is *traced*: any Python state it reads becomes a guard, so a
  hook with a per-batch counter recompiles the graph on every batch until dynamo's recompile limit, after
  which the whole forward runs uncompiled. Hooks added after the first compiled call never run (dynamo does
  not guard hook dicts: ``torch._dynamo.config.skip_nnmodule_hook_guards``), and removed ones keep running.
* Post-accumulate-grad hooks and ``torch.optim`` step hooks run outside the graph under every backend.

So the inspector never puts a hook inside a graph: parameter and loss lenses (gradient hooks, optimizer
hooks, hooks on the wrapper) work unchanged, and forward-hook lenses refuse the traced modules at attach,
saying so once (``AbstractLens.refused``). A model compiled *after* attach is caught at its first compiled
call: every forward hook starts with :func:`in_graph`, which dynamo folds to ``True`` while tracing, so the
traced hook is only a flag store (replayed after each call, no guard, no recompile) that the next tick reports.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

try:  # the wrapper class moved between releases; its attribute ``_orig_mod`` did not
    from torch._dynamo.eval_frame import OptimizedModule as _OptimizedModule
except ImportError:  # pragma: no cover - torch without dynamo
    _OptimizedModule = ()  # type: ignore[assignment,misc]

_WRAPPER_SEGMENT = "_orig_mod"
_ATTACHED: weakref.WeakSet[CompiledGraphs] = weakref.WeakSet()  # the graphs of every attached model

#: What a forward-hook lens says about modules inside a graph (at attach, or when compiled after attach).
_WHY = ("forward hooks inside a compiled graph would recompile it on every batch (or break it at every hooked "
        "module), so they are not recorded. Parameter and loss lenses work on compiled models. To see these "
        "modules' outputs, run a diagnostic epoch uncompiled: inspector.attach(model) with the original model (a "
        "new run of the record), train one epoch calling that model, tick, then attach the compiled one again")
#: said at attach, when the model given to attach() runs compiled
COMPILED_ADVICE = _WHY
#: said when modules hooked at attach later run inside a graph (torch.compile called after attach)
COMPILED_AFTER_ATTACH_ADVICE = (_WHY + "; and attach to the compiled model itself (inspector.attach(compiled)), so "
                                "this is known at attach and nothing is lost mid-run")


_WRAPPED = torch._C._functorch.is_functorch_wrapped_tensor


def in_transform(t: Any) -> bool:
    """Whether ``t`` comes from a call under a ``torch.func`` transform (``vmap(grad(functional_call(model,
    ...)))``: per-sample gradients). Such a call is not a training pass of the module: its gradient is the
    transform's, and its batched tensors must not outlive the transform in a hook's state. (~0.2 µs)"""
    return isinstance(t, torch.Tensor) and bool(_WRAPPED(t))


def is_compiled_wrapper(module: object) -> bool:
    """True for the ``OptimizedModule`` that ``torch.compile(module)`` returns."""
    return isinstance(module, _OptimizedModule) and hasattr(module, _WRAPPER_SEGMENT)


def compiles_itself(module: nn.Module) -> bool:
    """True after ``module.compile()``: its ``_call_impl`` (own hooks included) runs in a graph."""
    return getattr(module, "_compiled_call_impl", None) is not None


def compiled_frames() -> int | None:
    """How many frames dynamo has compiled in this process (None where its counters are not there): a hook can
    only have been traced since this last changed."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:  # pragma: no cover - torch without dynamo
        return None
    return int(counters["frames"].get("total", 0)) if "frames" in counters else 0


#: ``in_graph()``: True while dynamo traces the caller; every hook checks it first (see the module docstring).
#: It *is* ``torch.compiler.is_compiling`` (which dynamo folds to ``True``), not a wrapper around it: hooks call
#: it on every batch, and a Python frame less is a tenth of a microsecond per hook call.
in_graph: Callable[[], bool] = torch.compiler.is_compiling


def peel(model: nn.Module) -> tuple[nn.Module, nn.Module, bool]:
    """(the user's module, the module the user calls, whether the first runs in a graph).

    Peels ``torch.compile`` wrappers and ``DataParallel`` / ``DistributedDataParallel`` in any nesting:
    ``torch.compile(DDP(m))`` and ``DDP(torch.compile(m))`` both give ``m``.
    """
    outer, traced = model, False
    while True:
        if is_compiled_wrapper(model):
            model, traced = getattr(model, _WRAPPER_SEGMENT), True
        elif isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        else:
            return model, outer, traced or compiles_itself(model)


def children(module: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``named_children`` with each ``torch.compile`` wrapper replaced by the module it wraps (same name)."""
    for name, child in module.named_children():
        while is_compiled_wrapper(child):
            child = getattr(child, _WRAPPER_SEGMENT)
        yield name, child


def named_modules(model: nn.Module, prefix: str = "",
                  _seen: set[int] | None = None) -> Iterator[tuple[str, nn.Module]]:
    """``named_modules`` in definition order under the user's names (no ``_orig_mod`` segment); a module
    reachable twice is listed once, under its first name, as in ``nn.Module.named_modules``."""
    seen = set() if _seen is None else _seen
    if id(model) in seen:
        return
    seen.add(id(model))
    yield prefix, model
    for name, child in children(model):
        yield from named_modules(child, f"{prefix}.{name}" if prefix else name, seen)


def named_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """``named_parameters`` under the user's names (a tied parameter once, under its first name)."""
    seen: set[int] = set()
    for mname, module in named_modules(model):
        for pname, param in module.named_parameters(recurse=False):
            if id(param) not in seen:
                seen.add(id(param))
                yield (f"{mname}.{pname}" if mname else pname), param


class CompiledGraphs:
    """Which modules of an attached model run inside a torch.compile graph.

    ``model`` is the user's module (peeled), ``call_root`` the object the user calls (the wrapper, when the
    whole model is compiled): hooks that must run once per forward pass go on ``call_root``.
    """

    def __init__(self, model: nn.Module, call_root: nn.Module | None = None, whole: bool = False) -> None:
        self.model = model
        self.call_root = call_root if call_root is not None else model
        self._traced: set[int] = set()
        _ATTACHED.add(self)
        if whole:
            self._mark(model)
        else:
            for _, module in named_modules(model):
                if compiles_itself(module):
                    self._mark(module)
            for module in model.modules():
                if is_compiled_wrapper(module):
                    self._mark(getattr(module, _WRAPPER_SEGMENT))

    def _mark(self, root: nn.Module) -> None:
        self._traced.update(id(m) for m in root.modules())

    @property
    def any(self) -> bool:
        return bool(self._traced)

    def traced(self, module: nn.Module) -> bool:
        """True if ``module``'s forward hooks would be traced into a graph."""
        return id(module) in self._traced

    def eager(self, module: nn.Module) -> nn.Module:
        """Where to hook ``module``'s output outside the graph: the wrapper for the compiled model itself."""
        return self.call_root if module is self.model else module


def runs_compiled(modules: Iterable[nn.Module]) -> bool:
    """True if any of ``modules`` runs inside a torch.compile graph, as known at attach (any attached model's
    :class:`CompiledGraphs`) or compiled in place since (``module.compile()``)."""
    graphs = list(_ATTACHED)
    return any(compiles_itself(m) or any(g.traced(m) for g in graphs) for m in modules)
