import numpy as np
import pytest
import torch
from helpers import Emit, rates_by_hand
from torch import nn

from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import OutputActivation

OA, WOA = "Output Activations", "Warning Output Activations"


def run_batches(model, lens, n_batches, x=None, epochs=1, **kw):
    ins = PyTorchInspector([lens], visualizer="none", **kw).attach(model)
    for _ in range(epochs):
        for _ in range(n_batches):
            model(torch.zeros(1) if x is None else x)
        ins.tick_epoch()
    return ins


def test_linear_shape_rates_match_hand_computation():
    b1 = torch.tensor([[1.0, 0.0, 2.0, 0.0], [0.0, 0.0, 3.0, 0.0], [5.0, 0.0, 0.0, 0.0]])
    b2 = torch.tensor([[0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    model = nn.Sequential(Emit([b1, b2]), nn.ReLU())
    ins = run_batches(model, OutputActivation(), 2)
    r1, r2 = rates_by_hand(b1.numpy()), rates_by_hand(b2.numpy())
    act = ins.history.series(OA, "1", "activation_rate")
    dead = ins.history.series(OA, "1", "death_rate")
    assert act[0] == pytest.approx((r1[0] + r2[0]) / 2)
    assert dead[0] == pytest.approx((r1[1] + r2[1]) / 2)
    # independent numbers: b1 -> channels active 2/3, 0, 2/3, 0 ; b2 -> 0, 1, 1/2, 0
    assert act[0] == pytest.approx(((4 / 3) / 4 + 1.5 / 4) / 2)
    assert dead[0] == pytest.approx((2 / 4 + 2 / 4) / 2)


def test_conv_shape_uses_channels_and_spatial_positions():
    rng = np.random.default_rng(0)
    b = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    b[:, 1] = 0.0  # channel 1 dead
    b[0, 2, :2] = 0.0
    model = nn.Sequential(Emit([torch.from_numpy(b)]), nn.Tanh())
    ins = run_batches(model, OutputActivation(), 1)
    a, d = rates_by_hand(b, channel_axis=1)
    assert ins.history.series(OA, "1", "activation_rate")[0] == pytest.approx(a)
    assert ins.history.series(OA, "1", "death_rate")[0] == pytest.approx(1 / 3)
    assert d == pytest.approx(1 / 3)


def test_channel_last_uses_the_last_dimension():
    b = torch.zeros(2, 5, 3)
    b[0, 0, 0] = 1.0
    b[:, :, 2] = 2.0
    model = nn.Sequential(Emit([b]), nn.GELU())
    ins = run_batches(model, OutputActivation(channel_last=True), 1)
    # channel 0: 1 of 10 positions, channel 1: dead, channel 2: all 10
    assert ins.history.series(OA, "1", "activation_rate")[0] == pytest.approx((0.1 + 0 + 1) / 3)
    assert ins.history.series(OA, "1", "death_rate")[0] == pytest.approx(1 / 3)


def test_eps_threshold_and_negative_values_count_as_active():
    b = torch.tensor([[-1.0, 1e-9, -1e-9, 1e-7]])
    model = nn.Sequential(Emit([b]), nn.Tanh())
    ins = run_batches(model, OutputActivation(), 1)
    assert ins.history.series(OA, "1", "activation_rate")[0] == pytest.approx(0.5)


def test_dropout_is_tracked_and_include_exclude_by_type():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2))
    x = torch.randn(16, 4)
    ins = run_batches(model, OutputActivation(), 3, x=x)
    assert ins.history.runs[0].groups(OA) == ["1", "2"]
    ins = run_batches(model, OutputActivation(exclude=[nn.Dropout], include=[nn.Linear]), 1, x=x)
    assert ins.history.runs[0].groups(OA) == ["0", "1", "3"]
    # exclude wins over include
    ins = run_batches(model, OutputActivation(include=[nn.Linear], exclude=[nn.Linear]), 1, x=x)
    assert ins.history.runs[0].groups(OA) == ["1", "2"]


def test_subclasses_of_activation_modules_count():
    class MyReLU(nn.ReLU):
        pass

    model = nn.Sequential(nn.Linear(3, 3), MyReLU())
    ins = run_batches(model, OutputActivation(), 1, x=torch.randn(4, 3))
    assert ins.history.runs[0].groups(OA) == ["1"]


def test_dead_layer_and_warning_panel_take_the_worst_layer():
    dead = torch.zeros(4, 6)
    alive = torch.ones(4, 6)
    model = nn.Sequential(Emit([alive]), nn.ReLU(), Emit([dead]), nn.ReLU())
    ins = run_batches(model, OutputActivation(), 2)
    assert ins.history.series(OA, "3", "death_rate")[0] == 1.0
    assert ins.history.series(OA, "3", "activation_rate")[0] == 0.0
    assert ins.history.series(WOA, WOA, "worst activation_rate")[0] == 0.0
    assert ins.history.series(WOA, WOA, "worst death_rate")[0] == 1.0


def test_epoch_value_is_the_mean_over_batches_even_with_a_smaller_last_batch():
    b1 = torch.tensor([[1.0, 0.0]] * 6)          # act .5, death .5
    b2 = torch.tensor([[1.0, 1.0], [0.0, 1.0]])  # act .75, death 0
    model = nn.Sequential(Emit([b1, b1, b2]), nn.ReLU())
    ins = run_batches(model, OutputActivation(), 3)
    assert ins.history.series(OA, "1", "activation_rate")[0] == pytest.approx((0.5 + 0.5 + 0.75) / 3)
    assert ins.history.series(OA, "1", "death_rate")[0] == pytest.approx(1 / 3)


def test_many_batches_fold_the_device_buffer_correctly():
    rng = np.random.default_rng(1)
    batches = [torch.from_numpy((rng.random((5, 7)) > p).astype(np.float32)) for p in rng.random(150)]
    model = nn.Sequential(Emit(batches), nn.ReLU())
    ins = run_batches(model, OutputActivation(activation_aggregation="median", death_aggregation="max"), 150)
    hand = [rates_by_hand(b.numpy()) for b in batches]
    assert ins.history.series(OA, "1", "activation_rate")[0] == pytest.approx(np.median([h[0] for h in hand]))
    assert ins.history.series(OA, "1", "death_rate")[0] == pytest.approx(max(h[1] for h in hand))


def test_validation_under_no_grad_without_eval_does_not_change_training_rates():
    train = torch.tensor([[1.0, 0.0]])
    val = torch.tensor([[1.0, 1.0]])
    emit = Emit([train])
    model = nn.Sequential(emit, nn.ReLU())
    ins = PyTorchInspector([OutputActivation()], visualizer="none").attach(model)
    model(torch.zeros(1))
    emit.batches = [val]
    with torch.no_grad():  # the seed's validation: no model.eval()
        model(torch.zeros(1))
    model.eval()
    model(torch.zeros(1))  # grad enabled but eval mode: not training either
    ins.tick_epoch()
    assert ins.history.series(OA, "1", "activation_rate")[0] == 0.5


def test_record_eval_keeps_evaluation_passes():
    emit = Emit([torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]])])
    model = nn.Sequential(emit, nn.ReLU())
    ins = PyTorchInspector([OutputActivation(record_eval=True)], visualizer="none").attach(model)
    model(torch.zeros(1))
    with torch.no_grad():
        model(torch.zeros(1))
    ins.tick_epoch()
    assert ins.history.series(OA, "1", "activation_rate")[0] == 0.75


