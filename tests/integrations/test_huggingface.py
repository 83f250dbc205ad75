"""Hugging Face Trainer callback: rows, names, and gradient accumulation equal to a hand-written loop."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from helpers import rates_by_hand  # noqa: E402

from monitorch_widget import MonitorWarning, PyTorchInspector  # noqa: E402
from monitorch_widget.integrations.huggingface import InspectorCallback  # noqa: E402
from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation  # noqa: E402

transformers.logging.set_verbosity_error()
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

N, D, C = 64, 6, 3          # samples, features, classes
BATCH, ACCUM = 4, 4         # micro-batch size; micro-batches per optimizer step
LR = 0.5


class Classifier(nn.Module):
    """Takes the Trainer's batch dict (x, labels), returns {"loss", "logits"}; a ReLU that partly dies."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(D, 16)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(16, C)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = self.fc2(self.relu(self.fc1(x)))
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out


class Rows(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.y[i]}


def data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g) - 0.5
    y = torch.randint(0, C, (N,), generator=g)
    return x, y


def args(tmp_path, **kw) -> transformers.TrainingArguments:
    base = dict(output_dir=str(tmp_path), per_device_train_batch_size=BATCH, per_device_eval_batch_size=16,
                gradient_accumulation_steps=ACCUM, num_train_epochs=2, learning_rate=LR,
                lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=0.0,
                logging_strategy="steps", logging_steps=1, eval_strategy="no", save_strategy="no",
                report_to=[], use_cpu=True, disable_tqdm=True, dataloader_num_workers=0,
                train_sampling_strategy="sequential", seed=0)
    base.update(kw)
    return transformers.TrainingArguments(**base)


def lenses(metrics=()) -> list:
    return [LossMetrics(metrics=list(metrics)), OutputActivation(), ParameterGradientActivation()]


def compute_metrics(pred) -> dict[str, float]:
    logits, labels = pred
    return {"accuracy": float((logits.argmax(-1) == labels).mean()), "constant": 7.0}


def hf_run(tmp_path, model, inspector, cb=None, **kw) -> transformers.Trainer:
    cb = cb or {}
    x, y = data()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    trainer = transformers.Trainer(model=model, args=args(tmp_path, **kw), train_dataset=Rows(x, y),
                                   eval_dataset=Rows(x[:32], y[:32]), optimizers=(opt, None),
                                   callbacks=[InspectorCallback(inspector, **cb)], compute_metrics=compute_metrics)
    trainer.remove_callback(transformers.PrinterCallback)
    trainer.train()
    return trainer


def test_gradient_accumulation_equals_a_hand_written_loop(tmp_path):
    """ACCUM=4: same seed, data order, lenses -> the two records hold the same values."""
    torch.manual_seed(0)
    hf_model = Classifier()
    hand_model = Classifier()
    hand_model.load_state_dict(hf_model.state_dict())

    # Independent reference for the output activation: the ReLU outputs of the HF run, by a plain hook.
    relu_out: list[np.ndarray] = []
    hf_model.relu.register_forward_hook(lambda m, a, out: relu_out.append(out.detach().numpy().copy())
                                        if torch.is_grad_enabled() and m.training else None)
    hf_ins = PyTorchInspector(lenses(), visualizer="none")
    hf_run(tmp_path, hf_model, hf_ins)

    # The hand-written loop: 4 micro-batches, loss / 4, one optimizer step (the definition in the README).
    hand_ins = PyTorchInspector(lenses(), visualizer="none").attach(hand_model)
    opt = torch.optim.SGD(hand_model.parameters(), lr=LR)
    x, y = data()
    micro_losses: list[list[float]] = []
    for _epoch in range(2):
        losses = []
        for start in range(0, N, BATCH * ACCUM):
            step_losses = []
            for mb in range(ACCUM):
                sl = slice(start + mb * BATCH, start + (mb + 1) * BATCH)
                loss = hand_model(x[sl], y[sl])["loss"]
                (loss / ACCUM).backward()
                step_losses.append(loss.item())
            opt.step()
            hand_model.zero_grad()
            hand_ins.push_loss(float(np.mean(step_losses)), train=True)
            losses += step_losses
        micro_losses.append(losses)
        hand_ins.tick_epoch()
    hand_ins.detach()

    # Same computation: identical weights at the end.
    for (name, p), q in zip(hf_model.named_parameters(), hand_model.parameters()):
        torch.testing.assert_close(p, q, msg=name)
    hf, hand = hf_ins.history, hand_ins.history
    assert hf.runs[-1].epochs == hand.runs[-1].epochs == [1.0, 2.0]
    compared = 0
    for col in hand.runs[-1].columns:
        if col.panel == "Loss" and col.role != "line":
            continue  # the band: HF's logged means per step are what both runs pushed
        a = hf.series(col.panel, col.group, col.key, role=col.role)
        b = hand.series(col.panel, col.group, col.key, role=col.role)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7, err_msg=f"{col.panel} / {col.group} / {col.key}")
        compared += 1
    grads = [c for c in hand.runs[-1].columns if "Gradient" in c.panel and not c.panel.startswith("Warning")]
    assert len(grads) == 8 and compared > 10   # fc1/fc2 x weight/bias x activation/death rates
    # Against values computed by hand with plain torch on the same tensors:
    train_loss = hf.series("Loss", "Loss", "train_loss mean")
    np.testing.assert_allclose(train_loss, [np.mean(e) for e in micro_losses], rtol=1e-5)
    per_batch = [rates_by_hand(o) for o in relu_out]
    assert len(per_batch) == 2 * N // BATCH
    half = N // BATCH
    for epoch in range(2):
        expected = np.mean([r[0] for r in per_batch[epoch * half:(epoch + 1) * half]])
        got = hf.series("Output Activations", "relu", "activation_rate")[epoch]
        assert got == pytest.approx(expected, rel=1e-6)
    # The comparison is not vacuous: some gradient rows of fc1 are dead, some alive.
    fc1 = hf.series("Weight Gradient Activation", "fc1", "activation_rate")
    assert 0 < fc1.min() and fc1.max() < 1


