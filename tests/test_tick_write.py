"""Record.plot_calls (a tick's lens calls written at once, record/ingest.TickWrite) against the same calls made
one by one through monitorch's visualizer interface: the same cells, columns and events' contents."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from monitorch_widget.record import Record


def calls_of(epoch: int, extra_key: bool = False) -> list[tuple]:
    loss = OrderedDict([("Loss", {"train_loss mean": 1.0 / (epoch + 1), "val_loss mean": 2.0 + epoch})])
    ranges = OrderedDict([("Loss", {("train_loss -σ", "train_loss +σ"): (0.5 - epoch, 1.5 + epoch)})])
    rates = OrderedDict([("fc1", {"activation_rate": 0.25 * epoch, "death_rate": 0.5}),
                         ("fc2", {"activation_rate": 0.75, "death_rate": float(epoch)})])
    if extra_key:
        rates["fc3"] = {"activation_rate": 0.125, "death_rate": 0.0}
    return [("numerical", "Loss", loss, ranges), ("probability", "Output Activations", rates, None),
            ("relations", "Relations", OrderedDict([("fc1", {"fc2": -0.5 * epoch})]), None)]


def one_by_one(record: Record, epoch: int, calls: list[tuple]) -> None:
    for method, tag, values, ranges in calls:
        if method == "numerical":
            record.plot_numerical_values(epoch, tag, values, ranges)
        elif method == "probability":
            record.plot_probabilities(epoch, tag, values)
        else:
            record.plot_relations(epoch, tag, values)


def cells_by_row(events: list[tuple]) -> dict[int, dict[int, float]]:
    """row -> {column: last value written}, from the record's cells events in order."""
    out: dict[int, dict[int, float]] = {}
    for e in events:
        if e[0] == "cells":
            out.setdefault(e[2], {}).update(zip(e[3].tolist(), e[4].tolist()))
    return out


def test_a_ticks_calls_written_at_once_are_the_calls_written_one_by_one():
    plain, batched = Record(), Record()
    seen: list[tuple] = []
    batched.subscribe(seen.append)
    batched_events: list[tuple] = []
    batched.subscribe(batched_events.append)
    plain_events: list[tuple] = []
    plain.subscribe(plain_events.append)
    per_tick = []
    for epoch in range(5):
        calls = calls_of(epoch, extra_key=epoch >= 3)  # epoch 3: a new column (a new shape of one call)
        for record in (plain, batched):
            record.open_row(epoch)
        one_by_one(plain, epoch, calls)
        batched.plot_calls(epoch, calls)
        for record in (plain, batched):
            record.close_row()
        per_tick.append(sum(1 for e in seen if e[0] == "cells"))
        seen_cells = [e for e in seen if e[0] == "cells"]
        assert all(not e[4].flags.writeable for e in seen_cells)
        seen[:] = [e for e in seen if e[0] != "cells"]
    a, b = plain.current, batched.current
    assert [c.__dict__ for c in a.columns] == [c.__dict__ for c in b.columns]
    np.testing.assert_array_equal(a.data, b.data)
    assert a.series("Output Activations", "fc2", "death_rate").tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    # epoch 0 and 3 make columns call by call (one event per call); the others: one event for the tick
    assert per_tick == [3, 1, 1, 3, 1]
    # what a subscriber (the widget's sync) learns from the cells events is the same
    assert cells_by_row(batched_events) == cells_by_row(plain_events)
    assert len(cells_by_row(plain_events)[4]) == 11


def test_calls_writing_the_same_column_twice_keep_the_last_value():
    plain, batched = Record(), Record()
    for epoch in range(3):
        first = ("probability", "Rates", OrderedDict([("fc1", {"death_rate": 0.5 + epoch})]), None)
        again = ("probability", "Rates", OrderedDict([("fc1", {"death_rate": 0.25 * epoch})]), None)
        for record in (plain, batched):
            record.open_row(epoch)
        one_by_one(plain, epoch, [first, again])
        batched.plot_calls(epoch, [first, again])
        for record in (plain, batched):
            record.close_row()
    assert batched.current.series("Rates", "fc1", "death_rate").tolist() == [0.0, 0.25, 0.5]
    np.testing.assert_array_equal(plain.current.data, batched.current.data)


def test_a_lens_with_its_own_vizualize_gets_the_record_between_the_others():
    import torch
    from torch import nn

    from monitorch_widget import PyTorchInspector
    from monitorch_widget.lens import LossMetrics, OutputActivation

    class Counted(OutputActivation):
        def vizualize(self, visualizer, epoch, calls):
            # what the record already holds of this tick when this lens runs: the loss lens' cells
            held = visualizer.current.data[visualizer.current.open_row].tolist()
            super().vizualize(visualizer, epoch, calls)
            visualizer.plot_numerical_values(epoch, "Custom", {"Custom": {"seen": float(sum(v == v for v in held))}})

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    loss_fn = nn.CrossEntropyLoss()
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn), Counted()], visualizer="none", module=model)
    x, y = torch.randn(16, 2), torch.randint(0, 2, (16,))
    for _ in range(3):
        loss_fn(model(x), y).backward()
        ins.tick_epoch()
    run = ins.history.current
    # the loss lens' line and band (3 cells) were written before the custom lens ran, its rates after
    assert run.series("Custom", "Custom", "seen").tolist() == [3.0, 3.0, 3.0]
    assert np.isfinite(run.series("Output Activations", "1", "death_rate")).all()
