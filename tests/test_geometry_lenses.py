"""Edge cases of the geometry lenses, against values computed by hand with plain torch on the same tensors."""

import copy
import math
import warnings

import numpy as np
import pytest
import torch
from helpers import Recorder
from torch import nn

import monitorch_widget
from monitorch_widget import MonitorNotice, MonitorWarning, PyTorchInspector
from monitorch_widget.lens import (
    OutputGradientGeometry,
    ParameterGradientGeometry,
    ParameterNorm,
    ParameterUpdateGeometry,
)


def inspector(lenses, model):
    rec = Recorder()
    ins = PyTorchInspector(lenses, visualizer=rec)
    with _quiet():
        ins.attach(model)
    return ins, rec


def _quiet():
    """attach() may name unwatched parameters in a MonitorNotice; these tests are not about it."""
    cm = warnings.catch_warnings()
    cm.__enter__()
    warnings.simplefilter("ignore")
    return _Exit(cm)


class _Exit:
    def __init__(self, cm):
        self.cm = cm

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.cm.__exit__(*exc)


def correlations(tensors):
    out, prev = [], torch.zeros_like(tensors[0])
    for t in tensors:
        out.append(float(torch.sum(prev * t) / (prev.norm() * t.norm() + 1e-8)) if prev.shape == t.shape else 0.0)
        prev = t
    return out


def batch(g, n=8, d=4):
    return torch.randn(n, d, generator=g), torch.randint(0, 3, (n,), generator=g)


# --- OutputGradientGeometry ------------------------------------------------------------------------------

def test_output_gradient_of_a_linear_followed_by_inplace_relu():
    """A full backward hook raises here; the tensor hook reads dL/d(output) before the in-place ReLU."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(inplace=True), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ins, rec = inspector([OutputGradientGeometry()], model)
    g = torch.Generator().manual_seed(1)
    expected = {"0": [], "2": []}
    for _ in range(4):
        x, y = batch(g)
        w1, b1, w2, b2 = (p.detach().clone().requires_grad_() for p in model.parameters())
        h = x @ w1.T + b1  # the same forward, by hand, without the model's hooks
        out = torch.relu(h) @ w2.T + b2
        gh, gout = torch.autograd.grad(nn.functional.cross_entropy(out, y), [h, out])
        expected["0"].append(gh)
        expected["2"].append(gout)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    ins.tick_epoch()
    for name, grads in expected.items():
        norms = [float(t.norm()) for t in grads]
        assert rec.values[(1, "Output Gradient Norm", name, "mean")] == pytest.approx(np.mean(norms), rel=1e-5)
        assert rec.values[(1, "Output Gradient Norm", name, ("min", "max"))] == \
            pytest.approx((min(norms), max(norms)), rel=1e-5)
        assert rec.values[(1, "Output Gradient Correlation", name, "mean")] == \
            pytest.approx(np.mean(correlations(grads)), rel=1e-5, abs=1e-6)
    assert not any(k[2] == "1" for k in rec.values)  # the ReLU is an activation: skipped


class _Shortcut(nn.Module):
    """h = lin(x); out = main(h) + shortcut(h), the shortcut an nn.Identity (a ResNet block's)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin, self.main, self.shortcut = nn.Linear(3, 4), nn.Linear(4, 4), nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x)
        return self.main(h) + self.shortcut(h)


def test_output_gradient_of_a_module_that_returns_its_input_is_that_uses_only():
    """Trial r14b: the tensor hook sat on the Identity's output, which is its input h, and read the gradient of
    both uses of h (4.78, the value of 'lin') instead of the shortcut's own, all ones (sqrt(32) = 5.66, as
    monitorch's full backward hook reads it). Also an in-place ReLU watched (skip_activation=False): dL/d(its
    output), by hand."""
    torch.manual_seed(0)
    model = _Shortcut()
    ins, rec = inspector([OutputGradientGeometry()], model)
    x = torch.randn(8, 3)
    h = model.lin(x).detach().requires_grad_()
    (model.main(h) + h).sum().backward()
    model(x).sum().backward()
    ins.tick_epoch()
    assert rec.values[(1, "Output Gradient Norm", "shortcut", "mean")] == pytest.approx(math.sqrt(32), rel=1e-6)
    assert rec.values[(1, "Output Gradient Norm", "lin", "mean")] == pytest.approx(float(h.grad.norm()), rel=1e-6)
    ins.detach()
    relu_model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True), nn.Linear(4, 2))
    ins, rec = inspector([OutputGradientGeometry(skip_activation=False)], relu_model)
    r = torch.relu(relu_model[0](x)).detach().requires_grad_()
    relu_model[2](r).pow(2).sum().backward()
    relu_model(x).pow(2).sum().backward()
    ins.tick_epoch()
    assert rec.values[(1, "Output Gradient Norm", "1", "mean")] == pytest.approx(float(r.grad.norm()), rel=1e-6)
    ins.detach()


