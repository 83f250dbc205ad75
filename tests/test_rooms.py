"""The folders are the rooms of ARCHITECTURE.md; the record room never imports a view.

Every module under ``monitorch_widget/record/`` is parsed (not imported): top-level and in-function
``import`` / ``from ... import`` statements, relative ones resolved, and string literals passed to
``importlib.import_module`` / ``__import__``. None may name ``monitorch_widget.views``, anywidget,
ipywidgets or IPython.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "monitorch_widget"
FORBIDDEN = ("monitorch_widget.views", "anywidget", "ipywidgets", "IPython")


def imported_names(source: str, module: str) -> list[str]:
    """Absolute names of everything ``source`` (the module ``module``, dotted) imports, anywhere in it."""
    package = module.rsplit(".", 1)[0]
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names.append(prefix)
            names += [f"{prefix}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called in ("import_module", "__import__") and node.args and \
                    isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                target = node.args[0].value
                if target.startswith(".") and len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                    target = str(node.args[1].value) + target
                names.append(target)
    return names


def forbidden(names: list[str]) -> list[str]:
    return [n for n in names if any(n == f or n.startswith(f + ".") for f in FORBIDDEN)]


def record_modules() -> list[pathlib.Path]:
    return sorted((PACKAGE / "record").rglob("*.py"))  # subpackages too (record/health/)


def test_the_record_room_has_modules_to_check():
    names = {p.name for p in record_modules()}
    assert {"record.py", "run.py", "protocol.py", "history_file.py"} <= names


@pytest.mark.parametrize("path", record_modules(), ids=lambda p: str(p.relative_to(PACKAGE / "record")))
def test_no_record_module_imports_a_view(path: pathlib.Path):
    module = "monitorch_widget." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    assert forbidden(imported_names(path.read_text(encoding="utf-8"), module)) == []


@pytest.mark.parametrize("source, found", [
    ("from ..views import widget", ["monitorch_widget.views", "monitorch_widget.views.widget"]),
    ("def f():\n    from ..views.widget import MonitorWidget", ["monitorch_widget.views.widget",
                                                          "monitorch_widget.views.widget.MonitorWidget"]),
    ("import anywidget", ["anywidget"]),
    ("def f():\n    import IPython.display", ["IPython.display"]),
    ("from IPython.display import display", ["IPython.display", "IPython.display.display"]),
    ("import importlib\nimportlib.import_module('ipywidgets')", ["ipywidgets"]),
    ("__import__('monitorch_widget.views.sync')", ["monitorch_widget.views.sync"]),
    ("from importlib import import_module\nimport_module('.views', 'monitorch_widget')", ["monitorch_widget.views"]),
    ("from .run import Run\nimport numpy", []),
    ("from .. import collect", []),
])
def test_the_checker_finds_every_kind_of_import(source: str, found: list[str]):
    assert forbidden(imported_names(source, "monitorch_widget.record.record")) == found
