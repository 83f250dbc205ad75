"""Findings that must not contradict, or lose, the cause of a broken run (user trial r7, findings 3, 5-7).

Crafted records (rows as a monitorch inspector sends them, values written out by hand) and small digits runs
(sklearn's ``load_digits``, CPU, a few epochs) trained into each state with our lenses.
"""

from __future__ import annotations

from collections import OrderedDict

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

def test_a_single_epoch_of_validation_noise_is_not_overfitting():
    """Trial r13b (a healthy 30-block BN run, 397 validation samples, reaching 0.985 accuracy): GL crossed 5 on
    single epochs 4 times ('stop early, keep the weights of epoch 6' at epoch 8). By hand: epoch 4, GL = 100 (0.43
    / 0.40 - 1) = 7.5 > 5 with the training loss 40% below its epoch-3 value; epoch 5 is a new best (0.39); epochs
    6 and 7, GL = 7.7 and 10.3 against it, the training loss 20% and 40% below its epoch-5 value. Only two epochs
    in a row are overfitting (overfit_epochs)."""
    train = [1.0, 0.8, 0.5, 0.3, 0.25, 0.2, 0.15]
    val = [0.6, 0.5, 0.40, 0.43, 0.39, 0.42, 0.43]
    assert 100 * (val[3] / val[2] - 1) > 5 and (train[2] - train[3]) / train[2] >= 0.1
    assert checks_of(losses(train[:6], val[:6]), "overfitting") == []  # epochs 4 and 6 each alone
    found = checks_of(losses(train, val), "overfitting")  # epochs 6 and 7: GL 7.7 and 10.3 against epoch 5
    assert [(f.since, f.until) for f in found] == [(6, None)]


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
    fitted = train[:7] + [0.8 * train[0]] * 2  # held for overfit_epochs (2) epochs
    found = checks_of(losses(fitted, val + val[-1:]), "overfitting")
    assert [f.since for f in found] == [8] and found[0].value == pytest.approx(100 * (val[-1] / val[0] - 1))
    assert "fell 20% below its value there" in found[0].message


def test_no_overfitting_while_the_training_loss_diverges():
    """Trial r7 #3 ('diverge2': tanh MLP, SGD lr=8): overfitting fired beside an active critical divergence. By hand:
    the training loss 10 -> 1 -> 8 is 8x its best and gave back (8 - 1) / (10 - 1) = 78% >= 25% of its fall
    (divergence); it is also 20% below its value at the best validation epoch (epoch 1), and GL = 100 (7 / 5 - 1)
    = 40 > 5: the old rule called it overfitting (epoch 2: GL 2, not yet). Once the divergence ends (epoch 4:
    1.2 < 1.5x 1) it is."""
    record = losses([10.0, 1.0, 8.0, 1.2, 1.1], [5.0, 5.1, 7.0, 7.0, 7.0])
    divergence = checks_of(record, "divergence")
    assert [(f.since, f.until) for f in divergence] == [(3, 4)]
    assert [(f.since, f.until) for f in checks_of(record, "overfitting")] == [(4, None)]


# --- B: update_ratio while the ratio cannot be measured -------------------------------------------------------------

def ratios(rows: list[dict[str, tuple[float, float]]], nonfinite: bool = True) -> Record:
    """A record of per-step update ratios (ParameterUpdateGeometry's ``Weight Update Ratio``: mean, max);
    ``nonfinite``: a NaN ratio comes with the non-finite report a lens makes when weights or steps turn NaN."""
    from monitorch_widget.lens.base import TagAttributes, TagType

    record = Record()
    record.register_tags("Weight Update Ratio", TagAttributes(False, False, True, TagType.NUMERICAL))
    record.start_run("r", {g: "Linear" for g in rows[0]})
    for epoch, row in enumerate(rows, 1):
        record.plot_numerical_values(epoch, "Weight Update Ratio", {g: {"mean": m, "max": x} for g, (m, x) in row.items()})
        if nonfinite and any(m != m for m, _ in row.values()):
            record.problem("LossMetrics", f"1 non-finite train_loss value(s) in epoch {epoch} were left out", 1)
        record.close_row()
    return record


