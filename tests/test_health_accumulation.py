"""``accumulating_gradient``: a forgotten ``optimizer.zero_grad()`` is named (fresh-user trial r15, s08).

Without zeroing, each step uses the running sum G_t = g_1 + ... + g_t: consecutive sums point the same way (an
epoch of n steps averages ~(n-1)/n of cosine, its first step counting 0) and their norm grows as the count of
steps summed. Crafted records (rows as our inspector writes them, values by hand, step counts in ``open_row``) and
small digits MLPs trained with and without ``zero_grad`` whose per-step gradients are read by hand with plain torch.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from monitorch_widget import HealthConfig, PyTorchInspector
from monitorch_widget.lens import LossMetrics, ParameterGradientGeometry
from monitorch_widget.record import Record

NAN = float("nan")


def record_of(steps: list[float], corr: list[dict[str, float]], norm: list[dict[str, float]]) -> Record:
    """One run: per epoch the optimizer steps so far, each layer's mean Weight Gradient Correlation and Norm."""
    record = Record()
    record.start_run("r", {g: "Linear" for g in corr[0]})
    for epoch, (s, c, n) in enumerate(zip(steps, corr, norm), 1):
        record.open_row(epoch, step=s)
        record.plot_numerical_values(epoch, "Weight Gradient Norm", {g: {"mean": v} for g, v in n.items()})
        record.plot_numerical_values(epoch, "Weight Gradient Correlation", {g: {"mean": v} for g, v in c.items()})
        record.close_row()
    return record


def found(record: Record) -> list:
    return [f for f in record.health.findings(0) if f.check == "accumulating_gradient"]


def summed(before: float, n_prev: float, n: float) -> float:
    """By hand: the mean step index of the later epoch over the earlier one's (a sum of equal gradients' norm)."""
    later = np.arange(before + 1, before + n + 1).mean()
    earlier = np.arange(before - n_prev + 1, before + 1).mean()
    return float(later / earlier)


# 11 steps per epoch: an epoch's mean correlation is at most 10/11; the floor is 0.95 x 10/11 = 0.8636
STEPS = [11.0, 22.0, 33.0, 44.0, 55.0]
Q12, Q23 = summed(11, 11, 11), summed(22, 11, 11)  # 17/6 = 2.833, 28/17 = 1.647
NEED12, NEED23 = 1 + 0.7 * (Q12 - 1), 1 + 0.7 * (Q23 - 1)  # 2.283, 1.453


def test_a_running_sum_of_gradients_is_named_from_the_runs_first_epoch():
    """Epoch 1's sums of a few batches still turn (0.85 < 0.8636: not required); epochs 2 and 3 at 0.90; every
    layer's norm grows 2.9x then 1.655x, above 0.7 of a running sum's growth (2.283x, 1.453x). Named at epoch 3
    (the third epoch is the second growth), since epoch 1, and held while the norms stay at the size reached."""
    assert Q12 == pytest.approx(17 / 6) and Q23 == pytest.approx(28 / 17)
    corr = [{"0": 0.85, "2": 0.85}] + [{"0": 0.90, "2": 0.90}] * 4
    norm = [{"0": 1.0, "2": 2.0}, {"0": 2.9, "2": 5.8}, {"0": 4.8, "2": 9.6}, {"0": 5.0, "2": 9.7},
            {"0": 4.9, "2": 9.6}]
    assert 2.9 >= NEED12 and 4.8 / 2.9 >= NEED23
    assert found(record_of(STEPS[:2], corr[:2], norm[:2])) == []  # two epochs: one growth only
    record = record_of(STEPS, corr, norm)
    (f,) = found(record)
    assert (f.since, f.until, f.severity, f.layer) == (1, None, "warning", None)
    assert f.value == pytest.approx(0.90)
    assert "2.90x from epoch 1 to 2, 1.66x from epoch 2 to 3" in f.message
    assert "(2.83x, 1.65x)" in f.message and "(n-1)/n = 0.909 an epoch of 11 steps" in f.message
    assert "gradients accumulate across optimizer steps \u2014 is optimizer.zero_grad() missing? (or gradient " \
           "accumulation without zeroing)" in f.message
    assert "zero_grad()" in f.advice