def test_output_gradient_correlation_restarts_when_the_batch_shape_changes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    ins, rec = inspector([OutputGradientGeometry(normalize_by_size=True)], model)
    g = torch.Generator().manual_seed(2)
    grads = []
    for n in (8, 8, 5):
        x, y = batch(g, n)
        w, b = (p.detach().clone().requires_grad_() for p in model.parameters())
        out = x @ w.T + b
        grads.append(torch.autograd.grad(nn.functional.cross_entropy(out, y), out)[0])
        nn.functional.cross_entropy(model(x), y).backward()
    ins.tick_epoch()
    rms = [float(t.norm() / math.sqrt(t.numel())) for t in grads]
    corr = correlations(grads)
    assert corr[0] == 0 and corr[2] == 0 and corr[1] != 0
    assert rec.values[(1, "Output Gradient Norm", "0", "mean")] == pytest.approx(np.mean(rms), rel=1e-5)
    assert rec.values[(1, "Output Gradient Correlation", "0", "mean")] == pytest.approx(np.mean(corr), rel=1e-5)


def test_output_gradient_shapes_changing_within_an_epoch_are_named_once():
    """Dynamic padding: every batch a new sequence length. Each changed observation's correlation is 0 by
    definition (hand values below); more than one change in an epoch is named once, a single one (a smaller last
    batch) is not."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    ins, rec = inspector([OutputGradientGeometry()], model)
    g = torch.Generator().manual_seed(3)

    def run(lengths):
        grads = []
        for t in lengths:
            x = torch.randn(2, t, 4, generator=g)
            w, b = (p.detach().clone().requires_grad_() for p in model.parameters())
            out = x @ w.T + b
            grads.append(torch.autograd.grad(out.square().mean(), out)[0])
            model(x).square().mean().backward()
        return grads

    grads = run((6, 6, 9, 5, 5))
    with pytest.warns(MonitorNotice, match=r"'0'\) 2 of 5 output gradients this epoch had another shape"):
        ins.tick_epoch()
    corr = correlations(grads)
    assert corr[2] == 0 and corr[3] == 0 and corr[1] != 0 and corr[4] != 0
    assert rec.values[(1, "Output Gradient Correlation", "0", "mean")] == pytest.approx(np.mean(corr), rel=1e-5)
    grads = run((6, 6, 4))  # one change: a smaller last batch, said nowhere
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ins.tick_epoch()
    assert rec.values[(2, "Output Gradient Correlation", "0", "mean")] == \
        pytest.approx(np.mean(correlations(grads)), rel=1e-5)


def test_output_gradient_of_a_non_tensor_output_is_reported_once_and_training_goes_on():
    class Pair(nn.Module):
        def forward(self, x):
            return {"y": x}

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.pair = Pair()

        def forward(self, x):
            return self.pair(self.fc(x))["y"]

    model = Net()
    ins, rec = inspector([OutputGradientGeometry()], model)
    g = torch.Generator().manual_seed(0)
    with pytest.warns(MonitorWarning, match="pair: output is a dict") as caught:
        for _ in range(3):
            x, y = batch(g)
            nn.functional.cross_entropy(model(x), y).backward()
    assert sum("output is a dict" in str(w.message) for w in caught) == 1
    ins.tick_epoch()
    assert rec.values[(1, "Output Gradient Norm", "fc", "mean")] > 0


# --- ParameterGradientGeometry ---------------------------------------------------------------------------

class TwoBranches(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(4, 3)
        self.use_b = False

    def forward(self, x):
        return self.a(x) + (self.b(x) if self.use_b else 0)


def test_frozen_and_unused_parameters_and_clipped_gradients():
    """A frozen parameter is not drawn; a parameter without a gradient in a step has no observation for it;
    the value is the gradient the step used (after clipping)."""
    torch.manual_seed(0)
    model = TwoBranches()
    frozen = nn.Linear(4, 4).requires_grad_(False)
    model.frozen = frozen
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ins, rec = inspector([ParameterGradientGeometry(parameters=["weight"])], model)
    g = torch.Generator().manual_seed(3)
    used = {"a": [], "b": []}
    for step in range(6):
        model.use_b = step % 2 == 1
        x, y = batch(g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(frozen(x) * 0 + x), y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.05)
        for name in used:
            grad = getattr(model, name).weight.grad
            if grad is not None:
                used[name].append(grad.detach().clone())
        opt.step()
    ins.tick_epoch()
    assert len(used["b"]) == 3
    for name, grads in used.items():
        assert rec.values[(1, "Weight Gradient Norm", name, "mean")] == \
            pytest.approx(np.mean([float(t.norm()) for t in grads]), rel=1e-5)
        assert rec.values[(1, "Weight Gradient Correlation", name, "mean")] == \
            pytest.approx(np.mean(correlations(grads)), rel=1e-5, abs=1e-6)
    assert not any(k[2] == "frozen" for k in rec.values)


def test_non_finite_gradient_is_left_out_of_that_parameter_only():
    """Step 2's backward pass yields a NaN in one weight's gradient and the step is skipped (as GradScaler
    does): that gradient is counted once, as a non-finite observation of that weight only, and the next
    correlation restarts at 0."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ins, rec = inspector([ParameterGradientGeometry(parameters="weight")], model)
    g = torch.Generator().manual_seed(4)
    grads = {"0": [], "1": []}
    nan_at_origin = torch.zeros(8, 4)
    nan_at_origin[0, 0] = float("nan")
    for step in range(4):
        x, y = batch(g)
        opt.zero_grad()
        handle = model[0].weight.register_hook(lambda grad: grad + nan_at_origin) if step == 2 else None
        nn.functional.cross_entropy(model(x), y).backward()
        if handle is not None:
            handle.remove()
        for name in grads:
            grads[name].append(getattr(model, name).weight.grad.detach().clone())
        if step != 2:
            opt.step()
    with pytest.warns(MonitorWarning, match=r"observations with NaN/Inf values were left out.*: '0' \(1\)"):
        ins.tick_epoch()
    good = grads["0"][:2] + grads["0"][3:]
    corr0 = correlations(grads["0"][:2]) + [0.0]  # restarts after the NaN gradient
    expected = {"0": ([float(t.norm()) for t in good], corr0),
                "1": ([float(t.norm()) for t in grads["1"]], correlations(grads["1"]))}
    for name, (norms, corr) in expected.items():
        assert rec.values[(1, "Weight Gradient Norm", name, "mean")] == pytest.approx(np.mean(norms), rel=1e-5)
        assert rec.values[(1, "Weight Gradient Correlation", name, "mean")] == \
            pytest.approx(np.mean(corr), rel=1e-5, abs=1e-6)
    assert math.isnan(float(grads["0"][2].norm()))


