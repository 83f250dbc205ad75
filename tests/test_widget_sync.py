"""Kernel side of the live widget: delta messages (protocol 2b), coalescing, snapshots (2a), filters (3)."""

from __future__ import annotations

import base64
import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from IPython.core.events import EventManager, available_events

from monitorch_widget.record import Record
from monitorch_widget.record.protocol import decode_delta_buffers
from monitorch_widget.views import sync as sync_mod
from monitorch_widget.views import widget as widget_mod
from monitorch_widget.views.sync import DeltaSync
from monitorch_widget.views.widget import MonitorWidget


# --- fakes -----------------------------------------------------------------------------------------
class FakeRecord:
    """The record interface the sync relies on: subscribe(callback) + snapshot()."""

    def __init__(self) -> None:
        self.subscribers: list[Any] = []
        self.runs: list[Any] = []
        self.snapshots = 0

    def subscribe(self, fn):
        self.subscribers.append(fn)
        return lambda: self.subscribers.remove(fn)

    def emit(self, *event: Any) -> None:
        for fn in list(self.subscribers):
            fn(event)

    def snapshot(self) -> dict[str, Any]:
        self.snapshots += 1
        return {"version": 1, "runs": [], "status": None}


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def make_sync(record, **kw):
    sent: list[tuple[dict, list[bytes]]] = []
    histories: list[dict] = []
    clock = kw.pop("clock", Clock())
    s = DeltaSync(record, send=lambda m, b: sent.append((m, b)), set_history=lambda h, force=False: histories.append(h),
                  clock=clock, hook_ipython=False, **kw)
    return s, sent, histories, clock


def cells_of(msg_buffers):
    runs, rows, cols, vals = decode_delta_buffers(msg_buffers)
    return list(zip(runs.tolist(), rows.tolist(), cols.tolist(), vals.tolist()))


def wire_size(msg: dict, buffers: list[bytes]) -> int:
    return len(json.dumps(msg).encode()) + sum(len(b) for b in buffers)


class _Tag:
    def __init__(self, big: bool, kind: str = "NUMERICAL", logy: bool = False) -> None:
        self.big_plot, self.logy = big, logy
        self.type = type("T", (), {"name": kind})()


def fill_record(rec: Record, epochs: int, *, label: str = "run 1: MLP") -> None:
    """A run with a big loss panel (line + band) and a per-module probability panel."""
    rec.start_run(label, {"fc1": "Linear", "drop": "Dropout"})
    rec.register_tags("Loss & Metrics", _Tag(True), "LossMetrics")
    rec.register_tags("Output Activations", _Tag(False, "PROBABILITY"), "OutputActivation")
    for e in range(1, epochs + 1):
        tick(rec, e)


def tick(rec: Record, e: int) -> None:
    rec.plot_numerical_values(e, "Loss & Metrics", {"Loss & Metrics": {"train_loss mean": 1.0 / e}},
                              {"Loss & Metrics": {("train_loss -σ", "train_loss +σ"): (0.9 / e, 1.1 / e)}})
    rec.plot_probabilities(e, "Output Activations", {"fc1": {"activation_rate": 0.5, "death_rate": 0.01 * (e % 7)},
                                                     "drop": {"activation_rate": 0.8, "death_rate": 0.0}})
    rec.close_row()


