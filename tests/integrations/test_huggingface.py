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
from trainer_models import Classifier  # noqa: E402

from monitorch_widget import MonitorNotice, MonitorWarning, PyTorchInspector  # noqa: E402
from monitorch_widget.integrations.huggingface import InspectorCallback  # noqa: E402
from monitorch_widget.lens import LossMetrics, OutputActivation, ParameterGradientActivation  # noqa: E402

transformers.logging.set_verbosity_error()
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

N, D, C = 64, 6, 3          # samples, features, classes
BATCH, ACCUM = 4, 4         # micro-batch size; micro-batches per optimizer step
LR = 0.5


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


# --- tiny BERT from a config (no download): eval_on_start, the accumulated-loss scale ---------------------------
SEQ = 8


def tiny_bert() -> torch.nn.Module:
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16, num_labels=2,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return transformers.BertForSequenceClassification(config)


def token_rows(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 50, (n, SEQ), generator=g)
    labels = (ids[:, 0] > 27).long()
    return [{"input_ids": ids[i], "attention_mask": torch.ones(SEQ, dtype=torch.long), "labels": labels[i]}
            for i in range(n)]


def bert_run(tmp_path, model, inspector, train, lr=1e-3, **kw) -> transformers.Trainer:
    trainer = transformers.Trainer(
        model=model, args=args(tmp_path, learning_rate=lr, **kw), train_dataset=train,
        eval_dataset=token_rows(16, 1), optimizers=(torch.optim.SGD(model.parameters(), lr=lr), None),
        callbacks=[InspectorCallback(inspector)], compute_metrics=compute_metrics)
    trainer.remove_callback(transformers.PrinterCallback)
    trainer.train()
    return trainer


def test_eval_on_start_is_a_baseline_row_0_not_part_of_epoch_1(tmp_path):
    """eval_on_start=True: the untrained model's evaluation is row 0; epoch 1's row holds epoch 1's alone."""
    torch.manual_seed(8)
    ins = PyTorchInspector(lenses(["eval_accuracy"]), visualizer="none")
    with pytest.warns(MonitorWarning, match="eval_constant"):
        trainer = bert_run(tmp_path, tiny_bert(), ins, token_rows(32, 0), gradient_accumulation_steps=1,
                           eval_strategy="epoch", eval_on_start=True, logging_steps=2)
    h = ins.history
    assert h.runs[-1].epochs == [0.0, 1.0, 2.0]
    logs = trainer.state.log_history
    evals = [e for e in logs if "eval_loss" in e]
    assert [e["step"] for e in evals] == [0, 8, 16]  # 32 rows / batch 4 = 8 steps per epoch
    np.testing.assert_allclose(h.series("Loss", "Loss", "val_loss mean"), [e["eval_loss"] for e in evals],
                               rtol=1e-6)
    np.testing.assert_allclose(h.series("Metrics", "Metrics", "eval_accuracy mean"),
                               [e["eval_accuracy"] for e in evals], rtol=1e-6)
    train = h.series("Loss", "Loss", "train_loss mean")
    assert np.isnan(train[0])  # before training: no training loss
    for epoch in (1, 2):
        expected = np.mean([e["loss"] for e in logs if "loss" in e and math.ceil(e["epoch"]) == epoch])
        assert train[epoch] == pytest.approx(expected, rel=1e-6)
    # evaluation passes are not training batches: the baseline row has no activation statistics
    groups = h.runs[-1].groups("Output Activations")
    assert groups and all(np.isnan(h.series("Output Activations", g, "activation_rate")[0]) for g in groups)
    assert all(np.isfinite(h.series("Output Activations", g, "activation_rate")[1]) for g in groups
               if "intermediate" in g)


def mean_ce_by_hand(model: torch.nn.Module, rows: list[dict[str, torch.Tensor]], per: int) -> list[float]:
    """The mean cross-entropy of each optimizer step's micro-batches (weights unchanged: lr 0)."""
    losses = []
    with torch.no_grad():
        for start in range(0, len(rows), per):
            chunk = rows[start:start + per]
            batch = {k: torch.stack([r[k] for r in chunk]) for k in chunk[0]}
            labels = batch.pop("labels")
            losses.append(float(nn.functional.cross_entropy(model(**batch).logits, labels)))
    return losses


@pytest.mark.parametrize("accepts_loss_kwargs", [None, False], ids=["as_built", "accepts_loss_kwargs_false"])
def test_accumulated_loss_scale_notice(tmp_path, accepts_loss_kwargs):
    """BertForSequenceClassification with gradient_accumulation_steps=2: the Trainer logs 2 x the mean loss
    (transformers#37766); the callback says so once, and the notice's fix (accepts_loss_kwargs = False) works."""
    torch.manual_seed(9)
    model = tiny_bert()
    if accepts_loss_kwargs is not None:
        model.accepts_loss_kwargs = accepts_loss_kwargs
    rows = token_rows(16, 2)
    ins = PyTorchInspector(lenses(), visualizer="none")
    with pytest.warns(MonitorNotice) as caught:  # the smooth-activation notice (GELU) comes in any case
        trainer = bert_run(tmp_path, model, ins, rows, lr=0.0, num_train_epochs=1, gradient_accumulation_steps=2,
                           eval_strategy="no")
    scale = [str(w.message) for w in caught if "transformers#37766" in str(w.message)]
    logged = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    by_hand = mean_ce_by_hand(model, rows, BATCH * 2)  # per optimizer step: 2 micro-batches of 4
    assert len(logged) == len(by_hand) == 2
    if accepts_loss_kwargs is None:
        np.testing.assert_allclose(logged, [2 * v for v in by_hand], rtol=1e-5)  # the upstream behaviour
        assert len(scale) == 1 and "gradient_accumulation_steps=2" in scale[0]
        assert "model.accepts_loss_kwargs = False" in scale[0]
        assert any("transformers#37766" in p["message"] for p in ins.history.runs[-1].problem_list())
    else:
        np.testing.assert_allclose(logged, by_hand, rtol=1e-5)
        assert scale == []
    np.testing.assert_allclose(ins.history.series("Loss", "Loss", "train_loss mean"), [np.mean(logged)], rtol=1e-6)