def test_epoch_without_batches_is_a_gap_not_a_stale_value():
    model = nn.Sequential(Emit([torch.ones(2, 2)]), nn.ReLU())
    ins = PyTorchInspector([OutputActivation()], visualizer="none").attach(model)
    model(torch.zeros(1))
    ins.tick_epoch()
    ins.tick_epoch()  # no batch at all
    model(torch.zeros(1))
    ins.tick_epoch()
    act = ins.history.series(OA, "1", "activation_rate")
    assert act[0] == 1.0 and np.isnan(act[1]) and act[2] == 1.0
    assert list(ins.history.runs[0].epochs) == [1, 2, 3]


def test_nan_outputs_are_left_out_and_reported_not_counted_as_dead():
    good = torch.tensor([[1.0, 0.0]])
    bad = torch.tensor([[float("nan"), float("nan")]])
    model = nn.Sequential(Emit([good, bad]), nn.Tanh())
    ins = PyTorchInspector([OutputActivation()], visualizer="none").attach(model)
    with pytest.warns(UserWarning, match="NaN/Inf"):
        model(torch.zeros(1))
        model(torch.zeros(1))
        ins.tick_epoch()
    assert ins.history.series(OA, "1", "death_rate")[0] == 0.5
    assert ins.history.runs[0].problems


