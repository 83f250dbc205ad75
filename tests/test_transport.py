"""The inspector drives the widget's transport from the training thread: monitor calls (forward passes, pushes,
ticks) send what waited; detach / the end of ``iter`` finish a run where no end-of-cell event exists; view
requests wait for the training thread."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from torch import nn

from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation

widget_mod = pytest.importorskip("monitorch_widget.views.widget")
if not widget_mod._ESM_PATH.is_file():
    pytest.skip("front-end bundle not built (npm run build)", allow_module_level=True)


def setup(monkeypatch):
    loss_fn = nn.MSELoss()
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn), OutputActivation()], visualizer="widget").attach(model)
    w = ins.widget
    sent: list[tuple[str, dict]] = []  # (thread name, delta message)
    states: list[str] = []
    monkeypatch.setattr(w, "send", lambda content, buffers=None: sent.append((threading.current_thread().name, content)))
    real_send_state = w.send_state
    monkeypatch.setattr(w, "send_state", lambda key=None: (states.append(str(key)), real_send_state(key))[1])
    return loss_fn, model, ins, w, sent, states


def batch(model, loss_fn):
    loss_fn(model(torch.randn(8, 3)), torch.zeros(8, 1)).backward()


def epochs_sent(sent) -> list[float]:
    return [r["epoch"] for _, m in sent for r in m["rows"] if not r["provisional"]]


def test_a_forward_pass_sends_what_fast_ticks_held_back(monkeypatch):
    loss_fn, model, ins, w, sent, _ = setup(monkeypatch)
    w._sync._cell_thread = threading.get_ident()  # inside a notebook cell on this thread
    batch(model, loss_fn)
    ins.tick_epoch()
    n = len(sent)
    for _ in range(3):  # ticks far less than 50 ms apart: held
        batch(model, loss_fn)
        ins.tick_epoch()
    assert epochs_sent(sent)[-1] == 1.0 and len(sent) == n
    time.sleep(0.06)
    model(torch.randn(2, 3))  # the next monitor call >= 50 ms later (a forward pass) sends them
    assert epochs_sent(sent)[-3:] == [2.0, 3.0, 4.0]
    assert {t for t, _ in sent} == {threading.current_thread().name}
    ins.detach()


def test_without_cell_events_detach_finishes_the_run(monkeypatch):
    loss_fn, model, ins, w, sent, _ = setup(monkeypatch)
    assert w._sync._cell_thread is None  # pytest: no IPython, no end-of-cell event will come
    for _ in range(3):
        batch(model, loss_fn)
        ins.tick_epoch()
    assert epochs_sent(sent) == [1.0, 2.0, 3.0], "nothing held back"
    ins.detach()
    snap = w.history
    assert snap["status"]["state"] == "done" and snap["runs"][0]["n_rows"] == 3
    assert snap["seq"] == w._sync.seq
    data = np.frombuffer(snap["runs"][0]["data"], "<f8").reshape(3, -1)
    np.testing.assert_array_equal(data, ins.history.runs[0].data)


def test_the_end_of_iter_finishes_the_run_without_cell_events(monkeypatch):
    loss_fn, model, ins, w, sent, _ = setup(monkeypatch)
    for _ in ins.range(4):
        batch(model, loss_fn)
    assert ins.history.status()["state"] == "done"
    assert w.history["status"]["state"] == "done" and w.history["runs"][0]["n_rows"] == 4
    ins.detach()


def test_a_snapshot_request_during_a_cell_waits_for_the_training_thread(monkeypatch):
    loss_fn, model, ins, w, sent, states = setup(monkeypatch)
    sync = w._sync
    sync._cell_thread = threading.get_ident()
    batch(model, loss_fn)
    ins.tick_epoch()
    snapshots = sync.snapshots_sent
    # a view asks from a kernel subshell thread while the cell trains
    t = threading.Thread(target=w._on_front_end_msg, args=(w, {"type": "resync", "seq": 0}), name="subshell")
    t.start()
    t.join()
    assert sync.snapshots_sent == snapshots, "not answered from the subshell thread"
    ins.push_loss(0.3, train=True)  # next monitor call on the training thread
    assert sync.snapshots_sent == snapshots + 1
    assert w.history["seq"] == sync.seq and w.history["runs"][0]["n_rows"] == 1
    # asked again with nothing new: the unchanged trait is resent explicitly
    w._on_front_end_msg(w, {"type": "resync", "seq": -5})
    assert states[-1] == "history"
    # a view that already holds the kernel's seq gets nothing
    n = sync.snapshots_sent
    w._on_front_end_msg(w, {"type": "resync", "seq": sync.seq})
    assert sync.snapshots_sent == n
    ins.detach()


def test_filter_callbacks_run_on_the_training_thread(monkeypatch):
    loss_fn, model, ins, w, sent, _ = setup(monkeypatch)
    w._sync._cell_thread = threading.get_ident()
    got: list[tuple[str, list]] = []
    w.on_filters(lambda f: got.append((threading.current_thread().name, f["hidden_modules"])))
    t = threading.Thread(target=w.set_state, args=({"filters": {"hidden_modules": ["1"]}},), name="subshell")
    t.start()
    t.join()
    assert w.filters["hidden_modules"] == ["1"] and not got
    batch(model, loss_fn)  # the forward pass is a monitor call
    assert got == [(threading.current_thread().name, ["1"])]
    ins.detach()


def test_monitorchs_own_inspector_driving_the_widget_is_not_held_back(monkeypatch):
    """monitorch's PyTorchInspector calls the visualizer's plot_* and never ends a row with a status event: each
    call is a monitor call, so its values reach the view without waiting for an end-of-cell event."""
    from monitorch_widget import WidgetVisualizer

    vis = WidgetVisualizer()
    w = vis.widget
    sent: list[dict] = []
    monkeypatch.setattr(w, "send", lambda content, buffers=None: sent.append(content))
    for e in (1, 2):
        vis.plot_numerical_values(e, "Loss", {"Loss": {"train_loss": 1.0 / e}})
        vis.plot_probabilities(e, "Output Activations", {"fc1": {"activation_rate": 0.5, "death_rate": 0.1}})
    assert [r["epoch"] for m in sent for r in m["rows"]] == [1.0, 2.0]
    assert sum(m["cells"]["count"] for m in sent) == 6
    vis.reset_fig()  # monitorch's detach: the record is done
    assert sent[-1]["status"]["state"] == "done"
    w.close()