NAN = float("nan")


def test_a_learning_rate_too_high_stays_the_finding_while_the_ratio_is_nan():
    """Trial r7 #5: once the weights are NaN the ratio is left out (NaN), and the 'learning rate too high' finding
    resolved at the next epoch. A value that cannot be measured is not a condition that stopped holding: it stays
    active with the last measured value (epoch 1: mean 0.5, max 2 >= 1: critical), on the layer that is NaN
    while another layer is measured (row 2), and when no layer is (row 3: the check used to be skipped); a
    measured ratio back in range resolves it (row 4)."""
    record = ratios([{"0": (0.5, 2.0), "2": (1e-3, 2e-3)}, {"0": (NAN, NAN), "2": (1e-3, 2e-3)},
                     {"0": (NAN, NAN), "2": (NAN, NAN)}, {"0": (1e-3, 2e-3), "2": (1e-3, 2e-3)}])
    found = checks_of(record, "update_ratio")
    assert [(f.layer, f.since, f.until, f.severity, f.value) for f in found] == [("0", 1, 4, "critical", 0.5)]
    assert "in epoch 1" in found[0].message and "no finite ratio since" in found[0].message
    assert "update_ratio" not in record.health.skipped


def test_a_ratio_missing_in_a_finite_run_ends_the_finding_as_measured():
    """Review: a layer measured too high, then frozen (no update observed) or stepped by an optimizer the lens does
    not hold: its ratio is missing with nothing non-finite in the run. Carrying the last value kept a 'learning rate
    too high' finding active for good next to the frozen notice; it ends at the first row without a measure."""
    record = ratios([{"0": (0.5, 2.0), "2": (1e-3, 2e-3)}, {"0": (NAN, NAN), "2": (1e-3, 2e-3)},
                     {"0": (NAN, NAN), "2": (1e-3, 2e-3)}], nonfinite=False)
    found = checks_of(record, "update_ratio")
    assert [(f.layer, f.since, f.until) for f in found] == [("0", 1, 2)]


def test_tiny_steps_of_a_model_that_fits_its_training_data_are_not_a_learning_rate_too_low():
    """Trial r13b (60 samples memorised, training loss 6.6e-4): from epoch 49, 1-3 layers per epoch were told 'the
    learning rate may be too low ... raise the learning rate'. Steps are tiny because the loss is ~0. A loss at or
    below 1e-2 of its first epoch's (2.3 -> 0.02) says nothing about the learning rate; at 0.5 it does."""
    from monitorch_widget.lens.base import TagAttributes, TagType

    record = Record()
    record.register_tags("Loss", TagAttributes(False, True, True, TagType.NUMERICAL))
    record.register_tags("Weight Update Ratio", TagAttributes(False, False, True, TagType.NUMERICAL))
    record.start_run("r", {"0": "Linear"})
    for epoch, (loss, ratio) in enumerate([(2.3, 1e-3), (0.5, 1e-6), (0.02, 1e-6)], 1):
        record.plot_numerical_values(epoch, "Loss", {"Loss": {"train_loss mean": loss}})
        record.plot_numerical_values(epoch, "Weight Update Ratio", {"0": {"mean": ratio, "max": ratio}})
        record.close_row()
    found = checks_of(record, "update_ratio")
    assert [(f.layer, f.severity, f.since, f.until) for f in found] == [("0", "info", 2, 3)]
    assert "raise the learning rate" in found[0].advice