# --- delta messages ------------------------------------------------------------------------------------
def test_delta_carries_structure_rows_cells_problems_status():
    rec = FakeRecord()
    _, sent, hist, clock = make_sync(rec)
    assert hist[-1]["seq"] == 0 and not sent
    clock.t += 1
    rec.emit("run", 0, {"id": 0, "label": "run 1: <b>CNN</b>"})
    rec.emit("panel", 0, {"tag": "Output Activations", "kind": "probability", "big": False, "logy": False,
                          "lens": "OutputActivation"})
    rec.emit("column", 0, {"index": 0, "panel": "Output Activations", "group": "relu1", "key": "activation_rate",
                           "role": "line", "band_of": None, "module_type": "ReLU"})
    rec.emit("column", 0, {"index": 1, "panel": "Output Activations", "group": "relu1", "key": "death_rate",
                           "role": "line", "band_of": None, "module_type": "ReLU"})
    rec.emit("row", 0, {"row": 0, "epoch": 1.0, "time": 0.5, "provisional": False})
    rec.emit("cells", 0, 0, np.array([0, 1], np.int32), np.array([0.75, math.nan]))
    rec.emit("problem", 0, {"lens": "LossMetrics", "message": "loss is NaN", "count": 2})
    assert not sent, "a tick is sent when it ends (its status event), not event by event"
    rec.emit("status", {"run": 0, "epoch": 1.0, "sec_per_epoch": 0.5, "state": "training", "problems": 2})
    assert len(sent) == 1
    msg, buffers = sent[0]
    json.dumps(msg)  # JSON-safe
    assert msg["type"] == "delta" and msg["seq"] == 1
    assert msg["new_runs"] == [{"id": 0, "label": "run 1: <b>CNN</b>"}]
    assert msg["new_panels"] == [{"run": 0, "tag": "Output Activations", "kind": "probability", "big": False,
                                  "logy": False, "lens": "OutputActivation"}]
    assert [c["key"] for c in msg["new_columns"]] == ["activation_rate", "death_rate"]
    assert msg["new_columns"][0]["run"] == 0 and msg["new_columns"][1]["index"] == 1
    assert msg["rows"] == [{"run": 0, "row": 0, "epoch": 1.0, "time": 0.5, "step": None, "provisional": False}]
    # an event without a kind (an emitter older than kinds) is a problem, as it was shown then
    assert msg["problems"] == [{"run": 0, "lens": "LossMetrics", "message": "loss is NaN", "count": 2, "kind": "warning"}]
    assert msg["status"]["epoch"] == 1.0 and msg["status"]["problems"] == 2
    assert msg["cells"] == {"count": 2}
    assert len(buffers) == 4 and [len(b) for b in buffers] == [8, 8, 8, 16]
    got = cells_of(buffers)
    assert got[0] == (0, 0, 0, 0.75)
    assert got[1][:3] == (0, 0, 1) and math.isnan(got[1][3])
    # raw little-endian layout, checked without numpy's help
    assert buffers[3][:8] == bytes.fromhex("000000000000e83f")  # 0.75 = 0x3FE8000000000000
    assert buffers[2] == bytes.fromhex("00000000" "01000000")


def status(epoch: float) -> tuple:
    return ("status", {"run": 0, "epoch": epoch, "sec_per_epoch": 0.01, "state": "training", "problems": 0})


def fast_tick(rec, clock, i: int, dt: float) -> None:
    clock.t += dt
    rec.emit("row", 0, {"row": i, "epoch": float(i + 1), "time": 0.0, "provisional": False})
    rec.emit("cells", 0, i, np.array([0], np.int32), np.array([float(i)]))
    rec.emit(*status(i + 1))


def test_slow_ticks_are_sent_before_the_tick_returns_even_in_a_cell():
    rec = FakeRecord()
    s, sent, _, clock = make_sync(rec)
    s._cell_thread = threading.get_ident()  # an IPython cell trains on this thread: values may be held back
    for i in range(5):
        fast_tick(rec, clock, i, 0.06)
        assert len(sent) == i + 1 and [c[3] for c in cells_of(sent[-1][1])] == [float(i)]


def test_fast_ticks_in_a_cell_wait_at_most_until_a_monitor_call_50_ms_later():
    rec = FakeRecord()
    s, sent, _, clock = make_sync(rec)
    s._cell_thread = threading.get_ident()
    fast_tick(rec, clock, 0, 1.0)          # first tick: nothing sent for 1 s, so it goes at once
    assert len(sent) == 1
    for i in range(1, 5):
        fast_tick(rec, clock, i, 0.01)     # 10 ms apart: held back
    assert len(sent) == 1
    clock.t += 0.005
    s.pump()                               # 45 ms after the last message: still held
    assert len(sent) == 1
    clock.t += 0.006
    s.pump()                               # >= 50 ms: a monitor call on the training thread sends them all
    assert len(sent) == 2
    msg, buffers = sent[1]
    assert [c[3] for c in cells_of(buffers)] == [1.0, 2.0, 3.0, 4.0]
    assert [r["epoch"] for r in msg["rows"]] == [2.0, 3.0, 4.0, 5.0] and msg["status"]["epoch"] == 5
    fast_tick(rec, clock, 5, 0.01)
    assert len(sent) == 2
    s.flush()                              # inspector.flush() / detach() / end of cell
    assert len(sent) == 3 and s.flush() is False


