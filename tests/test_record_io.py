import json

import numpy as np
import pytest
import torch
from torch import nn

import monitorch_widget
from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation
from monitorch_widget.record import HistoryFormatError, Record


def trained_inspector(epochs=3, runs=2):
    loss_fn = nn.CrossEntropyLoss()
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn), OutputActivation(), ParameterGradientActivation()],
                           visualizer="none")
    for _ in range(runs):
        model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))
        ins.attach(model)
        for _ in range(epochs):
            loss_fn(model(torch.randn(8, 2)), torch.randint(0, 2, (8,))).backward()
            ins.tick_epoch()
    return ins


def test_save_load_round_trip_keeps_every_run(tmp_path):
    ins = trained_inspector()
    path = tmp_path / "history.json"
    ins.save(path)
    loaded = monitorch_widget.load(path)
    assert len(loaded.runs) == 2
    for a, b in zip(ins.history.runs, loaded.runs):
        assert a.label == b.label and a.epochs == b.epochs
        assert [c.key for c in a.columns] == [c.key for c in b.columns]
        np.testing.assert_array_equal(a.data, b.data)
    assert json.loads(path.read_text())["format"] == "monitorch-widget-history"


@pytest.mark.parametrize("mutate, match", [
    (lambda text: text[: len(text) // 2], "not valid JSON"),
    (lambda text: text.replace("monitorch-widget-history", "other"), "not a monitorch-widget history"),
    (lambda text: text.replace('"version": 3', '"version": 99', 1), "unsupported version 99"),
])
def test_malformed_or_truncated_files_give_clear_errors(tmp_path, mutate, match):
    ins = trained_inspector(runs=1)
    path = tmp_path / "h.json"
    ins.save(path)
    path.write_text(mutate(path.read_text()))
    with pytest.raises(HistoryFormatError, match=match):
        monitorch_widget.load(path)


def test_wrong_row_width_is_rejected(tmp_path):
    ins = trained_inspector(runs=1)
    path = tmp_path / "h.json"
    ins.save(path)
    doc = json.loads(path.read_text())
    doc["runs"][0]["data"][0].append(1.0)
    path.write_text(json.dumps(doc))
    with pytest.raises(HistoryFormatError, match="every data row must have"):
        monitorch_widget.load(path)


def test_record_events_and_snapshot_are_consistent():
    rec = Record()
    events = []
    rec.subscribe(events.append)
    rec.start_run("r", {"relu": "ReLU"})
    rec.plot_probabilities(1, "Output Activations", {"relu": {"activation_rate": 0.5, "death_rate": 0.25}})
    rec.close_row()
    rec.plot_probabilities(2, "Output Activations", {"relu": {"activation_rate": 0.4}})
    rec.close_row()
    kinds = [e[0] for e in events]
    assert kinds.count("column") == 2 and kinds.count("row") == 2
    snap = rec.snapshot()
    run = snap["runs"][0]
    data = np.frombuffer(run["data"], dtype="<f8").reshape(run["n_rows"], run["n_cols"])
    assert data[0].tolist() == [0.5, 0.25]
    assert data[1, 0] == 0.4 and np.isnan(data[1, 1])
    assert run["columns"][0]["module_type"] == "ReLU"
    # replaying the cell events rebuilds the same matrix
    rebuilt = np.full((2, 2), np.nan)
    for e in events:
        if e[0] == "cells":
            rebuilt[e[2], e[3]] = e[4]
    np.testing.assert_array_equal(rebuilt, data)


def test_provisional_row_is_replaced_by_the_final_row():
    rec = Record()
    rec.start_run("r")
    rec.open_row(1, provisional=True)
    rec.plot_probabilities(1, "P", {"g": {"a": 0.1, "b": 0.2}})
    rec.open_row(1)
    rec.plot_probabilities(1, "P", {"g": {"a": 0.3}})
    rec.close_row()
    run = rec.runs[0]
    assert run.n_rows == 1 and not run.provisional
    assert run.data[0, 0] == 0.3 and np.isnan(run.data[0, 1])


def test_a_saved_history_is_overlaid_under_a_new_run(tmp_path):
    old = trained_inspector(epochs=3, runs=1)
    path = tmp_path / "last-week.json"
    old.save(path)
    ins = PyTorchInspector([LossMetrics(loss_fn=nn.CrossEntropyLoss()), OutputActivation()], visualizer="none")
    events = []
    ins.history.subscribe(events.append)
    ins.history.import_runs(monitorch_widget.load(path))
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))
    ins.attach(model)
    ins.lenses[0]._loss_fn(model(torch.randn(8, 2)), torch.randint(0, 2, (8,))).backward()
    ins.tick_epoch()
    runs = ins.history.runs
    assert [r.id for r in runs] == [0, 1] and runs[0].epochs == [1.0, 2.0, 3.0]
    np.testing.assert_array_equal(runs[0].data, old.history.runs[0].data)
    # a live view learns about the imported run through events: replaying them rebuilds its matrix
    rebuilt = np.full(runs[0].data.shape, np.nan)
    for e in events:
        if e[0] == "cells" and e[1] == 0:
            rebuilt[e[2], e[3]] = e[4]
    np.testing.assert_array_equal(rebuilt, runs[0].data)


def test_a_version_1_file_loads_and_says_what_differs(tmp_path):
    import json

    from monitorch_widget.record import DefinitionsWarning

    ins = trained_inspector(runs=1)
    path = tmp_path / "old.json"
    ins.save(path)
    doc = json.loads(path.read_text())
    assert doc["version"] == 3 and doc["definitions"]["version"] == 3 and doc["runs"][0]["definitions"] == 3
    doc["version"] = 1
    del doc["definitions"]
    for run in doc["runs"]:
        del run["definitions"]
    path.write_text(json.dumps(doc))
    with pytest.warns(DefinitionsWarning, match="per backward pass"):
        old = monitorch_widget.load(path)
    assert old.runs[0].definitions == 1
    np.testing.assert_array_equal(old.runs[0].data, ins.history.runs[0].data)
    with pytest.warns(DefinitionsWarning, match="older definitions"):
        ins.history.import_runs(old)


def test_a_run_measured_under_definitions_2_says_only_the_quantile_rule_changed(tmp_path):
    import json

    from monitorch_widget.record import DefinitionsWarning

    ins = trained_inspector(runs=1)
    path = tmp_path / "v2.json"
    ins.save(path)
    doc = json.loads(path.read_text())
    for run in doc["runs"]:
        run["definitions"] = 2
    path.write_text(json.dumps(doc))
    old = monitorch_widget.load(path)  # the file format is today's: no warning at load
    with pytest.warns(DefinitionsWarning, match="interpolated linearly") as caught:
        ins.history.import_runs(old)
    assert "per backward pass" not in str(caught[0].message)


def test_importing_the_same_runs_twice_adds_them_once(tmp_path):
    """The import cell re-run: the runs already in the record are not appended again (the legend doubled)."""
    ins = trained_inspector(runs=2)
    path = tmp_path / "two.json"
    ins.save(path)
    target = trained_inspector(runs=1)
    target.history.import_runs(monitorch_widget.load(path))
    labels = [r.label for r in target.history.runs]
    with pytest.warns(UserWarning, match="already in this record"):
        added = target.history.import_runs(monitorch_widget.load(path))
    assert added == [] and [r.label for r in target.history.runs] == labels and len(labels) == 3
