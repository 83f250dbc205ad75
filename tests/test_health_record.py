"""Health findings as data: their life cycle on the record, configuration, and every place they show
(protocol snapshot / delta, saved histories, 'print', the static picture and HTML export)."""

from __future__ import annotations

import io
import json
from collections import OrderedDict

import pytest
from torch import nn

import monitorch_widget
from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation
from monitorch_widget.record import Record
from monitorch_widget.record.health import CHECKS, HealthConfig
from monitorch_widget.record.protocol import PendingDelta, encode_delta
from monitorch_widget.views.findings_html import findings_section
from monitorch_widget.views.print import PrintVisualizer
from monitorch_widget.views.static_picture import fallback_html


def feed(record: Record, deaths: dict[str, list[float]], losses: list[float] | None = None,
         acts: dict[str, float] | None = None) -> None:
    """Rows as a monitorch inspector would send them: per-layer ReLU death rates, and a training loss. Activation
    rates: ``acts[layer]``, else 1 - the death rate (each unit active for the whole batch or none of it)."""
    n = len(next(iter(deaths.values())))
    start = record.current.n_rows if record.current else 0
    for e in range(n):
        epoch = start + e + 1
        record.plot_probabilities(epoch, "Output Activations", OrderedDict(
            (g, {"activation_rate": (acts or {}).get(g, 1 - d[e]), "death_rate": d[e]}) for g, d in deaths.items()))
        loss = losses[e] if losses else 1.0 / epoch
        record.plot_numerical_values(epoch, "Loss", {"Loss": {"train_loss mean": loss}})
        record.close_row()


def test_a_dead_layer_needs_three_epochs_keeps_its_id_and_resolves():
    record = Record()
    record.start_run("r")
    events = []
    record.subscribe(events.append)
    # relu2 is above 30% in epochs 2-5 (raised at epoch 4, since 2), below in 6, above again from 7 to 9
    feed(record, {"relu1": [0.0] * 9, "relu2": [0.1, 0.4, 0.5, 0.6, 0.35, 0.2, 0.4, 0.4, 0.4]})
    past, f = [f for f in record.health.findings() if f.check == "dead_layer"]
    assert (f.id, f.layer, f.tag, f.since, f.until, f.value) == ("0:dead_layer:relu2", "relu2", "Output Activations",
                                                                 7.0, None, 0.4)
    # the first episode is kept (a reopened finding once overwrote it): a review of the run sees both
    assert (past.id, past.since, past.until, past.value) == ("0:dead_layer:relu2#2", 2.0, 6.0, 0.35)
    assert "relu1" not in {x.layer for x in record.health.findings()}
    history = [e[1] for e in events if e[0] == "findings"]
    dead = [[d for d in h if d["check"] == "dead_layer"] for h in history]
    # raised after epoch 4 with since 2, its value updated at 5, resolved at 6, reopened (same id) after epoch 9
    # with since 7
    states = [(x["since"], x["until"], x["value"]) for d in dead for x in d if "#" not in x["id"]]
    states = [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]]  # other findings' events
    assert states == [
        (2.0, None, 0.6), (2.0, None, 0.35), (2.0, 6.0, 0.35), (7.0, None, 0.4)]


