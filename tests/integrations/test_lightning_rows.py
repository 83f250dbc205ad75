"""Lightning callback, every_n_steps rows and several optimizers: each value in the row it belongs to, checked
against what the LightningModule records itself (trial r15c)."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch
from torch import nn

pl = pytest.importorskip("lightning.pytorch")

from trainer_models import quiet_lightning  # noqa: E402, F401 (a fixture, used by pytestmark)

from monitorch_widget import MonitorNotice, PyTorchInspector  # noqa: E402
from monitorch_widget.integrations.lightning import InspectorCallback  # noqa: E402
from monitorch_widget.lens import LossMetrics, ParameterUpdateGeometry  # noqa: E402

pytestmark = pytest.mark.usefixtures("quiet_lightning")

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
N, D, C, BATCH = 32, 5, 3, 8  # 4 batches per epoch


def loader(seed: int = 0) -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(N, D, generator=g), torch.randint(0, C, (N,), generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH)


def trainer(**kw) -> pl.Trainer:
    base = dict(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, accelerator="cpu", devices=1, num_sanity_val_steps=0)
    base.update(kw)
    return pl.Trainer(**base)


class Steps(pl.LightningModule):
    """Records (global_step after the batch, loss) per training batch and (global_step, [batch losses]) per
    validation; logs an epoch marker from its own on_train_epoch_end."""

    def __init__(self, epoch_only: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(D, C)
        self.epoch_only = epoch_only
        self.train_seen: list[tuple[int, float]] = []
        self.validations: list[tuple[int, list[float]]] = []

    def training_step(self, batch, batch_idx):
        loss = nn.functional.cross_entropy(self.fc(batch[0]), batch[1])
        self.train_seen.append((self.global_step + 1, loss.item()))  # one optimizer step per batch
        self.log("train_loss", loss, on_step=not self.epoch_only, on_epoch=self.epoch_only)
        return loss

    def on_validation_epoch_start(self) -> None:
        self.validations.append((self.global_step, []))

    def validation_step(self, batch, batch_idx):
        loss = nn.functional.cross_entropy(self.fc(batch[0]), batch[1])
        self.validations[-1][1].append(loss.item())
        self.log("val_loss", loss)

    def on_train_epoch_end(self) -> None:
        self.log("epoch_marker", float(self.current_epoch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.3)


def test_every_n_steps_puts_each_validation_in_the_row_of_its_step():
    """Lightning validates after on_train_batch_end: the row of step 2 must hold the validation run after step 2
    (not the next row), and the validation after the last step must not be lost (trial r15c, l5)."""
    torch.manual_seed(0)
    model = Steps()
    ins = PyTorchInspector([LossMetrics(metrics=["epoch_marker"])], visualizer="none")
    trainer(val_check_interval=0.5, callbacks=[InspectorCallback(ins, every_n_steps=2)]).fit(model, loader(),
                                                                                                loader(1))
    h = ins.history
    assert h.runs[0].epochs == [2.0, 4.0, 6.0, 8.0]
    assert [step for step, _ in model.validations] == [2, 4, 6, 8]  # one validation after every 2nd step
    np.testing.assert_allclose(h.series("Loss", "Loss", "val_loss mean"),
                               [np.mean(losses) for _, losses in model.validations], rtol=1e-5)
    train = [[v for s, v in model.train_seen if end - 2 < s <= end] for end in (2, 4, 6, 8)]
    np.testing.assert_allclose(h.series("Loss", "Loss", "train_loss mean"), [np.mean(v) for v in train], rtol=1e-5)
    # logged in the module's own on_train_epoch_end (after step 4, 8): in the row that ends the epoch
    np.testing.assert_allclose(h.series("Metrics", "Metrics", "epoch_marker mean"), [np.nan, 0.0, np.nan, 1.0])


def test_epoch_only_loss_in_a_row_inside_an_epoch_is_no_wrong_name():
    """self.log("train_loss", on_epoch=True) only: a row of every_n_steps inside an epoch has no training loss
    (logged at the epoch's end); the empty-chart notice must not call that a wrong name."""
    torch.manual_seed(1)
    model = Steps(epoch_only=True)
    ins = PyTorchInspector([LossMetrics(metrics=["epoch_marker"])], visualizer="none")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer(limit_val_batches=0, callbacks=[InspectorCallback(ins, every_n_steps=3)]).fit(model, loader())
    assert not [w for w in caught if "training loss chart stays empty" in str(w.message)]
    h = ins.history
    assert h.runs[0].epochs == [3.0, 6.0, 8.0]
    epochs = [[v for s, v in model.train_seen if 4 * e < s <= 4 * (e + 1)] for e in range(2)]
    np.testing.assert_allclose(h.series("Loss", "Loss", "train_loss mean"),
                               [np.nan, np.mean(epochs[0]), np.mean(epochs[1])], rtol=1e-5)


class Gan(pl.LightningModule):
    """Manual optimisation, two optimizers: global_step moves by 2 per batch. ``watch``: the optimizer index the
    module assigns to the inspector's ParameterUpdateGeometry in its on_train_start (the notice's advice)."""

    def __init__(self, lens: ParameterUpdateGeometry | None = None, watch: int | None = None) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.G = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, D))
        self.Dis = nn.Sequential(nn.Linear(D, 8), nn.ReLU(), nn.Linear(8, 1))
        self.lens, self.watch = lens, watch
        self.d_seen: list[tuple[int, float]] = []

    def on_train_start(self) -> None:
        if self.lens is not None and self.watch is not None:
            self.lens.optimizer = self.trainer.optimizers[self.watch]

    def training_step(self, batch, batch_idx):
        x = batch[0]
        opt_g, opt_d = self.optimizers()
        z = torch.randn(len(x), 2)
        real, fake = torch.ones(len(x), 1), torch.zeros(len(x), 1)
        bce = nn.functional.binary_cross_entropy_with_logits
        d_loss = bce(self.Dis(x), real) + bce(self.Dis(self.G(z).detach()), fake)
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()
        g_loss = bce(self.Dis(self.G(z)), real)
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()
        self.d_seen.append((self.global_step, d_loss.item()))
        self.log("d_loss", d_loss)

    def configure_optimizers(self):
        return [torch.optim.SGD(self.G.parameters(), lr=0.1), torch.optim.SGD(self.Dis.parameters(), lr=0.1)]


