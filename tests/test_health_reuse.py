"""The dead-layer check hands back a layer's Condition of the previous row when its rate and the config are the
same (record/health/layers.py), and the dying-layer check reads the medians of the other layers from the three
that leaving out one value can give; both against conditions written out by hand."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from monitorch_widget.record import Record
from monitorch_widget.record.health import layers
from monitorch_widget.record.health.config import HealthConfig
from monitorch_widget.record.health.finding import pct
from monitorch_widget.record.health.rows import OUTPUT_ACTIVATIONS, RowView


def _record(deaths: list[dict[str, float]]) -> Record:
    record = Record()
    record.start_run("r", {g: "ReLU" for g in deaths[0]})
    for epoch, rates in enumerate(deaths, 1):
        record.open_row(epoch)
        record.plot_probabilities(epoch, OUTPUT_ACTIVATIONS, OrderedDict(
            (g, {"activation_rate": 0.5, "death_rate": d}) for g, d in rates.items()))
        record.close_row()
    return record


def _view(record: Record, row: int) -> RowView:
    run = record.runs[0]
    state = record.health._state[run.id]
    return RowView(run, row, record.health.loss_names, [], state.columns, state.scans)


def _expected_dead(rates: dict[str, float], cfg: HealthConfig) -> list[tuple[str, str, float, str, int]]:
    out = []
    upstream = None  # a layer after a (nearly) constant one is its knock-on (trial r7 #6)
    for g, d in rates.items():
        if d < cfg.dead_rate:  # a healthy layer: the layers after it have a varying input again
            upstream = None
        if d >= cfg.dead_rate:
            critical = d >= cfg.dead_critical_rate
            knock_on = "" if upstream is None else (
                f" Before it, layer '{upstream}' is dead (at least {pct(cfg.dead_critical_rate)} silent), so this "
                "layer's input is (nearly) the constant bias of the layer between: most likely why its units are "
                "silent too.")
            out.append((g, "critical" if critical else "warning", d,
                        f"{pct(d)} of its units stay silent for whole batches (dead layer: at least "
                        f"{pct(cfg.dead_rate)} for {cfg.dead_epochs} epochs"
                        f"{'; the layer is nearly constant' if critical else ''}).{knock_on}", cfg.dead_epochs))
            if critical:
                upstream = g
    return out


def _said(conds: list) -> list[tuple[str, str, float, str, int]]:
    return [(c.layer, c.severity, c.value, c.message, c.need) for c in conds]


def test_a_dead_layer_condition_is_reused_only_for_the_same_rate_and_config():
    rows = [{"a": 0.5, "b": 0.1, "c": 0.97}, {"a": 0.5, "b": 0.4, "c": 0.97}, {"a": 0.55, "b": 0.4, "c": 0.97}]
    record = _record(rows)
    cfg = HealthConfig()
    first = layers.dead_layer(_view(record, 0), cfg)
    assert _said(first) == _expected_dead(rows[0], cfg)
    second = layers.dead_layer(_view(record, 1), cfg)
    assert _said(second) == _expected_dead(rows[1], cfg)
    assert second[0] is first[0] and second[2] is first[1]  # a and c: same rates, same objects
    third = layers.dead_layer(_view(record, 2), cfg)
    assert _said(third) == _expected_dead(rows[2], cfg) and third[0] is not second[0]
    # a new config with the same rates: new messages (the rule and the critical threshold changed)
    other = HealthConfig(dead_rate=0.45, dead_critical_rate=0.5, dead_epochs=2)
    fourth = layers.dead_layer(_view(record, 2), other)
    assert _said(fourth) == _expected_dead(rows[2], other)
    assert fourth[0].severity == "critical" and "at least 45% for 2 epochs" in fourth[0].message


def test_the_three_medians_without_one_value_are_numpys():
    rng = np.random.default_rng(1)
    for _ in range(2000):
        n = int(rng.integers(2, 12))
        values = np.round(rng.random(n), int(rng.integers(0, 3)))  # ties
        ranked = sorted(values.tolist())
        low, high, medians = layers._medians_without(ranked)
        for k in range(n):
            d = float(values[k])
            expected = float(np.median(np.delete(values, k)))
            got = medians[0] if d <= low else medians[1] if d <= high else medians[2]
            assert got == expected, (values, k)


def test_dying_layers_against_a_plain_evaluation():
    rng = np.random.default_rng(2)
    cfg = HealthConfig()
    for _ in range(40):
        n = int(rng.integers(2, 9))
        rates = {f"l{i}": float(v) for i, v in enumerate(np.round(rng.random(n) * rng.choice([0.5, 1.0]), 2))}
        if rng.random() < 0.3:
            rates["l0"] = math.nan
        record = _record([rates])
        got = [(c.layer, c.value, c.message) for c in layers.dying_layer(_view(record, 0), cfg)]
        finite = np.array([v for v in rates.values() if math.isfinite(v)])
        expected = []
        if finite.size >= 2:
            knock_on = False  # after a constant layer, with no healthy layer (below dead_rate) between
            for g, d in rates.items():
                after_constant, knock_on = knock_on, d >= cfg.dead_critical_rate or (knock_on and not d < cfg.dead_rate)
                if after_constant or d >= cfg.dead_critical_rate:
                    continue  # dead_layer's critical case, or its knock-on
                if not math.isfinite(d) or d < cfg.dying_gap:
                    continue
                others = np.delete(finite, int(np.flatnonzero(finite == d)[0]))
                median = float(np.median(others))
                if d >= median + cfg.dying_gap and d >= cfg.dying_ratio * median:
                    expected.append((g, d, f"{pct(d)} of its units are silent for whole batches, far above the "
                                           f"model's other layers (median {pct(median)})."))
        assert got == expected, rates


def _feed(record: Record, epoch: int, rates: dict[str, float], loss: float) -> None:
    record.open_row(epoch)
    record.plot_probabilities(epoch, OUTPUT_ACTIVATIONS, OrderedDict(
        (g, {"activation_rate": 0.5, "death_rate": d}) for g, d in rates.items()))
    record.plot_numerical_values(epoch, "Loss", {"Loss": {"train_loss mean": loss, "val_loss mean": loss * 1.1}})
    record.close_row()


def test_settled_dead_layers_against_the_monitor_as_it_was(monkeypatch):
    """Dead layers that stay dead for many rows (the same condition list each row: the monitor's settled path)
    while the plateau finding changes every row, then a layer recovers, comes back (reopened), a threshold
    changes and a layer appears: the findings and every findings event equal those of the monitor as it was
    (``health_reference.apply``, the same checks)."""
    import health_reference as ref

    from monitorch_widget.record.health import monitor

    def rows():
        rates = {"a": 0.6, "b": 0.97, "c": 0.1, "d": 0.45}
        for epoch in range(1, 41):
            if epoch == 15:
                rates = {**rates, "a": 0.1}  # recovers
            if epoch == 19:
                rates = {**rates, "a": 0.6}  # dead again: reopened after dead_epochs rows
            if epoch == 30:
                rates = {**rates, "e": 0.8}  # a new layer, already dead
            yield epoch, dict(rates), 1.0 if epoch > 3 else 2.0 / epoch

    said = []
    settled = []
    apply = monitor.HealthMonitor._apply

    def watched(self, run_id, epoch, state, results, unmeasured=None):
        settled.append(state.settled.get("dead_layer") is results.get("dead_layer"))
        return apply(self, run_id, epoch, state, results, unmeasured)

    for patch in (watched, ref.apply):
        monkeypatch.setattr(monitor.HealthMonitor, "_apply", patch)
        record = Record()
        record.start_run("r", {g: "ReLU" for g in "abcde"})
        events: list = []
        record.subscribe(lambda ev, events=events: events.append(ev) if ev[0] == "findings" else None)
        out = []
        for epoch, rates, loss in rows():
            if epoch == 25:
                record.health.configure(dead_critical_rate=0.9)
            _feed(record, epoch, rates, loss)
            out.append(([f.to_dict() for f in record.health.findings()], list(events)))
            events.clear()
        said.append(out)
    assert said[0] == said[1]
    assert sum(settled) >= 20  # the settled path was taken
    final = {f["id"]: f for f in said[0][-1][0]}
    assert final["0:dead_layer:a#1"]["until"] == 15.0 and final["0:dead_layer:a"]["since"] == 19.0
    assert final["0:dead_layer:b"]["severity"] == "critical" and final["0:dead_layer:e"]["since"] == 30.0
    assert final["0:plateau:-"]["until"] is None  # a changing finding of another check all along
