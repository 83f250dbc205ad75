"""An embedding's weight gradient is silent for every vocabulary row a batch lacks, so its gradient death rate is
1 - (distinct tokens in the batch) / V by construction (trial r15a: 0.85 for batches of 16 x 20 tokens of a
2000-word vocabulary). It is recorded as such, but never ranks as the worst layer: not in the lens' warning panel,
not in the print line, not in the health checks' dead / dying layers (whose advice is about ReLU units)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from monitorch_widget import PyTorchInspector
from monitorch_widget.lens import ParameterGradientActivation
from monitorch_widget.views.print import epoch_line

V, B, T = 2000, 16, 20


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, 16)
        self.gru = nn.GRU(16, 16, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(self.emb(tokens))
        return self.head(out[:, -1])


def _death(grad: torch.Tensor) -> float:
    """Share of rows (units) whose gradient entries are all within eps = 1e-8 of zero, by hand."""
    return float((grad.abs() > 1e-8).flatten(1).sum(1).eq(0).double().mean())


def test_embedding_rows_never_rank_as_the_worst_gradient_layer():
    torch.manual_seed(0)
    model = Classifier()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    ins = PyTorchInspector([ParameterGradientActivation(parameters=["weight"])], visualizer="none", module=model)
    deaths: dict[str, list[float]] = {"emb": [], "head": []}
    g = torch.Generator().manual_seed(1)
    for _epoch in range(3):
        for _ in range(4):
            x = torch.randint(0, V, (B, T), generator=g)
            y = torch.randint(0, 3, (B,), generator=g)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            deaths["emb"].append(_death(model.emb.weight.grad))
            deaths["head"].append(_death(model.head.weight.grad))
            assert deaths["emb"][-1] == pytest.approx(1 - len(torch.unique(x)) / V)
            opt.step()
        ins.tick_epoch()
    h = ins.history
    emb = h.series("Weight Gradient Activation", "emb", "death_rate")
    head = h.series("Weight Gradient Activation", "head", "death_rate")
    assert emb == pytest.approx(np.mean(np.reshape(deaths["emb"], (3, 4)), 1))  # recorded as any other series
    assert head == pytest.approx(np.mean(np.reshape(deaths["head"], (3, 4)), 1))
    assert min(emb) > 0.8
    # the warning panel's worst death rate is the worst of the other layers (the GRU's gate rows, the head)
    others = [h.series("Weight Gradient Activation", layer, "death_rate")
              for layer in h.runs[-1].groups("Weight Gradient Activation") if layer != "emb"]
    worst = h.series("Warning Gradient Activations", "Warning Gradient Activations", "worst death_rate")
    assert worst == pytest.approx(np.max(others, axis=0))
    assert max(worst) < 0.5
    assert "'emb'" not in epoch_line(h)
    findings = ins.health.findings()
    assert not [f for f in findings if f.layer == "emb"], [(f.check, f.message) for f in findings]
    ins.detach()
