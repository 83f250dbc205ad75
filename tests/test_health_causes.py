"""Findings that must not contradict, or lose, the cause of a broken run (user trial r7, findings 3, 5-7).

Crafted records (rows as a monitorch inspector sends them, values written out by hand) and small digits runs
(sklearn's ``load_digits``, CPU, a few epochs) trained into each state with our lenses.
"""

from __future__ import annotations

import pytest

from monitorch_widget.record import Record


def losses(train: list[float], val: list[float]) -> Record:
    """A record with one run of training / validation epoch losses."""
    record = Record()
    record.start_run("r")
    for epoch, (t, v) in enumerate(zip(train, val), 1):
        record.plot_numerical_values(epoch, "Loss", {"Loss": {"train_loss mean": t, "val_loss mean": v}})
        record.close_row()
    return record


def checks_of(record: Record, check: str) -> list:
    return [f for f in record.health.findings(0) if f.check == check]


# --- A: overfitting ---------------------------------------------------------------------------------------------

def test_a_collapsed_run_whose_training_loss_stays_near_its_start_is_not_overfitting():
    """Trial r7 #3 ('diverge': SGD lr=3 on digits, collapsed to chance): the training loss wobbles around ln 10
    (2.353 -> 2.946 -> 2.342 ... 2.279) while the validation loss rises 43% above its epoch-1 best. By hand: GL =
    100 (3.2427 / 2.2655 - 1) = 43 > 5 and the training loss is below its value at the best validation epoch (the
    old rule fired), but it fell only (2.3532 - 2.2793) / 2.3532 = 3.1% < overfit_fit (10%)."""
    train = [2.3532, 2.9462, 2.3419, 2.3514, 2.2939, 2.3135, 2.3082, 2.2793]
    val = [2.2655, 2.3613, 2.4148, 2.3006, 2.3143, 2.3015, 2.3008, 3.2427]
    assert 100 * (val[-1] / val[0] - 1) > 5 and train[-1] < train[0]  # the old rule's condition holds
    assert (train[0] - train[-1]) / train[0] < 0.1
    assert checks_of(losses(train, val), "overfitting") == []
    # the same validation curve with a training loss that fell by 20% since the best validation epoch is overfitting
    fitted = train[:7] + [0.8 * train[0]]
    found = checks_of(losses(fitted, val), "overfitting")
    assert [f.since for f in found] == [8] and found[0].value == pytest.approx(100 * (val[-1] / val[0] - 1))
    assert "fell 20% below its value there" in found[0].message


def test_no_overfitting_while_the_training_loss_diverges():
    """Trial r7 #3 ('diverge2': tanh MLP, SGD lr=8): overfitting fired beside an active critical divergence. By hand:
    the training loss 10 -> 1 -> 8 is 8x its best and gave back (8 - 1) / (10 - 1) = 78% >= 25% of its fall
    (divergence); it is also 20% below its value at the best validation epoch (epoch 1), and GL = 100 (7 / 5 - 1)
    = 40 > 5: the old rule called it overfitting (epoch 2: GL 2, not yet). Once the divergence ends (epoch 4:
    1.2 < 1.5x 1) it is."""
    record = losses([10.0, 1.0, 8.0, 1.2], [5.0, 5.1, 7.0, 7.0])
    divergence = checks_of(record, "divergence")
    assert [(f.since, f.until) for f in divergence] == [(3, 4)]
    assert [(f.since, f.until) for f in checks_of(record, "overfitting")] == [(4, None)]