def test_every_n_steps_rows_when_the_step_moves_by_two():
    """global_step +2 per batch, N=3: a row each time it passes a multiple of 3 (4, 6, 10, 12, 16), not only
    when it lands on one (6, 12) (trial r15c, l9)."""
    torch.manual_seed(2)
    model = Gan()
    ins = PyTorchInspector([LossMetrics()], visualizer="none")
    trainer(limit_val_batches=0, callbacks=[InspectorCallback(ins, train_loss="d_loss", every_n_steps=3)]).fit(
        model, loader())
    ends = [4, 6, 10, 12, 16]
    assert ins.history.runs[0].epochs == [float(s) for s in ends]
    assert [s for s, _ in model.d_seen] == list(range(2, 17, 2))
    rows = [[v for s, v in model.d_seen if a < s <= b] for a, b in zip([0, *ends], ends)]
    np.testing.assert_allclose(ins.history.series("Loss", "Loss", "train_loss mean"),
                               [np.mean(r) for r in rows], rtol=1e-5)


class UpdateNorms(pl.Callback):
    """The norm of each step's update of the discriminator's first layer, by plain optimizer hooks."""

    def __init__(self, model: Gan) -> None:
        self.model = model
        self.norms: list[tuple[int, float]] = []

    def on_train_start(self, trainer, pl_module) -> None:
        opt = trainer.optimizers[1]
        w = self.model.Dis[0].weight
        opt.register_step_pre_hook(lambda o, a, k: setattr(self, "before", w.detach().clone()))
        opt.register_step_post_hook(lambda o, a, k: self.norms.append(
            (trainer.current_epoch, (w.detach() - self.before).norm().item())))


