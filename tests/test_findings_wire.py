"""Health findings on the wire (docs/protocol.md 2b, protocol v2): a delta carries only the findings raised,
changed or resolved since the previous message, plus the ids to drop first (a reopened finding moves last of
its run); a snapshot carries the whole list. Checked against the record's full list before and after each
message (``HealthMonitor.as_dicts``), which is what a snapshot sends."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from test_health_record import feed

from monitorch_widget.record import Record
from monitorch_widget.record.protocol import PendingDelta, encode_delta
from monitorch_widget.views.sync import DeltaSync

FIXTURE = Path(__file__).resolve().parent.parent / "js" / "test" / "fixtures" / "findings.json"


class Wire:
    """The record's events merged into one pending delta until ``message()`` encodes it, with what the front-end
    holds kept as DeltaSync keeps it (``patches=False``: every upsert whole)."""

    def __init__(self, record: Record, patches: bool = True) -> None:
        self.pending = PendingDelta()
        self.seq = 0
        self.sent: dict[str, dict[str, Any]] | None = {} if patches else None
        record.subscribe(lambda event: self.pending.add(event))

    def message(self) -> tuple[dict[str, Any], list[bytes]]:
        self.seq += 1
        msg, bufs = encode_delta(self.pending, self.seq, None, self.sent)
        self.pending = PendingDelta()
        return json.loads(json.dumps(msg, allow_nan=False)), bufs


def merged(findings: list[dict[str, Any]], msg: dict[str, Any]) -> list[dict[str, Any]]:
    """What the front-end does with a delta (js/store.ts mergeFindings), written out plainly."""
    drop = set(msg.get("findings_removed", []))
    out = [f for f in findings if f["id"] not in drop]
    for f in msg.get("findings", []):
        ids = [g["id"] for g in out]
        if f["id"] in ids:
            out[ids.index(f["id"])] = {**out[ids.index(f["id"])], **f}
        else:
            assert {"run", "check", "severity", "message", "since"} <= set(f), f"partial upsert of unheld {f}"
            out.append(f)
    return sorted(out, key=lambda f: f["run"])


def changed(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[str]:
    """Ids of the findings in ``after`` that are new or differ from ``before`` (independent of the wire)."""
    old = {f["id"]: f for f in before}
    return [f["id"] for f in after if old.get(f["id"]) != f]


def test_a_delta_carries_only_the_finding_that_changed_and_a_snapshot_carries_all():
    record = Record()
    record.start_run("r")
    wire = Wire(record)
    feed(record, {"relu1": [0.5, 0.5], "relu2": [0.5, 0.5]})
    msg, _ = wire.message()
    assert "findings" not in msg and "findings_removed" not in msg  # held 2 of the 3 epochs a finding needs
    feed(record, {"relu1": [0.5], "relu2": [0.5]})
    msg, _ = wire.message()
    raised = [f["id"] for f in msg["findings"] if f["check"] == "dead_layer"]
    assert raised == ["0:dead_layer:relu1", "0:dead_layer:relu2"] and "findings_removed" not in msg
    full = record.health.as_dicts()
    feed(record, {"relu1": [0.5], "relu2": [0.6]})  # only relu2's death rate moves
    msg, _ = wire.message()
    assert changed(full, record.health.as_dicts()) == ["0:dead_layer:relu2"]
    [patch] = msg["findings"]  # relu2 is held by the front-end: its id and what changed
    assert patch == {"id": "0:dead_layer:relu2", "value": 0.6, "message": patch["message"]} and "60%" in patch["message"]
    feed(record, {"relu1": [0.5], "relu2": [0.6]})  # nothing changes: no findings at all
    msg, _ = wire.message()
    assert "findings" not in msg and "findings_removed" not in msg
    feed(record, {"relu1": [0.1], "relu2": [0.6]})  # relu1 resolves at epoch 6: an upsert with `until`
    msg, _ = wire.message()
    assert msg["findings"] == [{"id": "0:dead_layer:relu1", "until": 6.0}]
    snap = record.snapshot()["findings"]
    assert [f["id"] for f in snap if f["check"] == "dead_layer"] == ["0:dead_layer:relu1", "0:dead_layer:relu2"]
    assert snap == record.health.as_dicts() and {f["id"] for f in msg["findings"]} < {f["id"] for f in snap}


def test_without_what_the_front_end_holds_every_upsert_is_whole():
    record = Record()
    record.start_run("r")
    wire = Wire(record, patches=False)
    feed(record, {"relu1": [0.5] * 3})
    wire.message()
    feed(record, {"relu1": [0.6]})
    msg, _ = wire.message()
    assert msg["findings"] == [f for f in record.health.as_dicts() if f["id"] == "0:dead_layer:relu1"]


def scenario(record: Record, wire: Wire) -> list[tuple[dict[str, Any], list[bytes], list[dict[str, Any]]]]:
    """Messages (with the full list after each) while findings are raised, updated, resolved and reopened:
    relu1 dead from epoch 1 (raised at 3); relu2 raised at 4, updated at 5, resolved at 6, reopened at 9
    (moving after relu3, raised at 7); epochs 10-13 coalesced into one message in which relu1 resolves (10)
    and is reopened (13)."""
    relu1 = [0.5] * 9 + [0.1, 0.5, 0.5, 0.5]
    relu2 = [0.1, 0.4, 0.5, 0.6, 0.35, 0.2, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4]
    relu3 = [0.1] * 4 + [0.5] * 9
    out = []
    for e in range(9):
        feed(record, {"relu1": [relu1[e]], "relu2": [relu2[e]], "relu3": [relu3[e]]})
        out.append((*wire.message(), record.health.as_dicts()))
    feed(record, {"relu1": relu1[9:], "relu2": relu2[9:], "relu3": relu3[9:]})
    out.append((*wire.message(), record.health.as_dicts()))
    return out


def test_the_deltas_rebuild_the_full_list_in_order_through_reopening_and_coalescing():
    record = Record()
    record.start_run("r")
    wire = Wire(record)
    have: list[dict[str, Any]] = []
    prev: list[dict[str, Any]] = []
    messages = scenario(record, wire)
    for msg, _, full in messages:
        assert [f["id"] for f in msg.get("findings", [])] == changed(prev, full)
        have = merged(have, msg)
        assert have == full, f"after message {msg['seq']}"
        prev = full
    dead = [f["id"].split(":")[-1] for f in have if f["check"] == "dead_layer"]
    # reopened ones moved last, as the kernel lists them, each after its kept earlier episode (id#since)
    assert [d for d in dead if "#" not in d] == ["relu3", "relu2", "relu1"]
    assert {d for d in dead if "#" in d} == {"relu2#2", "relu1#1"}
    assert dead.index("relu2#2") < dead.index("relu2") and dead.index("relu1#1") < dead.index("relu1")
    reopened = {m["seq"]: m["findings_removed"] for m, _, _ in messages if "findings_removed" in m}
    assert reopened == {9: ["0:dead_layer:relu2"], 10: ["0:dead_layer:relu1"]}  # 10: resolved and reopened in it


def _widget_sync(record: Record) -> tuple[DeltaSync, list[dict[str, Any]], list[dict[str, Any]]]:
    """The widget's sync on ``record``, sending at once: (sync, deltas sent as JSON, snapshots sent)."""
    sent: list[dict[str, Any]] = []
    histories: list[dict[str, Any]] = []
    sync = DeltaSync(record, lambda msg, bufs: sent.append(json.loads(json.dumps(msg))),
                     lambda snap, force=False: histories.append(snap), interval=0.0, snapshot_min_interval=1e9,
                     hook_ipython=False)
    return sync, sent, histories


