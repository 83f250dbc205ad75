"""The channel axis of an activation follows the layer that fed it at run time (collect/feeders.py), with hand
rates on the right axis; definition order decides only where the autograd graph does not tell."""

import numpy as np
import pytest
import torch
from helpers import rates_by_hand
from torch import nn

from monitorch_widget import PyTorchInspector
from monitorch_widget.collect.feeders import channels_last
from monitorch_widget.lens import OutputActivation

OA = "Output Activations"


def record(model, inputs, *, eval_inputs=(), **lens_kw):
    """Train-mode passes on ``inputs`` (then no_grad eval passes), one tick; the activation outputs kept by a
    plain forward hook registered after ours."""
    ins = PyTorchInspector([OutputActivation(**lens_kw)], visualizer="none").attach(model)
    seen: list[np.ndarray] = []
    handle = model.act.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone().numpy()))
    for x in inputs:
        model(x).sum().backward()
    model.eval()
    with torch.no_grad():
        for x in eval_inputs:
            model(x)
    handle.remove()
    ins.tick_epoch()
    return ins, seen


def series(ins, key):
    return ins.history.series(OA, "act", key)[0]


class ConvAfterLinear(nn.Module):
    """act is defined right after a Linear (definition order: the last dim) but applied after a Conv1d."""

    def __init__(self):
        super().__init__()
        self.fc_in = nn.Linear(16, 4 * 12)
        self.act = nn.ReLU()
        self.conv = nn.Conv1d(4, 6, 3)
        with torch.no_grad():
            self.conv.bias[:3] = -20.0  # conv channels 0-2 dead for every input

    def forward(self, x):
        return self.act(self.conv(self.fc_in(x).view(-1, 4, 12)))


def test_an_activation_applied_after_a_convolution_takes_dim_1_whatever_the_definition_order():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    ins, seen = record(ConvAfterLinear(), [torch.randn(5, 16, generator=g) for _ in range(3)])
    by_channel = [rates_by_hand(o, channel_axis=1) for o in seen]
    by_position = [rates_by_hand(o, channel_axis=2) for o in seen]
    assert series(ins, "death_rate") == pytest.approx(np.mean([d for _, d in by_channel]))
    assert series(ins, "death_rate") == pytest.approx(0.5)  # three of six conv channels
    assert np.mean([d for _, d in by_position]) != pytest.approx(0.5)  # the other axis would say otherwise
    assert series(ins, "activation_rate") == pytest.approx(np.mean([a for a, _ in by_channel]))


class SharedAct(nn.Module):
    """One activation module after a Conv2d ([B, 8, 4, 4]: channels dim 1) and after a token Linear
    ([B, 16, 10]: channels last); half the units of each layer dead."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.proj = nn.Linear(8 * 4 * 4, 16 * 6)
        self.tok = nn.Linear(6, 10)
        self.act = nn.ReLU()
        with torch.no_grad():
            self.conv.bias[:4] = -50.0
            self.tok.bias[:5] = -50.0

    def forward(self, x):
        h = self.act(self.conv(x))
        t = self.proj(h.flatten(1)).view(-1, 16, 6)
        return self.act(self.tok(t))


def test_a_shared_activation_takes_each_calls_own_axis():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(2)
    ins, seen = record(SharedAct(), [torch.randn(4, 3, 4, 4, generator=g) for _ in range(2)])
    hand = [rates_by_hand(o, channel_axis=1 if o.ndim == 4 else 2) for o in seen]
    assert len(hand) == 4 and [d for _, d in hand] == [0.5, 0.6, 0.5, 0.6]  # one more token feature never fires
    assert series(ins, "death_rate") == pytest.approx(0.55)
    assert series(ins, "activation_rate") == pytest.approx(np.mean([a for a, _ in hand]))


class LinearViewNorm(nn.Module):
    """DCGAN-style projection: Linear -> view to feature maps -> BatchNorm2d -> act. act is defined before the
    norm, so definition order says 'after a linear layer'; the graph says BatchNorm2d: channels dim 1."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4 * 3 * 3)
        self.act = nn.ReLU()
        self.bn = nn.BatchNorm2d(4)
        with torch.no_grad():
            self.bn.bias[:2] = -50.0  # channels 0-1 dead after the norm

    def forward(self, x):
        return self.act(self.bn(self.fc(x).view(-1, 4, 3, 3)))