@pytest.mark.parametrize("watch", [None, 1], ids=["first_optimizer", "assigned_second"])
def test_two_optimizers_notice_gives_advice_that_works(watch):
    """Two optimizers: ParameterUpdateGeometry(None) watches trainer.optimizers[0]; the notice names what the
    second trains and the assignment that watches it, and no advice of a second ParameterUpdateGeometry (refused
    in one inspector, and the optimizer does not exist before fit). Following it records the second's updates."""
    torch.manual_seed(3)
    lens = ParameterUpdateGeometry(None)
    model = Gan(lens, watch)
    ins = PyTorchInspector([LossMetrics(), lens], visualizer="none")
    norms = UpdateNorms(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer(limit_val_batches=0, callbacks=[InspectorCallback(ins, train_loss="d_loss"), norms]).fit(
            model, loader())
    said = [str(w.message) for w in caught if issubclass(w.category, MonitorNotice)
            and "ParameterUpdateGeometry" in str(w.message)]
    assert not any("second ParameterUpdateGeometry" in m for m in said), said
    [notice] = said
    if watch is None:
        assert "watches one, trainer.optimizers[0] (SGD), which InspectorCallback hands it" in notice
        assert "trainer.optimizers[1] (SGD): 'Dis.0.weight'" in notice and "'G.0.weight'" not in notice
        assert "lens.optimizer = self.trainer.optimizers[1]" in notice and "on_train_start" in notice
    else:  # what is watched after the module's assignment
        assert "watches one, trainer.optimizers[1] (SGD)." in notice
        assert "trainer.optimizers[0] (SGD): 'G.0.weight'" in notice and "'Dis.0.weight'" not in notice
    d0 = ins.history.series("Weight Update Norm", "Dis.0", "mean")
    g0 = ins.history.series("Weight Update Norm", "G.0", "mean")
    by_hand = [np.mean([v for e, v in norms.norms if e == epoch]) for epoch in range(2)]
    if watch is None:
        assert np.all(np.isnan(d0)) and np.all(np.isfinite(g0))
    else:
        np.testing.assert_allclose(d0, by_hand, rtol=1e-5)
        assert np.all(np.isnan(g0))
    assert lens.optimizer is None  # taken back after fit


class Criterion(pl.LightningModule):
    """Scores with a criterion object the inspector's LossMetrics also hooks, and logs the same losses."""

    def __init__(self, criterion: nn.Module) -> None:
        super().__init__()
        self.fc = nn.Linear(D, C)
        self.criterion = criterion
        self.train_losses: list[float] = []

    def training_step(self, batch, batch_idx):
        loss = self.criterion(self.fc(batch[0]), batch[1])
        self.train_losses.append(loss.item())
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.criterion(self.fc(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_logged_losses_beside_a_hooked_criterion_are_said_to_be_unused():
    """Trial r15c: LossMetrics(loss_fn=criterion) with the callback: the logged losses were ignored without a word
    (the Loss panel shows the criterion's per-call mean; Lightning's validation mean weights batches by size)."""
    criterion = nn.CrossEntropyLoss()
    ins = PyTorchInspector([LossMetrics(loss_fn=criterion)], visualizer="none")
    module = Criterion(criterion)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer(max_epochs=1, callbacks=[InspectorCallback(ins)]).fit(module, loader(), loader(1))
    said = [str(c.message) for c in caught if issubclass(c.category, MonitorNotice)
            and "reads the loss from its loss_fn's calls" in str(c.message)]
    assert len(said) == 1, said
    # the Loss panel: the criterion's calls, each training batch once (not doubled by the logged values)
    assert ins.history.series("Loss", "Loss", "train_loss mean") == pytest.approx([np.mean(module.train_losses)])
