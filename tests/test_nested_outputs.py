"""nn.TransformerEncoder in eval mode with a padding mask runs its layers on nested tensors (one component
[T_i, D] per sequence, ``enable_nested_tensor=True``, the default). Found in trial r15a: with ``record_eval=True``
every output hook failed on them ("NestedTensorImpl doesn't support sizes"), the series stopped for the rest of
the run and the training batches of later epochs were lost. A nested output is measured on its real tokens:
rates over the joined components, norms per component. Expected values by hand from our own hooks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import OutputActivation, OutputNorm

EPS = 1e-8


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(30, 16, padding_idx=0)
        layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, activation=nn.ReLU())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's note on norm_first / nested tensors
            self.enc = nn.TransformerEncoder(layer, 2)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.enc(self.emb(x), src_key_padding_mask=(x == 0))[:, 0])


def _by_hand(y: torch.Tensor, normalize: bool) -> tuple[float, float, float]:
    """(activation rate, death rate, mean per-sample norm) of one call: over the real tokens of a nested output."""
    samples = list(y.unbind()) if y.is_nested else list(y)
    tokens = torch.cat([s.reshape(-1, s.shape[-1]) for s in samples])
    active = tokens.abs() > EPS
    norms = [float(s.norm()) / (np.sqrt(s.numel()) if normalize else 1.0) for s in samples]
    return float(active.double().mean()), float((~active.any(0)).double().mean()), float(np.mean(norms))


@pytest.mark.parametrize("normalize", [False, True])
def test_nested_eval_outputs_are_measured_and_training_goes_on(normalize):
    torch.manual_seed(0)
    model = Encoder()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    ins = PyTorchInspector([OutputActivation(record_eval=True), OutputNorm(record_eval=True,
                                                                         normalize_by_size=normalize)],
                           visualizer="none", module=model)
    calls: list[tuple[bool, tuple[float, float, float]]] = []
    act = model.enc.layers[0].activation
    act.register_forward_hook(lambda m, a, out: calls.append((out.is_nested, _by_hand(out.detach(), normalize))))
    g = torch.Generator().manual_seed(1)
    expected = []
    for _ in range(3):
        calls.clear()
        model.train()
        for _ in range(3):
            x = torch.randint(1, 30, (8, 10), generator=g)
            x[1:, 6:] = 0
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), torch.randint(0, 3, (8,), generator=g)).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            model(x)
        assert [nested for nested, _ in calls] == [False, False, False, True]  # the eval pass is nested
        expected.append(np.mean([v for _, v in calls], axis=0))
        ins.tick_epoch()
    h = ins.history
    expected = np.array(expected)
    name = "enc.layers.0.activation"
    assert h.series("Output Activations", name, "activation_rate") == pytest.approx(expected[:, 0], rel=1e-6)
    assert h.series("Output Activations", name, "death_rate") == pytest.approx(expected[:, 1], abs=1e-9)
    assert h.series("Output Norm", name, "mean") == pytest.approx(expected[:, 2], rel=1e-5)
    ins.detach()