def test_critical_when_the_layer_is_nearly_constant_and_a_far_outlier_is_a_dying_layer():
    record = Record()
    record.start_run("r")
    # c comes before a: after a (nearly) constant layer it would be a's knock-on, not an outlier (trial r7 #6)
    feed(record, {"c": [0.22] * 3, "a": [0.96] * 3, "b": [0.0] * 3, "d": [0.01] * 3})
    found = {(f.check, f.layer): f for f in record.health.findings()}
    assert found[("dead_layer", "a")].severity == "critical"
    # c: 0.22 >= median(others = 0.96, 0.0, 0.01 -> 0.01) + 0.2 and >= 2x it, below the dead-layer threshold;
    # a is an outlier too (median of b, c, d = 0.01) but (nearly) constant: dead_layer's critical case alone
    # ("more units than the task uses" would contradict "the layer is dead"); b and d are not outliers
    assert found[("dying_layer", "c")].value == 0.22 and ("dead_layer", "c") not in found
    assert ("dying_layer", "a") not in found
    assert not {("dying_layer", "b"), ("dying_layer", "d")} & set(found)
    # right after the constant layer, c is its knock-on (input ~ a constant bias); after a healthy layer between
    # them (b: 0% silent), c is judged on its own again (review: the knock-on rule never reset)
    after = Record()
    after.start_run("r")
    feed(after, {"a": [0.96] * 3, "c": [0.22] * 3, "b": [0.0] * 3, "d": [0.01] * 3})
    assert [(f.check, f.layer) for f in after.health.findings()] == [("dead_layer", "a")]
    reset = Record()
    reset.start_run("r")
    feed(reset, {"a": [0.96] * 3, "b": [0.0] * 3, "c": [0.22] * 3, "d": [0.01] * 3})
    assert sorted((f.check, f.layer) for f in reset.health.findings()) == [("dead_layer", "a"), ("dying_layer", "c")]
    dead_after = Record()
    dead_after.start_run("r")
    feed(dead_after, {"a": [0.96] * 3, "b": [0.0] * 3, "c": [0.45] * 3, "d": [0.01] * 3})
    c = next(f for f in dead_after.health.findings() if f.layer == "c")
    assert c.check == "dead_layer" and "Before it" not in c.message  # not named a knock-on of a
    # trial r13b (a residual block after a dead one): c's units are partly active (activation 0.25 + death 0.46 <
    # 0.95), so its input varies (the skip path): judged on its own, not sent to revive a first
    residual = Record()
    residual.start_run("r")
    feed(residual, {"a": [1.0] * 3, "c": [0.46] * 3}, acts={"c": 0.25})
    c = next(f for f in residual.health.findings() if f.layer == "c")
    assert c.check == "dead_layer" and "Before it" not in c.message and "add dropout" in c.advice
    sequential = Record()
    sequential.start_run("r")
    feed(sequential, {"a": [1.0] * 3, "c": [0.46] * 3})  # activation 0.54: whole-batch units, a constant input
    c = next(f for f in sequential.health.findings() if f.layer == "c")
    assert "Before it, layer 'a' is dead" in c.message and c.advice.startswith("revive layer 'a' first")


def test_dying_trend_needs_the_loss_to_stall():
    rising = [0.0, 0.03, 0.06, 0.09, 0.12]
    stalled, improving = [0.5, 0.499, 0.498, 0.497, 0.4965], [1.0, 0.9, 0.8, 0.7, 0.6]
    for losses, expected in ((stalled, True), (improving, False)):
        record = Record()
        record.start_run("r")
        feed(record, {"relu1": rising, "relu2": [0.0] * 5}, losses)
        trend = [f for f in record.health.findings() if f.check == "dying_trend"]
        assert bool(trend) == expected
        if trend:
            assert trend[0].layer == "relu1" and trend[0].since == 1.0 and trend[0].value == pytest.approx(0.12)


def test_thresholds_are_configurable_and_validated():
    record = Record()
    record.start_run("r")
    record.health.configure(dead_rate=0.5, dead_epochs=1)
    feed(record, {"relu": [0.4]})
    assert not record.health.findings()
    record.health.configure(HealthConfig(dead_rate=0.35, dead_epochs=1))
    feed(record, {"relu": [0.4]})
    assert [f.check for f in record.health.findings()] == ["dead_layer"]
    with pytest.raises(ValueError, match="dead_rate"):
        HealthConfig(dead_rate=1.5).validated()
    with pytest.raises(TypeError, match="no field"):
        record.health.configure(dead_rat=0.4)
    with pytest.raises(ValueError, match="unknown check"):
        record.health.configure(enabled=("dead",))
    with pytest.raises(ValueError, match="update_ratio_low"):
        record.health.configure(update_ratio_low=1.0)
    ins = PyTorchInspector([OutputActivation()], visualizer="none", health=HealthConfig(enabled=("nonfinite",)))
    assert ins.health.config.enabled == ("nonfinite",) and set(CHECKS) > {"nonfinite"}