def test_a_norm_of_feature_maps_decides_dim_1_and_eval_passes_keep_the_training_axis():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(3)
    train = [torch.randn(6, 8, generator=g) for _ in range(2)]
    evals = [torch.randn(6, 8, generator=g)]
    ins, seen = record(LinearViewNorm(), train, eval_inputs=evals, record_eval=True)
    hand = [rates_by_hand(o, channel_axis=1) for o in seen]  # 2 training passes, 1 evaluation pass
    assert len(hand) == 3 and all(d == 0.5 for _, d in hand)
    assert series(ins, "death_rate") == pytest.approx(0.5)
    assert series(ins, "activation_rate") == pytest.approx(np.mean([a for a, _ in hand]))


def test_token_mlps_keep_the_last_dim():
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("fc", nn.Linear(6, 10))
    model.add_module("drop", nn.Dropout(0.0))
    model.add_module("act", nn.GELU())
    with torch.no_grad():
        model.fc.bias[:4] = -50.0
    g = torch.Generator().manual_seed(4)
    ins, seen = record(model, [torch.randn(2, 7, 6, generator=g)])
    a, d = rates_by_hand(seen[0], channel_axis=2)
    assert series(ins, "death_rate") == pytest.approx(d) == pytest.approx(0.4)
    assert series(ins, "activation_rate") == pytest.approx(a)


@pytest.mark.parametrize("build, expected", [
    (lambda x: torch.relu(nn.Conv2d(5, 3, 3)(x)), False),
    (lambda x: torch.relu(nn.ConvTranspose2d(5, 3, 3)(x)), False),
    (lambda x: nn.functional.silu(nn.GroupNorm(1, 3)(nn.Conv2d(5, 3, 3)(x))), False),
    (lambda x: nn.functional.gelu(nn.Linear(6, 7)(x.permute(0, 2, 3, 1)[..., :6, :, :].flatten(2)[..., :6])), True),
    # a linear layer's features reshaped into feature maps (DCGAN): dim 1; nn.Unflatten is the same view
    (lambda x: torch.relu(nn.Linear(6, 4 * 2 * 2)(x[:, 0, 0, :6]).view(-1, 4, 2, 2)), False),
    (lambda x: torch.relu(nn.Unflatten(1, (4, 2, 2))(nn.Linear(6, 16)(x[:, 0, 0, :6]))), False),
    # BatchNorm1d over tokens' features, transposed back: the last dim (point clouds, time series)
    (lambda x: torch.relu(nn.BatchNorm1d(7)(nn.Linear(8, 7)(x[:, 0]).transpose(1, 2)).transpose(1, 2)), True),
    (lambda x: torch.relu(nn.functional.max_pool2d(nn.Conv2d(5, 3, 3)(x), 2)), False),
    (lambda x: torch.relu(nn.functional.interpolate(nn.Conv2d(5, 3, 3)(x), scale_factor=2.0)), False),
    (lambda x: torch.relu(torch.cat([nn.Conv2d(5, 3, 3)(x), nn.Conv2d(5, 2, 3)(x)], 1)), False),
    (lambda x: torch.relu(nn.Parameter(torch.ones(3, 1, 1)) * nn.Conv2d(5, 3, 3)(x)), False),  # gamma * conv
    (lambda x: nn.LeakyReLU(0.1, inplace=True)(nn.Conv2d(5, 3, 3)(x)), False),  # ...Backward1: in place
    (lambda x: nn.ReLU(inplace=True)(nn.Linear(8, 6)(x[:, 0])), True),  # in place on a view: CopySlices
    (lambda x: torch.softmax(x[:, 0] @ x[:, 0].transpose(-1, -2), -1), True),  # attention scores: keys
    (lambda x: torch.relu(nn.LSTM(8, 4, batch_first=True)(x[:, 0])[0]), True),
    # squeeze-and-excitation: a [B, C, 1, 1] gate times the conv's maps (C = W = 8: shapes alone would mislead)
    (lambda x: torch.relu(torch.sigmoid(nn.Linear(5, 8)(x.mean((2, 3)))).view(2, 8, 1, 1)
                          * nn.Conv2d(5, 8, 1)(x)), False),
    # FiLM: gamma(cond) * maps + beta(cond), both computed and broadcast
    (lambda x: torch.relu(nn.Linear(5, 3)(x[:, :, 0, 0])[:, :, None, None] * nn.Conv2d(5, 3, 3)(x)
                          + nn.Linear(5, 3)(x[:, :, 0, 0])[:, :, None, None]), False),
    # a linear layer's features viewed as tokens [B, N, D]: either reading fits, so the graph does not decide
    (lambda x: torch.relu(nn.Linear(8, 4 * 8)(x[:, 0, 0]).view(-1, 4, 8)), None),
    (lambda x: torch.relu(x[:, :3]), None),  # a leaf: nothing fed it
    (lambda x: torch.relu(nn.Conv2d(5, 3, 3)(x).sum(1, keepdim=True)), None),  # a reduction: not followed
])
def test_the_graph_walk_names_the_producer_or_says_it_does_not_know(build, expected):
    x = torch.randn(2, 5, 8, 8, requires_grad=True)
    assert channels_last(build(x)) is expected
    with torch.no_grad():
        assert channels_last(build(x)) is None  # no graph: the caller's default


