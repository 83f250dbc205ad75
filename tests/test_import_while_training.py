"""``import_runs`` while a run trains (fresh-user trial r7, finding 1): "load last week's run to compare", done once
training had started, sent every later epoch into the imported run (its epochs read [1, 2, 3, 2], the live run
stopped at one row), pointed the findings at it and saved the damaged file. The imported copies now go before
the run that trains, which stays current; an imported copy is never written. Values are checked against means
computed by hand on the same batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import monitorch_widget
from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation
from monitorch_widget.record import Record
from monitorch_widget.record.protocol import PendingDelta

LOSS = ("Loss", "Loss", "train_loss mean")


def _batches(seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 4, generator=gen), torch.randint(0, 3, (16,), generator=gen)) for _ in range(4)]


def _train(ins: PyTorchInspector, model: nn.Module, loss_fn: nn.Module, opt: torch.optim.Optimizer, seed: int,
           losses: list[list[float]]) -> None:
    losses.append([])
    _steps(model, loss_fn, opt, _batches(seed), losses[-1])
    ins.tick_epoch()


def _steps(model: nn.Module, loss_fn: nn.Module, opt: torch.optim.Optimizer, batches, losses: list[float]) -> None:
    for x, y in batches:
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss))


def _run(label: str, epochs: int, tmp_path) -> tuple[str, Record]:
    torch.manual_seed(1)
    model, loss_fn = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn), OutputActivation()], visualizer="none")
    ins.attach(model, run_name=label)
    for e in range(epochs):
        _train(ins, model, loss_fn, opt, 100 + e, [])
    path = str(tmp_path / f"{label}.json")
    ins.save(path)
    return path, ins.history


@pytest.mark.parametrize("where", ["between ticks", "mid-epoch"])
def test_runs_imported_while_a_run_trains_go_before_it_and_it_keeps_every_epoch(tmp_path, where):
    path, week = _run("last week", 3, tmp_path)
    torch.manual_seed(0)
    model, loss_fn = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn), OutputActivation()], visualizer="none")
    ins.attach(model, run_name="today")
    losses: list[list[float]] = []
    _train(ins, model, loss_fn, opt, 0, losses)
    if where == "mid-epoch":  # e.g. after an interrupted cell: two batches of epoch 2 already counted
        losses.append([])
        _steps(model, loss_fn, opt, _batches(1)[:2], losses[-1])
    added = ins.history.import_runs(monitorch_widget.load(path))
    assert [r.label for r in added] == ["last week"] and added[0].imported
    if where == "mid-epoch":
        _steps(model, loss_fn, opt, _batches(1)[2:], losses[-1])
        ins.tick_epoch()
    else:
        _train(ins, model, loss_fn, opt, 1, losses)
    _train(ins, model, loss_fn, opt, 2, losses)
    runs = ins.history.runs
    assert [(r.label, r.epochs) for r in runs] == [("last week", [1.0, 2.0, 3.0]), ("today", [1.0, 2.0, 3.0])]
    assert len({r.id for r in runs}) == 2
    assert ins.history.current is runs[-1]
    np.testing.assert_allclose(ins.history.series(*LOSS), [np.mean(e) for e in losses], rtol=1e-6)
    np.testing.assert_array_equal(runs[0].data, week.runs[0].data)  # the copy exactly as saved
    # the current run's findings, not the imported one's
    assert all(f.run == runs[-1].id for f in ins.findings)
    # saved and loaded: the same runs in the same order, each run's findings under its own id
    ins.save(tmp_path / "both.json")
    back = monitorch_widget.load(tmp_path / "both.json")
    assert [(r.label, r.epochs) for r in back.runs] == [(r.label, r.epochs) for r in runs]
    for i, r in enumerate(back.runs):
        np.testing.assert_array_equal(r.data, runs[i].data)
        got = back.health.findings(r.id)
        want = ins.history.health.findings(runs[i].id)
        assert [(f.check, f.layer, f.since, f.until) for f in got] == [(f.check, f.layer, f.since, f.until) for f in want]
        assert all(f.run == r.id and f.id.startswith(f"{r.id}:") for f in got)
    ins.detach()


def test_a_view_learns_that_the_training_run_stays_current():
    """On the wire the imported run is announced after the run that trains; the status that follows names the
    training run (the front-end store moves it last: js/test/store.test.ts)."""
    record = Record()
    pending = PendingDelta()
    record.start_run("today")
    record.subscribe(pending.add)
    other = Record()
    other.start_run("last week")
    other.open_row(1)
    other.plot_numerical_values(1, "Loss", {"Loss": {"train_loss mean": 1.5}})
    other.close_row()
    record.import_runs(other)
    assert [r.label for r in record.runs] == ["last week", "today"]
    today = record.runs[-1].id
    assert [r["label"] for r in pending.new_runs] == ["last week"]
    assert pending.status is not None and pending.status["run"] == today


def test_a_record_fed_by_monitorch_calls_after_an_import_writes_a_new_run():
    """A record used as monitorch's visualizer after import_runs: new epochs start a run of their own."""
    other = Record()
    other.start_run("last week")
    for e in (1, 2):
        other.open_row(e)
        other.plot_numerical_values(e, "Loss", {"Loss": {"train_loss mean": float(e)}})
        other.close_row()
    record = Record()
    record.import_runs(other)
    record.open_row(1)
    record.plot_numerical_values(1, "Loss", {"Loss": {"train_loss mean": 9.0}})
    record.close_row()
    assert [(r.label, r.epochs) for r in record.runs] == [("last week", [1.0, 2.0]), ("run 2", [1.0])]
    assert record.series("Loss", "Loss", "train_loss mean", run=0).tolist() == [1.0, 2.0]
    assert record.series("Loss", "Loss", "train_loss mean").tolist() == [9.0]