def test_without_an_end_of_cell_event_nothing_is_held_back():
    rec = FakeRecord()
    s, sent, _, clock = make_sync(rec)
    assert s._cell_thread is None and not s.holds_back  # a script, marimo: no post_run_cell will come
    for i in range(20):
        fast_tick(rec, clock, i, 0.001)
    assert len(sent) == 20
    # a cell runs, but training happens in a thread of the user's: that thread is never held back
    s._cell_thread = threading.get_ident()
    t = threading.Thread(target=fast_tick, args=(rec, clock, 20, 0.001))
    t.start()
    t.join()
    assert len(sent) == 21


def test_the_sync_starts_no_thread_and_sends_from_the_caller():
    rec = FakeRecord()
    threads: list = []
    before = threading.active_count()
    s = DeltaSync(rec, send=lambda m, b: threads.append(threading.current_thread().name),
                  set_history=lambda h, force=False: None, hook_ipython=False)
    clock_t = [0.0]
    s._clock = lambda: clock_t[0]

    def train():
        for i in range(30):
            clock_t[0] += 0.001
            rec.emit("cells", 0, i, np.array([0], np.int32), np.array([float(i)]))
            rec.emit(*status(i))

    t = threading.Thread(target=train, name="trainer")
    t.start()
    t.join()
    time.sleep(0.08)
    assert threading.active_count() == before
    assert threads and set(threads) == {"trainer"}
    s.close()


def test_delta_size_does_not_grow_with_history():
    def next_tick(epochs: int) -> tuple[int, int, list]:
        rec = Record()
        fill_record(rec, epochs)
        s, sent, _, clock = make_sync(rec)
        clock.t += 10
        tick(rec, epochs + 1)
        s.flush()
        assert 1 <= len(sent) <= 2  # leading-edge message + the coalesced rest
        n_bytes, shapes = 0, []
        for msg, buffers in sent:
            # The only history-dependent JSON is the digits of row/epoch numbers and times; blank them out.
            shape = json.loads(json.dumps(msg))
            for r in shape["rows"]:
                r.update(row=0, epoch=0, time=0)
            shape["status"] = {k: (0 if isinstance(v, (int, float)) else v) for k, v in shape["status"].items()}
            n_bytes += sum(len(b) for b in buffers) + len(json.dumps(shape))
            shapes.append(shape)
        return n_bytes, sum(len(b) for _, bs in sent for b in bs), shapes

    small, big = next_tick(10), next_tick(1000)
    assert small == big
    # 7 values (3 loss columns + 2 x 2 activation columns) at 4+4+4+8 bytes each
    assert small[1] == 7 * 20


def test_values_round_trip_through_real_record():
    rec = Record()
    s, sent, _, clock = make_sync(rec)
    clock.t += 10
    fill_record(rec, 3)
    s.flush()
    # replay every message into a table, as the front-end does, and compare with the record
    table: dict[tuple[int, int, int], float] = {}
    seqs = []
    for m, b in sent:
        seqs.append(m["seq"])
        for run, row, col, val in cells_of(b):
            table[(run, row, col)] = val
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    data = rec.runs[0].data
    for (run, row, col), val in table.items():
        assert run == 0
        np.testing.assert_equal(val, data[row, col])
    assert len(table) == np.isfinite(data).sum()
    cols = [c for m, _ in sent for c in m["new_columns"]]
    assert [c["key"] for c in cols][:3] == ["train_loss mean", "train_loss -σ", "train_loss +σ"]
    assert cols[1]["role"] == "lo" and cols[1]["band_of"] == "train_loss mean"


# --- snapshots ---------------------------------------------------------------------------------------
def _decode_snapshot_run(r: dict) -> tuple[np.ndarray, np.ndarray]:
    epochs = np.frombuffer(r["epochs"], "<f8")
    data = np.frombuffer(r["data"], "<f8").reshape(r["n_rows"], r["n_cols"])
    return epochs, data