# --- ParameterNorm / ParameterUpdateGeometry -------------------------------------------------------------

def test_parameter_norm_reads_frozen_parameters_at_the_tick_and_on_demand():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 3))
    model[0].requires_grad_(False)
    lens = ParameterNorm(parameters=["weight"], normalize_by_size=True, aggregation_method="min")
    ins, rec = inspector([lens], model)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    g = torch.Generator().manual_seed(5)
    seen = []
    for _ in range(3):
        x, y = batch(g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        lens.collect_data()
        seen.append(model[1].weight.detach().clone())
    ins.tick_epoch()  # one more read: the parameters as they are now (== after the last step)
    seen.append(model[1].weight.detach().clone())
    rms = [float(w.norm() / math.sqrt(w.numel())) for w in seen]
    assert rec.values[(1, "Weight Norm", "1", "min")] == pytest.approx(min(rms), rel=1e-6)
    frozen = float(model[0].weight.norm() / math.sqrt(model[0].weight.numel()))
    assert rec.values[(1, "Weight Norm", "0", "min")] == pytest.approx(frozen, rel=1e-6)
    total = frozen + min(rms) + 1e-7
    assert rec.values[(1, "Weight Norm Comparison", "Weight Norm Comparison", "0")] == pytest.approx(frozen / total)


def test_update_geometry_without_optimizer_frozen_parameter_and_detach():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 3))
    model[0].requires_grad_(False)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.01)
    lens = ParameterUpdateGeometry(opt, parameters=["weight"])
    ins, rec = inspector([lens], model)
    g = torch.Generator().manual_seed(6)
    updates = []
    for _ in range(3):
        before = model[1].weight.detach().clone()
        x, y = batch(g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        updates.append(model[1].weight.detach() - before)
    # memory: the snapshot and the previous update of the weight the optimizer updates; the frozen one (not
    # held by the optimizer) makes no observation (tests/test_update_participation.py) and holds no copy
    assert lens.bytes_held() == 2 * model[1].weight.numel() * 4
    ins.tick_epoch()
    assert math.isnan(rec.values[(1, "Weight Update Norm", "0", "mean")])
    assert rec.values[(1, "Weight Update Norm", "1", "mean")] == \
        pytest.approx(np.mean([float(u.norm()) for u in updates]), rel=1e-5)
    assert rec.values[(1, "Weight Update Correlation", "1", "mean")] == \
        pytest.approx(np.mean(correlations(updates)), rel=1e-5)
    ins.detach()
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks


def test_gradient_geometry_memory_is_two_gradient_copies_with_correlation():
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 3))
    with_corr, without = ParameterGradientGeometry(), ParameterGradientGeometry(compute_correlation=False)
    twin = copy.deepcopy(model)  # one lens per inspector (two in one would write the same panels)
    ins, _ = inspector([with_corr], model)
    ins2, _ = inspector([without], twin)
    x, y = batch(torch.Generator().manual_seed(0))
    nn.functional.cross_entropy(model(x), y).backward()
    nn.functional.cross_entropy(twin(x), y).backward()
    assert with_corr.bytes_held() == 2 * sum(p.numel() * 4 for p in model.parameters())
    assert without.bytes_held() == 0
    ins.tick_epoch()
    ins2.tick_epoch()