class TokenAfterConv(nn.Module):
    """act follows a Linear at run time but a Conv1d in definition order; half of fc's units dead."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(6, 6, 1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(6, 8)
        with torch.no_grad():
            self.fc.bias[:4] = -100.0

    def forward(self, x):  # x [B, 6, T]
        return self.act(self.fc(self.conv(x).transpose(1, 2)))


def token_after_conv(seed: int):
    """TokenAfterConv attached with record_eval=True, its activation's outputs kept by a plain hook, a generator."""
    torch.manual_seed(0)
    model = TokenAfterConv()
    ins = PyTorchInspector([OutputActivation(record_eval=True)], visualizer="none").attach(model)
    seen: list[np.ndarray] = []
    model.act.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone().numpy()))
    return model, ins, seen, torch.Generator().manual_seed(seed)


def test_a_no_grad_pass_before_training_does_not_fix_the_axis_for_the_training_passes():
    """With record_eval=True a baseline evaluation under no_grad runs first: it has no graph, so that one pass is
    measured on the definition-order axis (dim 1 here); the first training pass of the shape reads the graph and
    decides (the last dim) for every later pass, evaluations included."""
    model, ins, seen, g = token_after_conv(5)
    batches = [torch.randn(3, 6, 10, generator=g) for _ in range(6)]
    with torch.no_grad():
        model(batches[0])
    for x in batches[1:3]:
        model(x).sum().backward()
    ins.tick_epoch()
    for x in batches[3:5]:
        model(x).sum().backward()
    with torch.no_grad():
        model(batches[5])
    ins.tick_epoch()
    first = [rates_by_hand(seen[0], channel_axis=1)] + [rates_by_hand(o, channel_axis=2) for o in seen[1:3]]
    second = [rates_by_hand(o, channel_axis=2) for o in seen[3:]]
    deaths = ins.history.series(OA, "act", "death_rate")
    assert deaths[0] == pytest.approx(np.mean([d for _, d in first]))
    assert deaths[1] == pytest.approx(np.mean([d for _, d in second])) == pytest.approx(0.5)


def test_an_evaluation_at_a_shape_never_trained_takes_the_axis_training_read():
    """Trained at sequence length 10, evaluated (no_grad, record_eval=True) at 17: the evaluation has no graph, and
    takes what the training passes read for outputs of that rank (the last dim), not definition order (dim 1)."""
    model, ins, seen, g = token_after_conv(7)
    for _ in range(2):
        model(torch.randn(3, 6, 10, generator=g)).sum().backward()
    with torch.no_grad():
        model(torch.randn(3, 6, 17, generator=g))
    ins.tick_epoch()
    hand = [rates_by_hand(o, channel_axis=2) for o in seen]
    assert seen[2].shape == (3, 17, 8)
    assert ins.history.series(OA, "act", "death_rate")[0] == pytest.approx(np.mean([d for _, d in hand])) \
        == pytest.approx(0.5)
