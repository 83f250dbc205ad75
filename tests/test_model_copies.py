"""A copy or a pickle of a watched model (or of its optimizer) takes none of the monitor's hooks.

Found on real notebooks: ``best = copy.deepcopy(model)`` (early stopping) raised ipywidgets'
``NotImplementedError: Widgets cannot be copied`` once the live widget was built, and ``torch.save(model)``
raised ``Can't pickle local object``: the model's hook dicts reach the whole monitor. Now every hook copies and
pickles as a no-op (as torch drops a parameter's backward hooks when it pickles it): the copy trains unwatched and
the original's values stay those of the original's batches alone, checked here against hand values.
"""

from __future__ import annotations

import copy
import io
import pickle
import warnings

import numpy as np
import pytest
import torch
from helpers import rates_by_hand
from torch import nn

import monitorch_widget as mw
from monitorch_widget.collect.held_hooks import _count_copy_pass, ignore
from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation, ParameterUpdateGeometry

OA = "Output Activations"


def _model() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def _module_hooks(model: nn.Module) -> list:
    return [h for m in model.modules() for d in (m._forward_hooks, m._forward_pre_hooks) for h in d.values()]


def _watched(visualizer: str = "none"):
    torch.manual_seed(0)
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    lenses = [LossMetrics(loss_fn=loss_fn), OutputActivation(), ParameterGradientActivation(),
              ParameterUpdateGeometry(opt)]
    ins = mw.PyTorchInspector(lenses, visualizer=visualizer, module=model)
    return model, opt, loss_fn, ins


def _step(model, opt, loss_fn, x, y) -> float:
    opt.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    return float(loss.detach())


def test_deepcopy_with_the_widget_built_trains_unwatched_and_the_original_keeps_its_values():
    model, opt, loss_fn, ins = _watched("widget")
    assert ins.widget is not None  # the live widget exists: a copy reaching it raised NotImplementedError
    gen = torch.Generator().manual_seed(1)
    losses, acts = [], []
    for step in range(4):
        x, y = torch.randn(8, 4, generator=gen), torch.randint(0, 3, (8,), generator=gen)
        if step == 2:  # the early-stopping copy, mid-epoch
            best = copy.deepcopy(model)
            best_opt = torch.optim.SGD(best.parameters(), lr=0.1)
            # every hook a no-op, but the root pre-hook, which counts the copy's passes (its losses are its own)
            assert _module_hooks(best) and all(h is ignore for h in _module_hooks(best) if h is not _count_copy_pass)
            assert list(best._forward_pre_hooks.values()).count(_count_copy_pass) == 1
            assert all(not p._post_accumulate_grad_hooks for p in best.parameters())
            for _ in range(3):  # the copy trains on other data (its own loss module: the watched one records
                # every call, whichever model made its input)
                _step(best, best_opt, nn.CrossEntropyLoss(), 100 * torch.randn(8, 4, generator=gen), torch.zeros(8, dtype=torch.long))
        acts.append(rates_by_hand(model[1](model[0](x)).detach().numpy()))
        losses.append(_step(model, opt, loss_fn, x, y))
    ins.tick_epoch()
    h = ins.history
    assert h.series("Loss", "Loss", "train_loss mean")[-1] == pytest.approx(np.mean(losses), rel=1e-6)
    assert h.series(OA, "1", "activation_rate")[-1] == pytest.approx(np.mean([a[0] for a in acts]), rel=1e-6)
    ins.detach()


def test_torch_save_of_the_model_and_the_loss_module_round_trips_without_the_monitor():
    model, opt, loss_fn, ins = _watched()
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    losses = [_step(model, opt, loss_fn, x, y)]
    for obj in (model, loss_fn):
        buf = io.BytesIO()
        torch.save(obj, buf)
        buf.seek(0)
        loaded = torch.load(buf, weights_only=False)
        assert _module_hooks(loaded) and all(h in (ignore, _count_copy_pass) for h in _module_hooks(loaded))
    assert all(h in (ignore, _count_copy_pass) for h in _module_hooks(pickle.loads(pickle.dumps(model))))
    with torch.no_grad():
        assert float(loaded(model(x), y)) == pytest.approx(float(nn.CrossEntropyLoss()(model(x), y)))
    losses.append(_step(model, opt, loss_fn, x, y))  # the original is still watched
    ins.tick_epoch()
    assert ins.history.series("Loss", "Loss", "train_loss mean")[-1] == pytest.approx(np.mean(losses), rel=1e-6)
    ins.detach()


