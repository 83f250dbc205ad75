"""Each health check fires on a realistic trigger, with the value computed independently by hand.

Gradient-norm and update checks are driven by monitorch's own lenses (PyPI ``monitorch``) feeding our record
through ``WidgetVisualizer``: the same tags and keys our ParameterGradientGeometry / ParameterNorm /
ParameterUpdateGeometry lenses give (``record/health/rows.py``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("monitorch", reason="monitorch (optional extra) is not installed")
from monitorch.inspector import PyTorchInspector as MonitorchInspector
from monitorch.lens import LossMetrics as MonitorchLoss
from monitorch.lens import ParameterGradientGeometry, ParameterNorm, ParameterUpdateGeometry
from torch import nn

from monitorch_widget import MonitorWarning, PyTorchInspector
from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation
from monitorch_widget.views.monitorch_adapter import WidgetVisualizer


def regression(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(256, 10, generator=gen)
    return X, X @ torch.randn(10, 1, generator=gen)


def by_check(findings, check):
    return {f.layer: f for f in findings if f.check == check}


def train_epochs(model, opt, X, y, ins, epochs: int) -> None:
    """``epochs`` epochs of mean-squared-error steps on batches of 32, each ended by ``ins.tick_epoch()``."""
    for _ in range(epochs):
        for i in range(0, len(X), 32):
            opt.zero_grad()
            nn.functional.mse_loss(model(X[i:i + 32]), y[i:i + 32]).backward()
            opt.step()
        ins.tick_epoch()


def last_streak_start(holds: list[bool]) -> int:
    """The epoch (1-based) from which ``holds`` is true up to the end."""
    start = len(holds)
    while start > 0 and holds[start - 1]:
        start -= 1
    return start + 1


def test_learning_rate_far_too_high_diverges_and_flags_the_update_ratio():
    X, y = regression()
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.35)  # stable up to ~0.25 on this problem
    loss_fn = nn.MSELoss()
    vis = WidgetVisualizer()
    ins = MonitorchInspector([MonitorchLoss(loss_fn=loss_fn), ParameterNorm(), ParameterUpdateGeometry(opt)],
                             module=model, visualizer=vis)
    steps: dict[str, list[float]] = {"0": [], "2": []}
    weights: dict[str, float] = {}
    losses = []
    for _ in range(8):
        batch_losses = []
        for i in range(0, 256, 32):
            before = {k: model[int(k)].weight.detach().clone() for k in steps}
            opt.zero_grad()
            loss = loss_fn(model(X[i:i + 32]), y[i:i + 32])
            loss.backward()
            opt.step()
            batch_losses.append(loss.item())
            for k in steps:
                steps[k].append(float((model[int(k)].weight.detach() - before[k]).norm()))
        losses.append(np.mean(batch_losses))
        weights = {k: float(model[int(k)].weight.detach().norm()) for k in steps}
        last_steps = {k: float(np.mean(v[-8:])) for k, v in steps.items()}
        ins.tick_epoch()
    ins.detach()
    findings = vis.record.health.findings()

    # divergence: first epoch whose loss is >= 1.5x the best before it, by hand
    first_bad = next(e for e in range(1, 8) if losses[e] >= 1.5 * min(losses[:e]))
    div = by_check(findings, "divergence")[None]
    assert div.severity == "critical" and div.since == first_bad + 1, ([float(v) for v in losses], div.since)

    # update ratio: mean per-step ||dW|| of the last epoch over ||W|| at its end, by hand; far above 1e-1
    ratios = by_check(findings, "update_ratio")
    for layer in ("0", "2"):
        hand = last_steps[layer] / weights[layer]
        assert hand > 0.1
        assert ratios[layer].severity == "warning" and ratios[layer].active
        assert ratios[layer].value == pytest.approx(hand, rel=1e-4)
        assert "too high" in ratios[layer].message


def test_learning_rate_far_too_low_is_noted_as_info():
    X, y = regression()
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-7)
    vis = WidgetVisualizer()
    ins = MonitorchInspector([ParameterNorm(), ParameterUpdateGeometry(opt)], module=model, visualizer=vis)
    w0 = model[0].weight.detach().clone()
    train_epochs(model, opt, X, y, ins, 2)
    ins.detach()
    per_step = float((model[0].weight.detach() - w0).norm()) / 16 / float(model[0].weight.detach().norm())
    assert per_step < 1e-5
    low = by_check(vis.record.health.findings(), "update_ratio")
    assert set(low) == {"0", "2"} and all(f.severity == "info" and "too low" in f.message for f in low.values())


def deep_sigmoid_net(depth: int = 10, width: int = 32) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.Sigmoid()]
    return nn.Sequential(*layers, nn.Linear(width, 2))


def test_deep_sigmoid_network_has_vanishing_gradients_in_its_first_layers():
    torch.manual_seed(0)
    X = torch.randn(256, 32)
    y = (X[:, 0] > 0).long()
    model = deep_sigmoid_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    vis = WidgetVisualizer()
    ins = MonitorchInspector([ParameterGradientGeometry()], module=model, visualizer=vis)
    for _ in range(3):
        for i in range(0, 256, 32):
            opt.zero_grad()
            nn.functional.cross_entropy(model(X[i:i + 32]), y[i:i + 32]).backward()
            opt.step()
        ins.tick_epoch()
    ins.detach()
    # by hand on one batch: per-layer weight-gradient norms, relative to the largest
    opt.zero_grad()
    nn.functional.cross_entropy(model(X[:32]), y[:32]).backward()
    linears = {str(i): m for i, m in enumerate(model) if isinstance(m, nn.Linear)}
    norms = {k: float(m.weight.grad.norm()) for k, m in linears.items()}
    top = max(norms.values())
    vanishing = by_check(vis.record.health.findings(), "vanishing_gradient")
    assert norms["0"] / top < 1e-3 and "0" in vanishing
    assert vanishing["0"].since == 1  # held from the first epoch (raised once held for two)
    assert "before any clipping" in vanishing["0"].message  # monitorch's lens reads at backward
    last = str(len(model) - 1)
    assert norms[last] / top > 1e-3 and last not in vanishing


def test_a_corrupt_batch_makes_the_gradient_norm_jump_even_when_clipped():
    X, y = regression()
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    vis = WidgetVisualizer()
    ins = MonitorchInspector([ParameterGradientGeometry()], module=model, visualizer=vis)
    pre_clip = []
    for epoch in range(5):
        target = y * (1000.0 if epoch == 4 else 1.0)  # epoch 5: labels in the wrong unit
        norms = []
        for i in range(0, 256, 32):
            opt.zero_grad()
            nn.functional.mse_loss(model(X[i:i + 32]), target[i:i + 32]).backward()
            norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)))
            opt.step()
        pre_clip.append(np.mean(norms))
        ins.tick_epoch()
    ins.detach()
    assert pre_clip[4] > 10 * np.median(pre_clip[1:4])
    jumps = by_check(vis.record.health.findings(), "exploding_gradient")
    assert set(jumps) == {"0", "2"}
    for f in jumps.values():
        assert f.severity == "critical" and f.since == 5 and "before any clipping" in f.message


class TwoBranches(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
        self.b = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
        self.head = nn.Linear(16, 2)
        self.poison = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.a(x), self.b(x)], dim=1))


def test_a_nan_injected_in_one_branch_is_found_there_and_resolves():
    torch.manual_seed(0)
    model = TwoBranches()
    loss_fn = nn.CrossEntropyLoss()
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn), OutputActivation(), ParameterGradientActivation()],
                           visualizer="none")
    ins.attach(model)
    # in epoch 2, branch b's ReLU output turns NaN (as after an overflow in that branch)
    handle = model.b[1].register_forward_hook(
        lambda m, a, out: out * torch.tensor(float("nan")) if model.poison else None, prepend=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.warns(MonitorWarning) as caught:
        for epoch in range(3):
            model.poison = epoch == 1
            for _ in range(4):
                opt.zero_grad()
                loss = loss_fn(model(torch.randn(16, 4)), torch.randint(0, 2, (16,)))
                loss.backward()
                if torch.isfinite(loss):
                    opt.step()
            ins.tick_epoch()
    handle.remove()
    assert any("NaN/Inf" in str(w.message) for w in caught)
    nonfinite = by_check(ins.health.findings(), "nonfinite")
    assert "b.1" in nonfinite and "a.1" not in nonfinite  # the branch, not its sibling
    assert None in nonfinite  # the loss
    for f in nonfinite.values():
        assert f.severity == "critical" and f.since == 2 and f.until == 3  # resolved once the NaN stopped
    assert ins.findings == [f for f in ins.health.findings() if f.active]


class ProbabilityNLL(nn.Module):
    """Log loss on a softmax output layer (the seed's models end in nn.Softmax)."""

    def forward(self, probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.nll_loss(torch.log(probs.clamp_min(1e-30)), target)


def memorise_random_labels(epochs: int, lr: float, softmax: bool):
    """A wide MLP learning 64 random labels (nothing to generalise): it memorises them."""
    gen = torch.Generator().manual_seed(0)
    Xt, yt = torch.randn(64, 20, generator=gen), torch.randint(0, 4, (64,), generator=gen)
    Xv, yv = torch.randn(64, 20, generator=gen), torch.randint(0, 4, (64,), generator=gen)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 128), nn.ReLU(), nn.Linear(128, 4), *([nn.Softmax(dim=1)] if softmax else []))
    loss_fn = ProbabilityNLL() if softmax else nn.CrossEntropyLoss()
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn, separate_loss_and_metrics=False, metrics=["val_accuracy"]),
                            OutputActivation()], visualizer="none")
    ins.attach(model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    train_losses, val_losses, accs = [], [], []
    for _ in range(epochs):
        opt.zero_grad()
        loss = loss_fn(model(Xt), yt)
        loss.backward()
        opt.step()
        train_losses.append(loss.item())
        with torch.no_grad():
            pred = model(Xv)
            val_losses.append(loss_fn(pred, yv).item())
            accs.append((pred.argmax(1) == yv).float().mean().item())
        ins.push_metric("val_accuracy", accs[-1])
        ins.tick_epoch()
    return ins, model, train_losses, val_losses, accs


def test_memorising_random_labels_is_overfitting_by_prechelts_gl():
    ins, _, train, val, _ = memorise_random_labels(30, 1e-2, softmax=False)
    # by hand: GL(t) = 100 (val_t / min_{s<=t} val_s - 1) > 5 while train_t < train at the best val epoch
    best = [int(np.argmin(val[: t + 1])) for t in range(30)]
    holds = [100 * (val[t] / val[best[t]] - 1) > 5 and train[t] < train[best[t]] for t in range(30)]
    assert holds[-1]
    f = by_check(ins.health.findings(), "overfitting")[None]
    assert f.severity == "warning" and f.active and f.since == last_streak_start(holds)
    assert f.value == pytest.approx(100 * (val[-1] / val[best[-1]] - 1), rel=1e-4)


def test_confident_softmax_with_low_validation_accuracy():
    ins, model, _, _, accs = memorise_random_labels(60, 5e-2, softmax=True)
    assert accs[-1] < 0.9
    f = by_check(ins.health.findings(), "confident_softmax")["3"]
    # by hand: the share of softmax outputs above 1e-8 on the (whole-batch) training pass, vs epoch 1's
    gen = torch.Generator().manual_seed(0)
    Xt = torch.randn(64, 20, generator=gen)
    with torch.no_grad():
        rate_now = float((model(Xt) > 1e-8).float().mean())
    rates = ins.history.series("Output Activations", "3", "activation_rate")
    assert rates[0] == 1.0 and rate_now <= 0.5
    assert f.value == rates[-1] and f.value <= 0.5 * rates[0] and f.active
    holds = [bool(rates[t] <= 0.5 * rates[0] and accs[t] < 0.9) for t in range(60)]
    assert f.since == last_streak_start(holds)


def test_a_learning_rate_far_too_low_plateaus_as_reduce_lr_on_plateau_would_see_it():
    X, y = regression()
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))
    loss_fn = nn.MSELoss()
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn)], visualizer="none")
    ins.attach(model)
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)  # the source of the defaults, side by side
    for epoch in range(13):
        opt.zero_grad()
        loss = loss_fn(model(X), y)
        loss.backward()
        opt.step()
        ins.tick_epoch()
        scheduler.step(loss.item())
        plateau = by_check(ins.health.findings(), "plateau")
        reduced = opt.param_groups[0]["lr"] < 1e-6
        assert bool(plateau) == reduced, (epoch, plateau, reduced)
    assert plateau[None].since == 2 and plateau[None].severity == "info"


