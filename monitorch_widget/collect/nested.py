"""Outputs that are nested tensors (``torch.nested``, strided layout): ``nn.TransformerEncoder`` turns its input
into one when it runs in eval mode with a ``src_key_padding_mask`` (``enable_nested_tensor=True``, the default),
and its layers' submodules then return one component per sequence, ``[T_i, D]`` without the padded positions.
Such a tensor has no ``shape``: the hooks' fast paths raise on it, so they call these helpers from their error
path instead (no cost on ordinary calls). Only eval passes see them, which output lenses record with
``record_eval=True``; the statistics then cover the real tokens only (a dense training pass also counts the
padded positions, which the model computes like any other)."""

from __future__ import annotations

import math

import torch

from .geometry import norm_dtype


def is_nested(t: object) -> bool:
    return isinstance(t, torch.Tensor) and t.is_nested


def joined(t: torch.Tensor) -> torch.Tensor:
    """The components ``[T_i, *rest]`` of nested ``t`` concatenated along their first dim: ``[sum T_i, *rest]``, a
    dense tensor with the same channels (rates pool every position of a batch, so they are unchanged)."""
    return torch.cat(t.detach().unbind(), 0)


def sample_norms(t: torch.Tensor, normalize: bool) -> torch.Tensor:
    """[B] float32: each component's L2 norm (one per sequence, as a dense output's per-sample norm), divided by
    the root of the component's size with ``normalize`` (the RMS)."""
    parts = t.detach().unbind()
    norms = [torch.linalg.vector_norm(p, dtype=norm_dtype(p)).float() for p in parts]
    if normalize:
        norms = [n / math.sqrt(max(p.numel(), 1)) for n, p in zip(norms, parts)]
    return torch.stack(norms)