def _copy_epochs(model, opt, loss_fn, copy_loss_fn, ins, gen):
    """Two epochs: three training steps, a best-checkpoint copy trained two steps and evaluated next to the model
    on two validation batches, scoring with ``copy_loss_fn``; returns the watched model's own losses."""
    train, val = [], []
    for _ in range(2):
        model.train()
        for _ in range(3):
            x, y = torch.randn(8, 4, generator=gen), torch.randint(0, 3, (8,), generator=gen)
            train.append(_step(model, opt, loss_fn, x, y))
        best = copy.deepcopy(model)
        best_opt = torch.optim.SGD(best.parameters(), lr=0.1)
        for _ in range(2):
            xb, yb = torch.randn(8, 4, generator=gen), torch.randint(0, 3, (8,), generator=gen)
            _step(best, best_opt, copy_loss_fn, xb, yb)
        model.eval()
        best.eval()
        with torch.no_grad():
            for _ in range(2):
                xv, yv = torch.randn(8, 4, generator=gen), torch.randint(0, 3, (8,), generator=gen)
                val.append(float(loss_fn(model(xv), yv)))
                copy_loss_fn(best(xv), yv)
        ins.tick_epoch()
    return train, val


def test_a_copy_scored_with_the_shared_criterion_is_named_once_and_its_own_criterion_keeps_the_values_apart():
    """Trial r8: the loss module is shared with the copy (the best-checkpoint copy evaluated with the same
    criterion), so the copy's losses went into the original's Loss panel (val_loss 2.31430 where the original's
    own was 2.31276), silently. A loss hook cannot tell whose output it scores (counting stays monitorch's: every
    call); a call after a copy's pass with no pass of the watched model in between is now named once with the
    remedy, and with the remedy (the copy's own criterion) the values are the original's alone, by hand."""
    model, opt, loss_fn, ins = _watched()
    with pytest.warns(mw.MonitorNotice, match="copy of the watched model") as caught:
        _copy_epochs(model, opt, loss_fn, loss_fn, ins, torch.Generator().manual_seed(3))
    said = [str(w.message) for w in caught if "copy of the watched model" in str(w.message)]
    assert len(said) == 1 and "copy.deepcopy(loss_fn)" in said[0]
    ins.detach()
    model, opt, loss_fn, ins = _watched()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train, val = _copy_epochs(model, opt, loss_fn, copy.deepcopy(loss_fn), ins, torch.Generator().manual_seed(3))
    assert not [w for w in caught if "copy of the watched model" in str(w.message)]
    h = ins.history
    np.testing.assert_allclose(h.series("Loss", "Loss", "train_loss mean"), [np.mean(train[:3]), np.mean(train[3:])],
                               rtol=1e-6)
    np.testing.assert_allclose(h.series("Loss", "Loss", "val_loss mean"), [np.mean(val[:2]), np.mean(val[2:])],
                               rtol=1e-6)
    ins.detach()


def test_a_teacher_copy_run_between_the_student_s_pass_and_its_losses_is_not_named():
    """A mean teacher (an EMA copy) runs between the student's forward pass and its losses (several per pass, as
    FixMatch's): every loss counts and nothing is said, since the watched model ran since the last call."""
    model, opt, loss_fn, ins = _watched()
    teacher = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(4)
    losses = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(4):
            x, y = torch.randn(8, 4, generator=gen), torch.randint(0, 3, (8,), generator=gen)
            opt.zero_grad()
            out = model(x)
            with torch.no_grad():
                pseudo = teacher(x).argmax(1)
            task = loss_fn(out, y)
            consistency = loss_fn(out, pseudo)  # a second loss of the same pass, after the teacher's pass
            (task + consistency).backward()
            opt.step()
            losses += [float(task), float(consistency)]
        ins.tick_epoch()
    assert not [w for w in caught if "copy of the watched model" in str(w.message)]
    assert ins.history.series("Loss", "Loss", "train_loss mean")[-1] == pytest.approx(np.mean(losses), rel=1e-6)
    ins.detach()