@pytest.mark.parametrize("case", ["slow growth", "one layer turns", "no steps counted", "three steps"])
def test_nothing_short_of_a_running_sum_is_named(case):
    """Just below each bar: growth 2.25x < 2.283x; one layer at 0.86 < 0.8636 in epoch 2; step counts missing (a
    run fed by monitorch's own inspector: skipped, says why); 3 steps per epoch (fewer than 4), where the
    correlation 0.66 is above its floor 0.95 x 2/3 and the norm grows more than a sum's (2.5x, 1.6x: 1 + 0.7 x
    (5/2 - 1) = 2.05 and 1 + 0.7 x (8/5 - 1) = 1.42 by hand)."""
    corr = [{"0": 0.9, "2": 0.9}] * 3
    norm = [{"0": 1.0, "2": 1.0}, {"0": 2.9, "2": 2.9}, {"0": 4.8, "2": 4.8}]
    steps = STEPS[:3]
    if case == "slow growth":
        norm[1] = {"0": 2.9, "2": 2.25}
        norm[2] = {"0": 4.8, "2": 2.25 * 1.66}
    elif case == "one layer turns":
        corr = [corr[0], {"0": 0.9, "2": 0.86}, corr[2]]
    elif case == "no steps counted":
        steps = [NAN] * 3
    else:
        steps, corr = [3.0, 6.0, 9.0], [{"0": 0.66, "2": 0.66}] * 3
        norm = [{"0": 1.0, "2": 1.0}, {"0": 2.6, "2": 2.6}, {"0": 4.2, "2": 4.2}]
        assert 0.66 >= 0.95 * 2 / 3 and 2.6 >= 1 + 0.7 * (summed(3, 3, 3) - 1) and 4.2 / 2.6 >= 1 + 0.7 * (
            summed(6, 3, 3) - 1)
    record = record_of(steps, corr, norm)
    assert found(record) == []
    if case == "no steps counted":
        assert "step count" in record.health.skipped["accumulating_gradient"]
    else:
        assert "accumulating_gradient" not in record.health.skipped


def test_a_gradient_that_grows_for_one_epoch_only_is_not_a_running_sum():
    """Full-batch Adam on a digits CNN whose initial gradient is tiny (trial r15, measured, 10 steps per epoch):
    consecutive cosines near 1 (0.82-0.90 against (n-1)/n = 0.9), every layer's norm 2.5-5.4x from epoch 1 to 2
    (a running sum's: (10 + 5.5) / 5.5 = 2.82x), then 0.64-0.98x: a sum does not shrink. Not named."""
    corr = [{"0": 0.843, "2": 0.849, "10": 0.865}, {"0": 0.900, "2": 0.899, "10": 0.897},
            {"0": 0.895, "2": 0.893, "10": 0.895}, {"0": 0.891, "2": 0.890, "10": 0.880}]
    norm = [{"0": 0.062, "2": 0.136, "10": 0.077}, {"0": 0.334, "2": 0.499, "10": 0.394},
            {"0": 0.268, "2": 0.319, "10": 0.386}, {"0": 0.089, "2": 0.107, "10": 0.201}]
    assert all(n1[g] / n0[g] >= 1 + 0.7 * (summed(10, 10, 10) - 1) for n0, n1 in [norm[:2]] for g in n0)
    assert found(record_of([10.0, 20.0, 30.0, 40.0], corr, norm)) == []