def test_sgd_blown_up_to_nan_keeps_naming_the_learning_rate():
    """Trial r7 #5 ('nan': SGD lr=1e4 on digits): NaN within epoch 1, all NaN from epoch 2. By hand (plain torch,
    the same steps): epoch 1's finite per-step ratios ||w_after - w_before|| / ||w_before|| of layer '0'; the
    finding holds that mean to the end of the run."""
    import math
    import warnings

    import torch
    from torch import nn

    from monitorch_widget import PyTorchInspector
    from monitorch_widget.lens import LossMetrics, ParameterUpdateGeometry

    load_digits = pytest.importorskip("sklearn.datasets").load_digits
    d = load_digits()
    X, y = torch.tensor(d.data[:256] / 16.0, dtype=torch.float32), torch.tensor(d.target[:256])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=1e4)
    loss_fn = nn.CrossEntropyLoss()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # coverage notices, NaN notices
        ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn), ParameterUpdateGeometry(opt)], module=model,
                               visualizer="none")
        first: list[float] = []
        for e in range(3):
            for i in range(0, len(X), 64):
                before = model[0].weight.detach().clone()
                opt.zero_grad()
                loss_fn(model(X[i:i + 64]), y[i:i + 64]).backward()
                opt.step()
                r = float((model[0].weight.detach() - before).norm() / before.norm())
                if e == 0 and math.isfinite(r):
                    first.append(r)
            ins.tick_epoch()
    assert not torch.isfinite(model[0].weight).all()  # the weights are NaN by the end
    assert first and sum(first) / len(first) > 0.1
    found = {f.layer: f for f in ins.findings if f.check == "update_ratio"}
    assert found["0"].active and found["0"].since == 1
    assert found["0"].value == pytest.approx(sum(first) / len(first), rel=1e-3)
    assert "learning rate is likely too high" in found["0"].message
    ins.detach()


def ratios_and_deaths(rows: list[tuple[float, float]]) -> Record:
    """Layer '0' (Linear): per-step update ratio mean; layer '1' (ReLU): death rate; one row per pair."""
    from monitorch_widget.lens.base import TagAttributes, TagType

    record = Record()
    record.register_tags("Weight Update Ratio", TagAttributes(False, False, True, TagType.NUMERICAL))
    record.start_run("r", {"0": "Linear", "1": "ReLU"})
    for epoch, (ratio, death) in enumerate(rows, 1):
        record.plot_numerical_values(epoch, "Weight Update Ratio", {"0": {"mean": ratio, "max": 2 * ratio}})
        record.plot_probabilities(epoch, "Output Activations",
                                  OrderedDict([("1", {"activation_rate": 0.05, "death_rate": death})]))
        record.close_row()
    return record


def test_units_killed_by_steps_far_too_large_name_those_steps_after_the_ratio_calmed():
    """Trial r7 #5 ('diverge': SGD lr=3): the update ratio was far too high in epoch 1 (0.37) and normal once the
    units had died (dead units stop moving), so its finding resolved and no final finding named the learning rate.
    The ratio finding resolves, as measured; the dead layer names the epoch-1 steps and says to lower the learning
    rate first. Without the earlier overshoot the dead-layer advice is unchanged."""
    record = ratios_and_deaths([(0.37, 0.29), (2e-3, 0.69), (1e-3, 0.87), (1e-3, 0.93)])
    ratio = checks_of(record, "update_ratio")
    assert [(f.since, f.until) for f in ratio] == [(1, 2)]
    dead = checks_of(record, "dead_layer")
    assert len(dead) == 1 and dead[0].active and dead[0].since == 2
    assert "In epoch 1 the steps moved the weights of layer '0' by 0.37 of their norm" in dead[0].message
    assert dead[0].advice.startswith("lower the learning rate")
    calm = checks_of(ratios_and_deaths([(1e-3, 0.29), (2e-3, 0.69), (1e-3, 0.87), (1e-3, 0.93)]), "dead_layer")
    assert "In epoch" not in calm[0].message and not calm[0].advice.startswith("lower the learning rate")


def record_of(types: dict[str, str], ratios: list[dict[str, float]], deaths: list[dict[str, float]]) -> Record:
    """A run of per-step update ratio means (max twice the mean) and ReLU death rates, one row per epoch."""
    from monitorch_widget.lens.base import TagAttributes, TagType

    record = Record()
    record.register_tags("Weight Update Ratio", TagAttributes(False, False, True, TagType.NUMERICAL))
    record.start_run("r", types)
    for epoch, (ratio, death) in enumerate(zip(ratios, deaths), 1):
        record.plot_numerical_values(epoch, "Weight Update Ratio",
                                     {g: {"mean": r, "max": 2 * r} for g, r in ratio.items()})
        record.plot_probabilities(epoch, "Output Activations", OrderedDict(
            (g, {"activation_rate": 0.05, "death_rate": d}) for g, d in death.items()))
        record.close_row()
    return record


