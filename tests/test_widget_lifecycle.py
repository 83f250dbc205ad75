"""The widget closed, never displayed, or displayed twice during training: training and the record go on."""

import sys

import pytest
import torch
from torch import nn

from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation

widget_mod = pytest.importorskip("monitorch_widget.views.widget")
if not widget_mod._ESM_PATH.is_file():
    pytest.skip("front-end bundle not built (npm run build)", allow_module_level=True)


def train(ins, model, loss_fn, epochs):
    for _ in range(epochs):
        loss_fn(model(torch.randn(4, 2)), torch.zeros(4, dtype=torch.long)).backward()
        ins.tick_epoch()


def make():
    loss_fn = nn.CrossEntropyLoss()
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn), OutputActivation()], visualizer="widget").attach(model)
    return ins, model, loss_fn


def test_widget_closed_mid_training_then_a_fresh_one_has_the_whole_history():
    ins, model, loss_fn = make()
    first = ins.widget
    train(ins, model, loss_fn, 2)
    first.close()
    train(ins, model, loss_fn, 2)  # no exception from a closed widget
    second = ins.widget
    assert second is not first
    second.refresh()
    assert second.history["runs"][0]["n_rows"] == 4
    assert repr(second) == "MonitorWidget(runs=1, epochs=4)"


def test_widget_never_displayed_and_shown_twice_share_one_model():
    ins, model, loss_fn = make()
    train(ins, model, loss_fn, 3)  # nobody looked: nothing breaks, nothing is lost
    w = ins.widget
    assert ins.widget is w  # one widget per inspector; displaying it twice gives two views of one model
    w.refresh()
    assert w.history["runs"][0]["n_rows"] == 3


def test_status_is_done_at_the_end_of_the_cell():
    ins, model, loss_fn = make()
    w = ins.widget
    train(ins, model, loss_fn, 1)
    assert ins.history.status()["state"] == "training"
    w._sync._post_run_cell()
    assert ins.history.status()["state"] == "done"
    assert w.history["status"]["state"] == "done"


def test_show_fig_from_seed_code(monkeypatch, capsys):
    """The seed calls inspector.visualizer.show_fig() after training: a summary in a terminal, the widget
    (once) in a notebook."""
    import IPython.display

    from monitorch_widget.views import monitorch_adapter as vis_widget

    ins, model, loss_fn = make()
    train(ins, model, loss_fn, 2)
    monkeypatch.setattr(vis_widget, "in_notebook", lambda: False)
    assert ins.visualizer.show_fig() is None
    out = capsys.readouterr().out
    assert "2 epoch(s)" in out and "Output Activations" in out and "1: activation_rate=" in out

    shown = []
    monkeypatch.setattr(vis_widget, "in_notebook", lambda: True)
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append(obj))
    w = ins.visualizer.show_fig()
    assert shown == [w] and w is ins.widget
    w._mw_displayed = True  # what displaying it in a front-end records
    ins.visualizer.show_fig()
    assert shown == [w]  # already live on the page: not shown twice


def test_the_default_visualizer_is_the_widget_in_a_marimo_notebook(monkeypatch):
    """marimo runs no IPython kernel: its notebooks are detected by marimo.running_in_notebook() (the module is
    looked up, never imported: a script that does not use marimo pays nothing), 'print' elsewhere."""
    import types

    from monitorch_widget.views.monitorch_adapter import WidgetVisualizer, in_notebook

    fake = types.ModuleType("marimo")
    fake.running_in_notebook = lambda: True
    monkeypatch.setitem(sys.modules, "marimo", fake)
    assert in_notebook()
    ins = PyTorchInspector([LossMetrics()])
    assert isinstance(ins.visualizer, WidgetVisualizer)
    fake.running_in_notebook = lambda: False  # `python notebook.py`: a script
    assert not in_notebook()
    assert not isinstance(PyTorchInspector([LossMetrics()]).visualizer, WidgetVisualizer)


def test_status_says_a_cell_that_raised_stopped_it_and_an_untrained_run_is_idle():
    # Kernel > Interrupt mid-training ended the cell with KeyboardInterrupt: "done" read as a finished run
    # (trial r6); IPython hands post_run_cell the ExecutionResult, whose error_in_exec is the exception
    class Result:
        error_in_exec = KeyboardInterrupt()

    ins, model, loss_fn = make()
    w = ins.widget
    w._sync._post_run_cell(Result())  # attached, no epoch yet: "epoch 0 · done" before
    assert ins.history.status()["state"] == "idle"
    train(ins, model, loss_fn, 2)
    w._sync._post_run_cell(Result())
    status = ins.history.status()
    assert (status["state"], status["stopped_by"]) == ("stopped", "KeyboardInterrupt")
    assert (w.history["status"]["state"], w.history["status"]["stopped_by"]) == ("stopped", "KeyboardInterrupt")
    train(ins, model, loss_fn, 1)  # the cell re-run: training again, then a clean end
    assert ins.history.status()["state"] == "training"
    w._sync._post_run_cell(type("Ok", (), {"error_in_exec": None})())
    assert (ins.history.status()["state"], ins.history.status()["stopped_by"]) == ("done", None)