def test_correlation_panels_are_drawn_on_minus_one_to_one_and_norms_on_log_scale_when_asked(tmp_path):
    model = nn.Sequential(nn.Linear(4, 3))
    ins = PyTorchInspector([ParameterGradientGeometry(log_scale=True), OutputGradientGeometry()], visualizer="none")
    with _quiet():
        ins.attach(model)
    x, y = batch(torch.Generator().manual_seed(0))
    nn.functional.cross_entropy(model(x), y).backward()
    ins.tick_epoch()
    run = ins.history.runs[-1]
    assert run.panel("Weight Gradient Correlation").ylim == [-1.0, 1.0]
    assert run.panel("Output Gradient Correlation").ylim == [-1.0, 1.0]
    assert run.panel("Weight Gradient Norm").logy and run.panel("Weight Gradient Norm").ylim is None
    assert not run.panel("Output Gradient Norm").logy
    # the fixed range travels in saved histories
    path = tmp_path / "history.json"
    ins.save(path)
    loaded = monitorch_widget.load(path).runs[-1]
    assert loaded.panel("Weight Gradient Correlation").ylim == [-1.0, 1.0]
    assert loaded.panel("Weight Gradient Norm").ylim is None


@pytest.mark.parametrize("make, error, match", [
    (lambda: ParameterUpdateGeometry("adam"), TypeError, "torch.optim.Optimizer"),
    (lambda: ParameterUpdateGeometry(None, log_scale="yes"), TypeError, "log_scale= must be True or False"),
    (lambda: OutputGradientGeometry(line_aggregation="avg"), ValueError, "unknown aggregation 'avg'"),
    (lambda: OutputGradientGeometry(line_aggregation=[]), ValueError, "at least one aggregation"),
    (lambda: ParameterGradientGeometry(range_aggregation="iqr"), ValueError, "range_aggregation"),
    (lambda: ParameterGradientGeometry(parameters=[]), TypeError, "parameters= must be"),
    (lambda: ParameterNorm(aggregation_method=["mean"]), TypeError, "aggregation_method= must be one"),
    (lambda: ParameterNorm(parameters=["weight", "weight"]), ValueError, "twice"),
])
def test_bad_arguments_raise_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_no_matching_parameter_fails_at_attach_and_leaves_no_hook():
    model = nn.Sequential(nn.Linear(4, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ins = PyTorchInspector([ParameterUpdateGeometry(opt, parameters=["gamma"])], visualizer="none")
    with pytest.raises(ValueError, match="no module of the model has a parameter matching gamma"):
        ins.attach(model)
    assert not opt._optimizer_step_pre_hooks


# --- lifecycle: inactive epochs, skipped steps, lazy parameters, provisional refreshes ----------------------

def test_update_geometry_skips_steps_gradscaler_skips_and_inactive_epochs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 4)
    rec = Recorder()
    ins = PyTorchInspector([ParameterUpdateGeometry(opt, parameters=["weight"], compute_correlation=False)],
                           visualizer=rec, is_active_fn=2)  # epoch 1 inactive, epoch 2 recorded
    with _quiet():
        ins.attach(model)
    g = torch.Generator().manual_seed(7)
    for _epoch in (1, 2):
        norms = []
        for step in range(4):
            before = model[0].weight.detach().clone()
            x, y = batch(g)
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y) * (float("inf") if step == 1 else 1.0)
            scaler.scale(loss).backward()
            scaler.step(opt)  # step 1: inf gradients, the step is skipped (no hooks fire)
            scaler.update()
            change = model[0].weight.detach() - before
            if step != 1:
                norms.append(float(change.norm()))
            else:
                assert float(change.norm()) == 0
        ins.tick_epoch()
    assert not any(k[0] == 1 for k in rec.values)
    assert rec.values[(2, "Weight Update Norm", "0", "mean")] == pytest.approx(np.mean(norms), rel=1e-5)
    assert rec.values[(2, "Weight Update Norm", "0", ("min", "max"))] == pytest.approx((min(norms), max(norms)),
                                                                                     rel=1e-5)