MLP = {"0": "Linear", "1": "ReLU", "2": "Linear", "3": "ReLU", "4": "Linear"}


def test_dead_units_name_the_steps_of_the_layer_feeding_them_not_the_largest_ratio():
    """Trial r10 (SGD lr=10 on digits): every Linear overshot in epoch 1, the output layer '4' the most (5.66);
    ReLU '1''s dead_layer finding named '4', after it, whose steps cannot push '1''s units below zero. It names the
    nearest layer before it that overshot in that first row ('0'; '2' for ReLU '3'); with none before it, the
    largest."""
    first = {"0": 0.5, "2": 0.2, "4": 5.66}
    calm = {"0": 1e-3, "2": 1e-3, "4": 1e-3}
    record = record_of(MLP, [{"0": 1e-3, "2": 1e-3, "4": 1e-3}, first, calm, calm],
                       [{"1": 0.1, "3": 0.1}, {"1": 0.4, "3": 0.5}, {"1": 0.5, "3": 0.6}, {"1": 0.5, "3": 0.6}])
    dead = {f.layer: f for f in checks_of(record, "dead_layer")}
    assert "In epoch 2 the steps moved the weights of layer '0' by 0.5 of their norm" in dead["1"].message
    assert "In epoch 2 the steps moved the weights of layer '2' by 0.2 of their norm" in dead["3"].message
    # nothing before the dead layer overshot (only the head did): the largest ratio, as before
    head = record_of(MLP, [{"0": 1e-3, "2": 1e-3, "4": 0.4}, calm, calm],
                     [{"1": 0.4, "3": 0.1}, {"1": 0.5, "3": 0.1}, {"1": 0.5, "3": 0.1}])
    assert "the weights of layer '4' by 0.4 of their norm" in checks_of(head, "dead_layer")[0].message


def test_a_layer_whose_units_the_learning_rate_killed_is_not_called_over_capacity():
    """Trial r10 (AdamW lr=10): ReLU '1' at 50% dead after steps far too large got dead_layer's "lower the learning
    rate" and dying_layer's "more units than the task uses: make it narrower" at once. After an overshoot, a layer
    at or above dead_rate is dead_layer's alone; without one both findings stand (their advice agrees: dead_layer's
    own names dropout and a narrower layer)."""
    types = {**MLP, "5": "ReLU", "6": "Linear"}
    deaths = [{"1": 0.5, "3": 0.05, "5": 0.04}] * 4
    calm = {"0": 1e-3, "2": 1e-3, "4": 1e-3, "6": 1e-3}
    killed = record_of(types, [{**calm, "0": 0.5}, calm, calm, calm], deaths)
    assert [f.layer for f in checks_of(killed, "dead_layer")] == ["1"]
    assert checks_of(killed, "dying_layer") == []
    plain = record_of(types, [calm] * 4, deaths)
    assert [f.layer for f in checks_of(plain, "dead_layer")] == ["1"]
    assert [f.layer for f in checks_of(plain, "dying_layer")] == ["1"]


# --- C: knock-on dead layers, cross-references, the critical cut-off -----------------------------------------------