def test_an_evaluation_run_s_findings_are_the_last_trained_run_s_never_an_imported_one():
    """Review: after ``fit`` an evaluation-only run (no optimizer step) reads the findings of the last run that
    trained; a run imported meanwhile goes before it and must not be taken for that run."""
    from collections import OrderedDict

    def dead_rows(record: Record, layer: str, n: int, step: float) -> None:
        for e in range(1, n + 1):
            record.open_row(e, step=step * e)
            record.plot_probabilities(e, "Output Activations",
                                      OrderedDict([(layer, {"activation_rate": 0.1, "death_rate": 0.6})]))
            record.close_row()

    other = Record()
    other.start_run("last week")
    dead_rows(other, "imported_relu", 3, 10.0)
    record = Record()
    record.start_run("fit")
    dead_rows(record, "relu1", 3, 10.0)
    record.start_run("validate")
    dead_rows(record, "relu1", 1, 0.0)  # rows, and no optimizer step
    record.import_runs(other)
    assert [r.label for r in record.runs] == ["fit", "last week", "validate"]
    found = record.health.current_findings(record.runs)
    assert [(f.check, f.layer, f.run) for f in found] == [("dead_layer", "relu1", record.runs[0].id)]


def test_a_loaded_record_fed_by_monitorch_calls_starts_a_run_of_its_own(tmp_path):
    """Review: ``WidgetVisualizer(load(path))`` fed by monitorch's inspector wrote into the file's last run (epochs
    repeating the saved ones). A loaded run is finished: new epochs start a run of their own."""
    path, week = _run("last week", 2, tmp_path)
    record = monitorch_widget.load(path)
    record.open_row(1)
    record.plot_numerical_values(1, "Loss", {"Loss": {"train_loss mean": 9.0}})
    record.close_row()
    assert [(r.label, r.epochs) for r in record.runs] == [("last week", [1.0, 2.0]), ("run 2", [1.0])]
    np.testing.assert_array_equal(record.runs[0].data, week.runs[0].data)
    assert record.series(*LOSS).tolist() == [9.0]
