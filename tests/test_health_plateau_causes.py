"""Advice that must not contradict, and messages that say which way a loss went (fresh-user trial r15).

* ``plateau`` beside steps far too small (s03, lr=1e-6): ``update_ratio`` said "raise the learning rate" and
  ``plateau`` "lower the learning rate (ReduceLROnPlateau)"; beside a training loss going backwards (s08 adam) it
  said "add capacity"; beside gradients that accumulate across steps it points there.
* ``dying_trend``: "the training loss improved by only -2.4%" (and "-70354.5%") for a loss that rose.

Crafted records (rows as an inspector writes them, values by hand) and one small digits run.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict

import pytest
import torch
from torch import nn

from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import LossMetrics, ParameterUpdateGeometry
from monitorch_widget.lens.base import TagAttributes, TagType
from monitorch_widget.record import Record

REDUCE = "lower the learning rate (ReduceLROnPlateau) or add capacity"


def run_of(losses: list[float], ratios: list[dict[str, float]] | None = None, steps: list[float] | None = None,
           corr: list[dict[str, float]] | None = None, norm: list[dict[str, float]] | None = None,
           deaths: list[dict[str, float]] | None = None) -> Record:
    """One run of training losses, and optionally per-step update ratio means (max twice the mean), gradient
    correlations and norms (with the step counts), death rates of ReLU layers."""
    record = Record()
    record.register_tags("Loss", TagAttributes(False, True, True, TagType.NUMERICAL))
    record.register_tags("Weight Update Ratio", TagAttributes(False, False, True, TagType.NUMERICAL))
    types = {g: "Linear" for g in (ratios or corr or [{}])[0]}
    types.update({g: "ReLU" for g in (deaths or [{}])[0]})
    record.start_run("r", types)
    for e, loss in enumerate(losses):
        record.open_row(e + 1, step=steps[e] if steps else float("nan"))
        record.plot_numerical_values(e + 1, "Loss", {"Loss": {"train_loss mean": loss}})
        if ratios:
            record.plot_numerical_values(e + 1, "Weight Update Ratio",
                                         {g: {"mean": r, "max": 2 * r} for g, r in ratios[e].items()})
        if corr and norm:
            record.plot_numerical_values(e + 1, "Weight Gradient Norm", {g: {"mean": v} for g, v in norm[e].items()})
            record.plot_numerical_values(e + 1, "Weight Gradient Correlation",
                                         {g: {"mean": v} for g, v in corr[e].items()})
        if deaths:
            record.plot_probabilities(e + 1, "Output Activations", OrderedDict(
                (g, {"activation_rate": 0.5, "death_rate": d}) for g, d in deaths[e].items()))
        record.close_row()
    return record


def of(record: Record, check: str) -> list:
    return [f for f in record.health.findings(0) if f.check == check]


# --- plateau --------------------------------------------------------------------------------------------------

FLAT = [2.3026] * 12  # by hand: only epoch 1 improves (on nothing); 11 epochs after it > plateau_patience (10)


def test_a_plateau_of_steps_far_too_small_says_raise_the_learning_rate_as_update_ratio_does():
    """Trial r15 s03 (SGD lr=1e-6): every layer moves by 3e-8-1.4e-7 of its norm per step (< update_ratio_low
    1e-5; the loss stays at its first value, far from 1e-2 of it: not a fitted model)."""
    record = run_of(FLAT, ratios=[{"0": 3e-8, "2": 1.4e-7}] * 12)
    ratio = of(record, "update_ratio")
    assert {f.layer for f in ratio} == {"0", "2"} and all("raise the learning rate" in f.advice for f in ratio)
    (plateau,) = of(record, "plateau")
    assert plateau.since == 2 and plateau.active
    assert plateau.advice.startswith("raise the learning rate") and REDUCE not in plateau.advice
    assert "layers '0', '2' by less than 1e-05 of their norm (update_ratio)" in plateau.message
    # steps of a usual size (1e-3): the plateau's own advice, as before
    usual = of(run_of(FLAT, ratios=[{"0": 1e-3, "2": 1e-3}] * 12), "plateau")
    assert REDUCE in usual[0].advice


def test_a_plateau_of_weights_that_do_not_move_does_not_say_lower_the_learning_rate():
    """A ratio of exactly 0 (update_ratio: "its weights did not move"): a lower learning rate cannot help."""
    (plateau,) = of(run_of(FLAT, ratios=[{"0": 0.0, "2": 1e-3}] * 12), "plateau")
    assert "layer '0' did not move (update_ratio)" in plateau.message and REDUCE not in plateau.advice


def test_sgd_at_a_learning_rate_far_too_low_gets_one_piece_of_advice():
    """Trial r15 s03 on a small digits MLP: SGD at lr=1e-6 for 13 epochs. By hand (plain torch): every step moves
    each Linear weight by < 1e-5 of its norm and the epoch loss never improves by 1e-4 relative after epoch 1."""
    load_digits = pytest.importorskip("sklearn.datasets").load_digits
    d = load_digits()
    X, y = torch.tensor(d.data[:512] / 16.0, dtype=torch.float32), torch.tensor(d.target[:512])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)
    loss_fn = nn.CrossEntropyLoss()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # coverage notices
        ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn), ParameterUpdateGeometry(opt)], module=model,
                               visualizer="none")
    ratios, losses = [], []
    for _ in range(13):
        batch = []
        for i in range(0, len(X), 64):
            before = [model[k].weight.detach().clone() for k in (0, 2, 4)]
            opt.zero_grad()
            loss = loss_fn(model(X[i:i + 64]), y[i:i + 64])
            loss.backward()
            opt.step()
            batch.append(loss.item())
            ratios += [float((model[k].weight.detach() - w).norm() / w.norm()) for k, w in zip((0, 2, 4), before)]
        losses.append(sum(batch) / len(batch))
        ins.tick_epoch()
    ins.detach()
    assert max(ratios) < 1e-5
    assert all(v >= min(losses[:e]) * (1 - 1e-4) for e, v in enumerate(losses) if e)  # no epoch improves
    advice = {f.check: f.advice for f in ins.findings}
    assert {"update_ratio", "plateau"} <= set(advice)
    assert advice["plateau"].startswith("raise the learning rate") and "ReduceLROnPlateau" not in advice["plateau"]


# best 0.3 at epoch 4, then 11 epochs above it (plateau at epoch 15); every one of them >= 1.5 x 0.3 and, from
# epoch 6 on, back up by 1.2 - 0.3 >= 0.25 x (2.0 - 0.3): the loss is going backwards (divergence)
RISING = [2.0, 1.0, 0.5, 0.3, 0.9, 1.2, 1.1, 1.3, 1.0, 1.2, 1.1, 1.3, 1.2, 1.0, 1.1]


def test_a_plateau_while_the_training_loss_diverges_does_not_say_add_capacity():
    """Trial r15 s08 (Adam, zero_grad forgotten): "add capacity" beside an active critical divergence."""
    assert all(v >= 1.5 * 0.3 for v in RISING[4:]) and 1.3 - 0.3 >= 0.25 * (2.0 - 0.3)
    record = run_of(RISING)
    (divergence,) = of(record, "divergence")
    assert divergence.active
    (plateau,) = of(record, "plateau")
    assert plateau.since == 5 and "going backwards (divergence)" in plateau.message
    assert "add capacity" not in plateau.advice.replace("more capacity would not help", "")
    # the same best, then flat at it: no divergence, the plateau's own advice
    calm = of(run_of(RISING[:4] + [0.3] * 11), "plateau")
    assert of(run_of(RISING[:4] + [0.3] * 11), "divergence") == [] and REDUCE in calm[0].advice


def test_a_plateau_beside_accumulating_gradients_points_at_them():
    """A running sum's signature in the first 3 epochs (11 steps each; correlation 0.9 >= 0.95 x 10/11, norms 2.9x
    and 1.66x against 0.7 of a sum's 2.83x and 1.65x), the sum keeps its size, the loss stays flat."""
    steps = [11.0 * (e + 1) for e in range(12)]
    corr = [{"0": 0.85}] + [{"0": 0.9}] * 11
    norm = [{"0": 1.0}, {"0": 2.9}] + [{"0": 4.8}] * 10
    record = run_of(FLAT, steps=steps, corr=corr, norm=norm)
    assert [f.since for f in of(record, "accumulating_gradient")] == [1]
    (plateau,) = of(record, "plateau")
    assert "(accumulating_gradient)" in plateau.message and "zero_grad()" in plateau.advice
    assert REDUCE not in plateau.advice


# --- dying_trend: which way the loss went ------------------------------------------------------------------------

RISING_DEATHS = [{"1": d} for d in (0.0, 0.05, 0.1, 0.15, 0.2)]  # +0.2 over dying_window (5) epochs >= 0.1


@pytest.mark.parametrize(("first", "last", "said"), [
    (2.0, 2.048, "got worse by 2.4% (2 -> 2.05)"),  # (2.0 - 2.048) / 2.0 = -2.4%
    (0.0138, 9.72, "got 704x worse (0.0138 -> 9.72)"),  # 9.72 / 0.0138 = 704.3 (was "-70354.5%")
    (2.0, 1.992, "improved by only 0.4%"),  # (2.0 - 1.992) / 2.0 = 0.4% < stalled_improvement (1%)
    (2.0, 2.0, "did not change"),
])
def test_dying_trend_says_which_way_the_loss_went(first, last, said):
    losses = [first, first, first, first, last]
    (trend,) = of(run_of(losses, deaths=RISING_DEATHS), "dying_trend")
    assert trend.layer == "1" and trend.since == 1
    assert trend.message.endswith(f"while the training loss {said}.")
    assert "by only -" not in trend.message