def test_a_layer_dead_because_the_layer_feeding_it_died_points_upstream():
    """Trial r7 #6 ('dead_init'): the first Linear initialised negative on inputs >= 0, so ReLU '1' is 100% dead
    (by hand); ReLU '3' then sees Linear '2''s bias alone, and the units whose bias is <= 0 are silent (its death
    rate by hand, per batch). Its dead_layer finding points at layer '1', not at dropout or a narrower layer. The
    starved layers' update_ratio finding says "see dead_layer" only once that finding exists (epoch 3)."""
    import warnings

    import torch
    from torch import nn

    from monitorch_widget import PyTorchInspector
    from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientGeometry, ParameterUpdateGeometry

    load_digits = pytest.importorskip("sklearn.datasets").load_digits
    d = load_digits()
    X, y = torch.tensor(d.data[:512] / 16.0, dtype=torch.float32), torch.tensor(d.target[:512])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))
    with torch.no_grad():
        model[0].weight.uniform_(-0.5, 0.0)
        model[0].bias.fill_(-0.1)
    silent: dict[str, list[float]] = {"1": [], "3": []}
    for k in silent:
        model[int(k)].register_forward_hook(
            lambda m, i, out, k=k: silent[k].append((out.abs() <= 1e-8).all(0).float().mean().item()))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # coverage notices
        ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn), OutputActivation(), ParameterGradientGeometry(),
                                ParameterUpdateGeometry(opt)], module=model, visualizer="none")
    said = []
    for _ in range(3):
        for v in silent.values():
            v.clear()
        for i in range(0, len(X), 64):
            opt.zero_grad()
            loss_fn(model(X[i:i + 64]), y[i:i + 64]).backward()
            opt.step()
        ins.tick_epoch()
        said.append(next(f.message for f in ins.findings if f.check == "update_ratio"))
    assert sum(silent["1"]) / len(silent["1"]) == 1.0
    knock_on = sum(silent["3"]) / len(silent["3"])
    assert 0.3 <= knock_on < 0.9  # by hand: dead_layer's warning range
    dead = {f.layer: f for f in ins.findings if f.check == "dead_layer"}
    assert dead["1"].severity == "critical"
    assert dead["3"].value == pytest.approx(knock_on, abs=1e-6)
    assert "Before it, layer '1' is dead" in dead["3"].message
    assert dead["3"].advice.startswith("revive layer '1' first") and "add dropout" not in dead["3"].advice
    assert "dead_layer once it lasts 3 epochs" in said[0] and "see dead_layer" not in said[0] + said[1]
    assert "layer '1' is dead: see dead_layer" in said[2]
    ins.detach()


def test_a_layer_nine_tenths_dead_gets_the_constant_layer_advice():
    """Trial r7 #6: layers 93-94% dead after an lr blow-up got "add dropout / make it narrower" (the critical advice
    began at 95%). From dead_critical_rate = 0.9 on it is critical, and no dying_layer calls it over capacity."""
    record = Record()
    record.start_run("r", {"1": "ReLU", "3": "ReLU", "5": "ReLU"})
    for epoch in range(1, 4):
        record.plot_probabilities(epoch, "Output Activations", OrderedDict(
            (g, {"activation_rate": 0.5, "death_rate": d}) for g, d in (("1", 0.93), ("3", 0.05), ("5", 0.05))))
        record.close_row()
    dead = checks_of(record, "dead_layer")
    assert [(f.layer, f.severity) for f in dead] == [("1", "critical")]
    assert "bias and initialisation" in dead[0].advice and "narrower" not in dead[0].advice
    assert checks_of(record, "dying_layer") == []


# --- D: exploding_gradient against the layer's own level --------------------------------------------------------------

def gradient_norms(norms: dict[str, list[float]]) -> Record:
    from monitorch_widget.lens.base import TagAttributes, TagType

    record = Record()
    record.register_tags("Weight Gradient Norm", TagAttributes(False, False, True, TagType.NUMERICAL))
    record.start_run("r", {g: "Linear" for g in norms})
    for e in range(len(next(iter(norms.values())))):
        record.plot_numerical_values(e + 1, "Weight Gradient Norm", {g: {"mean": v[e]} for g, v in norms.items()})
        record.close_row()
    return record


#: trial r7 'diverge' (SGD lr=3, ReLU MLP on digits): layer '0''s mean weight-gradient norm per epoch, by hand
COLLAPSED = [0.354, 0.964, 0.335, 0.0129, 0.121, 0.00291, 0.00754]


