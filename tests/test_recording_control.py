"""Filters are view-only; stopping a measurement is an explicit control, marked in the record and on the wire,
and a view's request to do so runs on the training thread."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from helpers import Emit, rates_by_hand
from torch import nn

from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import OutputActivation
from monitorch_widget.record.protocol import PendingDelta, encode_delta

widget_mod = pytest.importorskip("monitorch_widget.views.widget")
needs_bundle = pytest.mark.skipif(not widget_mod._ESM_PATH.is_file(), reason="front-end bundle not built")

OA, WARN = "Output Activations", "Warning Output Activations"
# channel 0 of A is negative everywhere: after ReLU it is dead (death rate 1/3); B is alive everywhere
A = torch.tensor([[-1.0, 2.0, 3.0], [-2.0, 1.0, 0.5], [-0.5, 4.0, 1.0], [-3.0, 1.0, 2.0]])
B = torch.ones(4, 3)


def model_and_inspector(visualizer="none"):
    model = nn.Sequential(Emit([A]), nn.ReLU(), Emit([B]), nn.ReLU())
    ins = PyTorchInspector([OutputActivation()], visualizer=visualizer).attach(model)
    return model, ins


def epoch(model, ins):
    model(torch.zeros(1))
    ins.tick_epoch()


def test_rates_by_hand_of_the_fixture():
    assert rates_by_hand(torch.relu(A).numpy()) == pytest.approx((2 / 3, 1 / 3))
    assert rates_by_hand(torch.relu(B).numpy()) == (1.0, 0.0)


@needs_bundle
def test_hiding_in_the_widget_is_view_only():
    model, ins = model_and_inspector("widget")
    w = ins.widget
    # what the front-end's save_changes() produces: hide the dead layer and the whole ReLU type
    w.set_state({"filters": {"hidden_modules": ["1"], "hidden_types": ["ReLU"], "hidden_panels": [OA],
                             "hidden_runs": [], "logy": {}}})
    assert w.filters["hidden_modules"] == ["1"]
    assert model[1]._forward_hooks and model[3]._forward_hooks, "hiding must not remove hooks"
    epoch(model, ins)
    rec = ins.history
    assert rec.series(OA, "1", "death_rate").tolist() == pytest.approx([1 / 3])
    assert rec.series(OA, "3", "death_rate").tolist() == [0.0]
    # the warning panel still covers the hidden layer: its worst death rate is layer 1's
    assert rec.series(WARN, WARN, "worst death_rate").tolist() == pytest.approx([1 / 3])
    assert rec.series(WARN, WARN, "worst activation_rate").tolist() == pytest.approx([2 / 3])
    w.close()


def test_stop_recording_gaps_are_marked_and_resume_waits_for_the_tick():
    model, ins = model_and_inspector()
    epoch(model, ins)                               # epoch 1: recorded
    assert ins.stop_recording("1") == {"1"}
    assert not model[1]._forward_hooks and model[3]._forward_hooks
    epoch(model, ins)                               # epoch 2: stopped
    model(torch.zeros(1))                           # epoch 3 in progress ...
    ins.resume_recording("1")
    assert not model[1]._forward_hooks, "resume takes effect at the next tick"
    ins.tick_epoch()                                # ... epoch 3 stays a gap
    assert model[1]._forward_hooks
    epoch(model, ins)                               # epoch 4: recorded again
    rec = ins.history
    got = rec.series(OA, "1", "death_rate")
    assert got[0] == pytest.approx(1 / 3) and np.isnan(got[1]) and np.isnan(got[2]) and got[3] == pytest.approx(1 / 3)
    assert rec.series(OA, "3", "activation_rate").tolist() == [1.0] * 4
    assert rec.runs[0].unrecorded == {"1": [[2.0, 3.0]]}
    # the warning panel covers what was measured: epochs 2-3 only layer 3
    assert rec.series(WARN, WARN, "worst death_rate").tolist() == pytest.approx([1 / 3, 0.0, 0.0, 1 / 3])
    snap = rec.snapshot()
    assert snap["runs"][0]["unrecorded"] == [{"group": "1", "spans": [[2.0, 3.0]]}]


def test_stop_recording_by_type_and_glob_and_bad_input():
    model, ins = model_and_inspector()
    assert ins.stop_recording("ReLU") == {"1", "3"}
    assert not model[1]._forward_hooks and not model[3]._forward_hooks
    ins.resume_recording("ReLU")  # no forward pass of epoch 1 yet: back at once, nothing left unrecorded
    assert model[1]._forward_hooks and model[3]._forward_hooks
    epoch(model, ins)
    assert ins.history.runs[0].unrecorded == {}
    assert ins.history.series(OA, "1", "death_rate").tolist() == pytest.approx([1 / 3])
    assert ins.stop_recording("[13]") == {"1", "3"}
    with pytest.raises(ValueError, match="match no watched module"):
        ins.stop_recording("decoder.*")
    with pytest.raises(TypeError, match="stop_recording"):
        ins.stop_recording(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="resume_recording"):
        ins.resume_recording()


def test_stopped_stays_stopped_in_the_next_run():
    model, ins = model_and_inspector()
    ins.stop_recording("3")
    epoch(model, ins)
    ins.attach(model)
    assert not model[3]._forward_hooks and model[1]._forward_hooks
    epoch(model, ins)
    assert ins.history.runs[1].unrecorded == {"3": [[1.0, None]]}
    assert ins.history.series(OA, "1", "death_rate", run=1).tolist() == pytest.approx([1 / 3])
    assert ins.history.runs[1].groups(OA) == ["1"]


def test_unrecorded_spans_on_the_wire():
    model, ins = model_and_inspector()
    events: list = []
    ins.history.subscribe(events.append)
    ins.stop_recording("1")
    pending = PendingDelta()
    for e in events:
        pending.add(e)
    msg, _ = encode_delta(pending, 1, None)
    assert msg["unrecorded"] == [{"run": 0, "group": "1", "spans": [[1.0, None]]}]
    empty, _ = encode_delta(PendingDelta(), 2, None)
    assert "unrecorded" not in empty


@needs_bundle
def test_a_view_request_from_another_thread_waits_for_the_training_thread():
    model, ins = model_and_inspector("widget")
    w = ins.widget
    sync = w._sync
    sync._cell_thread = threading.get_ident()  # a cell is training on this thread
    applied_on: list[int] = []
    w.on_recording(lambda module, on: applied_on.append(threading.get_ident()))
    # a kernel subshell thread delivers the view's custom message during training
    t = threading.Thread(target=w._on_front_end_msg, args=(w, {"type": "recording", "module": "1", "on": False}))
    t.start()
    t.join()
    assert model[1]._forward_hooks and not applied_on, "nothing touched the hooks from the subshell thread"
    model(torch.zeros(1))
    ins.push_loss(0.5, train=True)  # the next monitor call on the training thread applies it
    assert not model[1]._forward_hooks
    assert applied_on == [threading.get_ident()]
    ins.tick_epoch()
    assert ins.history.runs[0].groups(OA) == ["3"], "stopped from epoch 1: no value, only the mark"
    assert ins.history.runs[0].unrecorded == {"1": [[1.0, None]]}
    w.close()


@needs_bundle
def test_a_view_request_while_nothing_trains_is_applied_and_sent_at_once():
    model, ins = model_and_inspector("widget")
    w = ins.widget
    sent: list = []
    w.send = lambda content, buffers=None: sent.append(content)  # type: ignore[method-assign]
    epoch(model, ins)
    n = len(sent)
    w._on_front_end_msg(w, {"type": "recording", "module": "3", "on": False})  # the kernel is idle
    assert not model[3]._forward_hooks
    assert len(sent) == n + 1 and sent[-1]["unrecorded"] == [{"run": 0, "group": "3", "spans": [[2.0, None]]}]
    w.close()


def test_unrecorded_spans_survive_saving(tmp_path):
    import json

    from monitorch_widget import load
    from monitorch_widget.record.history_file import HistoryFormatError

    model, ins = model_and_inspector()
    epoch(model, ins)
    ins.stop_recording("1")
    epoch(model, ins)
    ins.resume_recording("1")  # right after the tick: epoch 3 is measured
    epoch(model, ins)
    ins.stop_recording("3")
    epoch(model, ins)
    path = tmp_path / "h.json"
    ins.save(path)
    assert load(path).runs[0].unrecorded == {"1": [[2.0, 2.0]], "3": [[4.0, None]]}
    doc = json.loads(path.read_text())
    doc["runs"][0]["unrecorded"] = {"1": [[2, "x"]]}
    path.write_text(json.dumps(doc))
    with pytest.raises(HistoryFormatError, match="unrecorded"):
        load(path)


def test_a_finding_on_a_layer_whose_recording_is_stopped_stays_active_until_it_is_measured_again():
    """stop_recording is no evidence that a dead layer recovered: its finding stays active, with its epochs, while
    nothing is measured, and goes on (one episode) once recording resumes and the layer is still dead."""
    import warnings

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))
    with torch.no_grad():
        model[2].bias[:24] = -100.0  # 24 of 32 units of layer '3' dead for every input
    ins = PyTorchInspector([OutputActivation()], visualizer="none").attach(model)
    active = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch in range(1, 8):
            if epoch == 5:
                ins.stop_recording("3")
            if epoch == 7:
                ins.resume_recording("3")
            for _ in range(3):
                model(torch.randn(8, 8)).pow(2).mean().backward()
            ins.tick_epoch()
            active.append(sorted((f.check, f.since) for f in ins.findings if f.layer == "3"))
    deaths = ins.history.series("Output Activations", "3", "death_rate")
    assert np.isnan(deaths[4]) and np.isnan(deaths[5]) and deaths[6] >= 0.75  # not measured in epochs 5 and 6
    assert active[3] == active[4] == active[5] == active[6] == [("dead_layer", 1.0), ("dying_layer", 1.0)]
    assert all(f.until is None for f in ins.health.findings() if f.layer == "3")  # never resolved: one episode


def test_resuming_a_pattern_that_stopped_nothing_says_what_is_stopped():
    """Trial r14a: stop_recording('encoder.*') then resume_recording('encoder.1') returned quietly and left it
    stopped for good; resume_recording('nosuch') too, where stop_recording('nosuch') raises."""
    model = nn.Sequential(nn.Sequential(nn.Linear(3, 4), nn.ReLU()), nn.Linear(4, 1))
    ins = PyTorchInspector([OutputActivation()], visualizer="none", module=model)
    ins.stop_recording("0.*")
    for pattern in ("0.1", "nosuch"):
        with pytest.raises(ValueError, match=rf"'{pattern}' stopped nothing; stopped now: \['0\.\*'\]"):
            ins.resume_recording(pattern)
    ins.resume_recording("0.*")
    assert ins._recording.stopped == []
    ins.detach()