def test_imported_runs_send_their_findings_and_a_late_view_gets_the_whole_list():
    source = Record()
    source.start_run("old")
    feed(source, {"relu1": [0.5] * 4, "relu2": [0.1] * 4})
    record = Record()
    record.start_run("r")
    sync, sent, histories = _widget_sync(record)
    feed(record, {"relu1": [0.1] * 3, "relu2": [0.5] * 3})
    record.import_runs(source)
    feed_more = [f for m in sent for f in m.get("findings", [])]
    assert {f["id"] for f in feed_more} == {f["id"] for f in record.health.as_dicts()}
    have: list[dict[str, Any]] = []
    for m in sent:
        have = merged(have, m)
    assert have == record.health.as_dicts()
    assert {f["run"] for f in have} == {0, 1}
    sync.request_snapshot(have_seq=None)  # a view mounted late: the snapshot carries every finding
    assert histories[-1]["findings"] == record.health.as_dicts() and histories[-1]["version"] == 2
    sync.close()


def _fixture() -> dict[str, Any]:
    record = Record()
    record.start_run("r")
    deltas = [{"msg": msg, "buffers": [base64.b64encode(b).decode() for b in bufs], "findings": full}
              for msg, bufs, full in scenario(record, Wire(record))]
    fx = {"deltas": deltas, "expected": record.health.as_dicts()}
    if os.environ.get("MW_REGEN_FIXTURES"):
        FIXTURE.write_text(json.dumps(fx, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return fx


def test_findings_fixture_for_front_end_is_current():
    """js/test/findings.test.ts replays these deltas through the TypeScript Store (regenerate with
    MW_REGEN_FIXTURES=1 after an intended change)."""
    fx = json.loads(json.dumps(_fixture()))
    saved = json.loads(FIXTURE.read_text(encoding="utf-8"))
    # (row times and status are wall-clock: compare the findings and the cells)
    for key in ("findings", "findings_removed"):
        assert [d["msg"].get(key) for d in saved["deltas"]] == [d["msg"].get(key) for d in fx["deltas"]], \
            "regenerate with MW_REGEN_FIXTURES=1"
    assert [d["buffers"] for d in saved["deltas"]] == [d["buffers"] for d in fx["deltas"]]
    assert [d["findings"] for d in saved["deltas"]] == [d["findings"] for d in fx["deltas"]]
    assert saved["expected"] == fx["expected"]


def test_after_a_snapshot_the_deltas_patch_what_it_carried():
    """The widget's sync: a view that starts from a snapshot (re-display, reload, resync) and applies the deltas
    after it holds the record's full list, though the deltas only carry changed fields of findings it holds."""
    record = Record()
    record.start_run("r")
    sync, sent, histories = _widget_sync(record)
    feed(record, {"relu1": [0.5] * 3, "relu2": [0.5] * 3})
    sync.refresh_history()
    view = list(histories[-1]["findings"])
    assert [f["id"] for f in view if f["check"] == "dead_layer"] == ["0:dead_layer:relu1", "0:dead_layer:relu2"]
    n = len(sent)
    feed(record, {"relu1": [0.5, 0.5, 0.1], "relu2": [0.7, 0.8, 0.9]})
    for m in sent[n:]:
        view = merged(view, m)
    assert view == record.health.as_dicts()
    upserts = [f for m in sent[n:] for f in m.get("findings", [])]
    assert {"id", "value", "message"} <= set(upserts[0]) and "advice" not in upserts[0]  # a patch
    sync.close()