def test_a_collapsed_layers_gradient_coming_back_to_an_ordinary_size_is_not_an_explosion():
    """Trial r7 #7: epoch 8's 0.0781 is 10.4x the median 7.54e-3 of epochs 5-7 (the old rule: critical), but the
    layer's median over epochs 2-4 was 0.335 (by hand): 0.0781 is a quarter of its level before it collapsed."""
    assert 0.0781 >= 10 * sorted(COLLAPSED[-3:])[1]
    record = gradient_norms({"0": COLLAPSED + [0.0781]})
    assert checks_of(record, "exploding_gradient") == []
    # a jump a decade above the layer's level before its fall is an explosion, and is said so
    found = checks_of(gradient_norms({"0": COLLAPSED + [5.0]}), "exploding_gradient")
    assert [(f.layer, f.since, f.severity) for f in found] == [("0", 8, "critical")]
    assert "15x its median 0.335 before its recent fall to 7.54e-03" in found[0].message
    # a calm layer's jump is judged against its recent median, as before
    calm = checks_of(gradient_norms({"0": [1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 12.0]}), "exploding_gradient")
    assert [f.since for f in calm] == [7] and "12x its recent median 1" in calm[0].message


def test_a_recovery_to_a_size_seen_before_a_fall_and_a_noise_level_jump_are_not_explosions():
    """Trial r13b. B (Adam lr=0.1, units dying): 'blocks.6.fc' went 0.30 -> 1.3e-5 -> 2.3e-5 -> 7.1e-4, flagged as
    '31x its recent median' at epoch 4, still 400x below where it started: the median of epochs 1-3 (2.3e-5) hid
    the 0.30 before the fall. A (tiny init): a gradient of 2.76e-23, 11x its median 2.41e-24, was flagged
    critical beside a largest layer of 7.6e-3 (and while its own vanishing_gradient finding was active)."""
    recovering = [0.30, 1.3e-5, 2.3e-5, 7.1e-4]
    assert 7.1e-4 >= 10 * sorted(recovering[:3])[1]  # the old rule's "jump"
    assert checks_of(gradient_norms({"6": recovering, "head": [0.5, 0.45, 0.47, 0.47]}), "exploding_gradient") == []
    noise = [2.3e-24, 2.41e-24, 2.5e-24, 2.76e-23]
    assert checks_of(gradient_norms({"inp": noise, "out": [7e-3, 7.2e-3, 7.4e-3, 7.6e-3]}), "exploding_gradient") == []
    # a jump above everything the layer had, to a size that is not negligible, still is one
    found = checks_of(gradient_norms({"6": recovering + [3.5], "head": [0.5, 0.45, 0.47, 0.47, 0.5]}),
                      "exploding_gradient")
    assert [(f.layer, f.since) for f in found] == [("6", 5)]


def test_a_plateau_beside_vanishing_gradients_points_at_them():
    """Trial r13b (tiny init): plateau advised 'lower the learning rate (ReduceLROnPlateau) or add capacity' while
    vanishing_gradient was the active cause. 12 flat epochs (patience 10); layer '0''s gradient norm is 1e-6 of
    layer '2''s (below vanishing_ratio 1e-3, and before it in the model): the plateau points at it."""
    from monitorch_widget.lens.base import TagAttributes, TagType

    def run(first_norm: float) -> list:
        record = Record()
        record.register_tags("Loss", TagAttributes(False, True, True, TagType.NUMERICAL))
        record.register_tags("Weight Gradient Norm", TagAttributes(False, False, True, TagType.NUMERICAL))
        record.start_run("r", {"0": "Linear", "2": "Linear"})
        for epoch in range(1, 13):
            record.plot_numerical_values(epoch, "Loss", {"Loss": {"train_loss mean": 2.3}})
            record.plot_numerical_values(epoch, "Weight Gradient Norm", {"0": {"mean": first_norm}, "2": {"mean": 1.0}})
            record.close_row()
        return checks_of(record, "plateau")

    stalled = run(1e-6)
    assert [f.since for f in stalled] == [2]
    assert "The gradients of layer '0' vanish (vanishing_gradient)" in stalled[0].message
    assert stalled[0].advice.startswith("fix the vanishing gradient first")
    plain = run(0.5)
    assert "vanish" not in plain[0].message and "ReduceLROnPlateau" in plain[0].advice


