"""Faults, odd training loops and scale: training goes on, the record stays consistent."""

import gc
import tracemalloc
import weakref

import numpy as np
import pytest
import torch
from torch import nn

from monitorch_widget import MonitorWarning, PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation

OA, W = "Output Activations", "Weight Gradient Activation"


def lenses(loss_fn=None):
    return [LossMetrics(loss_fn=loss_fn or nn.CrossEntropyLoss()), OutputActivation(), ParameterGradientActivation()]


def mlp():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def hooks_of(model):
    return (sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
            + sum(len(p._post_accumulate_grad_hooks or {}) for p in model.parameters()))


@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_autocast_low_precision_outputs_and_grads(dtype):
    model = mlp()
    loss_fn = nn.CrossEntropyLoss()
    ins = PyTorchInspector(lenses(loss_fn), visualizer="none").attach(model)
    for _ in range(3):
        with torch.autocast("cpu", dtype=dtype):
            loss = loss_fn(model(torch.randn(16, 4)), torch.randint(0, 3, (16,)))
        loss.backward()
    ins.tick_epoch()
    assert 0 < ins.history.series(OA, "1", "activation_rate")[0] <= 1
    assert 0 < ins.history.series(W, "0", "activation_rate")[0] <= 1
    assert not ins.history.runs[0].problems


def test_half_precision_gradients_are_measured():
    lin = nn.Linear(4, 2).half()
    ins = PyTorchInspector([ParameterGradientActivation()], visualizer="none").attach(lin)
    lin(torch.ones(3, 4, dtype=torch.half))[:, 0].sum().backward()
    ins.tick_epoch()
    assert ins.history.series(W, "", "death_rate")[0] == 0.5


def test_module_reused_twice_in_one_forward_counts_both_calls():
    relu = nn.ReLU()

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)
            self.act = relu

        def forward(self, x):
            return self.act(self.lin(self.act(x)))

    model = Twice()
    ins = PyTorchInspector([OutputActivation()], visualizer="none").attach(model)
    with torch.no_grad():
        model.lin.weight.copy_(torch.eye(2))
        model.lin.bias.zero_()
    model(torch.tensor([[1.0, -1.0]]))  # both calls: channel 0 active, channel 1 dead
    ins.tick_epoch()
    assert ins.history.series(OA, "act", "death_rate")[0] == 0.5


def test_gradient_accumulation_over_several_backward_passes():
    model = mlp()
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ins = PyTorchInspector(lenses(loss_fn), visualizer="none").attach(model)
    for _ in range(3):
        opt.zero_grad()
        for _ in range(4):  # accumulate 4 micro-batches
            loss_fn(model(torch.randn(4, 4)), torch.randint(0, 3, (4,))).backward()
        opt.step()
    ins.tick_epoch()
    assert 0 < ins.history.series(W, "0", "activation_rate")[0] <= 1
    assert not np.isnan(ins.history.series("Loss", "Loss", "train_loss mean")[0])


def test_nan_gradients_are_flagged_not_reported_as_dead():
    lin = nn.Linear(2, 2)
    ins = PyTorchInspector([ParameterGradientActivation()], visualizer="none").attach(lin)
    lin(torch.ones(1, 2)).sum().backward()
    lin.zero_grad(set_to_none=True)
    (lin(torch.ones(1, 2)) * float("nan")).sum().backward()
    with pytest.warns(MonitorWarning, match="NaN/Inf"):
        ins.tick_epoch()
    assert ins.history.series(W, "", "death_rate")[0] == 0.0
    assert ins.history.series(W, "", "activation_rate")[0] == 1.0


def test_keyboard_interrupt_mid_epoch_then_resume_keeps_the_record_consistent():
    model = mlp()
    loss_fn = nn.CrossEntropyLoss()
    ins = PyTorchInspector(lenses(loss_fn), visualizer="none").attach(model)

    def train(n, interrupt_at=None):
        for i in range(n):
            if i == interrupt_at:
                raise KeyboardInterrupt
            loss_fn(model(torch.randn(4, 4)), torch.randint(0, 3, (4,))).backward()

    train(3)
    ins.tick_epoch()
    with pytest.raises(KeyboardInterrupt):
        train(5, interrupt_at=2)
    train(3)  # resumed: the interrupted epoch's batches simply count in this epoch
    ins.tick_epoch()
    run = ins.history.runs[0]
    assert run.epochs == [1.0, 2.0]
    assert not np.isnan(run.data).all(axis=1).any()


def test_tick_twice_in_a_row_and_tick_with_no_batches_record_gaps():
    model = mlp()
    ins = PyTorchInspector(lenses(), visualizer="none").attach(model)
    ins.tick_epoch()
    ins.tick_epoch()
    run = ins.history.runs[0]
    assert run.epochs == [1.0, 2.0]
    # the layer is known at attach, so its column exists: every epoch is a gap, not a missing series
    assert run.column(OA, "1", "activation_rate") is not None
    assert np.isnan(ins.history.series(OA, "1", "activation_rate")).all()


