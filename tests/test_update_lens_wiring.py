"""ParameterUpdateGeometry's optimizer wiring (trial r5, findings 3, 4, 12).

- ``ParameterUpdateGeometry(None)``, the only form a Lightning / Hugging Face user can write (the optimizer is made
  inside ``fit`` / ``train``), recorded nothing and said nothing: the callbacks now hand the Trainer's optimizer
  to the lens, and a hand-written loop that never calls ``inspect_update()`` is told so once.
- Watched parameters that require grad but the lens's optimizer does not hold (no optimizer trains them, or
  another one does) are named once instead of leaving silent all-NaN series.
- A wrapper that never ran ``Optimizer.__init__`` (timm's Lookahead) raised ``AttributeError:
  '_optimizer_step_pre_hooks'`` at attach: the lens constructor now says what to pass instead.

Expected update norms are computed with plain torch from the parameters before and after each step.
"""

from __future__ import annotations

import logging
import math
import warnings

import pytest
import torch
from torch import nn

import monitorch_widget as mw
from monitorch_widget import MonitorNotice
from monitorch_widget.lens import LossMetrics, ParameterUpdateGeometry


def _notices(caught) -> list[str]:
    return [str(w.message) for w in caught
            if issubclass(w.category, MonitorNotice) and "[ParameterUpdateGeometry]" in str(w.message)]


NO_STEP = ("monitorch_widget [ParameterUpdateGeometry]: it observed no step: it has no optimizer "
           "(ParameterUpdateGeometry(None)) and inspect_update() was never called, while optimizers updated the "
           "model, so its update series stay empty. Pass the optimizer, ParameterUpdateGeometry(optimizer) or "
           "lens.optimizer = optimizer (the Lightning and Hugging Face callbacks hand over the Trainer's), or call "
           "lens.inspect_update() after each update")


def _loop(model: nn.Module, opt: torch.optim.Optimizer, ins: mw.PyTorchInspector, epochs: int, watch: nn.Parameter,
          steps: int = 3, after_step=None) -> list[list[float]]:
    """Train, tick per epoch; the norms of ``watch``'s update per step, per epoch (by hand)."""
    out = []
    for _ in range(epochs):
        norms = []
        for _ in range(steps):
            before = watch.detach().clone()
            opt.zero_grad()
            model(torch.randn(5, 4)).pow(2).mean().backward()
            opt.step()
            if after_step is not None:
                after_step()
            norms.append(float((watch.detach() - before).norm()))
        out.append(norms)
        ins.tick_epoch()
    return out


