"""The tick's host fold (collect/host_fold.py, collect/fold_math.py) against plain torch on the same rows.

Every statistic a Summary gives (count, non-finite count, mean, population std, min, max, quartiles) is
compared with torch computing it directly from the per-batch values; rows reach the bank the ways they do in
training: folded on the device when a buffer fills (staged, or into device moments past the stage limit),
handed over raw at the tick, across a provisional refresh, and combined across ranks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import closest_observation
from torch import nn

from monitorch_widget import PyTorchInspector
from monitorch_widget.collect import buffers, gradient_layout
from monitorch_widget.collect.buffers import RowBuffer
from monitorch_widget.collect.faults import MonitorWarning
from monitorch_widget.collect.fold_math import fold_moments, unit_rates
from monitorch_widget.collect.host_fold import copy_once
from monitorch_widget.collect.pushes import Pushes
from monitorch_widget.collect.streams import StatStream, StreamBank
from monitorch_widget.collect.transfer import combine_parts, copy_to_host, to_host
from monitorch_widget.lens import ParameterGradientActivation

POINTS = ("mean", "std", "min", "max", "Q1", "median", "Q3")


def by_torch(values: torch.Tensor) -> dict[str, float]:
    """values [n] (float64, non-finite where a batch is left out) -> what a Summary must say."""
    finite = values[torch.isfinite(values)]
    q = torch.quantile(finite, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    return {"count": finite.numel(), "nonfinite": values.numel() - finite.numel(), "mean": finite.mean().item(),
            "std": finite.std(correction=0).item(), "min": finite.min().item(), "max": finite.max().item(),
            "Q1": q[0].item(), "median": closest_observation(finite, 0.5), "Q3": q[2].item()}


def assert_summary(summary, values: torch.Tensor) -> None:
    want = by_torch(values)
    assert (summary.count, summary.nonfinite) == (want["count"], want["nonfinite"])
    for method in POINTS:
        assert summary.point(method) == pytest.approx(want[method], rel=1e-9, abs=1e-12), method


@pytest.fixture
def small_buffers(monkeypatch):
    """Row buffers of 4 rows: ten batches fill one twice in the middle of an epoch."""
    monkeypatch.setattr(buffers, "_MAX_ROWS", 4)


def write_rates(buf: RowBuffer, slot, counts: torch.Tensor, size: int, check: float) -> None:
    """What ActivationSite.__call__ writes for one batch (folding first when the buffer is full)."""
    if buf.n == buf.capacity:
        buf.fold_rates(slot)
    buf.rows[buf.n].copy_(counts)
    buf.checks[buf.n].fill_(check)
    buf.row_sizes[buf.n] = size
    buf.n += 1


@pytest.mark.parametrize("stage_limit", [1, 1024], ids=["device-moments", "staged"])
def test_rates_of_sites_of_several_widths_match_torch(small_buffers, monkeypatch, stage_limit):
    monkeypatch.setattr(StreamBank, "STAGE_LIMIT", stage_limit)
    gen = torch.Generator().manual_seed(0)
    bank = StreamBank(2, keep_all=True)
    widths = [5, 5, 3]  # two sites fold as one group on the host, the third in another
    slots = [bank.add_row() for _ in widths]
    bufs = [RowBuffer(c, torch.device("cpu")) for c in widths]
    expected: list[tuple[list[float], list[float]]] = [([], []) for _ in widths]
    for batch in range(10):
        size = 2 if batch == 9 else 6  # a smaller last batch
        for i, (c, buf) in enumerate(zip(widths, bufs)):
            counts = torch.randint(0, size + 1, (c,), generator=gen).float()
            counts[0] = 0.0 if batch % 3 == 0 else counts[0]  # some dead channels
            bad = (i == 0 and batch == 5) or (i == 2 and batch == 9)  # a NaN batch mid-epoch, an Inf one at the end
            write_rates(buf, slots[i], counts, size, float("nan") if bad else 1.0)
            act = counts.double().sum() / (c * size)
            dead = (counts == 0).double().mean()
            expected[i][0].append(math.nan if bad else act.item())
            expected[i][1].append(math.nan if bad else dead.item())
    for buf, slot in zip(bufs, slots):
        buf.defer_rates(slot)  # the tick: Site.flush
    summaries = to_host([bank], {id(bank): slots})
    for slot, (act, dead) in zip(slots, expected):
        a, d = summaries[id(slot)]
        assert_summary(a, torch.tensor(act, dtype=torch.float64))
        assert_summary(d, torch.tensor(dead, dtype=torch.float64))


def test_scalar_rows_with_non_finite_values_folded_mid_epoch_and_at_the_tick(small_buffers):
    values = [2.0, 3.0, float("nan"), 1.5, 7.0, float("inf"), 0.25, 4.0, -1.0]
    stream = StatStream(1, keep_all=True)
    buf = RowBuffer(1, torch.device("cpu"))
    for v in values:  # what ScalarSite.slot does
        if buf.n == buf.capacity:
            buf.fold_scalars(stream)
        buf.rows[buf.n].fill_(v)
        buf.n += 1
    buf.defer_scalars(stream)  # ScalarSite.flush
    summary = to_host([stream])[id(stream)][0]
    assert_summary(summary, torch.tensor(values, dtype=torch.float32).double())


def test_pushed_floats_and_tensors_fold_together_and_absent_names_have_no_summary():
    pushes = Pushes()
    pushed = [0.5, torch.tensor(0.75), 1.0, torch.tensor(2, dtype=torch.int64), float("nan"),
              torch.tensor(float("inf")), torch.tensor(0.125, dtype=torch.float64)]
    for v in pushed:
        pushes.push("accuracy", v)
    for _ in range(2):  # a provisional refresh, then the tick: the same values, counted once
        streams = pushes.streams(["accuracy", "f1"])
        pushes.set_summaries(to_host(streams))
    values = torch.tensor([float(v) for v in pushed], dtype=torch.float64)
    assert_summary(pushes.summary("accuracy"), values)
    assert pushes.summary("f1") is None


def test_a_provisional_refresh_then_the_tick_count_every_batch_once_and_a_new_epoch_starts_empty(small_buffers):
    bank = StreamBank(2, keep_all=True)
    slot = bank.add_row()
    buf = RowBuffer(4, torch.device("cpu"))
    act = []
    for batch in range(11):
        counts = torch.tensor([batch % 5, 0.0, 1.0, 2.0])
        write_rates(buf, slot, counts, 5, 0.0)
        act.append(counts.sum().item() / 20)
        if batch == 5:  # update_every: hand over, read, go on
            buf.defer_rates(slot)
            provisional = to_host([bank], {id(bank): [slot]})[id(slot)][0]
            assert_summary(provisional, torch.tensor(act, dtype=torch.float64))
    buf.defer_rates(slot)
    assert_summary(to_host([bank], {id(bank): [slot]})[id(slot)][0], torch.tensor(act, dtype=torch.float64))
    bank.reset()
    assert to_host([bank], {id(bank): [slot]})[id(slot)][0].count == 0


def test_ranks_combine_host_parts_of_device_and_host_folds(small_buffers, monkeypatch):
    monkeypatch.setattr(StreamBank, "STAGE_LIMIT", 1)  # rank 0's full buffers fold into device moments
    parts, everything = [], []
    for rank, values in enumerate(([1.0, 5.0, 2.0, 8.0, 3.0, float("nan")], [4.0, -2.0])):
        stream = StatStream(1, keep_all=True)
        buf = RowBuffer(1, torch.device("cpu"))
        for v in values:
            if buf.n == buf.capacity:
                buf.fold_scalars(stream)
            buf.rows[buf.n].fill_(v)
            buf.n += 1
        buf.defer_scalars(stream)
        parts.append(copy_to_host([stream]))
        assert (stream.sums is not None) == (rank == 0)
        everything += values
    (combined,), problems = combine_parts(parts)
    assert problems == []
    summary = stream.read(*combined)[id(stream)][0]
    assert_summary(summary, torch.tensor(everything, dtype=torch.float64))


def test_the_fold_is_the_same_on_torch_and_numpy():
    gen = torch.Generator().manual_seed(1)
    values = torch.randn(3, 6, 2, generator=gen, dtype=torch.float64)
    values[0, 2, 1] = float("nan")
    valid = torch.isfinite(values).all(-1)
    counted = torch.rand(3, 6, generator=gen) > 0.2
    for c in (None, counted):
        on_torch = fold_moments(values, valid, c, keep=True)
        on_numpy = fold_moments(values.numpy(), valid.numpy(), None if c is None else c.numpy(), keep=True)
        for t, a in zip(on_torch, on_numpy):
            np.testing.assert_allclose(t.numpy(), a, rtol=1e-12, equal_nan=True)
    counts = torch.randint(0, 3, (5, 9), generator=gen).float()
    starts, stops = np.array([0, 2, 3]), np.array([2, 3, 9])
    scales = np.array([1 / 8, 1 / 2, 1 / 18]), np.array([1 / 2, 1.0, 1 / 6])
    on_numpy = unit_rates(counts.numpy(), starts, stops, *scales)
    on_torch = unit_rates(counts, torch.from_numpy(starts), torch.from_numpy(stops),
                          *(torch.from_numpy(s) for s in scales))
    np.testing.assert_allclose(on_torch.numpy(), on_numpy, rtol=1e-12)
    # parameter 2 owns columns 3..8 (6 units of 3 entries): activation = active / 18, death = empty units / 6
    assert on_numpy[2, 4, 0] == pytest.approx(counts[4, 3:].sum().item() / 18)
    assert on_numpy[2, 4, 1] == pytest.approx((counts[4, 3:] == 0).double().mean().item())
    # a parameter without units (nn.Linear(3, 0)) owns no column: its segment sums to 0 on both
    starts, stops = np.array([0, 2, 2]), np.array([2, 2, 9])
    on_numpy = unit_rates(counts.numpy(), starts, stops, *scales)
    on_torch = unit_rates(counts, torch.from_numpy(starts), torch.from_numpy(stops),
                          *(torch.from_numpy(s) for s in scales))
    np.testing.assert_allclose(on_torch.numpy(), on_numpy, rtol=1e-12)
    assert on_numpy[1, :, 0].tolist() == [0.0] * 5 and on_numpy[2, 1, 0] == pytest.approx(counts[1, 2:].sum() / 18)


@pytest.mark.parametrize("rows", [4, 256], ids=["folds-mid-epoch", "one-buffer"])
def test_gradient_rates_by_layout_match_torch_with_a_non_finite_step(monkeypatch, rows):
    monkeypatch.setattr(gradient_layout, "_MAX_ROWS", rows)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    lens = ParameterGradientActivation(activation_aggregation="median")
    ins = PyTorchInspector([lens], visualizer="none").attach(model)
    captured: dict[int, list] = {}
    compute = lens.compute
    lens.compute = lambda summaries: (captured.update(summaries), compute(summaries))[1]
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    seen: dict[str, tuple[list[float], list[float]]] = {}
    for step in range(10):
        opt.zero_grad()
        x = torch.randn(2, 3)
        x[:, step % 3] = 0.0  # some weight columns get no gradient
        model(x)[:, step % 2].sum().backward()
        if step == 6:
            model[2].weight.grad[0, 0] = float("nan")
        for name, p in model.named_parameters():
            g = p.grad.double()
            active = (g.abs() > 1e-8).reshape(g.shape[0], -1) if g.dim() > 1 else (g.abs() > 1e-8)[:, None]
            per_unit = active.double().mean(1)
            bad = not torch.isfinite(g).all()
            seen.setdefault(name, ([], []))
            seen[name][0].append(math.nan if bad else active.double().mean().item())
            seen[name][1].append(math.nan if bad else (per_unit == 0).double().mean().item())
        saved = model[2].weight.detach().clone()
        opt.step()
        with torch.no_grad():  # lr 0 still writes NaN * 0 into the weight: keep the model finite
            model[2].weight.copy_(saved)
    with pytest.warns(MonitorWarning, match=r"batches with NaN/Inf values were left out of the rates \(per layer\): '\w+' \(1\)"):
        ins.tick_epoch()
    params = dict(model.named_parameters())
    for name, (act, dead) in seen.items():
        site = next(s for s in lens.sites if s.param is params[name])
        a, d = captured[id(site.stream)]
        assert_summary(a, torch.tensor(act, dtype=torch.float64))
        assert_summary(d, torch.tensor(dead, dtype=torch.float64))
    assert a.nonfinite == 0 and captured[id(next(s for s in lens.sites if s.param is params["2.weight"]).stream)][0].nonfinite == 1


def test_one_copy_per_device_keeps_shapes_values_and_flags():
    # the path of every non-CPU device (one concatenation, one copy), run here on CPU tensors
    parts = [torch.tensor([[1.5, float("nan")], [2.0, -3.0]], dtype=torch.float32),
             torch.tensor([True, False, True]), torch.tensor([0.1, 1e300], dtype=torch.float64),
             torch.tensor([[7]], dtype=torch.int64), torch.tensor([0.5], dtype=torch.bfloat16), torch.zeros(0, 2)]
    host = copy_once(parts)
    for tensor, array in zip(parts, host):
        assert array.shape == tuple(tensor.shape)
        if tensor.dtype == torch.bool:
            assert array.dtype == np.bool_
            np.testing.assert_array_equal(array, tensor.numpy())
        else:
            np.testing.assert_array_equal(array, tensor.double().numpy())


def test_a_parameter_without_entries_reads_nan_and_keeps_its_series(recwarn):
    model = nn.Sequential(nn.Linear(3, 0), nn.Linear(0, 2), nn.Linear(2, 2))
    ins = PyTorchInspector([ParameterGradientActivation()], visualizer="none").attach(model)
    model(torch.randn(4, 3)).sum().backward()
    ins.tick_epoch()
    tag = "Weight Gradient Activation"
    assert math.isnan(ins.history.series(tag, "0", "activation_rate")[0])
    # the last layer's input is all zeros (bias only): no weight gradient entry is active
    assert ins.history.series(tag, "2", "activation_rate")[0] == 0.0
    assert not [w for w in recwarn if "failed" in str(w.message)]
