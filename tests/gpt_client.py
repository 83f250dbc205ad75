"""A tiny GPT written the way monitorch's author instruments pre-training (issue 12's "real client").

Bias-free ``nn.Linear`` subclass that casts its weight to the input dtype, relu² MLP through
``torch.nn.functional``, RMS norm, SDPA causal attention, ``model(x, y)`` returning the loss. Sizes are tiny so
that a few dozen CPU steps (and one ``torch.compile``) fit in a unit test. Random tokens, nothing downloaded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CastedLinear(nn.Linear):
    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.to(x.dtype))


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.c_qkv = CastedLinear(dim, 3 * dim)
        self.c_proj = CastedLinear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.c_qkv(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        q, k = rms_norm(q), rms_norm(k)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))


class MLP(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.c_fc = CastedLinear(dim, 4 * dim)
        self.c_proj = CastedLinear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.relu(self.c_fc(x)).square())


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.attn = Attention(dim, heads)
        self.mlp = MLP(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(rms_norm(x))
        return x + self.mlp(rms_norm(x))


class GPT(nn.Module):
    def __init__(self, vocab: int = 64, dim: int = 32, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.lm_head = CastedLinear(dim, vocab)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = rms_norm(self.wte(idx))
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(rms_norm(x)).float()
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def batches(n: int, *, batch: int = 4, seq: int = 16, vocab: int = 64, seed: int = 0) -> list[tuple[torch.Tensor,
                                                                                                  torch.Tensor]]:
    """``n`` (tokens, next tokens) pairs of random token ids: ``[batch, seq]`` int64 each."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        tokens = torch.randint(0, vocab, (batch, seq + 1), generator=g)
        out.append((tokens[:, :-1], tokens[:, 1:]))
    return out