def test_a_check_without_its_lens_is_skipped_and_names_the_lens():
    ins = PyTorchInspector([OutputActivation()], visualizer="none")
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU())
    ins.attach(model)
    model(__import__("torch").randn(8, 2)).sum().backward()
    ins.tick_epoch()
    skipped = ins.health.skipped
    assert "ParameterGradientGeometry" in skipped["vanishing_gradient"]
    assert "ParameterUpdateGeometry" in skipped["update_ratio"] and "ParameterNorm" in skipped["update_ratio"]
    assert "LossMetrics" in skipped["divergence"]
    assert "dead_layer" not in skipped and "nonfinite" not in skipped


def test_findings_travel_in_the_snapshot_and_in_a_delta_only_when_they_changed():
    record = Record()
    record.start_run("r")
    pending = PendingDelta()
    record.subscribe(pending.add)
    feed(record, {"relu1": [0.0] * 2, "relu2": [0.5] * 2})
    assert not pending.findings
    msg, _ = encode_delta(pending, 1, None)
    assert "findings" not in msg
    feed(record, {"relu1": [0.0], "relu2": [0.5]})
    msg, _ = encode_delta(pending, 2, None)
    [sent] = [f for f in msg["findings"] if f["check"] == "dead_layer"]
    assert sent["id"] == "0:dead_layer:relu2" and sent["since"] == 1.0 and sent["until"] is None
    assert set(sent) == {"id", "run", "check", "severity", "layer", "tag", "since", "until", "value", "message",
                         "advice"}
    json.dumps(msg, allow_nan=False)
    assert record.snapshot()["findings"] == msg["findings"]


def trained(tmp_path):
    import torch

    torch.manual_seed(0)
    loss_fn = nn.CrossEntropyLoss()
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn), OutputActivation(), ParameterGradientActivation()],
                           visualizer="none", health=HealthConfig(dead_rate=0.01, dead_epochs=1))
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    with torch.no_grad():
        model[0].bias.fill_(-10.0)  # every unit of the ReLU silent: a dead layer
    ins.attach(model)
    for _ in range(3):
        loss_fn(model(torch.randn(8, 2)), torch.randint(0, 2, (8,))).backward()
        ins.tick_epoch()
    return ins


def test_saved_histories_keep_findings_and_older_files_are_judged_on_load(tmp_path):
    ins = trained(tmp_path)
    saved = [f.to_dict() for f in ins.health.findings()]
    assert any(f["check"] == "dead_layer" and f["layer"] == "1" and f["severity"] == "critical" for f in saved)
    path = tmp_path / "h.json"
    ins.save(path)
    doc = json.loads(path.read_text())
    assert doc["version"] == 3 and doc["runs"][0]["findings"] == saved
    assert [f.to_dict() for f in monitorch_widget.load(path).health.findings()] == saved
    # a version-2 file has no findings: judged again on load, with the default thresholds (3 epochs held)
    doc["version"] = 2
    del doc["runs"][0]["findings"]
    path.write_text(json.dumps(doc))
    again = monitorch_widget.load(path).health.findings()
    assert [(f.layer, f.severity, f.since) for f in again if f.check == "dead_layer"] == [("1", "critical", 1.0)]
    # imported runs keep their findings under their new run id
    record = Record()
    record.start_run("today")
    record.import_runs(ins.history)
    assert {f.id for f in record.health.findings()} == {"1:" + f["id"].split(":", 1)[1] for f in saved}


