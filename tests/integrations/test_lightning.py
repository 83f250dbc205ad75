"""Lightning callback: rows per epoch / N steps, sanity check skipped, fit / validate / test runs."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch
from torch import nn

pl = pytest.importorskip("lightning.pytorch")

from trainer_models import quiet_lightning  # noqa: E402, F401 (a fixture, used by pytestmark)

from monitorch_widget import MonitorWarning, PyTorchInspector  # noqa: E402
from monitorch_widget.integrations.lightning import InspectorCallback  # noqa: E402
from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation  # noqa: E402

pytestmark = pytest.mark.usefixtures("quiet_lightning")

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
N, D, C, BATCH = 32, 5, 3, 8


def data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, D, generator=g) - 0.3, torch.randint(0, C, (N,), generator=g)


def loader(seed: int = 0) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*data(seed)), batch_size=BATCH)


class Net(pl.LightningModule):
    """Keeps its own plain-torch record of every batch loss (stage, epoch, value), sanity check excluded."""

    def __init__(self, loss_fn: nn.Module | None = None, step_only: bool = False) -> None:
        super().__init__()
        self.fc1, self.relu, self.fc2 = nn.Linear(D, 12), nn.ReLU(), nn.Linear(12, C)
        self.loss_fn = loss_fn or nn.CrossEntropyLoss()
        self.step_only = step_only
        self.seen: list[tuple[str, int, float]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.fc1(x)))

    def _loss(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        loss = self.loss_fn(self(x), y)
        if not self.trainer.sanity_checking:
            self.seen.append((stage, self.current_epoch, loss.item()))
        return loss

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch, "train")
        self.log("train_loss", loss, on_step=True, on_epoch=not self.step_only)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self._loss(batch, "val"))
        acc = (self(batch[0]).argmax(1) == batch[1]).float().mean()
        if not self.trainer.sanity_checking:
            self.seen.append(("val_acc", self.current_epoch, acc.item()))
        self.log("val_acc", acc)
        self.log("not_declared", 1.0)

    def test_step(self, batch, batch_idx):
        self.log("test_loss", self._loss(batch, "test"))

    def on_train_epoch_end(self) -> None:
        self.log("epoch_marker", float(self.current_epoch) + 10.0)  # logged by the module after the callbacks

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.2)


def trainer(**kw) -> pl.Trainer:
    base = dict(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, accelerator="cpu", devices=1)
    base.update(kw)
    return pl.Trainer(**base)


def inspector(*metrics: str, loss_fn: nn.Module | None = None) -> PyTorchInspector:
    return PyTorchInspector([LossMetrics(metrics=list(metrics), loss_fn=loss_fn), OutputActivation(),
                             ParameterGradientActivation()], visualizer="none")


def mean_of(seen, stage: str, epoch: int | None = None) -> float:
    return float(np.mean([v for s, e, v in seen if s == stage and (epoch is None or e == epoch)]))


def test_fit_rows_per_epoch_from_self_log():
    """Values logged with self.log; val only every 2nd epoch (gaps, not repeats); sanity check not counted."""
    torch.manual_seed(0)
    model = Net()
    ins = inspector("val_acc", "epoch_marker")
    t = trainer(check_val_every_n_epoch=2, num_sanity_val_steps=2, callbacks=[InspectorCallback(ins)])
    with pytest.warns(MonitorWarning, match="not_declared") as caught:
        t.fit(model, loader(), loader(1))
    assert sum(issubclass(w.category, MonitorWarning) for w in caught) == 1
    assert [w.filename for w in caught if issubclass(w.category, MonitorWarning)] == [__file__]  # at trainer.fit
    h = ins.history
    assert len(h.runs) == 1 and h.runs[0].epochs == [1.0, 2.0, 3.0] and not ins.state.attached
    train = h.series("Loss", "Loss", "train_loss mean")
    np.testing.assert_allclose(train, [mean_of(model.seen, "train", e) for e in range(3)], rtol=1e-5)
    val = h.series("Loss", "Loss", "val_loss mean")
    assert np.isnan(val[0]) and np.isnan(val[2])  # no validation in epochs 1 and 3; stale value not repeated
    assert val[1] == pytest.approx(mean_of(model.seen, "val", 1), rel=1e-5)
    acc = h.series("Metrics", "Metrics", "val_acc mean")
    assert np.isnan(acc[0]) and acc[1] == pytest.approx(mean_of(model.seen, "val_acc", 1), rel=1e-6)
    # Logged in the module's own on_train_epoch_end: in its own epoch's row.
    np.testing.assert_allclose(h.series("Metrics", "Metrics", "epoch_marker mean"), [10.0, 11.0, 12.0])
    rates = h.series("Weight Gradient Activation", "fc1", "activation_rate")
    assert np.all((rates > 0) & (rates <= 1))


def test_loss_hook_skips_sanity_check_batches():
    """LossMetrics(loss_fn=...): epoch 1's validation loss is the mean of its own batches only."""
    torch.manual_seed(1)
    loss_fn = nn.CrossEntropyLoss()
    model = Net(loss_fn)
    ins = inspector(loss_fn=loss_fn)
    t = trainer(max_epochs=2, num_sanity_val_steps=2, callbacks=[InspectorCallback(ins, val_loss=None)])
    with pytest.warns(MonitorWarning):  # val_acc, not_declared, epoch_marker
        t.fit(model, loader(), loader(1))
    val = ins.history.series("Loss", "Loss", "val_loss mean")
    expected = [mean_of(model.seen, "val", e) for e in range(2)]
    assert len([1 for s, e, _ in model.seen if s == "val" and e == 0]) == N // BATCH  # sanity not in `seen`
    np.testing.assert_allclose(val, expected, rtol=1e-5)