def test_a_too_strong_sparsity_penalty_kills_units_while_the_loss_stalls():
    import seed_models as seed

    loss_fn = nn.CrossEntropyLoss()
    ins = PyTorchInspector([LossMetrics(loss_fn=loss_fn), OutputActivation()], visualizer="none")
    model, train, _ = seed.quickstart()
    ins.attach(model)
    hidden: dict[str, torch.Tensor] = {}
    model[3].register_forward_hook(lambda m, a, out: hidden.__setitem__("h", out))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    deaths, losses = [], []
    for _ in range(8):
        batch_deaths, batch_losses = [], []
        for x, y in train:
            opt.zero_grad()
            task = loss_fn(model(x), y)
            (task + 0.15 * hidden["h"].abs().mean()).backward()  # L1 activity penalty on the second ReLU
            opt.step()
            batch_losses.append(task.item())
            batch_deaths.append(float((hidden["h"].detach().abs() <= 1e-8).all(dim=0).float().mean()))
        deaths.append(np.mean(batch_deaths))
        losses.append(np.mean(batch_losses))
        ins.tick_epoch()
    trend = by_check(ins.health.findings(), "dying_trend")
    assert set(trend) == {"3"}  # the penalised layer, not the first ReLU
    f = trend["3"]
    w = int(f.since) - 1  # the window's first epoch (0-based)
    assert deaths[w + 4] - deaths[w] >= 0.1 and (losses[w] - losses[w + 4]) / losses[w] < 0.01
    # while it holds, the value follows the latest epoch's death rate (the record's, equal to ours by hand)
    latest = len(deaths) - 1 if f.active else int(f.until) - 2
    assert f.value == pytest.approx(deaths[latest], abs=1e-6)