def test_print_groups_one_check_over_many_layers_into_two_lines():
    # a deep model: 12 layers die at once (dead_layer), then 2 of them recover; 3 dead layers still print one by one
    out = io.StringIO()
    record = Record()
    record.start_run("r")
    printer = PrintVisualizer(record, stream=out)
    record.health.configure(dead_epochs=1)
    layers = [f"blocks.{i}.act" for i in range(12)]
    feed(record, {g: [0.6] for g in layers})
    printer.on_epoch()
    feed(record, {g: [0.0 if i < 10 else 0.6] for i, g in enumerate(layers)})
    printer.on_epoch()
    lines = out.getvalue().splitlines()
    health = [x for x in lines if x.startswith("  health:")]
    assert health[0].startswith("  health: [warning] layer 'blocks.0.act' dead_layer (since epoch 1): ")
    assert health[1] == ("  health: [warning] dead_layer also in 11 more layers: 'blocks.1.act', 'blocks.2.act', "
                         "'blocks.3.act', 'blocks.4.act', 'blocks.5.act', 'blocks.6.act', 'blocks.7.act', 'blocks.8.act'"
                         " and 3 more (inspector.findings has each)")
    assert health[2] == ("  health: resolved dead_layer in 10 layers: 'blocks.0.act', 'blocks.1.act', 'blocks.2.act', "
                         "'blocks.3.act', 'blocks.4.act', 'blocks.5.act', 'blocks.6.act', 'blocks.7.act' and 2 more")
    assert len(health) == 3 and len(lines) == 5  # two epoch lines
    assert sum(f.active for f in record.health.findings()) == 2  # every layer still has its own finding
    out2 = io.StringIO()
    few = Record()
    few.start_run("r")
    printer2 = PrintVisualizer(few, stream=out2)
    few.health.configure(dead_epochs=1)
    feed(few, {g: [0.6] for g in layers[:3]})
    printer2.on_epoch()
    assert [x.split(" dead_layer")[0] for x in out2.getvalue().splitlines()[1:]] == [
        f"  health: [warning] layer '{g}'" for g in layers[:3]]


def test_print_static_picture_and_export_show_findings(tmp_path):
    out = io.StringIO()
    record = Record()
    record.start_run("r")
    printer = PrintVisualizer(record, stream=out)
    record.health.configure(dead_epochs=1)
    feed(record, {"<img src=x onerror=alert(1)>": [0.5], "ok": [0.0]})
    printer.on_epoch()
    feed(record, {"<img src=x onerror=alert(1)>": [0.0], "ok": [0.0]})
    printer.on_epoch()
    lines = out.getvalue().splitlines()
    assert lines[1].startswith("  health: [warning] layer '<img src=x onerror=alert(1)>' dead_layer (since epoch 1)")
    assert lines[3] == "  health: resolved layer '<img src=x onerror=alert(1)>' dead_layer (since epoch 1, resolved at epoch 2)"
    html = fallback_html(record)
    assert 'class="mw-findings"' in html and "&lt;img src=x" in html and "<img src=x" not in html
    assert findings_section(Record()) == ""
    page = record.to_html(tmp_path / "r.html").read_text()
    assert page.count('class="mw-finding"') == 1 and "<img src=x" not in page


def test_the_widget_sync_sends_findings_live_and_in_its_snapshot():
    from monitorch_widget.views.sync import DeltaSync

    record = Record()
    record.start_run("r")
    sent, histories = [], []
    sync = DeltaSync(record, lambda msg, bufs: sent.append(msg), lambda snap, force=False: histories.append(snap), interval=0.0,
                     snapshot_min_interval=1e9, hook_ipython=False)
    feed(record, {"relu1": [0.0] * 3, "relu2": [0.5] * 3})
    with_findings = [m for m in sent if "findings" in m]
    assert len(with_findings) == 1 and with_findings[0]["findings"][0]["id"] == "0:dead_layer:relu2"
    sync.refresh_history()
    assert histories[-1]["findings"] == with_findings[0]["findings"]
    sync.close()


