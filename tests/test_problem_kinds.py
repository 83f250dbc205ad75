"""A report's kind (collect/faults.py): a ``MonitorWarning`` is a problem, a ``MonitorNotice`` information. The
kind goes from the FaultLog through the record to the wire, the saved history and every view that counts
problems, and a history or snapshot saved without kinds still loads (every entry a problem, as then)."""

from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch
from torch import nn

from monitorch_widget import MonitorNotice, MonitorWarning, PyTorchInspector
from monitorch_widget.collect.faults import FaultLog
from monitorch_widget.lens import OutputActivation
from monitorch_widget.record import Record
from monitorch_widget.record.history_file import from_dict, to_dict
from monitorch_widget.record.protocol import PendingDelta, encode_delta, snapshot
from monitorch_widget.views.print import epoch_line
from monitorch_widget.views.static_picture import record_to_svg

NAN = ("OutputActivation", "relu1: 2 batch(es) with NaN/Inf values were left out of the statistics")
FROZEN = ("attach", "'emb.weight' is frozen (requires_grad=False): its gradient lenses show no value")
UNWATCHED = ("attach", "'head' is watched by no lens")


def reported() -> Record:
    """A record fed by a FaultLog as the inspector wires it: one problem reported twice, two notices once."""
    record = Record()
    record.start_run("r")
    faults = FaultLog()
    faults.subscribe(record.problem)
    with pytest.warns(UserWarning) as caught:  # MonitorNotice is no MonitorWarning: both are UserWarnings
        faults.report(*NAN)
        faults.report(*NAN)
        faults.report(*FROZEN, category=MonitorNotice)
        faults.report(*UNWATCHED, category=MonitorNotice)
    assert [w.category for w in caught] == [MonitorWarning, MonitorNotice, MonitorNotice]  # each said once
    return record


def test_the_kind_goes_from_the_fault_log_to_the_record_status_and_wire():
    record = reported()
    events = []
    record.subscribe(events.append)
    run = record.current
    assert run.problems == {NAN: 2, FROZEN: 1, UNWATCHED: 1} and run.notices == {FROZEN, UNWATCHED}
    assert run.problem_counts() == (1, 2)  # distinct reports: NAN twice is one problem (its count says 2)
    assert [(p["lens"], p["message"], p["count"], p["kind"]) for p in run.problem_list()] == [
        (*NAN, 2, "warning"), (*FROZEN, 1, "notice"), (*UNWATCHED, 1, "notice")]
    status = record.status()
    assert (status["problems"], status["notices"]) == (1, 2)
    assert snapshot(record)["runs"][0]["problems"] == run.problem_list()
    # a delta carries it too
    record.problem(*UNWATCHED, 2, "notice")
    pending = PendingDelta()
    for e in events:
        pending.add(e)
    msg, _ = encode_delta(pending, 5, None)
    assert msg["problems"] == [{"run": 0, "lens": UNWATCHED[0], "message": UNWATCHED[1], "count": 2, "kind": "notice"}]
    assert (msg["status"]["problems"], msg["status"]["notices"]) == (1, 2)  # UNWATCHED again: still 2 notices
    with pytest.raises(ValueError, match="'warning', 'notice'.*'info'"):
        record.problem("x", "y", 1, "info")


class Functional(nn.Module):
    """Its activation is a function, which no module hook sees: OutputActivation watches nothing (a notice)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(nn.functional.relu(self.fc1(x)))


def test_an_inspector_reports_a_notice_as_a_notice():
    model = Functional()
    ins = PyTorchInspector([OutputActivation()], visualizer="none")
    with pytest.warns(MonitorNotice):
        ins.attach(model)
    run = ins.history.current
    assert run.problems and run.notices == set(run.problems)  # only information so far: no problem
    assert ins.history.status()["problems"] == 0 and ins.history.status()["notices"] == len(run.problems)
    ins.detach()


def test_saved_histories_keep_the_kind_and_older_files_read_as_problems():
    record = reported()
    saved = json.loads(json.dumps(to_dict(record)))
    assert [p["kind"] for p in saved["runs"][0]["problems"]] == ["warning", "notice", "notice"]
    back = from_dict(saved)
    assert back.runs[0].notices == {FROZEN, UNWATCHED} and back.runs[0].problem_counts() == (1, 2)
    # a file saved before kinds: every entry a problem, as the widget showed it then
    for p in saved["runs"][0]["problems"]:
        del p["kind"]
    old = from_dict(saved)
    assert old.runs[0].notices == set() and old.runs[0].problem_counts() == (3, 0)
    assert all(p["kind"] == "warning" for p in snapshot(old)["runs"][0]["problems"])
    # a kind this version does not know (a file of a newer version) reads as a problem, not a failed load
    saved["runs"][0]["problems"][0]["kind"] = "info"
    newer = from_dict(saved)
    assert newer.runs[0].problem_counts() == (3, 0)


def test_imported_runs_keep_the_kind():
    into = Record()
    into.import_runs(reported())
    assert into.runs[0].notices == {FROZEN, UNWATCHED} and into.runs[0].problem_counts() == (1, 2)


def _epoch(record: Record, epoch: int, problem: tuple[str, str] | None, kind: str) -> None:
    record.plot_probabilities(epoch, "Output Activations",
                              OrderedDict([("relu1", {"activation_rate": 0.5, "death_rate": 0.0})]))
    record.plot_numerical_values(epoch, "Loss", {"Loss": {"train_loss mean": 1.0 / epoch}})
    if problem is not None:
        record.problem(*problem, 1, kind)
    record.close_row()


@pytest.mark.parametrize("kind", ["warning", "notice"])
def test_the_nonfinite_check_reads_problems_not_notices(kind):
    """A notice whose text reads like a NaN report (a layer's name, then "NaN/Inf") raises no finding."""
    record = Record()
    record.start_run("r")
    _epoch(record, 1, None, kind)
    _epoch(record, 2, NAN, kind)
    found = [(f.check, f.layer) for f in record.health.findings()]
    assert (("nonfinite", "relu1") in found) == (kind == "warning"), found


def test_static_picture_and_print_count_the_kinds_apart():
    record = reported()
    _epoch(record, 1, None, "warning")
    svg = record_to_svg(record)
    assert "⚠ 1 problem · 2 notes" in svg
    assert epoch_line(record).endswith(" | problems 1 | notes 2")
    notes_only = Record()
    notes_only.start_run("n")
    notes_only.problem(*FROZEN, 1, "notice")
    _epoch(notes_only, 1, None, "warning")
    svg = record_to_svg(notes_only)
    assert "n · 1 epoch · 1 note]]><" in svg and "⚠" not in svg
    assert epoch_line(notes_only).endswith(" | notes 1")