def test_it_holds_while_the_sum_keeps_its_size_and_ends_when_the_gradient_is_a_batchs_again():
    """After the onset (epochs 1-3) the sum stops growing (SGD turns it back: 4.8 -> 4.9) and its direction may
    turn for an epoch (0.66: a CNN's sum under SGD, trial r15): held; once zero_grad is called the norm is one
    batch's again (1.0 < 4.8 reached) and it resolves."""
    corr = [{"0": 0.85}, {"0": 0.9}, {"0": 0.9}, {"0": 0.66}, {"0": 0.9}, {"0": 0.5}]
    norm = [{"0": 1.0}, {"0": 2.9}, {"0": 4.8}, {"0": 4.9}, {"0": 4.8}, {"0": 1.0}]
    (f,) = found(record_of(STEPS + [66.0], corr, norm))
    assert (f.since, f.until) == (1, 6)


def test_the_number_of_epochs_read_is_configurable():
    """HealthConfig(accumulation_epochs=2): the first growth alone names it, at epoch 2; the config refuses 1 (no
    growth between epochs would be read)."""
    corr = [{"0": 0.85}, {"0": 0.9}]
    norm = [{"0": 1.0}, {"0": 2.9}]
    record = Record()
    record.health.configure(accumulation_epochs=2)
    record.start_run("r", {"0": "Linear"})
    for epoch, (s, c, n) in enumerate(zip(STEPS, corr, norm), 1):
        record.open_row(epoch, step=s)
        record.plot_numerical_values(epoch, "Weight Gradient Norm", {g: {"mean": v} for g, v in n.items()})
        record.plot_numerical_values(epoch, "Weight Gradient Correlation", {g: {"mean": v} for g, v in c.items()})
        record.close_row()
    assert [(f.since, f.until) for f in found(record)] == [(1, None)]
    with pytest.raises(ValueError, match="accumulation_epochs"):
        HealthConfig(accumulation_epochs=1)


# --- real runs: digits MLPs, gradients read by hand --------------------------------------------------------------

LAYERS = ("0", "2", "4")
LOSS = nn.CrossEntropyLoss()