def test_attach_detach_100_times_leaves_no_hooks_and_no_growth():
    model = mlp()
    loss_fn = nn.CrossEntropyLoss()
    ins = PyTorchInspector(lenses(loss_fn), visualizer="none")
    for _ in range(5):
        ins.attach(model)
        ins.detach()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(100):
        ins.attach(model)
        loss_fn(model(torch.randn(2, 4)), torch.zeros(2, dtype=torch.long)).backward()
        ins.detach()
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    assert hooks_of(model) == 0 and not loss_fn._forward_hooks
    grown = sum(s.size_diff for s in after.compare_to(before, "filename") if "monitorch_widget" in str(s.traceback))
    # The record keeps one small (empty) run per attach; nothing proportional to hooks or tensors.
    assert grown < 100 * 6_000, grown


def test_detached_model_is_garbage_collectable_even_mid_epoch():
    model = mlp()
    ins = PyTorchInspector(lenses(), visualizer="none").attach(model)
    model(torch.randn(2, 4)).sum().backward()
    ins.attach(mlp())
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_thousand_hooked_layers_attach_and_tick():
    model = nn.Sequential(*[m for _ in range(500) for m in (nn.Linear(4, 4), nn.ReLU())])
    ins = PyTorchInspector([OutputActivation(), ParameterGradientActivation()], visualizer="none").attach(model)
    assert len(ins.lenses[0].sites) == 500 and len(ins.lenses[1].sites) == 1000
    model(torch.randn(2, 4)).sum().backward()
    ins.tick_epoch()
    run = ins.history.runs[0]
    assert len(run.groups(OA)) == 500 and run.n_rows == 1


def test_ten_thousand_ticks_keep_memory_bounded():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    ins = PyTorchInspector([OutputActivation()], visualizer="none").attach(model)
    x = torch.randn(2, 2)

    def epochs(n):
        for _ in range(n):
            model(x)
            ins.tick_epoch()

    epochs(500)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    epochs(10_000)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    # The record keeps every value: a float64 matrix grown by doubling (16 columns of capacity here, so
    # <= 256 B/row at worst) plus epoch and time per row (~64 B); a leaked tensor, hook or event per tick
    # would add kilobytes per tick.
    assert grown < 10_000 * 400, grown
    assert ins.history.runs[0].n_rows == 10_500


def test_sparse_gradient_is_reported_once_and_other_parameters_go_on():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 4, sparse=True)
            self.lin = nn.Linear(4, 2)

        def forward(self, idx):
            return self.lin(self.emb(idx))

    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ins = PyTorchInspector([ParameterGradientActivation()], visualizer="none").attach(model)
    with pytest.warns(MonitorWarning, match="emb: gradient is sparse"):
        for _ in range(3):
            opt.zero_grad()
            model(torch.tensor([1, 2, 3])).sum().backward()
            opt.step()
        ins.tick_epoch()
    assert np.isnan(ins.history.series(W, "emb", "activation_rate")[0])
    assert ins.history.series(W, "lin", "activation_rate")[0] == 1.0
    assert [p["count"] for p in ins.history.runs[0].problem_list()] == [1]


def test_per_sample_gradients_with_torch_func_never_make_the_tick_raise():
    """DP-SGD style: vmap(grad(functional_call(model, ...))) runs the attached model under a functorch transform;
    a hook may keep a transformed tensor. The tick must still go through (it raised from a reset), and the
    parameter lenses read the gradient the step used (the mean of the per-sample gradients), by hand."""
    import warnings

    from torch.func import functional_call, grad, vmap

    from monitorch_widget.lens import OutputGradientGeometry, ParameterGradientGeometry

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ins = PyTorchInspector([OutputGradientGeometry(), ParameterGradientGeometry(), OutputActivation()],
                           visualizer="none", module=model)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss_one(p, x, y):
        return nn.functional.cross_entropy(functional_call(model, p, (x.unsqueeze(0),)), y.unsqueeze(0))

    g = torch.Generator().manual_seed(1)
    norms = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a series that cannot read a transformed call says so once
        for _ in range(3):
            x, y = torch.randn(5, 4, generator=g), torch.randint(0, 2, (5,), generator=g)
            per_sample = vmap(grad(loss_one), in_dims=(None, 0, 0))(params, x, y)
            with torch.no_grad():
                for name, p in model.named_parameters():
                    p.grad = per_sample[name].mean(0)
            norms.append(float(model[0].weight.grad.norm()))
            opt.step()
        ins.tick_epoch()  # raised RuntimeError (a functorch tensor kept by an output-gradient hook)
        ins.tick_epoch()
    got = ins.history.series("Weight Gradient Norm", "0", "mean")
    assert got[0] == pytest.approx(sum(norms) / 3, rel=1e-5)
    # the transformed calls are no observation of the output lenses (and stop none of their series)
    assert not any(s.off for s in ins.lenses[0].sites)
    ordinary = torch.randn(5, 4)
    model(ordinary).sum().backward()
    ins.tick_epoch()
    assert np.isfinite(ins.history.series("Output Gradient Norm", "2", "mean")[-1])
    assert not any(s.off for s in ins.lenses[2].sites)  # OutputActivation skipped the transformed calls too
    with torch.no_grad():
        want = float((model[1](model[0](ordinary)) > 1e-8).float().mean())
    assert ins.history.series("Output Activations", "1", "activation_rate")[-1] == pytest.approx(want)
