"""Hugging Face callback: the last row, the notices about logging, and load_best_model_at_end, checked against what
the Trainer logged and what a plain callback read from the weights (trial r15c)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from trainer_models import Classifier  # noqa: E402

from monitorch_widget import MonitorNotice, MonitorWarning, PyTorchInspector  # noqa: E402
from monitorch_widget.integrations.huggingface import InspectorCallback  # noqa: E402
from monitorch_widget.lens import LossMetrics, ParameterNorm  # noqa: E402

transformers.logging.set_verbosity_error()
N, D, C, BATCH = 40, 6, 3, 8  # 5 optimizer steps per epoch


class Rows(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x, self.y = torch.randn(n, D, generator=g), torch.randint(0, C, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.y[i]}


def run(tmp_path, ins, cb=None, callbacks=(), compute_metrics=None, **kw) -> tuple[transformers.Trainer, list]:
    base = dict(output_dir=str(tmp_path), per_device_train_batch_size=BATCH, per_device_eval_batch_size=16,
                num_train_epochs=3, learning_rate=0.5, lr_scheduler_type="constant", logging_strategy="steps",
                logging_steps=1, eval_strategy="no", save_strategy="no", report_to=[], use_cpu=True,
                disable_tqdm=True, train_sampling_strategy="sequential", seed=0)
    base.update(kw)
    torch.manual_seed(0)
    model = Classifier()
    trainer = transformers.Trainer(model=model, args=transformers.TrainingArguments(**base),
                                   train_dataset=Rows(N, 0), eval_dataset=Rows(16, 1),
                                   optimizers=(torch.optim.SGD(model.parameters(), lr=base["learning_rate"]), None),
                                   callbacks=[InspectorCallback(ins, **(cb or {})), *callbacks],
                                   compute_metrics=compute_metrics)
    trainer.remove_callback(transformers.PrinterCallback)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    return trainer, [str(w.message) for w in caught if issubclass(w.category, (MonitorNotice, MonitorWarning))]


def losses_by_step(trainer) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in trainer.state.log_history if "loss" in e}


@pytest.mark.parametrize("max_steps, logging_steps", [(11, 5), (11, 2)])
def test_a_last_row_without_a_logging_step_is_no_wrong_name(tmp_path, max_steps, logging_steps):
    """max_steps=11 with 5 steps per epoch: the third row holds one step, with no log of the training loss. The
    chart is not empty (rows 1, 2 have their losses), the name is right: no notice says otherwise; and no
    logging notice either: a row holds 5 steps (not max_steps // epochs = 3)."""
    ins = PyTorchInspector([LossMetrics()], visualizer="none")
    trainer, said = run(tmp_path, ins, max_steps=max_steps, logging_steps=logging_steps)
    assert not [m for m in said if "chart stays empty" in m or "logging_steps" in m], said
    logged = losses_by_step(trainer)
    assert max_steps not in logged  # the last, partial row has no logged loss
    expected = [np.mean([v for s, v in logged.items() if 5 * e < s <= 5 * (e + 1)]) for e in range(2)]
    train = ins.history.series("Loss", "Loss", "train_loss mean")
    np.testing.assert_allclose(train[:2], expected, rtol=1e-6)
    assert np.isnan(train[2])


def test_sparse_logging_says_the_rows_size_and_no_wrong_name(tmp_path):
    """logging_steps=7, 5 steps per epoch, max_steps=11 (the last epoch holds 1): the notice gives the row's 5
    steps; rows without a logging step are not called a wrong loss name."""
    ins = PyTorchInspector([LossMetrics()], visualizer="none")
    trainer, said = run(tmp_path, ins, max_steps=11, logging_steps=7)
    assert [m for m in said if "logging_steps" in m] == [
        "monitorch_widget [huggingface]: the Trainer logs the training loss every logging_steps=7 optimizer steps, "
        "and a row here holds 5: most rows get no training loss (and the loss-based health checks skip them). Set "
        "TrainingArguments(logging_steps=1) or logging_strategy='epoch'"]
    assert not [m for m in said if "chart stays empty" in m], said
    assert losses_by_step(trainer).keys() == {7}
    np.testing.assert_allclose(ins.history.series("Loss", "Loss", "train_loss mean"),
                               [np.nan, losses_by_step(trainer)[7], np.nan])


def test_a_wrong_loss_name_is_still_named(tmp_path):
    """The Trainer logs every step, under "loss": train_loss="train_loss" receives nothing, and that is said."""
    ins = PyTorchInspector([LossMetrics()], visualizer="none")
    _, said = run(tmp_path, ins, cb={"train_loss": "train_loss"}, num_train_epochs=1)
    [empty] = [m for m in said if "chart stays empty" in m]
    assert "InspectorCallback(train_loss='train_loss') received no value under that name" in empty


class WeightNorms(transformers.TrainerCallback):
    """||fc1.weight|| after each optimizer step, read by a plain callback."""

    def __init__(self) -> None:
        self.norms: dict[int, float] = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.norms[state.global_step] = model.fc1.weight.norm().item()


@pytest.mark.parametrize("every_n_steps, rows", [(None, [1, 2, 3]), (3, [3, 6, 9, 12, 15]), (4, [4, 8, 12, 15])],
                         ids=["epoch_rows", "every_3_steps", "every_4_steps_last_row_the_rest"])
def test_load_best_model_at_end_last_row_reads_the_trained_weights(tmp_path, every_n_steps, rows):
    """load_best_model_at_end=True: the Trainer reloads the best checkpoint (here epoch 1's) after the loop; the
    last row's ParameterNorm must measure the trained weights, and each evaluation stay in its row."""
    evaluations = []

    def first_is_best(pred) -> dict[str, float]:  # a metric that makes the first evaluation the best
        evaluations.append(1)
        return {"rank": -float(len(evaluations))}

    norms = WeightNorms()
    ins = PyTorchInspector([LossMetrics(metrics=["eval_rank"]), ParameterNorm()], visualizer="none")
    trainer, _ = run(tmp_path, ins, cb={"every_n_steps": every_n_steps}, callbacks=[norms],
                     compute_metrics=first_is_best, eval_strategy="epoch", save_strategy="epoch",
                     load_best_model_at_end=True, metric_for_best_model="rank", greater_is_better=True)
    assert trainer.state.best_model_checkpoint.endswith("checkpoint-5")
    reloaded = trainer.model.fc1.weight.norm().item()
    assert reloaded == pytest.approx(norms.norms[5]) and reloaded != pytest.approx(norms.norms[15])
    h = ins.history
    steps = [5 * r for r in rows] if every_n_steps is None else rows
    assert h.runs[-1].epochs == [float(r) for r in rows]
    np.testing.assert_allclose(h.series("Weight Norm", "fc1", "mean"), [norms.norms[s] for s in steps], rtol=1e-6)
    evals = {e["step"]: e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e}
    assert sorted(evals) == [5, 10, 15]
    # each evaluation in the row holding its step
    expected = [next((v for s, v in evals.items() if a < s <= b), math.nan) for a, b in zip([0, *steps], steps)]
    np.testing.assert_allclose(h.series("Loss", "Loss", "val_loss mean"), expected, rtol=1e-6)