def test_a_failing_check_is_reported_once_and_the_others_go_on(monkeypatch):
    from monitorch_widget.record.health import monitor

    def broken(view, cfg):
        raise ZeroDivisionError("boom")

    monkeypatch.setitem(monitor.CHECK_FUNCTIONS, "plateau", broken)
    record = Record()
    record.start_run("r")
    feed(record, {"relu1": [0.0] * 4, "relu2": [0.5] * 4})
    assert record.current.problems == {("health", "check plateau failed with ZeroDivisionError: boom"): 1}
    assert "0:dead_layer:relu2" in {f.id for f in record.health.findings()}


@pytest.mark.parametrize("losses, since", [
    # a loss near 0 that wobbles (1.8x its best, but 1% of its fall from 2.3): no divergence (trial r4)
    ([2.3, 0.5, 0.05, 0.0121, 0.0314, 0.0214, 0.0141], None),
    # going backwards: back up by 40% of its fall, and still 1.5x its best while it oscillates
    ([2.3, 0.5, 0.3, 1.1, 0.6, 0.3], 4),
    # going up from the start (no fall to give back): the ratio alone decides
    ([1.0, 1.2, 1.6], 3),
])
def test_divergence_needs_the_loss_to_give_back_part_of_its_fall(losses, since):
    record = Record()
    record.start_run("run 1")
    feed(record, {"relu": [0.0] * len(losses)}, losses)
    found = [f for f in record.health.findings(0) if f.check == "divergence"]
    if since is None:
        assert found == []
        return
    assert [(f.since, f.severity, f.active) for f in found][0][:2] == (since, "critical")
    # by hand: the first epoch whose loss is >= 1.5x the best before it and gave back >= 25% of 2.3 - best
    first = next(e for e in range(1, len(losses)) if losses[e] >= 1.5 * min(losses[:e])
                 and losses[e] - min(losses[:e]) >= 0.25 * (losses[0] - min(losses[:e])))
    assert first + 1 == since


def test_dying_advice_names_the_panel_its_rates_come_from_and_series_says_which_role_to_ask():
    """Without OutputActivation the dying check reads the weight gradients' units: its advice points at that
    panel, not at an Output Activations panel the inspector does not have (trial r4 #8). Asking for a band's
    edge without its role says which role it is (trial r4 #11)."""
    record = Record()
    record.start_run("run 1")
    for epoch in range(1, 4):
        record.plot_probabilities(epoch, "Weight Gradient Activation", OrderedDict(
            (g, {"activation_rate": 0.5, "death_rate": d}) for g, d in (("a", 0.0), ("b", 0.02), ("c", 0.27))))
        record.plot_numerical_values(epoch, "Loss", {"Loss": {"train_loss mean": 1.0 / epoch}},
                                     {"Loss": {("train_loss -σ", "train_loss +σ"): (0.5 / epoch, 1.5 / epoch)}})
        record.close_row()
    dying = [f for f in record.health.findings(0) if f.check == "dying_layer"]
    assert [f.layer for f in dying] == ["c"]
    assert "in the Weight Gradient Activation panel" in dying[0].advice
    run = record.runs[0]
    assert list(run.series("Loss", "Loss", "train_loss +σ", role="hi")) == [1.5, 0.75, 0.5]
    with pytest.raises(KeyError, match=r"is a 'hi' column, not 'line': pass role='hi'"):
        run.series("Loss", "Loss", "train_loss +σ")


def test_health_config_is_importable_from_the_package_and_checked_when_made():
    """Trial r8: the README's ``health=HealthConfig(dead_rate=0.5)`` had no import path at the top (ImportError),
    and ``HealthConfig(dead_rate=30)`` was accepted until an inspector used it, though its docstring says it raises."""
    from monitorch_widget import HealthConfig as Top

    assert Top is HealthConfig and Top(dead_rate=0.5).dead_rate == 0.5
    with pytest.raises(ValueError, match=r"HealthConfig\(dead_rate=30\): must be a number in \(0, 1\]"):
        Top(dead_rate=30)
    with pytest.raises(ValueError, match="unknown check"):
        Top(enabled=("divergance",))
    assert Top(enabled=["nonfinite"]).enabled == ("nonfinite",)
