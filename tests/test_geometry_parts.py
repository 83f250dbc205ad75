"""The geometry lenses write parts per observation and finish them at the fold (collect/geometry.py,
collect/observation_rows.py GeometryParts, the output-gradient lens' shared rows): checked against plain torch,
across folds inside an epoch (small buffers), non-finite observations, batch-size changes and epochs."""

import math
import warnings

import numpy as np
import pytest
import torch
from helpers import Recorder
from torch import nn

from monitorch_widget import MonitorWarning, PyTorchInspector
from monitorch_widget.collect import observation_rows, output_gradients
from monitorch_widget.collect.geometry import finish_geometry, write_geometry, write_parts, write_parts_one
from monitorch_widget.lens import OutputGradientGeometry, ParameterGradientGeometry, ParameterUpdateGeometry


def inspector(lens, model):
    rec = Recorder()
    ins = PyTorchInspector([lens], visualizer=rec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a notice naming what no lens watches
        ins.attach(model)
    return ins, rec


def by_hand(sequence):
    """monitorch's definition, per observation: (norm, correlation with the previous one, 0 at the start and
    after a shape change), leaving out non-finite observations and restarting the correlation after them."""
    norms, corrs, prev = [], [], None
    for t in sequence:
        n = float(t.norm())
        if not math.isfinite(n):
            prev = None
            continue
        norms.append(n)
        if prev is None or prev.shape != t.shape:
            corrs.append(0.0)
        else:
            corrs.append(float(torch.dot(prev.reshape(-1), t.reshape(-1)) / (prev.norm() * t.norm() + 1e-8)))
        prev = t
    return norms, corrs


def check(rec, epoch, norm_tag, corr_tag, name, norms, corrs, scales=None):
    shown = [n * s for n, s in zip(norms, scales)] if scales is not None else norms
    assert rec.values[(epoch, norm_tag, name, "mean")] == pytest.approx(np.mean(shown), rel=1e-5)
    assert rec.values[(epoch, norm_tag, name, ("min", "max"))] == pytest.approx((min(shown), max(shown)), rel=1e-5)
    assert rec.values[(epoch, corr_tag, name, "mean")] == pytest.approx(np.mean(corrs), rel=1e-5, abs=1e-6)
    assert rec.values[(epoch, corr_tag, name, ("min", "max"))] == \
        pytest.approx((min(corrs), max(corrs)), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("normalize", [False, True])
def test_parts_finished_later_equal_the_values_written_at_once(normalize):
    g = torch.Generator().manual_seed(0)
    tensors = [torch.randn(5, 3, generator=g), torch.randn(7, generator=g), torch.randn(2, 2, 2, generator=g)]
    previous = [torch.randn_like(t) for t in tensors]
    previous[1][0] = float("nan")  # a non-finite previous tensor restarts the sequence: correlation 0
    scale = torch.tensor([1 / math.sqrt(t.numel()) for t in tensors]) if normalize else None
    want = torch.zeros(2, 3)
    write_geometry(want, tensors, previous, scale)
    parts = torch.zeros(3, 3)
    write_parts(parts, tensors, previous)
    got = torch.zeros(2, 3)
    finish_geometry(got, parts, scale, squared=False)
    torch.testing.assert_close(got, want)
    # the previous norms copied instead of computed: the same values
    parts2 = torch.zeros(3, 3)
    write_parts(parts2, tensors, previous, before=torch.stack([p.norm() for p in previous]))
    torch.testing.assert_close(parts2, parts, equal_nan=True)
    assert got[1, 1] == 0
    for i, t in enumerate(tensors):  # one tensor at a time into 0-d views
        one = torch.zeros(3)
        write_parts_one(list(one.unbind(0)), t, previous[i])
        torch.testing.assert_close(one, parts[:, i], equal_nan=True)
        assert float(one[0]) == pytest.approx(float(t.norm()), rel=1e-6)
        if i != 1:
            assert float(one[1]) == pytest.approx(float(torch.dot(previous[i].reshape(-1), t.reshape(-1))), rel=1e-5)


def test_write_parts_one_of_a_half_precision_tensor():
    g = torch.Generator().manual_seed(1)
    t, p = torch.randn(6, 4, generator=g).bfloat16(), torch.randn(6, 4, generator=g).bfloat16()
    one = torch.zeros(3)
    write_parts_one(list(one.unbind(0)), t, p)
    assert float(one[0]) == pytest.approx(float(t.float().norm()), rel=1e-3)
    assert float(one[1]) == pytest.approx(float(torch.dot(t.float().reshape(-1), p.float().reshape(-1))), rel=1e-2)
    assert float(one[2]) == pytest.approx(float(p.float().norm()), rel=1e-3)


def test_output_gradients_across_folds_nan_batch_sizes_and_epochs(monkeypatch):
    """Two modules share one row buffer; 3 rows per module force several folds per epoch."""
    monkeypatch.setattr(output_gradients._DeviceRows, "CAPACITY", 3)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ins, rec = inspector(OutputGradientGeometry(normalize_by_size=True), model)
    g = torch.Generator().manual_seed(1)
    for epoch in (1, 2):
        seen = {"0": [], "2": []}
        sizes = [8] * 5 + [5] + [8] * 4  # a smaller batch in the middle: its correlation restarts at 0
        for step, n in enumerate(sizes):
            x, y = torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)

            def keep(into):  # the output's gradient, read by a tensor hook of our own
                return lambda m, a, o: o.register_hook(lambda grad: into.append(grad.clone())) and None
            handles = [model[0].register_forward_hook(keep(seen["0"])), model[2].register_forward_hook(keep(seen["2"]))]
            loss = nn.functional.cross_entropy(model(x), y) * (float("nan") if step == 7 else 1.0)
            for h in handles:
                h.remove()
            opt.zero_grad()
            loss.backward()
            if step != 7:
                opt.step()
        if epoch == 1:
            with pytest.warns(MonitorWarning, match="NaN/Inf values were left out"):
                ins.tick_epoch()
        else:
            ins.tick_epoch()  # the same fault is reported once
        for name, grads in seen.items():
            norms, corrs = by_hand(grads)
            scales = [1 / math.sqrt(t.numel()) for t in grads if math.isfinite(float(t.norm()))]
            check(rec, epoch, "Output Gradient Norm", "Output Gradient Correlation", name, norms, corrs, scales)
            assert corrs[0] == 0 and corrs[5] == 0 and corrs[7] == 0  # epoch start, batch of 5, after the NaN


def test_update_geometry_across_folds_and_epochs(monkeypatch):
    monkeypatch.setattr(observation_rows, "_MAX_ROWS", 4)  # 4 rows: a fold every 4 steps
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    ins, rec = inspector(ParameterUpdateGeometry(opt), model)
    g = torch.Generator().manual_seed(2)
    for epoch in (1, 2):
        updates = {name: [] for name in ("0.weight", "0.bias", "2.weight", "2.bias")}
        for _ in range(11):
            before = {n: p.detach().clone() for n, p in model.named_parameters()}
            x, y = torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            for n, p in model.named_parameters():
                updates[n].append(p.detach() - before[n])
        ins.tick_epoch()
        for full, seq in updates.items():
            module, pname = full.split(".")
            norms, corrs = by_hand(seq)
            check(rec, epoch, f"{pname} Update Norm".title(), f"{pname} Update Correlation".title(), module,
                  norms, corrs)


def weight_gradient_geometry(monkeypatch):
    """A small MLP, SGD and ParameterGradientGeometry on its weights, with row buffers of 4 (folds mid-epoch)."""
    monkeypatch.setattr(observation_rows, "_MAX_ROWS", 4)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ins, rec = inspector(ParameterGradientGeometry(parameters=["weight"]), model)
    return model, opt, ins, rec


def test_gradient_geometry_across_folds(monkeypatch):
    model, opt, ins, rec = weight_gradient_geometry(monkeypatch)
    g = torch.Generator().manual_seed(3)
    grads = {"0": [], "2": []}
    for _ in range(10):
        x, y = torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        for name in grads:
            grads[name].append(model[int(name)].weight.grad.clone())
        opt.step()
    ins.tick_epoch()
    for name, seq in grads.items():
        norms, corrs = by_hand(seq)
        check(rec, 1, "Weight Gradient Norm", "Weight Gradient Correlation", name, norms, corrs)


def test_gradient_geometry_when_a_step_rereads_some_gradients(monkeypatch):
    """A gradient changed in place after the backward pass (here: one weight's, on odd steps) is read again by
    the step, in a layout of its own; the previous norms the other layout copies must follow that read."""
    model, opt, ins, rec = weight_gradient_geometry(monkeypatch)
    g = torch.Generator().manual_seed(4)
    for epoch in (1, 2):
        used = {"0": [], "2": []}
        for step in range(9):
            x, y = torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            if step % 2:
                model[0].weight.grad.mul_(-0.5)  # the step uses this gradient, not the one the backward left
            for name in used:
                used[name].append(model[int(name)].weight.grad.clone())
            opt.step()
        ins.tick_epoch()
        for name, seq in used.items():
            norms, corrs = by_hand(seq)
            assert min(corrs[1:]) < 0 if name == "0" else True  # the flipped gradients anti-correlate
            check(rec, epoch, "Weight Gradient Norm", "Weight Gradient Correlation", name, norms, corrs)