# --- a hand-written loop -----------------------------------------------------------------------------------
def test_no_optimizer_and_no_inspect_update_is_said_once_with_the_fix():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ins = mw.PyTorchInspector([ParameterUpdateGeometry(None)], visualizer="none", module=model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ins.tick_epoch()  # a baseline tick before training: no step yet, nothing to say
        assert _notices(caught) == []
        _loop(model, opt, ins, 3, model[0].weight)
    assert _notices(caught) == [NO_STEP]  # at the first tick with steps, and once
    norms = ins.history.series("Weight Update Norm", "0", "mean")
    assert all(math.isnan(v) for v in norms)
    ins.detach()


def test_inspect_update_calls_silence_the_notice_and_are_measured():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    lens = ParameterUpdateGeometry(None, compute_correlation=False)
    ins = mw.PyTorchInspector([lens], visualizer="none", module=model)
    lens.inspect_update()  # the first call takes the snapshot
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hand = _loop(model, opt, ins, 2, model[0].weight, after_step=lens.inspect_update)
    assert _notices(caught) == []
    norms = ins.history.series("Weight Update Norm", "0", "mean")
    assert norms == pytest.approx([sum(e) / len(e) for e in hand], rel=1e-5)
    ins.detach()


def test_watched_parameters_the_optimizer_does_not_hold_are_named_once():
    """'Train the head': the optimizer holds only model.b while model.a still requires grad (no optimizer trains
    it); model.c is frozen on purpose and is not named."""
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("a", nn.Linear(4, 4))
    model.add_module("c", nn.Linear(4, 4))
    model.add_module("b", nn.Linear(4, 4))
    model.c.requires_grad_(False)
    opt = torch.optim.SGD(model.b.parameters(), lr=0.1)
    ins = mw.PyTorchInspector([ParameterUpdateGeometry(opt, compute_correlation=False)], visualizer="none",
                              module=model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hand = _loop(model, opt, ins, 2, model.b.weight)
    assert _notices(caught) == [
        "monitorch_widget [ParameterUpdateGeometry]: 2 watched parameter(s) require grad but its optimizer (SGD) "
        "does not hold them: 'a.weight', 'a.bias'; no step of it updates them, so their update series stay empty. "
        "If another optimizer trains them, the lens watches one optimizer at a time: assign lens.optimizer = "
        "that_optimizer to watch its steps instead (mid-training too); if none does, add them "
        "(optimizer.add_param_group) or freeze them (requires_grad_(False))"]
    h = ins.history
    assert h.series("Weight Update Norm", "b", "mean") == pytest.approx([sum(e) / len(e) for e in hand], rel=1e-5)
    assert all(math.isnan(v) for v in h.series("Weight Update Norm", "a", "mean"))
    ins.detach()


# --- a wrapper that cannot be hooked (timm's Lookahead) --------------------------------------------------------
class Lookahead(torch.optim.Optimizer):
    """timm.optim.Lookahead's constructor, abridged: it never calls Optimizer.__init__."""

    def __init__(self, base_optimizer: torch.optim.Optimizer) -> None:  # noqa: D107
        self.base_optimizer = base_optimizer
        self.param_groups = base_optimizer.param_groups
        self.defaults = base_optimizer.defaults
        self.state = {}



LOOKAHEAD = ("ParameterUpdateGeometry(optimizer=Lookahead): this Lookahead is a torch.optim.Optimizer that never ran "
             "Optimizer.__init__ (a wrapper such as timm's Lookahead), so it has no step hooks and its steps cannot "
             "be observed; pass the optimizer it wraps, ParameterUpdateGeometry(opt.base_optimizer) (AdamW: its "
             "steps are the updates; an interpolation the wrapper adds outside them is not observed), or any "
             "torch.optim.Optimizer built the usual way")


def test_a_wrapper_without_optimizer_init_is_refused_at_the_constructor_naming_the_inner_optimizer():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    wrapped = Lookahead(torch.optim.AdamW(model.parameters()))
    with pytest.raises(TypeError) as info:
        ParameterUpdateGeometry(wrapped)
    assert str(info.value) == LOOKAHEAD
    lens = ParameterUpdateGeometry(None)
    with pytest.raises(TypeError) as info:
        lens.optimizer = wrapped
    assert str(info.value) == LOOKAHEAD
    assert lens.optimizer is None
    # nothing is hooked anywhere, and the inner optimizer is what works
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    lens = ParameterUpdateGeometry(wrapped.base_optimizer, compute_correlation=False)
    ins = mw.PyTorchInspector([lens], visualizer="none", module=model)
    before = model[0].weight.detach().clone()
    inner = wrapped.base_optimizer
    inner.zero_grad()
    model(torch.randn(3, 4)).sum().backward()
    inner.step()
    ins.tick_epoch()
    want = float((model[0].weight.detach() - before).norm())
    assert ins.history.series("Weight Update Norm", "0", "mean") == pytest.approx([want], rel=1e-5)
    ins.detach()


def test_a_wrapper_with_nothing_inside_gets_the_generic_fix():
    class Bare(torch.optim.Optimizer):
        def __init__(self) -> None:
            self.param_groups = []

    with pytest.raises(TypeError, match=r"never ran Optimizer.__init__ .* pass the optimizer it wraps "
                                        r"\(e.g. opt.base_optimizer\)"):
        ParameterUpdateGeometry(Bare())


# --- Lightning: the Trainer's optimizer is handed to the lens ----------------------------------------------
def test_lightning_fit_hands_its_optimizer_to_a_lens_built_with_none():
    pl = pytest.importorskip("lightning.pytorch")
    from monitorch_widget.integrations.lightning import InspectorCallback

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    class Net(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.norms: list[list[float]] = []  # per epoch, ||update of fc.weight|| per step (by hand)
            self._before: torch.Tensor | None = None

        def forward(self, x):
            return self.fc(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.cross_entropy(self(x), y)
            self.log("train_loss", loss)
            return loss

        def on_train_epoch_start(self) -> None:
            self.norms.append([])

        def on_before_optimizer_step(self, optimizer) -> None:
            self._before = self.fc.weight.detach().clone()

        def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
            self.norms[-1].append(float((self.fc.weight.detach() - self._before).norm()))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.3, momentum=0.9)

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(24, 4, generator=g), torch.randint(0, 3, (24,), generator=g))
    lens = ParameterUpdateGeometry(None, compute_correlation=False)
    ins = mw.PyTorchInspector([LossMetrics(), lens], visualizer="none")
    net = Net()
    callback = InspectorCallback(ins)

    def fit() -> None:
        trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, accelerator="cpu", devices=1, callbacks=[callback])
        trainer.fit(net, torch.utils.data.DataLoader(data, batch_size=8))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit()
        first, net.norms = net.norms, []
        fit()  # a second fit (a notebook cell re-run): configure_optimizers makes a new optimizer, handed anew
    assert _notices(caught) == []
    for run, by_hand in zip(ins.history.runs, (first, net.norms)):
        assert [len(e) for e in by_hand] == [3, 3]
        norms = run.series("Weight Update Norm", "fc", "mean")
        assert norms == pytest.approx([sum(e) / len(e) for e in by_hand], rel=1e-5)
    assert len(ins.history.runs) == 2
    assert lens.optimizer is None  # taken back after each fit


# --- Hugging Face: the optimizer of the callback events (an AcceleratedOptimizer) is unwrapped ---------------
def test_huggingface_trainer_hands_its_optimizer_to_a_lens_built_with_none(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from monitorch_widget.integrations.huggingface import InspectorCallback

    transformers.logging.set_verbosity_error()

    class Classifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x, labels=None):
            logits = self.fc(x)
            return {"logits": logits, "loss": nn.functional.cross_entropy(logits, labels)}

    class Rows(torch.utils.data.Dataset):
        def __init__(self) -> None:
            g = torch.Generator().manual_seed(0)
            self.x, self.y = torch.randn(16, 4, generator=g), torch.randint(0, 3, (16,), generator=g)

        def __len__(self) -> int:
            return 16

        def __getitem__(self, i):
            return {"x": self.x[i], "labels": self.y[i]}

    class ByHand(transformers.TrainerCallback):
        def __init__(self, model: nn.Module) -> None:
            self.model, self.norms, self.before = model, [], None

        def on_epoch_begin(self, args, state, control, **kw):
            self.norms.append([])

        def on_pre_optimizer_step(self, args, state, control, **kw):
            self.before = self.model.fc.weight.detach().clone()

        def on_optimizer_step(self, args, state, control, **kw):
            self.norms[-1].append(float((self.model.fc.weight.detach() - self.before).norm()))

    torch.manual_seed(0)
    model = Classifier()
    lens = ParameterUpdateGeometry(None, compute_correlation=False)
    ins = mw.PyTorchInspector([lens], visualizer="none")
    args = transformers.TrainingArguments(output_dir=str(tmp_path), num_train_epochs=2, per_device_train_batch_size=4,
                                          learning_rate=0.1, logging_strategy="no", save_strategy="no",
                                          report_to=[], use_cpu=True, disable_tqdm=True)
    by_hand = ByHand(model)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Rows(),
                                   callbacks=[by_hand, InspectorCallback(ins)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    assert _notices(caught) == []
    assert [len(e) for e in by_hand.norms] == [4, 4]
    norms = ins.history.series("Weight Update Norm", "fc", "mean")
    assert norms == pytest.approx([sum(e) / len(e) for e in by_hand.norms], rel=1e-5)
    assert lens.optimizer is None
