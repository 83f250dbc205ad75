"""Which layer fed an activation's output, read from the output's autograd graph: where its channel axis is.

An activation's channels are dim 1 after a convolution or a feature-map norm (``[B, C, H, W]``) and the last
dim after a linear layer (``[B, N, D]`` token MLPs). The module that feeds an activation is the one that ran
before it, which the model's definition order only suggests (an activation defined next to a linear layer but
applied after a convolution, one ``self.act`` shared by a convolution and a linear layer). The output of a
training pass carries its history: :func:`channels_last` walks it back from the activation's node, through
element-wise nodes (other activations, dropout, residual additions, casts, LayerNorm), to the node that decides:

* ``ConvolutionBackward0`` (every ``ConvNd`` / ``ConvTransposeNd``), batch and group norm nodes -> dim 1;
* ``AddmmBackward0`` / ``MmBackward0`` (``nn.Linear``, ``F.linear``) -> the last dim, provided every reshape
  on the way kept the last dim (a linear layer on ``[B, N, D]`` runs as ``[B*N, D]`` then a view; a DCGAN-style
  ``Linear -> view(B, C, 4, 4)`` does not keep it, and is left undecided).

Anything else (no graph in a ``no_grad`` pass, a leaf, an unknown node, a reshape that moves the last dim)
answers ``None``: the caller keeps its definition-order default. Node names are autograd's, stable across
torch 2.x releases; the walk runs once per output shape of a module (its first call), never per batch.
"""

from __future__ import annotations

from typing import Any

import torch

_CHANNELS_FIRST = frozenset({
    "ConvolutionBackward0", "NativeBatchNormBackward0", "CudnnBatchNormBackward0", "MiopenBatchNormBackward0",
    "NativeGroupNormBackward0",
})
_LINEAR = frozenset({"AddmmBackward0", "MmBackward0"})
# element-wise (the shape of their first input is their output's) and LayerNorm (normalises the last dims)
_THROUGH = frozenset({
    "ReluBackward0", "GeluBackward0", "SiluBackward0", "SigmoidBackward0", "TanhBackward0", "LeakyReluBackward0",
    "EluBackward0", "HardtanhBackward0", "HardswishBackward0", "HardsigmoidBackward0", "SoftplusBackward0",
    "MishBackward0", "ThresholdBackward0", "PreluKernelBackward0", "RreluWithNoiseBackward0", "CeluBackward0",
    "LogSigmoidBackward0", "SoftshrinkBackward0", "HardshrinkBackward0",
    "MulBackward0", "AddBackward0", "SubBackward0", "DivBackward0", "NegBackward0", "PowBackward0",
    "CloneBackward0", "ToCopyBackward0", "NativeDropoutBackward0", "NativeLayerNormBackward0",
})
_VIEWS = frozenset({"ViewBackward0", "UnsafeViewBackward0", "ReshapeAliasBackward0"})
_MAX_NODES = 16


def channels_last(y: torch.Tensor) -> bool | None:
    """True: ``y``'s channels are its last dim (fed by a linear layer); False: dim 1 (fed by a convolution or a
    batch / group norm); None: not known from its graph (see the module docstring)."""
    try:
        return _walk(y.grad_fn, y.shape[-1] if y.dim() else None)
    except Exception:  # noqa: BLE001 - a graph this walk does not understand: the caller's default
        return None


def _walk(node: Any, last: int | None) -> bool | None:
    for _ in range(_MAX_NODES):
        if node is None or last is None:
            return None
        name = type(node).__name__
        if name in _CHANNELS_FIRST:
            return False
        if name in _LINEAR:
            return True
        if name in _VIEWS:
            sizes = getattr(node, "_saved_self_sym_sizes", None)
            if not sizes or int(sizes[-1]) != last:  # the view moved the last dim: not the producer's channels
                return None
        elif name not in _THROUGH:
            return None
        node = next((f for f, _ in node.next_functions if f is not None), None)
    return None