def train(zero_grad: bool, full_batch: bool, opt_name: str, lr: float, epochs: int
          ) -> tuple[dict[str, list[float]], dict[str, list[float]], list]:
    """11 steps per epoch over 704 digits (batches of 64, or the whole set at every step); per layer and epoch, by
    hand: the mean cosine of each step's weight gradient with the step before's (0 for the epoch's first, the
    lens' + 1e-8 in the denominator) and the mean gradient norm. Returns those and the accumulating findings."""
    load_digits = pytest.importorskip("sklearn.datasets").load_digits
    d = load_digits()
    X, y = torch.tensor(d.data[:704] / 16.0, dtype=torch.float32), torch.tensor(d.target[:704])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr) if opt_name == "sgd" else torch.optim.Adam(model.parameters(), lr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # coverage notices
        ins = PyTorchInspector([LossMetrics(loss_fn=LOSS), ParameterGradientGeometry()], module=model,
                               visualizer="none")
    corr: dict[str, list[float]] = {k: [] for k in LAYERS}
    norm: dict[str, list[float]] = {k: [] for k in LAYERS}
    for _ in range(epochs):
        cos: dict[str, list[float]] = {k: [] for k in LAYERS}
        size: dict[str, list[float]] = {k: [] for k in LAYERS}
        prev: dict[str, torch.Tensor] = {}
        for i in range(0, len(X), 64):
            xb, yb = (X, y) if full_batch else (X[i:i + 64], y[i:i + 64])
            if zero_grad:
                opt.zero_grad()
            LOSS(model(xb), yb).backward()
            for k in LAYERS:
                g = model[int(k)].weight.grad.detach().double().flatten()
                size[k].append(float(g.norm()))
                cos[k].append(float(g @ prev[k] / (g.norm() * prev[k].norm() + 1e-8)) if k in prev else 0.0)
                prev[k] = g.clone()
            opt.step()
        for k in LAYERS:
            corr[k].append(float(np.mean(cos[k])))
            norm[k].append(float(np.mean(size[k])))
        ins.tick_epoch()
    findings = [f for f in ins.health.findings() if f.check == "accumulating_gradient"]
    ins.detach()
    return corr, norm, findings


FLOOR = 0.95 * 10 / 11


def test_sgd_without_zero_grad_is_named_and_with_it_is_not():
    corr, norm, findings = train(zero_grad=False, full_batch=False, opt_name="sgd", lr=0.01, epochs=4)
    for k in LAYERS:  # by hand: the sum's signature
        assert corr[k][1] >= FLOOR and corr[k][2] >= FLOOR
        assert norm[k][1] / norm[k][0] >= NEED12 and norm[k][2] / norm[k][1] >= NEED23
    assert [(f.since, f.until) for f in findings] == [(1, None)]
    least = min(corr[k][3] for k in LAYERS)
    assert findings[0].value == pytest.approx(least, rel=1e-4)  # the lens' float32 cosines against ours
    grew = min(norm[k][1] / norm[k][0] for k in LAYERS)
    assert f"{grew:.2f}x from epoch 1 to 2" in findings[0].message
    corr, norm, findings = train(zero_grad=True, full_batch=False, opt_name="sgd", lr=0.01, epochs=4)
    assert findings == [] and max(max(c) for c in corr.values()) < FLOOR  # by hand: ~0.2-0.5


def test_full_batch_training_whose_gradient_grows_is_not_named():
    """The obvious false positive: the same data at every step. By hand: every layer's consecutive cosines are
    near 1 in every epoch (mean >= 0.95 x 10/11) and every layer's norm grows from each epoch to the next (1.2x to
    1.9x: "correlated and growing" alone would name it from epoch 2), but from the first epoch to the second by
    less than 0.7 of a running sum's growth (2.283x): it is the loss's gradient sharpening, not a sum."""
    corr, norm, findings = train(zero_grad=True, full_batch=True, opt_name="adam", lr=1e-3, epochs=4)
    for k in LAYERS:
        assert all(c >= FLOOR for c in corr[k])
        assert all(b > a for a, b in zip(norm[k], norm[k][1:]))
        assert norm[k][1] / norm[k][0] < NEED12
    assert findings == []
    assert all(math.isfinite(v) for k in LAYERS for v in norm[k])


def test_divergence_beside_accumulating_gradients_points_at_them():
    """Trial r15d (s08): a run without zero_grad diverged and divergence advised a lower learning rate -- which
    only delays a sum that keeps growing. Beside an accumulating_gradient finding it points at that cause."""
    corr = [{"0": 0.85, "2": 0.85}] + [{"0": 0.90, "2": 0.90}] * 3
    norm = [{"0": 1.0, "2": 2.0}, {"0": 2.9, "2": 5.8}, {"0": 4.8, "2": 9.6}, {"0": 5.0, "2": 9.7}]
    losses = [2.0, 0.5, 1.5, 3.0]  # back above 1.5x its best, more than 25% of its fall given back

    def with_loss(accumulating: bool) -> Record:
        record = Record()
        record.start_run("r", {"0": "Linear", "2": "Linear"})
        for epoch, (s, c, n, v) in enumerate(zip(STEPS, corr, norm, losses), 1):
            record.open_row(epoch, step=s)
            record.plot_numerical_values(epoch, "Loss", {"Loss": {"train_loss mean": v}})
            if accumulating:
                record.plot_numerical_values(epoch, "Weight Gradient Norm", {g: {"mean": x} for g, x in n.items()})
                record.plot_numerical_values(epoch, "Weight Gradient Correlation",
                                             {g: {"mean": x} for g, x in c.items()})
            record.close_row()
        return record

    for accumulating in (True, False):
        record = with_loss(accumulating)
        (div,) = [f for f in record.health.findings(0) if f.check == "divergence"]
        assert ("zero_grad()" in div.advice) is accumulating, div.advice
        assert ("lower the learning rate (by 10x" in div.advice) is not accumulating, div.advice
