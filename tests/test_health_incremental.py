"""The tick's record side computes what the straightforward evaluation computes, row by row.

* Health checks: runs with dying, dead and constant layers, ties between layers' death rates, NaN / Inf
  gaps, provisional rows, plateaus in relative and absolute mode, divergence, overfitting, a confident
  softmax, problems, and thresholds changed mid-run, are fed into two records: one judged by the package's
  incremental checks, one by ``health_reference.py`` (every check re-reading whole columns with numpy, as the
  checks were written before). After every row, the findings, the skipped checks and every event the records
  emitted must be equal.
* The median of the other layers (``dying_layer``): equal to ``np.median`` bit for bit.
* Ingest: a tag's column plan is reused only for a call of the same shape; every value lands in the column a
  plain (tag, group, key) lookup names.
* ``PendingDelta.cells``: equal to a plain dictionary replay (last write wins, in the order of last writes).
* The print view's epoch line: the same with its column cache as without, while columns and runs are added.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from typing import Any

import health_reference as ref
import numpy as np
import pytest

from monitorch_widget.lens.base import TagAttributes, TagType
from monitorch_widget.record import Record
from monitorch_widget.record.health import monitor
from monitorch_widget.record.health.layers import _median_without
from monitorch_widget.record.protocol import PendingDelta
from monitorch_widget.views.print import epoch_line

REFERENCE = {"dead_layer": ref.dead_layer, "dying_layer": ref.dying_layer, "dying_trend": ref.dying_trend,
             "confident_softmax": ref.confident_softmax, "nonfinite": ref.nonfinite, "divergence": ref.divergence,
             "plateau": ref.plateau, "overfitting": ref.overfitting}


def _walk(rng: random.Random, n: int, start: float, drift: float, noise: float, lo: float = -math.inf,
          hi: float = math.inf, quantum: float | None = None) -> list[float]:
    out, v = [], start
    for _ in range(n):
        v = min(hi, max(lo, v + drift + rng.gauss(0, noise)))
        out.append(round(v / quantum) * quantum if quantum else v)
    return out


def _holes(rng: random.Random, values: list[float], share: float, inf: bool = False) -> list[float]:
    return [(math.inf if inf and rng.random() < 0.3 else math.nan) if rng.random() < share else v for v in values]


def scenario(seed: int, n_layers: int | None = None) -> dict[str, Any]:
    """One run's rows: per-epoch calls in monitorch's visualizer vocabulary, and what happens between rows
    (``n_layers``: that many activation layers instead of 1 to 9)."""
    rng = random.Random(seed)
    n = rng.randint(25, 70)
    n_layers = rng.randint(1, 9) if n_layers is None else n_layers
    types = [rng.choice(["ReLU", "ReLU", "Sigmoid", "LeakyReLU", "Tanh"]) for _ in range(n_layers)]
    quantum = rng.choice([None, 0.05, 0.25])  # coarse rates: ties between layers (and equal medians)
    deaths = [_holes(rng, _walk(rng, n, rng.random() * 0.6, rng.choice([0.0, 0.01, 0.03]), 0.05, 0.0, 1.0, quantum),
                     0.05) for _ in range(n_layers)]
    acts = _walk(rng, n, 0.5, -0.01, 0.03, 0.0, 1.0)
    loss_mode = rng.choice(["falling", "plateau", "diverging", "overfitting", "signed"])
    if loss_mode == "falling":
        train = _walk(rng, n, 2.0, -0.03, 0.01, 1e-3)
    elif loss_mode == "plateau":
        train = [max(1e-3, 1.0 / (1 + e)) if e < n // 3 else 0.25 + rng.gauss(0, 1e-6) for e in range(n)]
    elif loss_mode == "diverging":
        train = _walk(rng, n, 1.0, 0.0, 0.02, 1e-3)
        for e in range(rng.randint(5, n - 1), n):
            train[e] = train[e - 1] * 1.3
    elif loss_mode == "overfitting":
        train = _walk(rng, n, 1.0, -0.02, 0.005, 1e-3)
    else:  # a loss that crosses zero (a signed objective): the plateau check compares absolutely
        train = _walk(rng, n, 0.3, -0.02, 0.02)
    val = [t * (1.05 + (0.02 * e if loss_mode == "overfitting" and e > n // 2 else 0.0)) for e, t in enumerate(train)]
    step = rng.choice([None, 0.01, 0.1])  # coarse losses: equal values (first best epoch, equal = no improvement)
    if step:
        train, val = ([round(v / step) * step for v in vs] for vs in (train, val))
    train = _holes(rng, train, 0.05, inf=rng.random() < 0.3)
    val = _holes(rng, val, 0.05)
    accuracy = _holes(rng, _walk(rng, n, 0.5, 0.002, 0.02, 0.0, 1.0), 0.05)
    rows = []
    for e in range(n):
        calls: list[tuple[str, tuple[Any, ...]]] = []
        values = OrderedDict((f"act{k}", {"activation_rate": acts[e], "death_rate": deaths[k][e]})
                             for k in range(n_layers))
        values["softmax"] = {"activation_rate": acts[e] * rng.choice([1.0, 0.4]), "death_rate": 0.0}
        calls.append(("plot_probabilities", ("Output Activations", values)))
        calls.append(("plot_numerical_values", ("Loss", {"Loss": {"train_loss mean": train[e], "val_loss mean": val[e]}},
                                                {"Loss": {("train_loss -σ", "train_loss +σ"): (train[e] - 0.1,
                                                                                               train[e] + 0.1)}})))
        calls.append(("plot_numerical_values", ("Metrics", {"Metrics": {"val_accuracy": accuracy[e]}}, None)))
        events = []
        if rng.random() < 0.06:
            events.append(("problem", ("OutputActivation", f"act0: {e} batch(es) with NaN/Inf values were left out of "
                                       "the rates")))
        if rng.random() < 0.04:
            events.append(("problem", ("LossMetrics", f"{e} non-finite loss value(s) were left out")))
        if rng.random() < 0.05:
            events.append(("provisional", ()))
        rows.append((calls, events))
    configs = {e: rng.choice([
        {"plateau_threshold": 1.0}, {"plateau_patience": 2, "dying_window": 2, "dead_epochs": 1},
        {"plateau_threshold": 0.05}, {"accuracy_metric": "val_accuracy"}, {"dying_gap": 0.05, "dying_ratio": 1.0},
        {"dead_epochs": 6, "dying_epochs": 5}])
        for e in rng.sample(range(n), 2)}
    own_lenses = rng.random() < 0.5  # panels named by our lenses (else: fed by monitorch's inspector)
    return {"types": {f"act{k}": t for k, t in enumerate(types)} | {"softmax": "Softmax"}, "rows": rows,
            "configs": configs, "own": own_lenses, "first_config": rng.choice([{}, {"plateau_patience": 3}])}


def replay(sc: dict[str, Any]) -> list[Any]:
    """Feed ``sc`` into a fresh record; what it said after every row (findings, skipped checks, events)."""
    record = Record()
    record.health.configure(**sc["first_config"])
    if sc["own"]:
        for tag, lens in (("Output Activations", "OutputActivation"), ("Loss", "LossMetrics"), ("Metrics", "LossMetrics")):
            kind = TagType.PROBABILITY if tag == "Output Activations" else TagType.NUMERICAL
            record.register_tags(tag, TagAttributes(logy=False, big_plot=tag == "Loss", annotate=False, type=kind), lens)
    record.start_run("r", sc["types"])
    events: list[Any] = []
    record.subscribe(lambda ev: events.append(ev) if ev[0] in ("findings", "problem") else None)
    said = []
    for e, (calls, extra) in enumerate(sc["rows"], 1):
        if e in sc["configs"]:
            record.health.configure(**sc["configs"][e])
        for kind, args in extra:
            if kind == "problem":
                record.problem(*args, 1)
            elif kind == "provisional":  # an intra-epoch estimate, cleared and reused by the final row
                record.open_row(e - 0.5, provisional=True)
                record.plot_probabilities(e - 0.5, *calls[0][1])
        record.open_row(e)
        for method, args in calls:
            getattr(record, method)(e, *args)
        record.close_row()
        said.append(([f.to_dict() for f in record.health.findings()], dict(record.health.skipped), list(events)))
        events.clear()
    return said


@pytest.mark.filterwarnings("ignore:invalid value encountered in multiply:RuntimeWarning")  # the reference, threshold 1
@pytest.mark.parametrize("seed", range(40))
def test_incremental_checks_say_what_whole_column_checks_say(seed, monkeypatch):
    sc = scenario(seed)
    fast = replay(sc)
    for name, fn in REFERENCE.items():
        monkeypatch.setitem(monitor.CHECK_FUNCTIONS, name, fn)
    monkeypatch.setattr(monitor.HealthMonitor, "_apply", ref.apply)
    slow = replay(sc)
    assert len(fast) == len(slow)
    for row, (a, b) in enumerate(zip(fast, slow)):
        assert a == b, f"seed {seed}, row {row}"


@pytest.mark.filterwarnings("ignore:invalid value encountered in multiply:RuntimeWarning")
@pytest.mark.parametrize("seed", range(12))
def test_many_layers_say_what_whole_column_checks_say(seed, monkeypatch):
    """From 16 checked layers on, the death checks gather and compare the rates as one array (layers.py)."""
    sc = scenario(100 + seed, n_layers=16 + seed % 3 * 7)
    rows = sc["rows"]
    for e in range(1, len(rows)):
        if e // 6 % 2:  # every other stretch of 6 rows keeps the death rates of the row before it (settled checks)
            before, now = rows[e - 1][0][0][1][1], rows[e][0][0][1][1]
            for group in now:
                now[group]["death_rate"] = before[group]["death_rate"]
    fast = replay(sc)
    for name, fn in REFERENCE.items():
        monkeypatch.setitem(monitor.CHECK_FUNCTIONS, name, fn)
    monkeypatch.setattr(monitor.HealthMonitor, "_apply", ref.apply)
    slow = replay(sc)
    assert fast == slow
    assert any(f["check"] in ("dead_layer", "dying_layer") for f in fast[-1][0])


def test_the_scenarios_reach_every_check():
    """The replay above must exercise what it compares: each check raises findings in some scenario."""
    seen: set[str] = set()
    for seed in range(40):
        final = replay(scenario(seed))[-1][0]
        seen |= {f["check"] for f in final}
    assert {"dead_layer", "dying_layer", "dying_trend", "confident_softmax", "nonfinite", "divergence", "plateau",
            "overfitting"} <= seen, seen


def test_median_of_the_others_is_numpys_median():
    rng = np.random.default_rng(0)
    for _ in range(3000):
        n = int(rng.integers(2, 14))
        values = rng.random(n) * rng.choice([1.0, 1e-3, 1e4])
        values = np.round(values, int(rng.integers(0, 3))) if rng.random() < 0.5 else values
        if rng.random() < 0.1:
            values = values * 0.0 * rng.choice([1.0, -1.0])  # zeros and negative zeros
        ranked = sorted(values.tolist())
        for k in range(n):
            expected = float(np.median(np.delete(values, k)))
            got = _median_without(ranked, float(values[k]))
            assert got == expected and math.copysign(1, got) == math.copysign(1, expected), (values, k)


def test_a_tag_whose_calls_change_shape_still_writes_every_value_to_its_named_column():
    rng = random.Random(3)
    record = Record()
    record.start_run("r")
    expected: dict[tuple[str, str, str], dict[int, float]] = {}
    first_seen: list[tuple[str, str, str, str]] = []
    for epoch in range(1, 60):
        record.open_row(epoch)
        for tag in ("A", "B"):
            groups = rng.sample(["g1", "g2", "g3"], rng.randint(1, 3))  # order and membership change
            values = {g: {k: rng.random() for k in rng.sample(["mean", "max", "min"], rng.randint(1, 3))} for g in groups}
            ranges = {g: {("mean -σ", "mean +σ"): (-1.0, 1.0)} for g in groups[:1]} if rng.random() < 0.5 else None
            record.plot_numerical_values(epoch, tag, values, ranges)
            for g, lines in values.items():
                for k, v in lines.items():
                    expected.setdefault((tag, g, k), {})[epoch] = v
                    if (tag, g, k, "line") not in first_seen:
                        first_seen.append((tag, g, k, "line"))
                for g2, bands in (ranges or {}).items():
                    if g2 != g:
                        continue
                    for (lo_name, hi_name) in bands:
                        for name, role in ((lo_name, "lo"), (hi_name, "hi")):
                            if (tag, g, name, role) not in first_seen:
                                first_seen.append((tag, g, name, role))
        record.close_row()
    run = record.current
    # columns in the order their names were first written (a band right after its group's lines of that call)
    assert sorted((c.panel, c.group, c.key, c.role) for c in run.columns) == sorted(first_seen)
    for (tag, g, k), by_epoch in expected.items():
        series = run.series(tag, g, k)
        for e in range(1, 60):
            want = by_epoch.get(e, math.nan)
            got = series[e - 1]
            assert got == want or (math.isnan(got) and math.isnan(want)), (tag, g, k, e)


def test_non_numeric_values_read_as_nan_on_the_reused_plan():
    record = Record()
    record.start_run("r")
    for epoch, value in ((1, 0.5), (2, None), (3, "x"), (4, np.float32(0.25))):
        record.open_row(epoch)
        record.plot_probabilities(epoch, "P", {"g": {"rate": value}})
        record.close_row()
    np.testing.assert_array_equal(record.series("P", "g", "rate"), [0.5, math.nan, math.nan, 0.25])


def test_pending_cells_equal_a_plain_last_write_wins_replay():
    rng = np.random.default_rng(1)
    for _ in range(200):
        pending = PendingDelta()
        plain: dict[tuple[int, int, int], tuple[int, float]] = {}
        order = 0
        for _ in range(int(rng.integers(1, 8))):
            run, row = int(rng.integers(0, 2)), int(rng.integers(0, 3))
            cols = rng.integers(0, 6, int(rng.integers(0, 5))).astype(np.int32)
            vals = rng.random(cols.size)
            pending.add(("cells", run, row, cols, vals))
            for c, v in zip(cols.tolist(), vals.tolist()):
                plain[(run, row, c)] = (order, v)
                order += 1
        runs, rows, cols, vals = pending.cells()
        if len(pending.cell_chunks) <= 1:  # one event is sent as it came (its repeats in order)
            continue
        want = sorted(plain.items(), key=lambda kv: kv[1][0])
        assert list(zip(runs.tolist(), rows.tolist(), cols.tolist())) == [k for k, _ in want]
        assert vals.tolist() == [v for _, (_, v) in want]


def test_print_line_keeps_up_with_new_columns_and_runs():
    record = Record()
    record.register_tags("Loss", TagAttributes(logy=False, big_plot=True, annotate=False, type=TagType.NUMERICAL))
    labels: dict[str, Any] = {}
    for run in ("a", "b"):
        record.start_run(run)
        for epoch in range(1, 7):
            record.open_row(epoch)
            record.plot_numerical_values(epoch, "Loss", {"Loss": {"train_loss mean": 1 / epoch}})
            if epoch >= 4:  # a second line appears mid-run
                record.plot_numerical_values(epoch, "Loss", {"Loss": {"val_loss mean": 2 / epoch}})
            record.close_row()
            assert epoch_line(record, labels) == epoch_line(record)
    assert epoch_line(record, labels) == "epoch 6 | train_loss mean 0.1667 | val_loss mean 0.3333"


def test_pending_cells_copy_what_the_emitter_may_reuse():
    pending = PendingDelta()
    cols, vals = np.array([0, 1], dtype=np.int32), np.array([0.5, 0.25])
    pending.add(("cells", 0, 0, cols, vals))
    cols[:] = 7  # a writeable array may be reused once the callback returned
    vals[:] = 9.0
    runs, rows, got_cols, got_vals = pending.cells()
    assert got_cols.tolist() == [0, 1] and got_vals.tolist() == [0.5, 0.25]


def test_pending_cells_of_one_event_are_that_events_cells():
    """One cells event (the usual tick, sent at once) is passed on as it came, a repeated column included (as
    the merge of several events keeps every write of one event)."""
    pending = PendingDelta()
    cols = np.array([4, 1, 4, 7], np.int32)
    vals = np.array([0.5, -0.0, 2.0, math.nan])
    pending.add(("cells", 2, 9, cols, vals))
    runs, rows, got_cols, got_vals = pending.cells()
    assert runs.dtype == rows.dtype == got_cols.dtype == np.int32 and got_vals.dtype == np.float64
    assert runs.tolist() == [2] * 4 and rows.tolist() == [9] * 4 and got_cols.tolist() == [4, 1, 4, 7]
    assert np.array_equal(got_vals, vals, equal_nan=True) and math.copysign(1, got_vals[1]) == -1
    vals[0] = 99.0  # the emitter reuses its array: what is pending does not change
    assert pending.cells()[3][0] == 0.5
