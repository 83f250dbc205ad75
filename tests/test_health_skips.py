"""A health check that skipped (a lens it needs is missing) is not run again while the run keeps its panels,
columns, config and loss names (record/health/monitor.py), and runs as soon as one of them changes."""

from __future__ import annotations

from collections import OrderedDict

from monitorch_widget.record import Record
from monitorch_widget.record.health import HealthConfig, monitor


def row(record: Record, epoch: int, norms: dict[str, float] | None) -> None:
    record.plot_numerical_values(epoch, "Loss", {"Loss": {"train_loss mean": 1.0 / epoch}})
    if norms is not None:
        record.plot_numerical_values(epoch, "Weight Gradient Norm",
                                     OrderedDict((g, {"mean": v}) for g, v in norms.items()))
    record.close_row()


def test_a_skipped_check_is_not_run_again_until_the_run_or_config_changes(monkeypatch):
    calls = []
    vanishing = monitor.CHECK_FUNCTIONS["vanishing_gradient"]

    def counted(view, cfg):
        calls.append(view.row)
        return vanishing(view, cfg)

    monkeypatch.setitem(monitor.CHECK_FUNCTIONS, "vanishing_gradient", counted)
    record = Record()
    for epoch in (1, 2, 3):
        row(record, epoch, None)
    assert calls == [0]  # skipped at row 0, then known to skip
    assert "needs ParameterGradientGeometry" in record.health.skipped["vanishing_gradient"]
    record.health.configure(HealthConfig(vanishing_epochs=3))  # a new config: asked again
    row(record, 4, None)
    assert calls == [0, 3]
    # the gradient-norm panel appears: the check runs at every row again and finds the vanishing layer
    for epoch in (5, 6, 7):
        row(record, epoch, {"fc1": 1e-6, "fc2": 1.0, "fc3": 0.5})
    assert calls == [0, 3, 4, 5, 6]
    assert "vanishing_gradient" not in record.health.skipped
    found = [(f.check, f.layer, f.since) for f in record.health.findings() if f.active]
    assert found == [("vanishing_gradient", "fc1", 5.0)]  # held 3 rows (vanishing_epochs=3) from epoch 5