def test_steps_too_large_then_none_are_two_findings_the_first_resolved_and_kept():
    """Trial r9 (LBFGS, lr=1: the loss reaches exactly 0 in epoch 3 and the weights stop): the critical 'learning rate
    too high' finding of epochs 1-2 was rewritten in place into a 'did not move' warning 'since epoch 1', its
    episode lost. Opposite problems of one layer are two findings: the first resolves at epoch 3 and stays, still
    critical with its own values; the second begins at epoch 3."""
    record = ratios([{"0": (5.87, 20.0)}, {"0": (3.25, 9.0)}, {"0": (0.0, 0.0)}, {"0": (0.0, 0.0)}], nonfinite=False)
    found = checks_of(record, "update_ratio")
    got = [(f.id.split(":", 1)[1], f.severity, f.since, f.until, f.value) for f in found]
    assert got == [("update_ratio:0:high", "critical", 1, 3, 3.25), ("update_ratio:0:low", "warning", 3, None, 0.0)]
    assert "too high" in found[0].message and "did not move" in found[1].message


def test_a_small_gradient_after_a_layer_the_gradient_reached_is_not_vanishing_with_depth():
    """Trial r11 (a fresh BertForSequenceClassification under the HF Trainer): the attention query / key weights'
    gradient norms were ~5.5e-5 of the classifier's (2.73e-5 vs 0.492, by hand) while the embeddings before them and
    the same block's other weights were not small; four vanishing_gradient findings said to replace the pooler's
    tanh. Gradients vanish on the way back to the input: only layers before the first one whose gradient is not small
    are judged; a 0 after it is named as unreached."""
    bert = {"embeddings": [0.05] * 2, "layer.0.query": [2.73e-5] * 2, "layer.0.key": [3.1e-5] * 2,
            "layer.0.value": [4e-3] * 2, "layer.0.output": [5e-3] * 2, "classifier": [0.492] * 2}
    assert checks_of(gradient_norms(bert), "vanishing_gradient") == []
    # a deep sigmoid stack: the first layers vanish by degrees, judged as before
    sigmoid = {"0": [1e-6] * 2, "2": [1e-4] * 2, "4": [2e-2] * 2, "6": [0.5] * 2}
    found = checks_of(gradient_norms(sigmoid), "vanishing_gradient")
    assert [(f.layer, f.value) for f in found] == [("0", 1e-6), ("2", 1e-4)]
    assert "rounds to 0" not in found[0].message and "No gradient reaches it" not in found[0].message
    # a layer after the reached ones whose gradient is exactly 0: nothing shrank towards it, nothing reaches it
    unused = {"0": [0.1] * 2, "2": [0.0] * 2, "4": [1e-5] * 2, "6": [0.5] * 2}
    found = checks_of(gradient_norms(unused), "vanishing_gradient")
    assert [f.layer for f in found] == ["2"]
    assert "No gradient reaches it at all" in found[0].message and found[0].advice.startswith("check that the loss")


def test_a_critical_finding_that_turns_milder_keeps_its_critical_episode():
    """Trial r12 (GPT-2, AdamW lr 1e-2): epoch 1's steps moved a layer by 0.92 of its norm on average and 2.49 at
    most (critical: a step moved it by more than its own norm); epoch 2's by 0.111 / 0.154 (a warning). The critical
    finding was rewritten in place into the warning, its epoch-1 values lost, and no critical finding was left. The
    critical episode now ends at epoch 2 and stays, with its values; the warning starts there; a worse one updates in
    place."""
    record = ratios([{"c_proj": (0.9188, 2.488)}, {"c_proj": (0.111, 0.154)}, {"c_proj": (0.5, 1.5)},
                     {"c_proj": (1e-3, 2e-3)}])
    found = sorted(checks_of(record, "update_ratio"), key=lambda f: f.since)
    assert [(f.id, f.severity, f.since, f.until, f.value) for f in found] == [
        ("0:update_ratio:c_proj:high#1", "critical", 1, 2, 0.9188),
        ("0:update_ratio:c_proj:high", "critical", 2, 4, 0.5)]  # warning from 2, worse again at 3: in place
    assert "2.49" in found[0].message and "0.919" in found[0].message