def test_epoch_rows_hold_that_epochs_logs_and_evaluation(tmp_path):
    """eval_strategy='epoch': the Trainer evaluates after on_epoch_end; the row of epoch k still holds it."""
    torch.manual_seed(1)
    ins = PyTorchInspector(lenses(["eval_accuracy", "learning_rate"]), visualizer="none")
    with pytest.warns(MonitorWarning, match="eval_constant") as record:
        trainer = hf_run(tmp_path, Classifier(), ins, eval_strategy="epoch")
    assert len([w for w in record if issubclass(w.category, MonitorWarning)]) == 1  # once, not per epoch
    h = ins.history
    assert h.runs[-1].epochs == [1.0, 2.0] and not ins.state.attached
    logs = trainer.state.log_history
    for epoch in (1, 2):
        train = [e["loss"] for e in logs if "loss" in e and math.ceil(e["epoch"]) == epoch]
        evals = [e for e in logs if "eval_loss" in e and round(e["epoch"]) == epoch]
        assert len(train) == N // (BATCH * ACCUM) and len(evals) == 1
        assert h.series("Loss", "Loss", "train_loss mean")[epoch - 1] == pytest.approx(np.mean(train))
        assert h.series("Loss", "Loss", "val_loss mean")[epoch - 1] == pytest.approx(evals[0]["eval_loss"])
        assert h.series("Metrics", "Metrics", "eval_accuracy mean")[epoch - 1] == \
            pytest.approx(evals[0]["eval_accuracy"])
    assert np.all(h.series("Metrics", "Metrics", "learning_rate mean") == LR)


def test_every_n_steps_rows_numbered_by_optimizer_step(tmp_path):
    torch.manual_seed(2)
    ins = PyTorchInspector(lenses(), visualizer="none")
    trainer = hf_run(tmp_path, Classifier(), ins, cb={"every_n_steps": 3})
    steps = N // (BATCH * ACCUM) * 2  # 8 optimizer steps
    assert ins.history.runs[-1].epochs == [3.0, 6.0, float(steps)]
    losses = {e["step"]: e["loss"] for e in trainer.state.log_history if "loss" in e}
    expected = [np.mean([losses[s] for s in range(a + 1, b + 1)]) for a, b in ((0, 3), (3, 6), (6, 8))]
    np.testing.assert_allclose(ins.history.series("Loss", "Loss", "train_loss mean"), expected, rtol=1e-6)


def test_tiny_gpt2_from_config(tmp_path):
    """A transformers model built from a config (no download): every epoch a row, its blocks hooked."""
    config = transformers.GPT2Config(vocab_size=40, n_positions=16, n_embd=16, n_layer=2, n_head=2,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(3)
    model = transformers.GPT2LMHeadModel(config)
    ids = torch.randint(0, 40, (16, 12))

    class Tokens(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(ids)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"input_ids": ids[i], "labels": ids[i]}

    ins = PyTorchInspector(lenses(), visualizer="none")
    trainer = transformers.Trainer(model=model, args=args(tmp_path, gradient_accumulation_steps=1, learning_rate=1e-3,
                                                          logging_steps=2), train_dataset=Tokens(),
                                   callbacks=[InspectorCallback(ins)])
    trainer.remove_callback(transformers.PrinterCallback)
    trainer.train()
    h = ins.history
    assert h.runs[-1].epochs == [1.0, 2.0]
    logged = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert h.series("Loss", "Loss", "train_loss mean")[0] == pytest.approx(np.mean(logged[:2]))
    groups = {c.group for c in h.runs[-1].columns if c.panel == "Weight Gradient Activation"}
    assert "transformer.h.1.mlp.c_fc" in groups
    rates = h.series("Weight Gradient Activation", "transformer.h.1.mlp.c_fc", "activation_rate")
    assert np.all((rates > 0) & (rates <= 1))


def test_arguments_are_checked():
    ins = PyTorchInspector(lenses(), visualizer="none")
    with pytest.raises(TypeError, match="PyTorchInspector"):
        InspectorCallback(object())
    with pytest.raises(ValueError, match="every_n_steps"):
        InspectorCallback(ins, every_n_steps=0)
    with pytest.raises(ValueError, match="must differ"):
        InspectorCallback(ins, train_loss="loss", val_loss="loss")
