"""Every public name of monitorch's ``inspector``, ``lens`` and ``visualizer`` modules exists under
``monitorch_widget`` with a signature that accepts every call monitorch's accepts, meaning the same way.

The names come from PyPI monitorch itself (``__all__`` plus public classes/functions the module defines, e.g.
``DummyVisualizer``), never from a list here. For each callable, monitorch's parameters must appear in ours
with the same name, kind and default, positional ones in the same order; ours may add parameters only with
defaults (after monitorch's positional ones), so code written for monitorch binds the same way. Classes of
``inspector`` and ``visualizer`` are compared method by method too; for lenses the constructor and their
user-facing methods (not the lens <-> inspector protocol, which is each package's own core).
"""

import dataclasses
import enum
import importlib
import inspect
import re

import pytest

pytest.importorskip("monitorch", reason="monitorch (optional extra) is not installed")

MODULES = ("inspector", "lens", "visualizer")
P = inspect.Parameter
POSITIONAL = (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)

# Defaults that differ on purpose; each is a row of the README's "Differences from monitorch".
DELIBERATE_DEFAULTS = {
    ("PyTorchInspector", "__init__", "visualizer"):
        "None = 'widget' in a notebook, 'print' elsewhere (monitorch: 'print')",
    ("OutputActivation", "__init__", "evaluation_from_grad"):
        "None = a pass counts when grad is enabled and the module trains (monitorch False: module.training only)",
    ("OutputNorm", "__init__", "evaluation_from_grad"):
        "as OutputActivation",
}


def public_names(module_name):
    mod = importlib.import_module(f"monitorch.{module_name}")
    names = list(getattr(mod, "__all__", []))
    for name, value in vars(mod).items():  # vars(): no lazy import of optional visualizers here
        if name.startswith("_") or name in names:
            continue
        if (inspect.isclass(value) or inspect.isfunction(value)) and \
                getattr(value, "__module__", "").startswith("monitorch."):
            names.append(name)
    return names


CASES = [(m, n) for m in MODULES for n in public_names(m)]


def theirs_and_ours(module_name, name):
    mod = importlib.import_module(f"monitorch.{module_name}")
    try:
        theirs = getattr(mod, name)
    except ImportError as exc:  # monitorch's optional visualizers raise ImportError without their package
        pytest.skip(f"monitorch.{module_name}.{name} unavailable here: {exc}")
    ours_mod = importlib.import_module(f"monitorch_widget.{module_name}")
    assert hasattr(ours_mod, name), f"monitorch_widget.{module_name} lacks {name} (monitorch has it)"
    return theirs, getattr(ours_mod, name)


# --- defaults ----------------------------------------------------------------------------------------------
_LITERALS = (type(None), bool, int, float, complex, str, bytes)


def same_default(a, b):
    """Defaults compare by meaning: literals by type and value (True is not 1); containers element by
    element (a tuple default and a list default with the same items are one default to a caller, who cannot
    see whether it is mutable); enum members by name; any other object is a sentinel, which no two packages
    share, so sentinels match when their reprs do (memory addresses removed)."""
    if a is P.empty or b is P.empty:
        return a is b
    if isinstance(a, _LITERALS):
        return type(a) is type(b) and a == b
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(map(same_default, a, b))
    if isinstance(a, (set, frozenset)):
        return isinstance(b, (set, frozenset)) and a == b
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_default(a[k], b[k]) for k in a)
    if isinstance(a, enum.Enum):
        return isinstance(b, enum.Enum) and a.name == b.name
    strip = re.compile(r" at 0x[0-9a-f]+")
    return not isinstance(b, _LITERALS) and strip.sub("", repr(a)) == strip.sub("", repr(b))


def test_same_default_rules():
    assert same_default(("weight", "bias"), ["weight", "bias"])
    assert not same_default(True, 1)
    assert not same_default(("std", "min-max"), ("std",))
    assert not same_default("print", None)
    assert same_default(P.empty, P.empty) and not same_default(P.empty, None)

    class Sentinel:
        def __repr__(self):
            return "<unset>"

    assert same_default(Sentinel(), Sentinel()) and not same_default(Sentinel(), None)
    assert same_default(object(), object())  # two bare sentinels: "<object object>" both