def test_lazy_parameters_are_watched_once_materialised():
    torch.manual_seed(0)
    model = nn.Sequential(nn.LazyLinear(3))
    lenses = [ParameterNorm(parameters=["weight"]), ParameterGradientGeometry(parameters=["weight"])]
    ins, rec = inspector(lenses, model)
    x, y = batch(torch.Generator().manual_seed(8))
    nn.functional.cross_entropy(model(x), y).backward()
    grad = model[0].weight.grad.detach().clone()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    ins.tick_epoch()
    assert rec.values[(1, "Weight Norm", "0", "mean")] == pytest.approx(float(model[0].weight.detach().norm()), rel=1e-6)
    assert rec.values[(1, "Weight Gradient Norm", "0", "mean")] == pytest.approx(float(grad.norm()), rel=1e-6)


def test_provisional_refreshes_leave_the_epoch_values_unchanged():
    def run(every):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        lenses = [OutputGradientGeometry(), ParameterGradientGeometry(), ParameterNorm(),
                  ParameterUpdateGeometry(opt)]
        rec = Recorder()
        ins = PyTorchInspector(lenses, visualizer=rec, update_every=every)
        with _quiet():
            ins.attach(model)
        ins.history.subscribe(lambda ev: provisional.append(ev) if ev[0] == "row" and ev[2]["provisional"] else None)
        g = torch.Generator().manual_seed(9)
        for _ in range(2):
            for _ in range(5):
                x, y = batch(g)
                opt.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
            ins.tick_epoch()
        return rec.values

    provisional: list = []
    plain = run(None)
    assert not provisional
    refreshed = run(2)
    assert len(provisional) >= 4  # refreshes did run mid-epoch
    assert plain.keys() == refreshed.keys() and len(plain) > 40
    for key, value in plain.items():
        assert refreshed[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key


def test_parameter_lenses_survive_regrouping_stop_resume_and_a_dtype_change():
    """Stopping one module, resuming it, and model.double() after attach rebuild the parameter groups: the
    norms keep equal the parameters' own (a lens without buffers once died here with an IndexError), and the
    update norms after the dtype change equal the float64 updates by hand."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ins, rec = inspector([ParameterNorm(), ParameterUpdateGeometry(opt, compute_correlation=False)], model)
    g = torch.Generator().manual_seed(3)
    dtype = torch.float32

    def epoch():
        norms = []
        for _ in range(3):
            before = model[2].weight.detach().clone()
            x, y = torch.randn(8, 6, generator=g).to(dtype), torch.randint(0, 2, (8,), generator=g)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            norms.append(float((model[2].weight.detach() - before).norm()))
        return norms

    with warnings.catch_warnings():
        warnings.simplefilter("error", MonitorWarning)
        epoch()
        ins.tick_epoch()
        ins.stop_recording("2")
        epoch()
        ins.tick_epoch()
        ins.resume_recording("2")
        epoch()
        ins.tick_epoch()
        model.double()
        dtype = torch.float64
        norms = epoch()
        ins.tick_epoch()
    for e in (1, 2, 3, 4):
        assert (e, "Weight Norm", "0", "mean") in rec.values  # module 0 was never stopped
    assert (2, "Weight Norm", "2", "mean") not in rec.values
    assert rec.values[(4, "Weight Norm", "0", "mean")] == pytest.approx(float(model[0].weight.detach().norm()),
                                                                       rel=1e-6)
    assert rec.values[(4, "Weight Norm", "2", "mean")] == pytest.approx(float(model[2].weight.detach().norm()),
                                                                       rel=1e-6)
    assert rec.values[(4, "Weight Update Norm", "2", "mean")] == pytest.approx(np.mean(norms), rel=1e-6)


def test_a_parameter_whose_data_is_reassigned_is_read_from_its_new_tensor():
    """``param.data = new_tensor`` (a re-initialisation; resize_token_embeddings does it) keeps the Parameter but
    not its tensor: norms and updates must follow (they froze at the old tensor, updates read 0)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ins, rec = inspector([ParameterNorm(), ParameterUpdateGeometry(opt, compute_correlation=False)], model)
    g = torch.Generator().manual_seed(1)
    for epoch in (1, 2):
        if epoch == 2:
            model[0].weight.data = torch.full((8, 6), 0.5)
        updates = []
        for _ in range(2):
            x, y = torch.randn(4, 6, generator=g), torch.randint(0, 2, (4,), generator=g)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            before = model[0].weight.detach().clone()
            opt.step()
            updates.append(float((model[0].weight.detach() - before).norm()))
        ins.tick_epoch()
        assert rec.values[(epoch, "Weight Norm", "0", "mean")] == pytest.approx(
            float(model[0].weight.detach().norm()), rel=1e-6)
        assert rec.values[(epoch, "Weight Update Norm", "0", "mean")] == pytest.approx(np.mean(updates), rel=1e-5)


def test_output_gradient_of_an_rnn_fed_packed_sequences_is_its_packed_data_gradient():
    """An RNN fed a PackedSequence returns (PackedSequence, h): the gradient read is that of the packed data
    [total length, hidden], by hand below (a plain tensor hook on the same tensor)."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(4, 5, batch_first=True)
            self.head = nn.Linear(5, 2)

        def forward(self, x, lengths):
            packed, _ = self.gru(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
            return self.head(pad_packed_sequence(packed, batch_first=True)[0]).sum()

    torch.manual_seed(0)
    model = Tagger()
    ins, rec = inspector([OutputGradientGeometry()], model)
    grads = []
    def keep(module, args, out):
        out[0].data.register_hook(lambda g: grads.append(g.clone()))  # (a forward hook returning None)

    model.gru.register_forward_hook(keep)
    g = torch.Generator().manual_seed(6)
    for _ in range(3):
        lengths = torch.tensor([5, 3, 2])
        model(torch.randn(3, 5, 4, generator=g), lengths).backward()
    ins.tick_epoch()
    assert len(grads) == 3 and grads[0].shape == (10, 5)
    assert rec.values[(1, "Output Gradient Norm", "gru", "mean")] == \
        pytest.approx(np.mean([float(t.norm()) for t in grads]), rel=1e-5)
    assert rec.values[(1, "Output Gradient Correlation", "gru", "mean")] == \
        pytest.approx(np.mean(correlations(grads)), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("evaluated", [False, True], ids=["", "evaluated"])
def test_a_module_whose_output_gets_no_gradient_is_named_once(evaluated):
    """A GRU classifier that reads its last hidden state h_n: the output sequence (what is read, as monitorch's
    grad_output[0]) gets no gradient, its series stays empty, and a notice says why; the head's norm is by hand.
    ``evaluated``: is_active_fn=lambda _: model.training and an evaluation pass before the tick, which leave the
    hooks off at the tick (trial r10: the notice was lost)."""

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(4, 5, batch_first=True)
            self.head = nn.Linear(5, 2)

        def forward(self, x):
            _, h = self.rnn(x)
            return self.head(h[-1])

    torch.manual_seed(0)
    model = Classifier()
    if evaluated:
        rec = Recorder()
        ins = PyTorchInspector([OutputGradientGeometry()], visualizer=rec, is_active_fn=lambda _: model.training)
        with _quiet():
            ins.attach(model)
    else:
        ins, rec = inspector([OutputGradientGeometry()], model)
    grads = []
    model.head.register_forward_hook(
        lambda m, a, out: out.register_hook(lambda g: grads.append(g.clone())) and None if out.requires_grad else None)
    g = torch.Generator().manual_seed(8)
    for _ in range(2):
        x, y = torch.randn(3, 6, 4, generator=g), torch.randint(0, 2, (3,), generator=g)
        nn.functional.cross_entropy(model(x), y).backward()
    if evaluated:
        model.eval()
        with torch.no_grad():
            model(torch.randn(3, 6, 4))
        model.train()
    with pytest.warns(MonitorNotice, match=r"1 module\(s\) never received a gradient for their \(first\) output.*"
                      r"'rnn'.*h_n"):
        ins.tick_epoch()
    assert rec.values[(1, "Output Gradient Norm", "head", "mean")] == \
        pytest.approx(np.mean([float(t.norm()) for t in grads]), rel=1e-5)
    assert (1, "Output Gradient Norm", "rnn", "mean") not in rec.values or \
        math.isnan(rec.values[(1, "Output Gradient Norm", "rnn", "mean")])
