"""Models and fixtures the framework tests share (imported by the test modules of this folder)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
import torch
from torch import nn

D, C = 6, 3  # features, classes


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


@pytest.fixture
def quiet_lightning() -> Iterator[None]:
    """Lightning's own warnings (few workers, its deprecations) silenced; ours still raise (pyproject)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="lightning")
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        yield