# --- signatures --------------------------------------------------------------------------------------------
def signature_problems(theirs, ours, where):
    """What a call valid for ``theirs`` could do differently with ``ours`` (empty list: compatible)."""
    owner, method = where
    st, so = inspect.signature(theirs), inspect.signature(ours)
    tp = [p for p in st.parameters.values() if p.kind in POSITIONAL]
    op = [p for p in so.parameters.values() if p.kind in POSITIONAL]
    problems = []

    def check(t, o):
        if o.kind != t.kind:
            problems.append(f"{t.name}: kind {o.kind.description}, monitorch {t.kind.description}")
        elif (owner, method, t.name) in DELIBERATE_DEFAULTS:
            pass
        elif not same_default(t.default, o.default):
            problems.append(f"{t.name}: default {o.default!r}, monitorch {t.default!r}")

    for i, t in enumerate(tp):
        if i >= len(op) or op[i].name != t.name:
            problems.append(f"positional parameter {i} is {op[i].name if i < len(op) else 'missing'!r}, "
                            f"monitorch {t.name!r}")
            continue
        check(t, op[i])
    for o in op[len(tp):]:
        if o.default is P.empty:
            problems.append(f"extra positional parameter {o.name!r} without a default")
    for t in st.parameters.values():
        if t.kind is P.KEYWORD_ONLY:
            o = so.parameters.get(t.name)
            if o is None:
                problems.append(f"keyword {t.name!r} missing")
            else:
                check(t, o)
    for o in so.parameters.values():
        if o.kind is P.KEYWORD_ONLY and o.name not in st.parameters and o.default is P.empty:
            problems.append(f"extra keyword {o.name!r} without a default")
    for kind in (P.VAR_POSITIONAL, P.VAR_KEYWORD):
        if any(p.kind is kind for p in st.parameters.values()) and not any(p.kind is kind for p in
                                                                           so.parameters.values()):
            problems.append(f"monitorch takes {kind.description}, ours does not")
    return problems


def test_signature_rules_catch_differences():
    def theirs(a, b=1, *, c=("x",)): ...
    def renamed(a, bb=1, *, c=("x",)): ...
    def new_default(a, b=2, *, c=("x",)): ...
    def extra_required(a, b=1, d=None, *, c=("x",), e): ...
    def compatible(a, b=1, d=None, *, c=["x"], e=0, **kw): ...  # noqa: B006 - a list default on purpose
    where = ("f", "__call__")
    assert signature_problems(theirs, compatible, where) == []
    assert signature_problems(theirs, renamed, where)
    assert signature_problems(theirs, new_default, where)
    assert len(signature_problems(theirs, extra_required, where)) == 1


def _monitorch_methods(cls, module_name):
    """Public methods monitorch's class defines (its own and monitorch base classes'), with __enter__ / __exit__."""
    skip = set()
    if module_name == "lens":  # the lens <-> inspector protocol: monitorch's AbstractLens methods
        from monitorch.lens import AbstractLens
        skip = {n for n in vars(AbstractLens) if not n.startswith("_")}
    names = {}
    for klass in reversed(cls.__mro__):
        if not klass.__module__.startswith("monitorch."):
            continue
        for n, v in vars(klass).items():
            public = not n.startswith("_") or n in ("__enter__", "__exit__")
            if public and n not in skip and (callable(v) or isinstance(v, (staticmethod, classmethod))):
                names[n] = v
    return names


@pytest.mark.parametrize(("module_name", "name"), CASES, ids=[f"{m}.{n}" for m, n in CASES])
def test_public_name_has_monitorchs_signature(module_name, name):
    theirs, ours = theirs_and_ours(module_name, name)
    assert inspect.isclass(theirs) == inspect.isclass(ours), f"{name}: class vs function"
    if isinstance(theirs, type) and issubclass(theirs, enum.Enum):
        assert {m.name: m.value for m in theirs} == {m.name: m.value for m in ours}
        return
    if dataclasses.is_dataclass(theirs):
        assert [f.name for f in dataclasses.fields(theirs)] == [f.name for f in dataclasses.fields(ours)]
    problems = [f"{name}(): {p}" for p in signature_problems(theirs, ours, (name, "__init__"))]
    if inspect.isclass(theirs):
        if inspect.isabstract(theirs) and module_name != "lens":  # AbstractLens's are the protocol methods
            assert inspect.isabstract(ours), f"{name} is abstract in monitorch"
            assert set(theirs.__abstractmethods__) == set(ours.__abstractmethods__)
        for method, raw in _monitorch_methods(theirs, module_name).items():
            if not hasattr(ours, method):
                problems.append(f"{name}.{method} missing")
                continue
            if isinstance(raw, staticmethod) != isinstance(inspect.getattr_static(ours, method), staticmethod):
                problems.append(f"{name}.{method}: staticmethod in one package only")
                continue
            problems += [f"{name}.{method}(): {p}" for p in
                         signature_problems(getattr(theirs, method), getattr(ours, method), (name, method))]
    assert not problems, "\n".join(problems)


def test_deliberate_defaults_are_documented():
    import pathlib

    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Differences from monitorch", 1)[1].split("\n## ", 1)[0]
    for owner, _, param in DELIBERATE_DEFAULTS:
        assert param in section and owner in section, (owner, param)
