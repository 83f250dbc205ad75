"""Cheap checks on the demo notebooks and the headless demo (the notebooks themselves run under
``pytest --nbval-lax notebooks/``, see the report in docs / .ci)."""

from __future__ import annotations

import math
import os
import pathlib
import subprocess
import sys

import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_expected_notebooks_exist() -> None:
    assert {p.name for p in NOTEBOOKS} >= {"quickstart.ipynb", "activations.ipynb", "geometry.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_valid_and_checks_something(path: pathlib.Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    source = "\n".join(code)
    # our package only: the seed's code with `monitorch.` replaced by `monitorch_widget.`
    assert "monitorch_widget" in source
    assert "from monitorch." not in source and "import monitorch\n" not in source
    # it checks real things, not only runs
    assert sum(s.lstrip().startswith("assert") or "\nassert " in s for s in code) >= 1
    assert "inspector.history" in source
    # no data downloads at run time
    for banned in ("download=True", "torchvision", "urlretrieve", "requests.get"):
        assert banned not in source, banned
    # no cell errors stored in the committed file
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", f"{path.name} holds an error output"


def _run_demo(*args: str) -> list[str]:
    env = dict(
        os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "monitorch_widget.demo", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_demo_prints_one_line_per_epoch() -> None:
    lines = _run_demo("--epochs", "3")
    assert len(lines) == 3, lines
    for i, line in enumerate(lines, 1):
        assert line.startswith(f"epoch {i}"), line
        assert "train_loss" in line and "val_loss" in line and "val_accuracy" in line


def test_demo_own_summary_line() -> None:
    lines = _run_demo("--epochs", "2", "--visualizer", "none")
    assert [ln.split(" | ")[0] for ln in lines] == ["epoch 1/2", "epoch 2/2"]
    fields = dict(f.rsplit(" ", 1) for f in lines[-1].split(" | ")[1:-1])
    assert set(fields) == {
        "train_loss",
        "val_loss",
        "val_acc",
        "min act(out)",
        "max death(out)",
        "max death(grad)",
    }
    values = {k: float(v) for k, v in fields.items()}
    assert all(math.isfinite(v) for v in values.values())
    assert 0 <= values["val_acc"] <= 1 and 0 <= values["max death(out)"] <= 1


def test_demo_record_in_process() -> None:
    import numpy as np

    from monitorch_widget import demo

    inspector = demo.run(epochs=4, visualizer="none")
    record = inspector.history
    assert len(record.runs) == 1
    loss = record.series("Loss & Metrics", "Loss & Metrics", "train_loss mean")
    assert loss.shape == (4,) and np.isfinite(loss).all() and loss[-1] < loss[0]
    assert not inspector.state.attached
