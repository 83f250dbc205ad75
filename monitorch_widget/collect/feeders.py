"""Which layer fed an activation's output, read from the output's autograd graph: where its channel axis is.

An activation's channels are dim 1 after a convolution or a feature-map norm (``[B, C, H, W]``) and the last
dim after a linear layer (``[B, N, D]`` token MLPs). The module that feeds an activation is the one that ran
before it, which the model's definition order only suggests (an activation defined next to a linear layer but
applied after a convolution, one ``self.act`` shared by a convolution and a linear layer). The output of a
training pass carries its history: :func:`channels_last` walks it back from the activation's node to the node
that decides, following where each axis of the activation's output came from:

* through element-wise nodes (activations, in place or not, softmax, dropout, residual additions, products with
  a parameter, casts, LayerNorm), pooling, padding, upsampling and concatenation: the axes stay where they are;
* through ``transpose`` / ``permute``: the axes move with them;
* through a reshape that keeps the last dim: only the last dim is still known; one that moves it (a DCGAN-style
  ``Linear -> view(B, C, 4, 4)``) makes the result feature maps of a linear layer's features: dim 1;
* to ``ConvolutionBackward0`` (every ``ConvNd`` / ``ConvTransposeNd``) or a batch / group norm: its dim 1;
  to ``AddmmBackward0`` / ``MmBackward0`` (``nn.Linear``), a batched matmul (attention scores), an embedding
  or a recurrent layer's output: its last dim.

Anything else (no graph in a ``no_grad`` pass, a leaf, a reduction, an unknown node, a channel axis that ends
up elsewhere than dim 1 or the last dim) answers ``None``: the caller keeps its definition-order default and
says so. Node names are autograd's (``...Backward0``, in-place variants ``...Backward1``), stable across torch
2.x releases; the walk runs once per output shape of a module, never per batch.
"""

from __future__ import annotations

from typing import Any

import torch

_CHANNELS_FIRST = frozenset({
    "ConvolutionBackward", "NativeBatchNormBackward", "CudnnBatchNormBackward", "MiopenBatchNormBackward",
    "NativeGroupNormBackward",
})
# features along the last dim: linear layers, attention scores (keys), embeddings, recurrent layers' outputs
_LINEAR = frozenset({"AddmmBackward", "MmBackward", "BmmBackward", "EmbeddingBackward", "MkldnnRnnLayerBackward",
                     "CudnnRnnBackward", "MiopenRnnBackward"})
# the output has the shape of the (first non-parameter) input: every axis stays where it is
_SAME_SHAPE = frozenset({
    "ReluBackward", "GeluBackward", "SiluBackward", "SigmoidBackward", "TanhBackward", "LeakyReluBackward",
    "EluBackward", "HardtanhBackward", "HardswishBackward", "HardsigmoidBackward", "SoftplusBackward",
    "MishBackward", "ThresholdBackward", "PreluKernelBackward", "RreluWithNoiseBackward", "CeluBackward",
    "LogSigmoidBackward", "SoftshrinkBackward", "HardshrinkBackward", "SoftmaxBackward", "LogSoftmaxBackward",
    "MulBackward", "AddBackward", "SubBackward", "DivBackward", "NegBackward", "PowBackward", "ClampBackward",
    "ClampMinBackward", "ClampMaxBackward", "CloneBackward", "ToCopyBackward", "NativeDropoutBackward",
    "NativeLayerNormBackward", "AsStridedBackward", "CopySlices",
})
# the axes stay in place, some sizes change (spatial sizes, the concatenated axis, GLU's halved axis)
_SAME_AXES = frozenset({"CatBackward", "ConstantPadNdBackward", "GluBackward"})
_SAME_AXES_PREFIXES = ("MaxPool", "AvgPool", "AdaptiveMaxPool", "Upsample", "ReflectionPad", "ReplicationPad")
_VIEWS = frozenset({"ViewBackward", "UnsafeViewBackward", "ReshapeAliasBackward"})
_MAX_NODES = 24


def channels_last(y: torch.Tensor) -> bool | None:
    """True: ``y``'s channels are its last dim (fed by a linear layer); False: dim 1 (fed by a convolution or a
    batch / group norm); None: not known from its graph (see the module docstring)."""
    try:
        axis = _channel_axis(y.grad_fn, tuple(y.shape))
    except Exception:  # noqa: BLE001 - a graph this walk does not understand: the caller's default
        return None
    if axis is None or y.dim() < 2:
        return None
    if axis == y.dim() - 1:
        return True
    return False if axis == 1 else None


def _channel_axis(node: Any, shape: tuple[int, ...]) -> int | None:
    # where[i]: which axis of y axis i of the current node's output is (None: lost in a reshape); sizes: that
    # output's shape (None once a node changed sizes we cannot follow)
    where: list[int | None] = list(range(len(shape)))
    sizes: tuple[int, ...] | None = shape
    reshaped = False
    for _ in range(_MAX_NODES):
        if node is None:
            return None
        name = type(node).__name__.rstrip("0123456789")
        if name in _CHANNELS_FIRST:
            return where[1] if len(where) > 1 else None
        if name in _LINEAR:
            if where and where[-1] is not None:
                return where[-1]
            return 1 if reshaped and len(shape) >= 3 else None
        if name in _VIEWS:
            before = tuple(int(s) for s in node._saved_self_sym_sizes)
            kept: list[int | None] = [None] * len(before)
            if sizes is not None and before and sizes:
                if len(before) >= 2 and len(sizes) >= 2 and before[:2] == sizes[:2]:  # [B, C, ...] flattened
                    kept[0], kept[1] = where[0], where[1]
                if before[-1] == sizes[-1]:  # [B*N, D] -> [B, N, D]
                    kept[-1] = where[-1]
            reshaped = reshaped or kept[-1] is None  # the last dim moved (DCGAN's Linear -> view)
            where, sizes = kept, before
        elif name == "TransposeBackward":
            d0, d1 = node._saved_dim0 % len(where), node._saved_dim1 % len(where)
            where[d0], where[d1] = where[d1], where[d0]
            if sizes is not None:
                s = list(sizes)
                s[d0], s[d1] = s[d1], s[d0]
                sizes = tuple(s)
        elif name == "PermuteBackward":
            dims = [d % len(where) for d in node._saved_dims]
            moved: list[int | None] = [None] * len(where)
            for out_axis, in_axis in enumerate(dims):
                moved[in_axis] = where[out_axis]
            where = moved
            sizes = None if sizes is None else tuple(sizes[dims.index(i)] for i in range(len(dims)))
        elif name in _SAME_AXES or name.startswith(_SAME_AXES_PREFIXES):
            sizes = None
        elif name not in _SAME_SHAPE:
            return None
        node = _fed_by(node)
    return None


def _fed_by(node: Any) -> Any:
    """The input a node's output came from: the first one that is not a parameter (``gamma * x``, ``x + bias``),
    else the first one."""
    inputs = [f for f, _ in node.next_functions if f is not None]
    return next((f for f in inputs if type(f).__name__ != "AccumulateGrad"), inputs[0] if inputs else None)