def test_snapshot_round_trip_and_seq():
    rec = Record()
    s, sent, hist, clock = make_sync(rec)
    fill_record(rec, 4)
    clock.t += 10
    rec.plot_numerical_values(5, "Loss & Metrics", {"Loss & Metrics": {"train_loss mean": 0.125}})
    s.refresh_history()
    snap = hist[-1]
    # pending deltas were flushed first, so the snapshot's seq is the last message sent
    assert snap["seq"] == sent[-1][0]["seq"] == s.seq
    (run,) = snap["runs"]
    epochs, data = _decode_snapshot_run(run)
    np.testing.assert_array_equal(epochs, [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(data, rec.runs[0].data)
    assert data[4, 0] == 0.125 and data[2, 0] == pytest.approx(1 / 3)


def test_snapshot_throttled_on_status_and_forced_after_cell():
    rec = FakeRecord()
    s, _, hist, clock = make_sync(rec, snapshot_min_interval=3.0)
    assert len(hist) == 1
    for i in range(10):
        clock.t += 0.5
        rec.emit("status", {"run": 0, "epoch": i, "sec_per_epoch": 0.5, "state": "training", "problems": 0})
    # t advanced 5 s in 0.5 s steps: one throttled snapshot after 3 s
    assert len(hist) == 2
    # each status was 0.5 s after the previous message, so each went out at once: the snapshot at
    # t = 3 s contains exactly the first 6 messages
    assert hist[-1]["seq"] == 6 and s.seq == 10
    s._post_run_cell(None)
    assert len(hist) == 3, "end of cell always publishes the latest state when anything changed"
    s._post_run_cell(None)
    assert len(hist) == 3, "...and only then"


def test_snapshot_interval_scales_with_cost():
    rec = FakeRecord()
    s, *_ = make_sync(rec, snapshot_min_interval=3.0)
    s._snapshot_cost = 0.001
    assert s.snapshot_interval() == 3.0
    s._snapshot_cost = 0.5
    assert s.snapshot_interval() == pytest.approx(0.5 / sync_mod.SNAPSHOT_MAX_SHARE)


def test_post_run_cell_hook_registered_and_removed(monkeypatch):
    class Shell:
        pass

    shell = Shell()
    shell.events = EventManager(shell, available_events)
    import IPython

    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    rec = FakeRecord()
    hist: list = []
    sent: list = []
    s = DeltaSync(rec, send=lambda m, b: sent.append(m), set_history=lambda h, force=False: hist.append(h))
    assert s.holds_back, "built by a cell on the main thread: its end-of-cell event will come"
    shell.events.trigger("pre_run_cell", None)
    rec.emit("cells", 0, 0, np.array([0], np.int32), np.array([1.0]))
    rec.emit(*status(1))
    rec.emit("cells", 0, 1, np.array([0], np.int32), np.array([2.0]))
    rec.emit(*status(2))  # a fast tick: held back until the end of the cell
    assert len(sent) == 1
    shell.events.trigger("post_run_cell", None)
    assert not s.holds_back
    assert len(sent) == 2 and len(hist) == 2 and hist[-1]["seq"] == 2
    s.close()
    assert rec.subscribers == []
    rec.emit("cells", 0, 0, np.array([0], np.int32), np.array([2.0]))
    shell.events.trigger("post_run_cell", None)
    assert len(hist) == 2
    assert s._post_run_cell not in shell.events.callbacks["post_run_cell"]
    assert s._pre_run_cell not in shell.events.callbacks["pre_run_cell"]


# --- the widget ----------------------------------------------------------------------------------------
def test_widget_history_is_wire_ready_and_repr_is_stable():
    from ipywidgets.widgets.widget import _remove_buffers

    rec = Record()
    fill_record(rec, 50, label="run 1")
    fill_record(rec, 50, label="run 2")
    w = MonitorWidget(rec)
    try:
        assert repr(w) == "MonitorWidget(runs=2, epochs=50)"
        assert "0x" not in repr(w)
        state, paths, buffers = _remove_buffers(w.get_state())
        json.dumps(state)
        assert len(buffers) == 8  # epochs, times, steps, data for each of 2 runs
        assert ["history", "runs", 1, "data"] in paths
        snap = w.history
        assert snap["seq"] == 0 and len(snap["runs"]) == 2
        _, data = _decode_snapshot_run(snap["runs"][1])
        np.testing.assert_array_equal(data, rec.runs[1].data)
        assert "_uid" not in state  # the front-end finds its store through the per-model factory
    finally:
        w.close()


def test_widget_sends_deltas_through_its_comm(monkeypatch):
    rec = Record()
    w = MonitorWidget(rec)
    sent: list = []
    monkeypatch.setattr(w, "send", lambda content, buffers=None: sent.append((content, buffers)))
    fill_record(rec, 2)
    w.flush()
    assert sent and all(m["type"] == "delta" for m, _ in sent)
    assert repr(w) == "MonitorWidget(runs=1, epochs=2)"
    w.close()
    n = len(sent)
    tick(rec, 3)
    time.sleep(0.08)
    assert len(sent) == n, "a closed widget stops syncing"


def test_widget_without_record():
    w = MonitorWidget()
    assert repr(w) == "MonitorWidget(runs=0, epochs=0)"
    assert not getattr(w, "_mw_displayed", False)
    bundle = w._repr_mimebundle_()
    assert bundle[0]["text/plain"] == "MonitorWidget(runs=0, epochs=0)"
    assert bundle[0]["application/vnd.jupyter.widget-view+json"]["model_id"] == w.model_id
    assert w._mw_displayed
    assert w.history["runs"] == []
    w.close()


def test_filters_callback():
    w = MonitorWidget()
    got: list = []
    off = w.on_filters(got.append)
    w.filters = {"hidden_types": ["Dropout"], "hidden_runs": [0, "x"], "logy": {"Output Norm": True}}
    assert got == [{"hidden_modules": [], "hidden_types": ["Dropout"], "hidden_panels": [], "hidden_runs": [0],
                    "logy": {"Output Norm": True}}]
    off()
    w.filters = {"hidden_panels": ["Output Norm"]}
    assert len(got) == 1
    w.close()


def test_filters_from_the_front_end_reach_the_callback():
    """Simulate the comm message the front-end's model.save_changes() produces."""
    w = MonitorWidget()
    got: list = []
    w.on_filters(got.append)
    w.set_state({"filters": {"hidden_modules": ["<img src=x>"], "hidden_types": [], "hidden_panels": [],
                             "hidden_runs": [], "logy": {}}})
    assert got[-1]["hidden_modules"] == ["<img src=x>"]
    w.close()


def test_missing_bundle_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(widget_mod, "_ESM_PATH", tmp_path / "widget.js")
    with pytest.raises(FileNotFoundError, match="npm run build"):
        MonitorWidget()


def test_sync_is_safe_against_concurrent_flushes():
    """A worker thread trains while another calls flush(): every cell arrives exactly once, in order."""
    rec = FakeRecord()
    sent: list = []
    s = DeltaSync(rec, send=lambda m, b: sent.append((m, b)), set_history=lambda h, force=False: None,
                  hook_ipython=False)
    s._cell_thread = -1  # hold values back: only the flushing thread and the ticks >= 50 ms apart send
    done = threading.Event()

    def worker():
        for i in range(2000):
            rec.emit("cells", 0, i, np.array([0], np.int32), np.array([float(i)]))
            if i % 7 == 0:
                rec.emit(*status(i))
        done.set()

    t = threading.Thread(target=worker)
    t.start()
    while not done.is_set():
        s.flush()
    t.join()
    s.close()
    got = [c[3] for _, b in sent for c in cells_of(b)]
    assert got == [float(i) for i in range(2000)]
    assert [m["seq"] for m, _ in sent] == list(range(1, len(sent) + 1))


# --- the wire contract shared with the front-end tests -------------------------------------------------
FIXTURE = Path(__file__).resolve().parents[1] / "js" / "test" / "fixtures" / "wire.json"


def _b64(b: bytes) -> str:
    return base64.b64encode(bytes(b)).decode()


def _wire_fixture(monkeypatch) -> dict:
    """History + deltas produced by the real Record and DeltaSync for a deterministic little run, and the
    table they must reproduce (computed from the values written, not from the sync)."""
    from monitorch_widget.record import record as record_mod

    fake_now = iter(np.arange(1000.0, 2000.0, 0.25))
    monkeypatch.setattr(record_mod.time, "time", lambda: float(next(fake_now)))
    rec = Record()
    s, sent, hist, clock = make_sync(rec)
    rec.start_run("run 1: <i>MLP</i>", {"fc1": "Linear", "drop": "Dropout"})
    rec.runs[0].started = 1000.0
    rec.register_tags("Loss & Metrics", _Tag(True), "LossMetrics")
    rec.register_tags("Output Activations", _Tag(False, "PROBABILITY"), "OutputActivation")
    expected: dict[tuple[int, str, str, str], dict[int, float]] = {}

    def put(e, key, group, panel, v):
        expected.setdefault((0, panel, group, key), {})[e] = v

    for e in (1, 2):
        tick(rec, e)
    s.refresh_history()  # snapshot after 2 epochs
    snap = hist[-1]
    n_hist_msgs = len(sent)
    for e in (3, 4):
        clock.t += 1
        if e == 4:  # a provisional row first, then its final values
            rec.open_row(e, provisional=True)
            rec.plot_numerical_values(e, "Loss & Metrics", {"Loss & Metrics": {"train_loss mean": 7.0}})
            clock.t += 1
            s.pump()  # a monitor call on the training thread sends the provisional row
            rec.plot_numerical_values(e, "Loss & Metrics", {"Loss & Metrics": {"train_loss mean": 8.0}})
        tick(rec, e)
        clock.t += 1
    rec.problem("LossMetrics", "loss is NaN <b>!</b>", 2)
    rec.problem("attach", "'head' is watched by no lens", 1, "notice")  # information, counted apart
    s.flush()
    for e in (1, 2, 3, 4):
        put(e, "train_loss mean", "Loss & Metrics", "Loss & Metrics", 1.0 / e)
        put(e, "train_loss -σ", "Loss & Metrics", "Loss & Metrics", 0.9 / e)
        put(e, "train_loss +σ", "Loss & Metrics", "Loss & Metrics", 1.1 / e)
        for g, a, d in (("fc1", 0.5, 0.01 * (e % 7)), ("drop", 0.8, 0.0)):
            put(e, "activation_rate", g, "Output Activations", a)
            put(e, "death_rate", g, "Output Activations", d)
    # the history trait as the front-end receives it (bytes travel as buffers; base64 here)
    hist_json = json.loads(json.dumps(snap, default=_b64))
    return {
        "history": hist_json,
        "deltas": [{"msg": m, "buffers": [_b64(b) for b in bufs]} for m, bufs in sent[n_hist_msgs:]],
        "expected": [{"run": r, "panel": p, "group": g, "key": k, "values": {str(e): v for e, v in vals.items()}}
                     for (r, p, g, k), vals in expected.items()],
        "epochs": [1, 2, 3, 4],
        "problems": [{"lens": "LossMetrics", "message": "loss is NaN <b>!</b>", "count": 2, "kind": "warning"},
                     {"lens": "attach", "message": "'head' is watched by no lens", "count": 1, "kind": "notice"}],
    }


def test_wire_fixture_for_front_end_is_current(monkeypatch):
    """js/test/wire.test.ts replays this fixture through the TypeScript Store. Regenerate it with
    MW_REGEN_FIXTURES=1 after an intended protocol change."""
    fx = _wire_fixture(monkeypatch)
    text = json.dumps(fx, indent=1, sort_keys=True) + "\n"
    if os.environ.get("MW_REGEN_FIXTURES"):
        FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        FIXTURE.write_text(text, encoding="utf-8")
    assert FIXTURE.is_file(), "run MW_REGEN_FIXTURES=1 pytest tests/test_widget_sync.py once"
    assert json.loads(FIXTURE.read_text(encoding="utf-8")) == json.loads(text), (
        "the messages for the fixture run changed: if intended, regenerate with MW_REGEN_FIXTURES=1 and run "
        "`npm test` (js/test/wire.test.ts replays them)")
    # sanity of the fixture itself: the deltas continue the snapshot's numbering
    seqs = [d["msg"]["seq"] for d in fx["deltas"]]
    assert seqs and seqs[0] == fx["history"]["seq"] + 1 and seqs == sorted(seqs)
    assert any(r["provisional"] for d in fx["deltas"] for r in d["msg"]["rows"])


def test_a_failing_send_never_reaches_the_training_loop():
    rec = FakeRecord()
    calls = []

    def broken_send(m, b):
        calls.append(m["seq"])
        raise OSError("comm closed")

    s = DeltaSync(rec, send=broken_send, set_history=lambda h, force=False: None, hook_ipython=False)
    with pytest.warns(RuntimeWarning, match="comm closed"):
        rec.emit("cells", 0, 0, np.array([0], np.int32), np.array([1.0]))
        rec.emit(*status(1))  # must not raise
    rec.emit("cells", 0, 1, np.array([0], np.int32), np.array([2.0]))
    rec.emit(*status(2))  # no second warning, no exception
    s._post_run_cell(None)
    assert s.errors >= 2 and calls