@pytest.mark.parametrize("inference_mode", [True, False], ids=["inference_mode", "no_grad"])
def test_validate_fit_test_each_a_new_run(inference_mode):
    torch.manual_seed(2)
    model = Net()
    ins = inspector("val_acc", "test_loss", "epoch_marker")
    t = trainer(max_epochs=2, num_sanity_val_steps=0, inference_mode=inference_mode,
                callbacks=[InspectorCallback(ins)])
    with pytest.warns(MonitorWarning, match="not_declared"):
        t.validate(model, loader(1), verbose=False)
    t.fit(model, loader())
    t.test(model, loader(1), verbose=False)
    h = ins.history
    assert [r.epochs for r in h.runs] == [[1.0], [1.0, 2.0], [1.0]]
    assert not ins.state.attached
    x, y = data(1)
    with torch.no_grad():
        final = float(nn.functional.cross_entropy(model(x), y))  # by hand, weights after fit
    assert h.series("Metrics", "Metrics", "test_loss mean", run=2)[0] == pytest.approx(final, rel=1e-5)
    assert h.series("Loss", "Loss", "val_loss mean", run=0)[0] == pytest.approx(mean_of(model.seen, "val"), rel=1e-5)
    assert "Output Activations" not in h.panels(run=0) or \
        np.all(np.isnan(h.series("Output Activations", "relu", "activation_rate", run=0)))  # eval passes not counted
    train = h.series("Loss", "Loss", "train_loss mean", run=1)
    np.testing.assert_allclose(train, [mean_of(model.seen, "train", e) for e in range(2)], rtol=1e-5)
    assert np.all(np.isfinite(h.series("Output Activations", "relu", "activation_rate", run=1)))


def test_every_n_steps_rows_numbered_by_global_step():
    torch.manual_seed(3)
    model = Net(step_only=True)
    ins = inspector("epoch_marker")
    t = trainer(max_epochs=2, limit_val_batches=0, callbacks=[InspectorCallback(ins, every_n_steps=3)])
    t.fit(model, loader())
    h = ins.history
    assert h.runs[0].epochs == [3.0, 6.0, 8.0]  # 4 steps per epoch; the last row holds the remaining steps
    train = [v for s, _, v in model.seen if s == "train"]  # one per step
    # each row: the mean of its own steps' values (not only its last step's)
    np.testing.assert_allclose(h.series("Loss", "Loss", "train_loss mean"),
                               [np.mean(train[0:3]), np.mean(train[3:6]), np.mean(train[6:8])], rtol=1e-5)