def test_our_own_geometry_lenses_trigger_the_same_gradient_and_update_findings():
    """The checks read monitorch's tags and keys: our lenses give them too (same workload as above)."""
    from monitorch_widget.lens import ParameterGradientGeometry as OurGradientGeometry
    from monitorch_widget.lens import ParameterNorm as OurNorm
    from monitorch_widget.lens import ParameterUpdateGeometry as OurUpdateGeometry

    X, y = regression()
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.35)
    ins = PyTorchInspector([OurNorm(), OurUpdateGeometry(opt)], module=model, visualizer="none")
    steps: list[float] = []
    for _ in range(4):
        for i in range(0, 256, 32):
            before = model[0].weight.detach().clone()
            opt.zero_grad()
            nn.functional.mse_loss(model(X[i:i + 32]), y[i:i + 32]).backward()
            opt.step()
            # our lens: per step, against the weights before the step (README "Health checks")
            steps.append(float((model[0].weight.detach() - before).norm() / before.norm()))
        ins.tick_epoch()
    ratio = by_check(ins.findings, "update_ratio")["0"]
    assert ratio.value == pytest.approx(np.mean(steps[-8:]), rel=1e-4)
    assert ratio.tag == "Weight Update Ratio"

    torch.manual_seed(0)
    Xs = torch.randn(256, 32)
    ys = (Xs[:, 0] > 0).long()
    deep = deep_sigmoid_net()
    opt = torch.optim.SGD(deep.parameters(), lr=0.1)
    ins = PyTorchInspector([OurGradientGeometry()], module=deep, visualizer="none")
    for _ in range(3):
        for i in range(0, 256, 32):
            opt.zero_grad()
            nn.functional.cross_entropy(deep(Xs[i:i + 32]), ys[i:i + 32]).backward()
            opt.step()
        ins.tick_epoch()
    vanishing = by_check(ins.findings, "vanishing_gradient")
    assert "0" in vanishing and str(len(deep) - 1) not in vanishing
    assert "after clipping if any" in vanishing["0"].message  # no clipping is claimed: none is detected
    # the model's activations are sigmoids: the advice names them (Run.module_types)
    assert "saturating activations (Sigmoid: layers '1', '3', '5' and 7 more)" in vanishing["0"].advice


def test_weights_that_do_not_move_are_named_as_such_not_as_a_low_learning_rate():
    """A layer whose parameter group has lr 0 (or whose gradients are all zero) has an update ratio of exactly 0:
    the finding says its weights did not move and what to check, not "raise the learning rate"."""
    X, y = regression()
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))
    opt = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.01},
                           {"params": model[2].parameters(), "lr": 0.0}])
    from monitorch_widget.lens import ParameterNorm as OurNorm
    from monitorch_widget.lens import ParameterUpdateGeometry as OurUpdates

    ins = PyTorchInspector([OurNorm(), OurUpdates(opt)], visualizer="none", module=model)
    frozen = model[2].weight.detach().clone()
    train_epochs(model, opt, X, y, ins, 2)
    assert torch.equal(model[2].weight, frozen)  # by hand: lr 0 left it where it was
    ratios = by_check(ins.findings, "update_ratio")
    assert ratios["2"].severity == "warning" and ratios["2"].value == 0.0
    assert "did not move" in ratios["2"].message and "learning rate may be too low" not in ratios["2"].message
    assert "0" not in ratios or "did not move" not in ratios["0"].message
    ins.detach()