def test_a_layer_never_dead_reports_exactly_zero_death_and_full_death_exactly_one():
    alive = torch.tensor([[0.2, 0.3, 0.5]] * 4)  # softmax-like, 3 channels: 1/3 is inexact in binary
    model = nn.Sequential(Emit([alive]), nn.Softmax(dim=1), Emit([torch.zeros(4, 3)]), nn.ReLU())
    ins = run_batches(model, OutputActivation(), 7, epochs=2)
    assert ins.history.series(OA, "1", "death_rate").tolist() == [0.0, 0.0]
    assert ins.history.series(OA, "3", "death_rate").tolist() == [1.0, 1.0]


@pytest.mark.parametrize("channel_last, channel_dim, axis", [
    (False, None, 2),             # fed by a linear layer: the last dim (features of a token MLP)
    (False, {"act": 1}, 1),       # overridden per module: dim 1
    (True, None, 2),              # monitorch's meaning: the last dim
    (True, {"a*": 1}, 1),         # channel_dim overrides channel_last=True too (a glob pattern)
])
def test_channel_dim_chooses_the_axis_per_module(channel_last, channel_dim, axis):
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("fc", nn.Linear(3, 4))
    model.add_module("act", nn.ReLU())
    with torch.no_grad():  # features 0 and 1 dead for every token; every token has live features
        model.fc.weight[:2] = 0.0
        model.fc.bias[:2] = -1.0
        model.fc.bias[2:] = 5.0
    x = torch.randn(2, 5, 3)
    out = torch.relu(model.fc(x)).detach().numpy()
    ins = run_batches(model, OutputActivation(channel_last=channel_last, channel_dim=channel_dim), 1, x=x)
    a, d = rates_by_hand(out, channel_axis=axis)
    assert ins.history.series(OA, "act", "activation_rate")[0] == pytest.approx(a)
    assert ins.history.series(OA, "act", "death_rate")[0] == pytest.approx(d)
    other = rates_by_hand(out, channel_axis=3 - axis)[1]
    assert d != other  # the two axes give different death rates here: the test tells them apart


def test_a_channel_dim_pattern_matching_no_module_fails_at_attach_and_leaves_no_hook():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    ins = PyTorchInspector([OutputActivation(channel_dim={"relu_typo": -1})], visualizer="none")
    with pytest.raises(ValueError, match=r"no watched activation module matches 'relu_typo'.*: '1'"):
        ins.attach(model)
    assert not model[1]._forward_hooks


def test_a_module_reachable_under_two_names_is_watched_once_under_its_first_name():
    """self.act also inside self.block: one hook, one series ('act'), the other name said once."""
    from monitorch_widget import MonitorNotice

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 6)
            self.act = nn.ReLU()
            self.block = nn.Sequential(self.fc, self.act)

        def forward(self, x):
            return self.block(x)

    torch.manual_seed(0)
    model = Twice()
    with pytest.warns(MonitorNotice, match=r"2 module name\(s\) are another name of a module already watched.*"
                      r"'block.0' is 'fc', 'block.1' is 'act'"):
        ins = PyTorchInspector([OutputActivation()], visualizer="none").attach(model)
    assert len(model.act._forward_hooks) == 1
    x = torch.randn(5, 4)
    out = torch.relu(model.fc(x)).detach().numpy()
    model(x)
    ins.tick_epoch()
    a, d = rates_by_hand(out)
    assert ins.history.series(OA, "act", "activation_rate")[0] == pytest.approx(a)
    assert ins.history.series(OA, "act", "death_rate")[0] == pytest.approx(d)
    assert "block.1" not in ins.history.current.module_types