def test_step_only_logging_gives_the_epoch_mean_and_band():
    """self.log("train_loss", loss) in training_step is on_step only (Lightning's default there): callback_metrics
    keeps only the last step's value, the row must hold the mean of the epoch's steps and their ±std band."""
    torch.manual_seed(5)
    model = Net(step_only=True)
    ins = inspector("val_acc")
    t = trainer(max_epochs=2, num_sanity_val_steps=0, callbacks=[InspectorCallback(ins)])
    with pytest.warns(MonitorWarning, match="not_declared"):
        t.fit(model, loader(), loader(1))
    h = ins.history
    per_epoch = [[v for s, e, v in model.seen if s == "train" and e == epoch] for epoch in range(2)]
    assert [len(v) for v in per_epoch] == [N // BATCH] * 2
    np.testing.assert_allclose(h.series("Loss", "Loss", "train_loss mean"), [np.mean(v) for v in per_epoch],
                               rtol=1e-5)
    np.testing.assert_allclose(h.series("Loss", "Loss", "train_loss +σ", role="hi"),
                               [np.mean(v) + np.std(v) for v in per_epoch], rtol=1e-5)
    np.testing.assert_allclose(h.series("Loss", "Loss", "val_loss mean"),
                               [mean_of(model.seen, "val", e) for e in range(2)], rtol=1e-5)


def test_every_validation_of_an_epoch_is_recorded():
    """val_check_interval=0.5: two validations per epoch, the row holds their mean (each its own aggregate)."""
    torch.manual_seed(6)
    model = Net()
    ins = inspector("val_acc")
    t = trainer(max_epochs=2, num_sanity_val_steps=0, val_check_interval=0.5, callbacks=[InspectorCallback(ins)])
    with pytest.warns(MonitorWarning, match="not_declared"):
        t.fit(model, loader(), loader(1))
    h = ins.history
    vals = [[v for s, e, v in model.seen if s == "val" and e == epoch] for epoch in range(2)]
    assert [len(v) for v in vals] == [2 * N // BATCH] * 2  # two full validations per epoch
    # per validation: the mean of its batches (equal batch sizes); per row: the mean and spread of the two
    halves = [[np.mean(v[:N // BATCH]), np.mean(v[N // BATCH:])] for v in vals]
    np.testing.assert_allclose(h.series("Loss", "Loss", "val_loss mean"), [np.mean(x) for x in halves], rtol=1e-5)
    np.testing.assert_allclose(h.series("Loss", "Loss", "val_loss +σ", role="hi"),
                               [np.mean(x) + np.std(x) for x in halves], rtol=1e-5)
    np.testing.assert_allclose(h.series("Loss", "Loss", "train_loss mean"),
                               [mean_of(model.seen, "train", e) for e in range(2)], rtol=1e-5)


class SparseLogger(Net):
    """Logs ``some_steps`` on batches 0, 1 and 3 only (on_step): at batch 2 the stale value must not count."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        if batch_idx != 2:
            self.log("some_steps", float(batch_idx + 10 * self.current_epoch))
        return loss


def test_a_name_logged_on_some_steps_counts_those_steps_only():
    torch.manual_seed(7)
    model = SparseLogger()
    ins = inspector("some_steps", "epoch_marker")
    t = trainer(max_epochs=2, limit_val_batches=0, callbacks=[InspectorCallback(ins)])
    t.fit(model, loader())
    # batches 0, 1, 3 of each epoch's 4: (0 + 1 + 3) / 3, then + 10 (a stale repeat at batch 2: 5/4)
    np.testing.assert_allclose(ins.history.series("Metrics", "Metrics", "some_steps mean"), [4 / 3, 10 + 4 / 3])


def test_gradients_through_the_closure_equal_a_hand_written_loop():
    """Lightning's automatic optimisation (optimizer.step(closure)) vs a plain loop: same gradient rows."""
    torch.manual_seed(4)
    model = Net()
    hand = Net()
    hand.load_state_dict(model.state_dict())
    ins = inspector("epoch_marker", "val_acc")
    trainer(max_epochs=2, limit_val_batches=0, callbacks=[InspectorCallback(ins)]).fit(model, loader())
    hand_ins = inspector().attach(hand)
    opt = torch.optim.SGD(hand.parameters(), lr=0.2)
    for _ in range(2):
        for x, y in loader():
            opt.zero_grad()
            nn.functional.cross_entropy(hand(x), y).backward()
            opt.step()
        hand_ins.tick_epoch()
    for p, q in zip(model.parameters(), hand.parameters()):
        torch.testing.assert_close(p, q)
    columns = [c for c in hand_ins.history.runs[-1].columns if "Activation" in c.panel]
    assert len(columns) > 8
    for c in columns:
        np.testing.assert_allclose(ins.history.series(c.panel, c.group, c.key, role=c.role),
                                   hand_ins.history.series(c.panel, c.group, c.key, role=c.role),
                                   rtol=1e-6, err_msg=f"{c.panel} / {c.group} / {c.key}")


def test_pytorch_lightning_trainer_accepts_the_callback():
    ptl = pytest.importorskip("pytorch_lightning")

    class Plain(ptl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(D, C)

        def training_step(self, batch, batch_idx):
            loss = nn.functional.cross_entropy(self.fc(batch[0]), batch[1])
            self.log("train_loss", loss, on_epoch=True)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    ins = inspector()
    ptl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, accelerator="cpu", callbacks=[InspectorCallback(ins)]).fit(Plain(), loader())
    assert ins.history.runs[0].epochs == [1.0, 2.0]
    assert np.all(np.isfinite(ins.history.series("Loss", "Loss", "train_loss mean")))


def test_ddp_notebook_is_refused():
    ins = inspector()
    t = trainer(max_epochs=1, strategy="ddp_notebook", devices=2, callbacks=[InspectorCallback(ins)])
    with pytest.raises(Exception, match="ddp_notebook"):
        t.fit(Net(), loader())
    assert not ins.history.runs


def test_arguments_are_checked():
    with pytest.raises(TypeError, match="PyTorchInspector"):
        InspectorCallback(nn.Linear(1, 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="every_n_steps"):
        InspectorCallback(inspector(), every_n_steps=1.5)  # type: ignore[arg-type]


def test_run_name_labels_each_fit():
    """Two fits, one inspector: a str and a callable of the Trainer name the runs."""
    ins = inspector("val_acc", "epoch_marker")
    for run_name in ("lr 0.2", lambda t: f"{t.state.fn.value} {t.max_epochs} epochs"):
        torch.manual_seed(10)
        trainer(max_epochs=2, limit_val_batches=0, callbacks=[InspectorCallback(ins, run_name=run_name)]).fit(
            Net(), loader())
    assert [r.label for r in ins.history.runs] == ["lr 0.2", "fit 2 epochs"]
    assert [r.epochs for r in ins.history.runs] == [[1.0, 2.0], [1.0, 2.0]]
    with pytest.raises(TypeError, match="run_name=3"):
        InspectorCallback(ins, run_name=3)  # type: ignore[arg-type]
    t = trainer(max_epochs=1, limit_val_batches=0, callbacks=[InspectorCallback(ins, run_name=lambda t: None)])
    with pytest.raises(TypeError, match="run_name.*must return a str"):
        t.fit(Net(), loader())


class SlashNames(Net):
    """Logs its losses as "train/loss" / "val/loss" (a common naming), not the callback's default names."""

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch, "train")
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self._loss(batch, "val"))
        self.log("val/acc", (self(batch[0]).argmax(1) == batch[1]).float().mean())

    def on_train_epoch_end(self) -> None:
        pass


def test_losses_under_other_names_get_the_loss_arguments_in_the_warning():
    torch.manual_seed(11)
    ins = inspector()
    t = trainer(max_epochs=2, num_sanity_val_steps=0, callbacks=[InspectorCallback(ins)])
    with pytest.warns(MonitorWarning) as caught:
        t.fit(SlashNames(), loader(), loader(1))
    [message] = [str(w.message) for w in caught if issubclass(w.category, MonitorWarning)]
    assert "InspectorCallback(inspector, train_loss='train/loss', val_loss='val/loss')" in message
    assert "For the others (val/acc): " in message and "LossMetrics(metrics=[...])" in message
    # the empty-chart notice names the callback's argument, not the hand-written loop's remedies (trial r8)
    [empty] = [str(w.message) for w in caught if "training loss chart stays empty" in str(w.message)]
    assert "InspectorCallback(train_loss='train_loss') received no value under that name" in empty
    assert "push_loss" not in empty and "LossMetrics(loss_fn" not in empty
    assert np.all(np.isnan(ins.history.series("Loss", "Loss", "train_loss mean")))  # what the user is warned about
    # following the advice records them as the losses
    model = SlashNames()
    ins = inspector("val/acc")
    t = trainer(max_epochs=2, num_sanity_val_steps=0,
                callbacks=[InspectorCallback(ins, train_loss="train/loss", val_loss="val/loss")])
    with warnings.catch_warnings():
        warnings.simplefilter("error", MonitorWarning)
        t.fit(model, loader(), loader(1))
    h = ins.history
    np.testing.assert_allclose(h.series("Loss", "Loss", "train_loss mean"),
                               [mean_of(model.seen, "train", e) for e in range(2)], rtol=1e-5)
    np.testing.assert_allclose(h.series("Loss", "Loss", "val_loss mean"),
                               [mean_of(model.seen, "val", e) for e in range(2)], rtol=1e-5)


def test_only_the_missing_loss_is_suggested():
    """train_loss logged under the default name, the validation loss as "val/loss": only val_loss is suggested."""

    class HalfSlash(Net):
        def validation_step(self, batch, batch_idx):
            self.log("val/loss", self._loss(batch, "val"))

    torch.manual_seed(12)
    ins = inspector("epoch_marker")
    with pytest.warns(MonitorWarning) as caught:
        trainer(max_epochs=1, num_sanity_val_steps=0, callbacks=[InspectorCallback(ins)]).fit(
            HalfSlash(), loader(), loader(1))
    [message] = [str(w.message) for w in caught if issubclass(w.category, MonitorWarning)]
    assert "pass InspectorCallback(inspector, val_loss='val/loss')" in message
    assert "train_loss=" not in message.split("pass InspectorCallback")[1]


def test_findings_after_fit_then_validate_are_the_fits():
    """fit -> validate (the usual end of a script): the evaluation is a run of its own, but inspector.findings
    (the early-stop / CI check) still reports the fit's dead layer, not the evaluation's empty list."""
    torch.manual_seed(4)
    model = Net()
    with torch.no_grad():
        model.fc1.bias.fill_(-10.0)  # every ReLU unit dead from the start: a critical dead_layer in fit
    ins = inspector("val_acc", "epoch_marker")
    t = trainer(max_epochs=3, num_sanity_val_steps=0, callbacks=[InspectorCallback(ins)])
    with pytest.warns(MonitorWarning, match="not_declared"):
        t.fit(model, loader(), loader(1))
    after_fit = [(f.id, f.severity) for f in ins.findings]
    assert ("0:dead_layer:relu", "critical") in after_fit
    t.validate(model, loader(1), verbose=False)
    assert len(ins.history.runs) == 2 and ins.history.runs[1].steps == [0.0]
    assert [(f.id, f.severity) for f in ins.findings] == after_fit
    assert ins.history.health.findings(1, active=True) == []  # the evaluation run's own: none