def test_loss_scale_rule_follows_the_trainers():
    """Models whose loss uses num_items_in_batch (GPT-2's loss_function) or whose forward takes no **kwargs are
    divided by the accumulation steps in the Trainer: no notice for them."""
    from monitorch_widget.integrations.huggingface import loss_times_accumulation

    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=40, n_positions=16, n_embd=16,
                                                                n_layer=1, n_head=2))
    vit = transformers.ViTForImageClassification(transformers.ViTConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=8,
        patch_size=4, num_channels=1, num_labels=3))  # self.loss_function(labels, logits, self.config, **kwargs)
    assert loss_times_accumulation(tiny_bert())
    assert not loss_times_accumulation(gpt2)
    assert not loss_times_accumulation(vit)
    assert not loss_times_accumulation(Classifier())   # forward(x, labels): no **kwargs
    bert = tiny_bert()
    bert.accepts_loss_kwargs = False
    assert not loss_times_accumulation(bert)


def test_run_name_labels_each_train_call(tmp_path):
    ins = PyTorchInspector(lenses(), visualizer="none")
    x, y = data()
    for run_name in ("lr 0.5", lambda a, s: f"lr {a.learning_rate} from step {s.global_step}"):
        model = Classifier()
        trainer = transformers.Trainer(model=model, args=args(tmp_path, num_train_epochs=1), train_dataset=Rows(x, y),
                                       optimizers=(torch.optim.SGD(model.parameters(), lr=LR), None),
                                       callbacks=[InspectorCallback(ins, run_name=run_name)])
        trainer.remove_callback(transformers.PrinterCallback)
        trainer.train()
    assert [r.label for r in ins.history.runs] == ["lr 0.5", "lr 0.5 from step 0"]
    assert [r.epochs for r in ins.history.runs] == [[1.0], [1.0]]


def test_run_name_is_checked(tmp_path):
    ins = PyTorchInspector(lenses(), visualizer="none")
    with pytest.raises(TypeError, match="run_name=3"):
        InspectorCallback(ins, run_name=3)  # type: ignore[arg-type]
    x, y = data()
    model = Classifier()
    trainer = transformers.Trainer(model=model, args=args(tmp_path, num_train_epochs=1), train_dataset=Rows(x, y),
                                   optimizers=(torch.optim.SGD(model.parameters(), lr=LR), None),
                                   callbacks=[InspectorCallback(ins, run_name=lambda a, s: 0.5)])
    with pytest.raises(TypeError, match="run_name.*must return a str"):
        trainer.train()


def test_eval_on_start_with_every_n_steps_is_row_0(tmp_path):
    torch.manual_seed(13)
    ins = PyTorchInspector(lenses(), visualizer="none")
    model = tiny_bert()
    trainer = transformers.Trainer(
        model=model, args=args(tmp_path, learning_rate=1e-3, gradient_accumulation_steps=1, eval_strategy="epoch",
                               eval_on_start=True, logging_steps=2),
        train_dataset=token_rows(32, 0), eval_dataset=token_rows(16, 1),
        optimizers=(torch.optim.SGD(model.parameters(), lr=1e-3), None),
        callbacks=[InspectorCallback(ins, every_n_steps=4)])
    trainer.remove_callback(transformers.PrinterCallback)
    trainer.train()
    h = ins.history
    assert h.runs[-1].epochs == [0.0, 4.0, 8.0, 12.0, 16.0]
    evals = {e["step"]: e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e}
    assert sorted(evals) == [0, 8, 16]
    val = h.series("Loss", "Loss", "val_loss mean")
    np.testing.assert_allclose(val[[0, 2, 4]], [evals[0], evals[8], evals[16]], rtol=1e-6)
    assert np.isnan(val[1]) and np.isnan(val[3])


def test_a_logging_interval_longer_than_a_row_is_named_at_the_start(tmp_path):
    """logging_steps=500 (the Trainer's default) on a small dataset: epochs without a logged loss. One notice
    with the setting to use; logging every step says nothing."""
    import warnings

    from monitorch_widget import MonitorNotice

    torch.manual_seed(2)
    ins = PyTorchInspector(lenses(), visualizer="none")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hf_run(tmp_path, Classifier(), ins, logging_steps=500)
    said = [str(w.message) for w in caught if issubclass(w.category, MonitorNotice) and "logging_steps" in str(w.message)]
    per_epoch = N // (BATCH * ACCUM)
    assert len(said) == 1 and f"every logging_steps=500 optimizer steps, and a row here holds {per_epoch}" in said[0]
    assert np.isnan(ins.history.series("Loss", "Loss", "train_loss mean")).all()
    ins2 = PyTorchInspector(lenses(), visualizer="none")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hf_run(tmp_path, Classifier(), ins2)
    assert not any("logging_steps" in str(w.message) for w in caught)
